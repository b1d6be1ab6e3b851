"""Result lines say what a command caused: calls, liquidations, deleveraging, fund draws.

alice is short 0.3 at 30,000 with 1,000; a mark of 34,000 leaves her 1,000 - 1,200 = -200,
bankrupt. The fund holds 5, so it pays 5 and bob, the only long, is deleveraged for the rest.
"""

from __future__ import annotations

import json

from click.testing import CliRunner

from clearing.effects import describe
from cli.main import main

T0 = "2025-01-01T00:00:00Z"
SETUP = "\n".join(json.dumps({**line, "at": T0}) for line in [
    {"type": "create_market", "id": "m", "market": "BTC-PERP", "kind": "perpetual", "tick_size": "0.1",
     "step_size": "0.001", "initial_margin_fraction": "0.1", "maintenance_margin_fraction": "0.05", "price_band": "0.5"},
    {"type": "open_account", "id": "oa", "account": "alice"},
    {"type": "deposit", "id": "da", "account": "alice", "amount": "1000"},
    {"type": "open_account", "id": "ob", "account": "bob"},
    {"type": "deposit", "id": "db", "account": "bob", "amount": "100000"},
    {"type": "price", "id": "p1", "market": "BTC-PERP", "price": "30000"},
    {"type": "trade", "id": "t1", "market": "BTC-PERP", "buyer": "bob", "seller": "alice", "size": "0.3", "price": "30000"},
    {"type": "fund_insurance", "id": "f1", "amount": "5"},
]) + "\n"
CRASH = '{"type":"price","id":"p2","market":"BTC-PERP","price":"34000","at":"2025-01-01T00:00:02Z"}\n'


def post(db: str, text: str, *options: str) -> str:
    result = CliRunner().invoke(main, ["--db", db, "post", "--sync", *options, "-"], input=text)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_price_result_names_the_call_the_liquidation_the_deleveraging_and_the_fund_draw(store_db):
    post(store_db, SETUP)
    (line,) = post(store_db, CRASH, "--json").splitlines()
    result = json.loads(line)
    assert result["summary"] == ("mark BTC-PERP 34000, 2 account(s) checked; called alice; liquidated alice (bankrupt); "
                                 "deleveraged bob; fund paid 5")
    kinds = [(e["kind"], e["account"]) for e in result["effects"]]
    assert ("margin_call", "alice") in kinds and ("deleveraged", "bob") in kinds and ("fund_draw", "alice") in kinds
    assert {e["kind"] for e in result["effects"] if e["kind"] == "liquidation"} and all(
        e["bankrupt"] for e in result["effects"] if e["kind"] == "liquidation")
    assert next(e for e in result["effects"] if e["kind"] == "fund_draw")["amount"] == "5"
    events = {json.loads(row)["position"]: json.loads(row)
              for row in CliRunner().invoke(main, ["--db", store_db, "events", "--json"]).stdout.splitlines()}
    named = {"margin_call": "Account.MarginCallIssued", "liquidation": "Account.Liquidated",
             "deleveraged": "Account.PositionTaken", "fund_draw": "InsuranceFund.Drawn"}
    for effect in result["effects"]:  # each effect's position is the event that records it
        assert events[effect["position"]]["type"] == named[effect["kind"]]
        assert effect["position"] in result["positions"]


def test_a_command_that_causes_nothing_keeps_its_plain_summary(store_db):
    (line,) = post(store_db, SETUP.splitlines()[0] + "\n", "--json").splitlines()
    assert "effects" not in json.loads(line) and ";" not in json.loads(line)["summary"]


def test_describe_names_each_account_once_and_counts_beyond_five():
    effects = [{"kind": "margin_call", "account": f"a{n}"} for n in range(7)] + [{"kind": "margin_call", "account": "a0"}]
    assert describe(effects) == "called a0, a1, a2, a3, a4 and 2 more"
    assert describe([{"kind": "liquidation", "account": "x", "bankrupt": False},
                     {"kind": "liquidation", "account": "x", "bankrupt": True}]) == "liquidated x (bankrupt)"
