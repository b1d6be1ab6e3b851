"""The risk engine through ``clearing post`` on SQLite and PostgreSQL, and as a subprocess.

Same script as the unit scenario "bankruptcy beyond the fund, socialized per contract",
plus a pause with quorum and a resume that processes the queue, on a real store; a
second process then reads the results back (the index and caches are rebuilt from the log).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from clearing.audit.invariants import check_ledger
from clearing.settings import store_env
from tests.conftest import REPO
from tests.ledger import Ledger, accounts_with
from tests.unit.test_risk_scenarios import QUEUE_BOOK, SETUP

CLEARING = str(Path(sys.executable).parent / "clearing")
SCRIPT = SETUP + """
{"type":"open_account","account":"erin"}
{"type":"deposit","account":"erin","amount":"1000"}
{"type":"trade","market":"BTC-PERP","buyer":"erin","seller":"dave","size":"0.1","price":"50000"}
{"type":"fund_insurance","amount":"100"}
{"type":"set_parameters","market":"BTC-PERP","parameters":{"loss_policy":"socialize_per_contract"}}
{"type":"price","market":"BTC-PERP","price":"44000"}
{"type":"register_officer","officer":"olga"}
{"type":"approve","officer":"olga","action":"pause","operation":"liquidations"}
{"type":"pause","operation":"liquidations"}
{"type":"price","market":"BTC-PERP","price":"40000"}
{"type":"approve","officer":"olga","action":"resume","operation":"liquidations"}
{"type":"resume","operation":"liquidations"}
"""


def test_liquidation_allocation_pause_and_resume_on_each_store(store_db):
    ledger = Ledger(store_env(store_db))
    ledger.post_ok(SCRIPT, operator="olga")  # olga posts her own approvals
    fold = check_ledger(ledger.app)
    assert fold.counts["Clearinghouse.LiquidationQueued"] == 1 and fold.counts["Clearinghouse.LiquidationDequeued"] == 1
    assert fold.counts["Account.LossAllocated"] > 4  # alice's 320, then erin's deficit after the resume
    fresh = Ledger(store_env(store_db))
    assert fresh.collateral("alice") == 0 and fresh.account("alice")["status"] == "bankrupt"
    assert fresh.position("erin", "BTC-PERP") == 0 and fresh.collateral("erin") >= 0
    assert fresh.app.get_account("erin").risk_status in ("bankrupt", "healthy")


def test_cli_posts_the_risk_script_and_lists_losses_and_fund_movements(tmp_path):
    db = str(tmp_path / "risk.db")
    lines = [line for line in SCRIPT.splitlines() if line.strip()]
    text = "\n".join(line if '"id"' in line else f'{{"id":"c{n}",' + line.strip()[1:] for n, line in enumerate(lines))
    posted = subprocess.run([CLEARING, "--db", db, "--as", "olga", "post", "--sync", "-", "--json"], input=text,
                            capture_output=True, text=True, cwd=REPO)
    assert posted.returncode == 0, posted.stderr
    assert {json.loads(row)["status"] for row in posted.stdout.splitlines()} == {"applied"}
    losses = subprocess.run([CLEARING, "--db", db, "losses", "--market", "BTC-PERP", "--json"], capture_output=True, text=True)
    rows = [json.loads(row) for row in losses.stdout.splitlines()]
    assert sum(Decimal(r["share"]) for r in rows if r["policy"] == "socialize_per_contract" and r["loss_total"] == "320") == 320
    fund = json.loads(subprocess.run([CLEARING, "--db", db, "insurance-fund", "show", "--json"], capture_output=True,
                                     text=True).stdout)
    assert [(m["direction"], m["cause"]) for m in fund["movements"]][:2] == [("in", "contribution"), ("out", "bankruptcy")]
    shown = subprocess.run([CLEARING, "--db", db, "account", "show", "alice"], capture_output=True, text=True)
    assert shown.returncode == 0 and "account alice (bankrupt)" in shown.stdout


@pytest.mark.parametrize("policy", ["adl_hyperliquid", "waterfill_leverage", "leverage_weighted_gains"])
def test_each_new_loss_policy_through_the_cli_on_each_store(store_db, policy):
    """The unit scenario's book (tests/unit/test_risk_scenarios.py ``QUEUE_BOOK``), the policy set
    and the crash posted with the ``clearing`` command on SQLite and PostgreSQL; ``audit verify``
    then re-derives every decision. Alice (short 2, 210) is bankrupt at 1,200 with an empty fund:
    under the queues she is deleveraged by the policy's plan, under ``leverage_weighted_gains`` the
    backstop (funded here) takes her short and her deficit is charged to the winners' gains."""
    env = {**os.environ, "CLEARING_DB": store_db}
    book = QUEUE_BOOK + accounts_with(("backstop", "100000"))
    lines = [line.strip() for line in book.splitlines() if line.strip()]
    text = "\n".join(line if '"id"' in line else f'{{"id":"q{n}",' + line[1:] for n, line in enumerate(lines))
    run = functools.partial(subprocess.run, capture_output=True, text=True, env=env, cwd=REPO)
    assert run([CLEARING, "post", "--sync", "-"], input=text).returncode == 0
    assert run([CLEARING, "set-parameters", "--market", "X-PERP", f"loss_policy={policy}"]).returncode == 0
    crash = run([CLEARING, "price", "X-PERP", "1200"])
    assert crash.returncode == 0, crash.stderr
    losses = run([CLEARING, "losses", "--market", "X-PERP", "--json"])
    rows = [json.loads(row) for row in losses.stdout.splitlines()]
    if policy == "leverage_weighted_gains":
        assert rows and {row["policy"] for row in rows} <= {policy, "socialize_per_contract"}, rows
    else:  # deleveraging fills (listed with basis "adl"), the contracts of the policy's own plan
        plans = {"adl_hyperliquid": {"bob": "2"}, "waterfill_leverage": {"bob": "1.1", "dave": "0.7", "carol": "0.2"}}
        assert {row["account"]: row["basis"] for row in rows} == plans[policy], rows
        assert {row["policy"] for row in rows} == {"adl"} and sum(Decimal(row["share"]) for row in rows) == 190  # alice's -190
    verified = run([CLEARING, "audit", "verify"])
    assert verified.returncode == 0, verified.stdout + verified.stderr
    alice = json.loads(run([CLEARING, "account", "show", "alice", "--json"]).stdout)
    assert Decimal(alice["equity"]) >= 0
