"""Regulator reports from the projection tables, checked against hand-computed figures.

Scenario (BTC-PERP: tick 0.1, step 0.001, IMF 10 %, MMF 5 %, band 50 %; clearinghouse
margin_call_grace 3,600 s, liquidation_spread 0, liquidation_min_notional 5,000; the market's
loss_policy socialize_per_contract). Each business day is posted as one batch:

* 2025-03-01: alice 1,000, bob / carol / dave 100,000, erin 1,000, frank 500 and the backstop
  liquidator 20,000 deposited; fund 100; mark 50,000; alice buys 0.2 from bob, carol 0.1
  from dave, both at 50,000. (Since ADR 13 the backstop is an ordinary funded account that
  takes a position only if it then meets IM and holds notional <= 1 x its equity: 20,000
  carries all it takes below, at most 0.4 at 36,000 = 14,400 against 20,000 - 1,870 =
  18,130. Its own collateral keeps it above zero in every stress scenario below.)
* 2025-03-02: mark 47,000 -> alice called (equity 1,000 - 0.2 x 3,000 = 400 < MM 470;
  call = IM 940 - 400 = 540); frank buys 0.1 from dave at 47,000; mark 45,400 -> alice
  (equity 80 < floor 0.5 x 454) sells 0.1 to the backstop at 45,400 (spread 0, so the
  dydx ABR scaling is moot: every fill here is at the mark), penalty
  min(4,540 - 4,500, 1 % x 4,540) = 40 to the fund; mark 45,300 -> the last 0.1 (notional
  4,530 <= 5,000) at 45,300, penalty min(4,530 - 4,500, 45.3) = 30. Fund 100 + 70 = 170.
* 2025-03-03: frank sells 0.1 to carol at 45,300; erin buys 0.2 from dave at 45,300; mark
  36,000 -> erin's equity 1,000 + 0.2 x (36,000 - 45,300) = -860: called (IM 720 + 860 =
  1,580), closed to the backstop at 36,000, deficit 860: fund pays 170, 690 socialized over
  |size| bob 0.2, carol 0.2, dave 0.4, backstop 0.4 (total 1.2) = 115, 115, 230, 230.
* 2025-03-05 (the "closed" store only): bob withdraws 1,000, which closes 2025-03-03.
"""

from __future__ import annotations

import hashlib
import json
import os
from decimal import Decimal as Dec
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import inspect, select, text

import cli.reports  # noqa: F401 - registers `clearing report` on the group
from clearing.errors import InputError
from clearing.money import LEDGER_CONTEXT
from clearing.settings import store_env
from cli.main import main
from projections.read import Views
from projections.reports.price_history import load_prices, price_scenarios, worst_fall, worst_rise
from projections.reports.registry import REPORT_NAMES, build_report, check_request
from projections.reports.rendering import render
from projections.reports.request import parse_date
from projections.reports.result import Report
from projections.reports.scenarios import Scenario, covers, shocked_mark
from projections.reports.shocks import parse_shocks
from projections.runner import Projector
from projections.store import ProjectionStore
from tests.ledger import Ledger

PROJECTIONS = ["margin", "insurance_fund", "losses", "liquidations", "chain"]  # the chain gives reports their provenance

DAY1 = """
{"type":"create_market","market":"BTC-PERP","kind":"perpetual","tick_size":"0.1","step_size":"0.001","initial_margin_fraction":"0.1","maintenance_margin_fraction":"0.05","price_band":"0.5","at":"2025-03-01T09:00:00Z"}
{"type":"set_parameters","parameters":{"margin_call_grace":3600,"liquidation_spread":"0","liquidation_min_notional":"5000"},"at":"2025-03-01T09:01:00Z"}
{"type":"set_parameters","market":"BTC-PERP","parameters":{"loss_policy":"socialize_per_contract"},"at":"2025-03-01T09:02:00Z"}
{"type":"open_account","account":"alice","at":"2025-03-01T09:05:00Z"}
{"type":"deposit","account":"alice","amount":"1000","at":"2025-03-01T09:05:00Z"}
{"type":"open_account","account":"bob","at":"2025-03-01T09:05:00Z"}
{"type":"deposit","account":"bob","amount":"100000","at":"2025-03-01T09:05:00Z"}
{"type":"open_account","account":"carol","at":"2025-03-01T09:05:00Z"}
{"type":"deposit","account":"carol","amount":"100000","at":"2025-03-01T09:05:00Z"}
{"type":"open_account","account":"dave","at":"2025-03-01T09:05:00Z"}
{"type":"deposit","account":"dave","amount":"100000","at":"2025-03-01T09:05:00Z"}
{"type":"open_account","account":"erin","at":"2025-03-01T09:05:00Z"}
{"type":"deposit","account":"erin","amount":"1000","at":"2025-03-01T09:05:00Z"}
{"type":"open_account","account":"frank","at":"2025-03-01T09:05:00Z"}
{"type":"deposit","account":"frank","amount":"500","at":"2025-03-01T09:05:00Z"}
{"type":"open_account","account":"backstop","at":"2025-03-01T09:05:00Z"}
{"type":"deposit","account":"backstop","amount":"20000","at":"2025-03-01T09:05:00Z"}
{"type":"fund_insurance","amount":"100","at":"2025-03-01T09:10:00Z"}
{"type":"price","market":"BTC-PERP","price":"50000","at":"2025-03-01T10:00:00Z"}
{"type":"trade","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"0.2","price":"50000","at":"2025-03-01T10:01:00Z"}
{"type":"trade","market":"BTC-PERP","buyer":"carol","seller":"dave","size":"0.1","price":"50000","at":"2025-03-01T10:02:00Z"}
"""
DAY2 = """
{"type":"price","market":"BTC-PERP","price":"47000","at":"2025-03-02T10:00:00Z"}
{"type":"trade","market":"BTC-PERP","buyer":"frank","seller":"dave","size":"0.1","price":"47000","at":"2025-03-02T10:05:00Z"}
{"type":"price","market":"BTC-PERP","price":"45400","at":"2025-03-02T10:30:00Z"}
{"type":"price","market":"BTC-PERP","price":"45300","at":"2025-03-02T11:00:00Z"}
"""
DAY3 = """
{"type":"trade","market":"BTC-PERP","buyer":"carol","seller":"frank","size":"0.1","price":"45300","at":"2025-03-03T09:00:00Z"}
{"type":"trade","market":"BTC-PERP","buyer":"erin","seller":"dave","size":"0.2","price":"45300","at":"2025-03-03T10:00:00Z"}
{"type":"price","market":"BTC-PERP","price":"36000","at":"2025-03-03T11:00:00Z"}
"""
DAY5 = """
{"type":"withdraw","account":"bob","amount":"1000","at":"2025-03-05T09:00:00Z"}
"""
DATES = ("2025-03-01", "2025-03-02", "2025-03-03", "2025-03-04", "2025-03-05")  # the log's business days


