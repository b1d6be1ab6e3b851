"""A log in which an account ends a command below zero equity fails ``audit verify``.

The log is written by an engine whose sweep is switched off (a stand-in for a risk-engine
bug): alice (1,000) is long 0.2 BTC at 50,000 and the mark falls to 44,000, so her equity is
1,000 - 1,200 = -200 and nobody liquidates her. Every event is genuine and the hash chain is
intact; only the ledger-wide solvency invariant (``clearing/audit/invariants.py``) can see it, and
``clearing audit verify`` names the check and the log position of the command.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from clearing.audit.invariants import check_ledger
from clearing.errors import InvariantViolation
from clearing.settings import store_env
from tests.ledger import Ledger
from tests.unit.test_risk_scenarios import SETUP, price

CLEARING = str(Path(sys.executable).parent / "clearing")


def test_an_account_left_below_zero_fails_the_invariant_and_audit_verify(tmp_path):
    db = str(tmp_path / "ledger.db")
    ledger = Ledger(store_env(db))
    ledger.post_ok(SETUP)
    check_ledger(ledger.app)
    ledger.app.parts = ledger.app.parts.replace(sweep=lambda ws, market, at, reason: 0)  # the "bug"
    ledger.post_ok(price("44000"))
    crash = ledger.head()
    expected = r"solvency: alice ends the command recorded at log position \d+ with equity -200"
    with pytest.raises(InvariantViolation, match=expected):
        check_ledger(ledger.app)
    caught_up = subprocess.run([CLEARING, "--db", db, "projections", "catch-up"], capture_output=True, text=True, timeout=300)
    assert caught_up.returncode == 0, caught_up.stderr  # the chain and the read models, as a posting CLI keeps them
    verified = subprocess.run([CLEARING, "--db", db, "audit", "verify"], capture_output=True, text=True, timeout=300)
    assert verified.returncode == 4, verified.stdout + verified.stderr
    shown = verified.stdout
    assert "invariants" in shown and "FAILED" in shown and "solvency: alice" in shown, shown
    assert f"log position {crash}" in verified.stdout, verified.stdout
