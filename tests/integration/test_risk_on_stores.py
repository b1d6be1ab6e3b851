"""The risk engine through ``clearing post`` on SQLite and PostgreSQL, and as a subprocess.

Same script as the unit scenario "bankruptcy beyond the fund, socialized per contract",
plus a pause with quorum and a resume that processes the queue, on a real store; a
second process then reads the results back (the index and caches are rebuilt from the log).
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from clearing.invariants import check_ledger
from clearing.settings import store_env
from tests.conftest import REPO
from tests.ledger import Ledger
from tests.unit.test_risk_scenarios import SETUP

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
    text = "\n".join(line if '"id"' in line else '{"id":"c%d",' % n + line.strip()[1:] for n, line in enumerate(lines))
    posted = subprocess.run([CLEARING, "--db", db, "--as", "olga", "post", "-", "--json"], input=text, capture_output=True,
                            text=True, cwd=REPO)
    assert posted.returncode == 0, posted.stderr
    assert {json.loads(row)["status"] for row in posted.stdout.splitlines()} == {"applied"}
    losses = subprocess.run([CLEARING, "--db", db, "losses", "--market", "BTC-PERP", "--json"], capture_output=True, text=True)
    rows = [json.loads(row) for row in losses.stdout.splitlines()]
    assert sum(Decimal(r["share"]) for r in rows if r["policy"] == "socialize_per_contract" and r["loss_total"] == "320") == 320
    fund = json.loads(subprocess.run([CLEARING, "--db", db, "insurance-fund", "show", "--json"], capture_output=True, text=True).stdout)
    assert [(m["direction"], m["cause"]) for m in fund["movements"]][:2] == [("in", "contribution"), ("out", "bankruptcy")]
    shown = subprocess.run([CLEARING, "--db", db, "account", "show", "alice"], capture_output=True, text=True)
    assert shown.returncode == 0 and "account alice (bankrupt)" in shown.stdout