class Built:
    """A store with the scenario posted and the projections caught up."""

    def __init__(self, db: str, days: list[str]) -> None:
        self.db = db
        self.ledger = Ledger(env=store_env(db))
        self.heads = []
        for script in days:
            self.ledger.post_ok(script.strip())  # one batch per business day
            self.heads.append(self.ledger.head())
        self.store = ProjectionStore(db)
        Projector(self.ledger.app, self.store, names=PROJECTIONS).catch_up()
        self.views = Views(self.store)

    def report(self, name: str, day: str, shock: str | None = None, prices: str | None = None) -> Report:
        return build_report(self.views, check_request(name, day, shock, prices))

    def text(self, name: str, day: str, output_format: str, **options: str) -> str:
        return render(self.report(name, day, **options), output_format)


def build(db: str, closed: bool = True) -> Built:
    return Built(db, [DAY1, DAY2, DAY3, DAY5] if closed else [DAY1, DAY2, DAY3])


@pytest.fixture(scope="module")
def closed(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Days 1, 2, 3 and 5: 03-03 closed, 03-04 carried over, 03-05 open."""
    return build(str(tmp_path_factory.mktemp("closed") / "ledger.db"))


@pytest.fixture(scope="module")
def open_day(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Days 1, 2 and 3 only: 03-03 is the open business day."""
    return build(str(tmp_path_factory.mktemp("open") / "ledger.db"), closed=False)


def by(report: Report, key: str, kind: str | None = None) -> dict[str, dict]:
    return {row[key]: row for row in report.rows if kind is None or row.get("row_kind") == kind}


def dec(row: dict, *names: str) -> tuple[Dec, ...]:
    return tuple(Dec(row[name]) if row[name] is not None else None for name in names)


# -- daily-margin ----------------------------------------------------------------------------


def test_daily_margin_first_day(closed):
    report = closed.report("daily-margin", "2025-03-01")
    rows = by(report, "account")
    assert sorted(rows) == ["alice", "backstop", "bob", "carol", "dave", "erin", "frank"]
    # alice long 0.2 at mark 50,000: notional 10,000, IM 10 % = 1,000, MM 5 % = 500, equity 1,000
    assert dec(rows["alice"], "collateral", "equity", "initial_margin", "maintenance_margin", "free_collateral") == (
        1000, 1000, 1000, 500, 0)
    # carol long 0.1: notional 5,000 -> IM 500, MM 250
    assert dec(rows["carol"], "initial_margin", "maintenance_margin") == (500, 250)
    assert dec(rows["frank"], "collateral", "initial_margin", "deposits") == (500, 0, 500)
    assert dec(rows["backstop"], "collateral", "equity", "initial_margin", "deposits") == (20000, 20000, 0, 20000)
    # both trades at the mark: no variation margin on day 1
    assert {row["variation_margin"] for row in report.rows} == {Dec(0)}
    # IM total 1,000 (alice) + 1,000 (bob) + 500 + 500; collateral 1,000 + 3 x 100,000 + 1,000 + 500 + 20,000
    assert report.totals["initial_margin"] == 3000 and report.totals["collateral"] == 322500
    assert report.provisional is False


def test_daily_margin_closed_day_with_call_and_liquidation(closed):
    report = closed.report("daily-margin", "2025-03-02")
    rows = by(report, "account")
    # alice: closed 0.1 at 45,400 (0.1 x -4,600 = -460) and 0.1 at 45,300 (-470); flat at EOD
    alice = rows["alice"]
    assert dec(alice, "collateral", "equity", "initial_margin", "realized_pnl", "variation_margin", "penalties") == (
        0, 0, 0, -930, -930, 70)  # collateral 1,000 - 930 - 70 = 0
    assert (alice["calls_issued"], alice["calls_met"], alice["largest_call"], alice["open_call"]) == (1, 0, 540, None)
    # backstop: 0.2 bought at 45,400 and 45,300 (cost 9,070), mark 45,300: unrealized 9,060 - 9,070 = -10;
    # its 20,000 untouched (liquidator_fee_share 0)
    assert dec(rows["backstop"], "collateral", "equity", "unrealized_pnl", "initial_margin", "maintenance_margin",
               "variation_margin") == (20000, 19990, -10, 906, 453, -10)
    # bob short 0.2 from 50,000: unrealized 10,000 - 9,060 = 940 = VM (0 the day before)
    assert dec(rows["bob"], "equity", "initial_margin", "variation_margin") == (100940, 906, 940)
    # dave short 0.1 at 50,000 + 0.1 at 47,000 (cost -9,700): unrealized 9,700 - 9,060 = 640
    assert dec(rows["dave"], "unrealized_pnl", "unrealized_pnl_previous", "variation_margin") == (640, 0, 640)
    # carol long 0.1 from 50,000: -470; frank long 0.1 from 47,000: -170, IM 453, free 330 - 453 = -123
    assert dec(rows["carol"], "variation_margin", "maintenance_margin") == (-470, Dec("226.5"))
    assert dec(rows["frank"], "equity", "initial_margin", "free_collateral", "variation_margin") == (330, 453, -123, -170)
    # IM: 906 (backstop) + 906 (bob) + 453 (carol) + 906 (dave) + 453 (frank) = 3,624
    assert report.totals["initial_margin"] == 3624 and report.totals["maintenance_margin"] == 1812
    # VM paid 930 + 10 + 470 + 170 = 1,580 = collected 940 + 640; zero-sum
    assert report.totals["variation_margin_paid"] == 1580 and report.totals["variation_margin_collected"] == 1580
    assert report.totals["variation_margin"] == 0 and report.totals["penalties"] == 70


def test_daily_margin_open_day_is_provisional_and_equals_the_closed_day(open_day, closed):
    live = open_day.report("daily-margin", "2025-03-03")
    final = closed.report("daily-margin", "2025-03-03")
    assert live.provisional is True and final.provisional is False
    # the open store's head is the last event of day 3: both reflect it
    assert live.as_of_position == open_day.heads[-1] == final.as_of_position == closed.heads[2]
    assert live.rows == final.rows
    rows = by(final, "account")
    # backstop long 0.4 (cost 9,070 + 7,200 = 16,270) at 36,000: unrealized 14,400 - 16,270 = -1,870;
    # VM -1,870 - (-10) = -1,860; its socialized share 230 takes collateral to 20,000 - 230 = 19,770
    assert dec(rows["backstop"], "collateral", "unrealized_pnl", "variation_margin", "loss_shares", "initial_margin") == (
        19770, -1870, -1860, 230, 1440)
    # erin: bought 0.2 at 45,300, closed at 36,000: realized -1,860 = VM; 860 of it covered
    erin = rows["erin"]
    assert dec(erin, "collateral", "realized_pnl", "variation_margin", "loss_covered", "largest_call") == (
        0, -1860, -1860, 860, 1580)
    assert erin["risk_status"] == "bankrupt" and erin["calls_issued"] == 1
    # frank sold at the mark: realized -170 offsets the unrealized -170 of the previous EOD: VM 0
    assert dec(rows["frank"], "collateral", "realized_pnl", "unrealized_pnl_previous", "variation_margin") == (
        330, -170, -170, 0)
    # dave short 0.4 (cost -18,760) at 36,000: 18,760 - 14,400 = 4,360; VM 4,360 - 640 = 3,720; share 230
    assert dec(rows["dave"], "collateral", "equity", "variation_margin") == (99770, 104130, 3720)
    assert dec(rows["bob"], "collateral", "variation_margin") == (99885, 1860)
    assert dec(rows["carol"], "collateral", "variation_margin") == (99885, -1860)
    # IM 1,440 + 720 + 720 + 1,440; VM paid 1,860 x 3
    assert final.totals["initial_margin"] == 4320 and final.totals["variation_margin_paid"] == 5580


def test_collateral_reconciles_with_the_days_flows(closed):
    """collateral(D) - collateral(D-1) = deposits - withdrawals + realized + funding - penalties
    + liquidator fees - loss shares + loss covered, for every account and day (a projection check)."""
    previous: dict[str, Dec] = {}
    for day in DATES:
        for row in closed.report("daily-margin", day).rows:
            change = (row["deposits"] - row["withdrawals"] + row["realized_pnl"] + row["funding"] - row["penalties"]
                      + row["liquidator_fees"] - row["loss_shares"] + row["loss_covered"])
            assert row["collateral"] - previous.get(row["account"], Dec(0)) == change, (day, row["account"])
            previous[row["account"]] = row["collateral"]


def test_a_day_without_events_carries_the_state_over(closed):
    carried, before = closed.report("daily-margin", "2025-03-04"), closed.report("daily-margin", "2025-03-03")
    assert carried.provisional is False and carried.as_of_position == before.as_of_position
    for row, previous in zip(carried.rows, before.rows, strict=True):
        assert (row["account"], row["collateral"], row["initial_margin"]) == (
            previous["account"], previous["collateral"], previous["initial_margin"])
        assert row["variation_margin"] == 0 and row["unrealized_pnl_previous"] == previous["unrealized_pnl"]
        assert row["deposits"] == row["loss_shares"] == row["realized_pnl"] == 0
    market = by(closed.report("positions", "2025-03-04"), "market", "market")["BTC-PERP"]
    assert market["volume_day"] == 0 and market["volume_total"] == Dec("1.1")
    fund = closed.report("insurance-fund", "2025-03-04")
    assert fund.rows == [] and fund.totals["opening_balance"] == fund.totals["closing_balance"] == 0


def test_a_day_outside_the_log_is_refused_naming_the_days_it_covers(closed):
    for day in ("2025-02-28", "2025-03-06"):  # the day before the first event, the day after the last
        for name in ("daily-margin", "positions", "insurance-fund"):
            with pytest.raises(InputError, match=r"date_outside_log.*covers 2025-03-01 to 2025-03-05"):
                closed.report(name, day)


def test_a_report_names_the_chain_head_at_its_position(closed):
    report = closed.report("daily-margin", "2025-03-02")
    with closed.views.reading() as connection:
        table = closed.views.table("chain", "audit_chain")
        hashes = dict(connection.execute(select(table.c.position, table.c.hash)).all())
    assert report.chain_hash == hashes[report.as_of_position] and len(report.chain_hash) == 64
    assert json.loads(closed.text("daily-margin", "2025-03-02", "json"))["chain_hash"] == report.chain_hash


def test_the_day_after_the_withdrawal_is_the_open_day(closed):
    report = closed.report("daily-margin", "2025-03-05")
    assert report.provisional is True and report.as_of_position == closed.heads[-1]
    bob = by(report, "account")["bob"]
    assert dec(bob, "collateral", "withdrawals", "variation_margin") == (98885, 1000, 0)  # 99,885 - 1,000


# -- positions -------------------------------------------------------------------------------


def test_positions_and_open_interest(closed):
    report = closed.report("positions", "2025-03-02")
    market = by(report, "market", "market")["BTC-PERP"]
    # longs backstop 0.2 + carol 0.1 + frank 0.1 = 0.4 = shorts bob 0.2 + dave 0.2; five holders
    assert dec(market, "mark", "long_size", "short_size", "open_interest") == (45300, Dec("0.4"), Dec("0.4"), Dec("0.4"))
    assert market["holders"] == 5
    # volume of day 2: frank/dave 0.1 + alice's two liquidation fills 0.1 + 0.1; total 0.3 + 0.3
    assert dec(market, "volume_day", "volume_total") == (Dec("0.3"), Dec("0.6"))
    held = by(report, "account", "position")
    assert sorted(held) == ["backstop", "bob", "carol", "dave", "frank"]
    # frank long 0.1, cost 4,700: notional 4,530, unrealized -170; liquidation where
    # 500 + 0.1 p - 4,700 = 0.05 x 0.1 p -> p = 4,200 / 0.095 = 44,210.53 -> up to the tick 44,210.6
    assert dec(held["frank"], "size", "entry_price", "notional", "unrealized_pnl", "initial_margin",
               "maintenance_margin", "liquidation_price") == (
        Dec("0.1"), 47000, 4530, -170, 453, Dec("226.5"), Dec("44210.6"))
    # backstop: 20,000 + 0.2 p - 9,070 = 0.01 p -> p = -10,930 / 0.19 < 0: no positive mark takes it
    # below maintenance (None); entry 9,070 / 0.2 = 45,350
    assert dec(held["backstop"], "entry_price", "liquidation_price") == (45350, None)
    assert dec(held["dave"], "size", "entry_price") == (Dec("-0.2"), 48500)  # 9,700 / 0.2
    assert report.totals["positions"] == 5 and report.totals["initial_margin"] == 3624


def test_positions_volume_of_day_three(closed):
    market = by(closed.report("positions", "2025-03-03"), "market", "market")["BTC-PERP"]
    # frank -> carol 0.1 + erin/dave 0.2 + erin's liquidation 0.2 = 0.5; longs backstop 0.4 + carol 0.2
    assert dec(market, "volume_day", "volume_total", "open_interest") == (Dec("0.5"), Dec("1.1"), Dec("0.6"))
    assert market["holders"] == 4


# -- insurance fund ---------------------------------------------------------------------------


def test_insurance_fund_by_day(closed):
    first = closed.report("insurance-fund", "2025-03-01")
    assert first.totals["opening_balance"] == 0 and first.totals["closing_balance"] == 100
    assert first.totals["inflows_by_cause"] == {"contribution": 100}
    second = closed.report("insurance-fund", "2025-03-02")
    # opening 100; penalties 40 + 30 = 70; closing 170
    assert (second.totals["opening_balance"], second.totals["inflows"], second.totals["closing_balance"]) == (100, 70, 170)
    assert second.totals["inflows_by_cause"] == {"liquidation_penalty": 70} and second.totals["outflows"] == 0
    assert [(r["cause"], r["amount"], r["counterparty"], r["balance_after"]) for r in second.rows] == [
        ("liquidation_penalty", 40, "alice", 140), ("liquidation_penalty", 30, "alice", 170)]
    third = closed.report("insurance-fund", "2025-03-03")
    # the fund pays all it has (170) towards erin's 860 deficit
    assert (third.totals["opening_balance"], third.totals["outflows"], third.totals["closing_balance"]) == (170, 170, 0)
    (draw,) = third.rows
    assert (draw["direction"], draw["cause"], draw["amount"], draw["counterparty"], draw["market"]) == (
        "out", "bankruptcy", 170, "erin", "BTC-PERP")


def test_insurance_fund_csv_carries_the_summary_as_row_kinds(closed):
    lines = closed.text("insurance-fund", "2025-03-02", "csv").splitlines()
    assert lines[0] == "row_kind,position,at,direction,cause,amount,counterparty,market,reference,balance_after"
    assert [line.split(",")[0] for line in lines[1:]] == ["opening", "movement", "movement", "cause_total", "closing"]
    assert lines[1] == "opening,,,,,100,,,,100" and lines[-1] == "closing,,,,,170,,,,170"
    assert lines[4] == "cause_total,,,in,liquidation_penalty,70,,,,"


# -- liquidations and losses -----------------------------------------------------------------


def test_liquidation_register_of_the_day(closed):
    report = closed.report("liquidations", "2025-03-02")
    assert [(r["kind"], r["account"]) for r in report.rows] == [
        ("margin_call", "alice"), ("liquidation_fill", "alice"), ("backstop_fill", "backstop"),
        ("liquidation_fill", "alice"), ("backstop_fill", "backstop")]
    call, first, _, second, _ = report.rows
    assert dec(call, "price_mark", "equity", "maintenance_margin", "amount") == (47000, 400, 470, 540)
    # bankruptcy price 50,000 - 1,000 / 0.2 = 45,000; quote 0.1 x 45,400 = 4,540; penalty 40
    assert dec(first, "size_delta", "price", "price_bankruptcy", "amount", "penalty") == (
        Dec("-0.1"), 45400, 45000, 4540, 40)
    assert first["counterparty"] == "backstop" and first["reason"] == "margin"
    assert dec(second, "price", "equity", "penalty") == (45300, 30, 30)  # equity 500 + 4,530 - 5,000
    assert report.totals["penalties"] == 70 and report.totals["accounts_liquidated"] == "alice"
    assert report.totals["rows_by_kind"] == {"backstop_fill": 2, "liquidation_fill": 2, "margin_call": 1}
    third = closed.report("liquidations", "2025-03-03")
    assert third.totals["fund_draws"] == 170
    insolvent = next(r for r in third.rows if r["kind"] == "liquidation_fill")
    # erin's bankruptcy price 45,300 - 1,000 / 0.2 = 40,300; fill 36,000, no penalty
    assert dec(insolvent, "price", "price_bankruptcy", "equity", "penalty") == (36000, 40300, -860, 0)


def test_loss_allocations_of_the_day(closed):
    report = closed.report("loss-allocations", "2025-03-03")
    (loss,) = [r for r in report.rows if r["row_kind"] == "loss"]
    assert loss["account"] == "erin" and loss["policy"] == "socialize_per_contract"
    assert dec(loss, "deficit", "fund_paid", "allocated") == (860, 170, 690)  # 860 - 170 = 690
    shares = {r["account"]: (r["share"], r["basis"]) for r in report.rows if r["row_kind"] == "allocation"}
    # 690 x 0.2 / 1.2 = 115; 690 x 0.4 / 1.2 = 230
    assert shares == {"backstop": (230, Dec("0.4")), "bob": (115, Dec("0.2")), "carol": (115, Dec("0.2")),
                      "dave": (230, Dec("0.4"))}
    assert report.totals["shares"] == report.totals["allocated"] == 690
    assert report.totals["shares_by_account"] == {"backstop": 230, "bob": 115, "carol": 115, "dave": 230}
    assert closed.report("loss-allocations", "2025-03-02").rows == []


# -- stress ----------------------------------------------------------------------------------


def test_stress_minus_ten_percent(closed):
    report = closed.report("stress", "2025-03-02", shock="-0.1")
    (row,) = report.rows
    # mark 45,300 x 0.9 = 40,770. frank: 500 + 0.1 x 40,770 - 4,700 = -123 (MM 203.85); the backstop:
    # 20,000 + 0.2 x 40,770 - 9,070 = 19,084 (MM 407.7) and carol 100,000 + 4,077 - 5,000 are fine
    assert row["marks"] == "BTC-PERP=40770" and row["liquidated"] == "frank"
    assert row["account_losses"] == "frank=123"
    # loss 123; the fund at the end of 03-02 holds 170 and pays it all: nothing socialized
    assert dec(row, "loss_beyond_collateral", "fund_balance", "fund_used", "socialized_loss") == (123, 170, 123, 0)
    assert report.totals["cover_1"] == 123 and report.totals["cover_1_accounts"] == "frank"
    # one account loses anything: cover-2 is frank's loss alone
    assert report.totals["cover_2"] == 123 and report.totals["cover_2_accounts"] == "frank"


def test_stress_default_shocks_and_covers(closed):
    report = closed.report("stress", "2025-03-02")
    rows = by(report, "scenario")
    assert list(rows) == ["shock:-0.3", "shock:-0.2", "shock:-0.1", "shock:+0.1", "shock:+0.2", "shock:+0.3"]
    # -30 %: 31,710: frank 500 + 3,171 - 4,700 = -1,029; the backstop 20,000 + 6,342 - 9,070 = 17,272
    # stays above its MM 317.1 (not liquidated)
    assert rows["shock:-0.3"]["account_losses"] == "frank=1029" and rows["shock:-0.3"]["liquidated"] == "frank"
    assert dec(rows["shock:-0.3"], "loss_beyond_collateral", "socialized_loss") == (1029, 859)  # 1,029 - 170
    # -20 %: 36,240: frank 500 + 3,624 - 4,700 = -576
    assert rows["shock:-0.2"]["loss_beyond_collateral"] == 576
    # rises: shorts bob (-0.2 from 50,000) and dave keep > 97,000 equity even at 58,890
    assert all(rows[name]["accounts_liquidated"] == 0 for name in ("shock:+0.1", "shock:+0.2", "shock:+0.3"))
    # cover-1 = frank's worst (1,029 at -30 %); nobody else loses, so cover-2 is the same one account
    csv_lines = closed.text("stress", "2025-03-02", "csv").splitlines()
    assert csv_lines[-2] == "cover_1,shock:-0.3,-0.3,,1,frank,frank=1029,1029,170,170,859"
    assert csv_lines[-1] == "cover_2,shock:-0.3,-0.3,,1,frank,frank=1029,1029,170,170,859"


def test_covers_take_each_accounts_worst_scenario_and_sum_the_two_largest():
    """Since the backstop is funded no scenario above has two accounts losing (cover-2 was
    backstop + frank before ADR 13), so the two-account sum is checked on its own: a loses 5
    at -10 % and 9 at -30 %, b 7 at -30 %, c 7 at -10 % (tie with b: by name)."""
    scenarios = [Scenario("s1", Dec("-0.1"), {}, {"a": Dec(5), "c": Dec(7)}, ["a", "c"]),
                 Scenario("s3", Dec("-0.3"), {}, {"a": Dec(9), "b": Dec(7)}, ["a", "b"])]
    assert covers(scenarios) == [("a", Dec(9), "s3"), ("b", Dec(7), "s3"), ("c", Dec(7), "s1")]


def test_stress_at_day_one_liquidates_alice_without_loss_at_minus_ten(closed):
    rows = by(closed.report("stress", "2025-03-01"), "scenario")
    # 50,000 x 0.9 = 45,000: alice 1,000 + 0.2 x (45,000 - 50,000) = 0 < MM 450: liquidated, no loss beyond
    assert rows["shock:-0.1"]["liquidated"] == "alice" and rows["shock:-0.1"]["loss_beyond_collateral"] == 0
    # 40,000: 1,000 - 2,000 = -1,000; the fund (100) pays 100, 900 socialized
    assert dec(rows["shock:-0.2"], "loss_beyond_collateral", "fund_used", "socialized_loss") == (1000, 100, 900)


def test_shocked_marks_are_rounded_half_even_to_the_tick(closed):
    assert shocked_mark(Dec(45300), Dec("-0.1234"), Dec("0.1")) == Dec("39710")  # 39,709.98
    assert shocked_mark(Dec("100.05"), Dec(0), Dec("0.1")) == Dec("100.0")  # half to even
    assert shocked_mark(Dec("100.15"), Dec(0), Dec("0.1")) == Dec("100.2")
    assert shocked_mark(Dec(10), Dec("0.1"), Dec("0.25")) == Dec(11)  # 11 / 0.25 = 44 ticks
    row = closed.report("stress", "2025-03-02", shock="-0.1234").rows[0]
    assert row["marks"] == "BTC-PERP=39710"


def test_stress_with_a_price_file(closed, tmp_path):
    prices = tmp_path / "prices.csv"
    prices.write_text("time,close\n1,100\n2,120\n3,90\n4,95\n5,130\n6,110\n")
    report = closed.report("stress", "2025-03-02", shock="-0.1", prices=str(prices))
    rows = by(report, "scenario")
    # worst fall 120 -> 90 = 25 %; worst rise 90 -> 130 = 44.444...% rounded away from zero: 0.444445
    assert rows["prices:worst_fall"]["shock"] == Dec("-0.25") and rows["prices:worst_rise"]["shock"] == Dec("0.444445")
    # 45,300 x 0.75 = 33,975: frank 500 + 3,397.5 - 4,700 = -802.5; the backstop 20,000 + 6,795 - 9,070 > 0
    assert rows["prices:worst_fall"]["account_losses"] == "frank=802.5"
    # 45,300 x 1.444445 = 65,433.3585 -> 65,433.4
    assert rows["prices:worst_rise"]["marks"] == "BTC-PERP=65433.4" and rows["prices:worst_rise"]["liquidated"] == ""
    assert [r["scenario"] for r in report.rows] == ["prices:worst_fall", "shock:-0.1", "prices:worst_rise"]


def test_worst_moves_of_a_price_history(tmp_path):
    series = [Dec(v) for v in ("100", "120", "90", "95", "130", "110")]
    assert worst_fall(series) == Dec("0.25")
    assert worst_rise(series) == LEDGER_CONTEXT.divide(Dec(40), Dec(90))  # (130 - 90) / 90, 60 digits
    assert worst_fall([Dec(1), Dec(2), Dec(3)]) == 0 and worst_rise([Dec(3), Dec(2), Dec(1)]) == 0
    # windows are separate histories: 50 -> 10 across windows would be an 80 % fall
    windowed = tmp_path / "w.csv"
    windowed.write_text("window,Close\na,50\na,40\nb,10\nb,12\n")
    assert load_prices(str(windowed)) == {"a": [50, 40], "b": [10, 12]}
    assert price_scenarios(load_prices(str(windowed))) == [("prices:worst_fall", Dec("-0.2")),
                                                          ("prices:worst_rise", Dec("0.2"))]


def test_the_shared_price_files_are_read(closed):
    data = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    crash = data / "binance_um_btcusdt_perp_1m_crash_windows.csv"
    if not crash.exists():
        pytest.skip(f"{crash} is absent")
    series = load_prices(str(crash))
    assert sorted(series) == ["2020-03-12_black_thursday", "2021-05-19_china_ban_crash", "2025-10-10_tariff_crash_adl"]
    fall, rise = price_scenarios(series)
    # Black Thursday closes fell by about half (from ~7,950 to ~3,900): the worst of the three windows
    assert Dec("-0.6") < fall[1] < Dec("-0.4") and Dec(0) < rise[1] < Dec(1)


def stored_state(built: Built) -> tuple[int, dict[str, list]]:
    """The log head and every row of every table in the database (event store included)."""
    dump = {}
    with built.store.engine.connect() as connection:
        for name in sorted(inspect(connection).get_table_names()):
            rows = connection.execute(text(f'SELECT * FROM "{name}"')).all()
            dump[name] = sorted(tuple(map(repr, row)) for row in rows)
    return built.ledger.app.recorder.max_notification_id(), dump


def test_stress_and_disclosures_write_nothing(open_day, tmp_path):
    prices = tmp_path / "p.csv"
    prices.write_text("close\n100\n60\n")
    before = stored_state(open_day)
    for day in ("2025-03-02", "2025-03-03"):  # closed, open (live)
        open_day.report("stress", day, prices=str(prices))
        open_day.report("stress", day, shock="-0.9,0.5")
        open_day.report("disclosures", day)
    after = stored_state(open_day)
    assert after == before
    assert any(name.startswith("margin_eod_accounts") for name in after[1])


# -- disclosures -----------------------------------------------------------------------------


def test_disclosures(closed):
    items = {row["item"]: row["value"] for row in closed.report("disclosures", "2025-03-03").rows}
    assert (items["period.start"], items["period.end"], items["period.days"]) == ("2025-03-01", "2025-03-03", 3)
    assert items["4.1"] == 0  # the fund paid its 170 on 03-03
    assert items["6.1"] == 4320  # IM 1,440 + 720 + 720 + 1,440
    # held: bob 99,885 + carol 99,885 + dave 99,770 + frank 330 + backstop 19,770
    assert items["6.2"] == 319640
    # VM paid per day: 0, 1,580, 5,580 -> average 7,160 / 3 = 2,386.666667, largest 5,580 on 03-03
    assert items["6.6"] == Dec("2386.666667") and (items["6.7"], items["6.7.day"]) == (5580, "2025-03-03")
    # calls: 540 (alice, 03-02), 1,580 (erin, 03-03)
    assert (items["6.8"], items["6.8.day"], items["6.8.largest_single"], items["6.8.largest_single.account"]) == (
        1580, "2025-03-03", 1580, "erin")
    # at 36,000 -30 % = 25,200 the backstop (collateral 19,770, long 0.4 cost 16,270) keeps
    # 19,770 + 10,080 - 16,270 = 13,580, carol (99,885, long 0.2 cost 9,530) 95,395; at +30 % =
    # 46,800 dave (99,770, short 0.4 cost -18,760) keeps 99,810 and bob (99,885, short 0.2 cost
    # -10,000) 100,525; erin and frank are flat: no account loses more than its collateral, so both covers are 0
    assert (items["4.4.cover_1"], items["4.4.cover_1.accounts"]) == (0, "")
    assert (items["4.4.cover_2"], items["4.4.cover_2.accounts"], items["4.4.cover_2.excess_over_fund"]) == (0, "", 0)


def test_disclosures_of_day_two(closed, open_day):
    items = {row["item"]: row["value"] for row in closed.report("disclosures", "2025-03-02").rows}
    assert (items["4.1"], items["6.1"], items["6.2"]) == (170, 3624, 321500)  # 3 x 100,000 + 1,000 + 500 + 20,000
    assert (items["6.6"], items["6.7"], items["6.8"]) == (790, 1580, 540)  # (0 + 1,580) / 2
    # frank's worst (1,029 at -30 %) is the only loss, as in test_stress_default_shocks_and_covers
    assert (items["4.4.cover_1"], items["4.4.cover_2"], items["4.4.cover_2.accounts"]) == (1029, 1029, "frank")
    assert items["4.4.cover_2.excess_over_fund"] == 859  # 1,029 - 170
    live = {row["item"]: row["value"] for row in open_day.report("disclosures", "2025-03-03").rows}
    final = {row["item"]: row["value"] for row in closed.report("disclosures", "2025-03-03").rows}
    assert live == final


# -- output format ----------------------------------------------------------------------------


def _no_float(value: str) -> None:
    raise AssertionError(f"a JSON float {value} in a report")


@pytest.mark.parametrize("name", REPORT_NAMES)
def test_json_and_csv_shapes(closed, name):
    for day in ("2025-03-02", "2025-03-05"):
        document = json.loads(closed.text(name, day, "json"), parse_float=_no_float)
        assert {"report", "date", "as_of_position", "provisional", "columns", "rows"} <= set(document)
        assert (document["report"], document["date"], document["provisional"]) == (name, day, day == "2025-03-05")
        assert all(list(row) == sorted(document["columns"]) for row in document["rows"])
        csv_text = closed.text(name, day, "csv")
        assert "\r" not in csv_text and csv_text.endswith("\n")
        assert csv_text.splitlines()[0] == ",".join(document["columns"])


def test_same_input_gives_byte_identical_reports_but_the_chain_head(closed, tmp_path):
    """A second ledger from the same input: its events carry other recording times, so its
    hash chain differs (it is another history); every report is otherwise the same bytes."""
    twin = build(str(tmp_path / "twin.db"))
    for name in REPORT_NAMES:
        for day in DATES:
            assert twin.text(name, day, "csv") == closed.text(name, day, "csv"), (name, day)
            ours, theirs = (json.loads(built.text(name, day, "json")) for built in (twin, closed))
            assert ours.pop("chain_hash") != theirs.pop("chain_hash")
            assert ours == theirs, (name, day)


# -- input checks -----------------------------------------------------------------------------


def test_shock_lists_are_parsed_exactly():
    assert parse_shocks("-0.3, +0.1,0.10") == (Dec("-0.3"), Dec("0.1"))
    for bad in ("", "NaN", "-0.1,,0.2", "1e-1", "0.1f", "-1", "-1.5", "11", "inf", ",".join(["0.1"] * 51)):
        with pytest.raises(InputError) as caught:
            parse_shocks(bad)
        assert (caught.value.code, caught.value.field) == ("invalid_shock", "shock")


def test_dates_and_names_are_checked():
    assert parse_date("2025-03-02") == "2025-03-02"
    for bad in ("2025-3-2", "2025-02-30", "20250302", "2025-03-02T00:00:00Z", "yesterday"):
        with pytest.raises(InputError, match="invalid_date"):
            parse_date(bad)
    with pytest.raises(InputError, match="unknown_report"):
        check_request("margin", "2025-03-02")
    with pytest.raises(InputError, match="not_applicable"):
        check_request("positions", "2025-03-02", shock="-0.1")


def test_price_files_are_checked(tmp_path):
    cases = {"empty.csv": "", "nocol.csv": "time,open\n1,2\n", "bad.csv": "close\n100\n1e5\n",
             "zero.csv": "close\n100\n0\n", "one.csv": "close\n100\n"}
    for name, content in cases.items():
        (tmp_path / name).write_text(content)
        with pytest.raises(InputError) as caught:
            load_prices(str(tmp_path / name))
        assert (caught.value.code, caught.value.field) == ("invalid_prices", "prices"), name
    with pytest.raises(InputError) as caught:
        load_prices(str(tmp_path / "missing.csv"))
    assert caught.value.code == "unreadable_prices"


# -- the command line ------------------------------------------------------------------------


def invoke(db: str, *args: str):
    return CliRunner().invoke(main, ["--db", db, "report", *args])


def test_cli_writes_the_report_atomically(closed, tmp_path):
    target = tmp_path / "out" / "margin.csv"
    target.parent.mkdir()
    target.write_text("old content\n")
    result = invoke(closed.db, "daily-margin", "--date", "2025-03-02", "--output", str(target))
    assert result.exit_code == 0, result.output
    assert target.read_bytes() == closed.text("daily-margin", "2025-03-02", "csv").encode()
    assert sorted(p.name for p in target.parent.iterdir()) == ["margin.csv", "margin.csv.meta.json"]  # no temporary file
    meta = json.loads((target.parent / "margin.csv.meta.json").read_text())
    report = closed.report("daily-margin", "2025-03-02")
    assert meta == {"report": "daily-margin", "date": "2025-03-02", "format": "csv", "as_of_position": report.as_of_position,
                    "chain_hash": report.chain_hash, "provisional": False, "rows": len(report.rows),
                    "sha256": hashlib.sha256(target.read_bytes()).hexdigest()}
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # as open() would make it
    shown = invoke(closed.db, "daily-margin", "--date", "2025-03-02")
    assert shown.exit_code == 0 and shown.stdout_bytes == target.read_bytes()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_cli_json_output(closed):
    result = invoke(closed.db, "stress", "--date", "2025-03-02", "--format", "json", "--shock", "-0.1")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout, parse_float=_no_float)
    # at -10 % only frank loses (123), which the fund's 170 covers (test_stress_minus_ten_percent)
    assert document["rows"][0]["socialized_loss"] == "0" and document["totals"]["cover_2"] == "123"
    assert document["as_of_position"] == closed.heads[1]


