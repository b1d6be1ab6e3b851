"""``replay_equals_live`` compares the fold's figures with every account its events build.

An account's ``Deposited`` event carries both the amount and the collateral after it; the
aggregate takes the collateral from the event, the invariants' fold adds up the amounts.
A stored event edited to say 1,500 after a deposit of 1,000 (valid JSON, a valid event) leaves
an aggregate that no longer agrees with its own amounts, on an account with no snapshot.
"""

from __future__ import annotations

import sqlite3

import pytest

from clearing.audit.invariants import check_ledger
from clearing.errors import InvariantViolation
from clearing.settings import store_env
from tests.ledger import Ledger
from tests.unit.test_risk_scenarios import SETUP


def test_an_edited_collateral_after_a_deposit_fails_replay_equals_live_for_that_account(tmp_path):
    db = str(tmp_path / "ledger.db")
    ledger = Ledger(store_env(db))
    ledger.post_ok(SETUP + '{"type":"deposit","account":"alice","amount":"1000"}\n')
    check_ledger(ledger.app)
    connection = sqlite3.connect(db)
    rowid, state = connection.execute(
        "SELECT rowid, state FROM stored_events WHERE topic LIKE '%Account.Deposited' ORDER BY rowid DESC LIMIT 1").fetchone()
    text = bytes(state).decode()
    assert '"account":"alice"' in text and '"collateral_after":{"_type_":"decimal_str","_data_":"2000"}' in text, text
    edited = text.replace('"collateral_after":{"_type_":"decimal_str","_data_":"2000"}',
                          '"collateral_after":{"_type_":"decimal_str","_data_":"2500"}')
    connection.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (edited.encode(), rowid))
    connection.commit()
    connection.close()
    reopened = Ledger(store_env(db))
    with pytest.raises(InvariantViolation, match="replay_equals_live: alice collateral or cash differs from the log"):
        check_ledger(reopened.app)