@pytest.mark.parametrize(("args", "code", "field"), [
    (["margin", "--date", "2025-03-02"], "unknown_report", "report"),
    (["daily-margin", "--date", "2025-02-30"], "invalid_date", "date"),
    (["daily-margin", "--date", "03/02/2025"], "invalid_date", "date"),
    (["stress", "--date", "2025-03-02", "--shock", "-0.1,NaN"], "invalid_shock", "shock"),
    (["stress", "--date", "2025-03-02", "--prices", "/nonexistent/p.csv"], "unreadable_prices", "prices"),
    (["positions", "--date", "2025-03-02", "--shock", "-0.1"], "not_applicable", "shock"),
    (["positions", "--date", "2025-03-02", "--output", "/nonexistent/dir/out.csv"], "invalid_output", "output"),
])
def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, args, code, field):
    db = tmp_path / "never.db"
    output = tmp_path / "out.csv"
    extra = [] if "--output" in args else ["--output", str(output)]
    result = invoke(str(db), *args, *extra)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: [{code}] ") and field in lines[0], result.stderr
    assert result.stdout == "" and not db.exists() and not output.exists()


def test_cli_missing_store_is_an_error(tmp_path):
    result = invoke(str(tmp_path / "missing.db"), "positions", "--date", "2025-03-02")
    assert result.exit_code == 3 and "store_not_found" in result.stderr


def test_cli_help_documents_every_option():
    result = CliRunner().invoke(main, ["report", "--help"])
    assert result.exit_code == 0
    for option in ("--date", "--format", "--output", "--prices", "--shock"):
        assert option in result.output
    for name in REPORT_NAMES:
        assert name in result.output


def test_reports_read_the_projection_tables_only(closed):
    """Dropping the event store's tables leaves every report unchanged: no replay happens."""
    expected = {(name, day): closed.text(name, day, "json") for name in REPORT_NAMES for day in ("2025-03-03",)}
    copy = Built.__new__(Built)
    copy.views = closed.views
    with closed.store.engine.begin() as connection:
        names = [n for n in inspect(connection).get_table_names() if n.startswith("stored_")]
        assert names
        for name in names:
            connection.execute(text(f'ALTER TABLE "{name}" RENAME TO "hidden_{name}"'))
    try:
        for (name, day), document in expected.items():
            assert Built.text(copy, name, day, "json") == document
    finally:
        with closed.store.engine.begin() as connection:
            for name in names:
                connection.execute(text(f'ALTER TABLE "hidden_{name}" RENAME TO "{name}"'))
