"""Real crash tapes through the risk engine: 1-minute BTC perpetual closes as mark prices.

Uses ../shared/data (skipped with the reason when absent; never copied into the package).
A population of longs and shorts at 3x to 20x faces one maker from the window's first
open; every minute's close is posted as the mark, with funding every 8 hours of tape. The
backstop liquidator is funded with three traders' notional at the first open (ADR 13: it
takes a position only if it then meets IM and holds notional <= 1 x its equity), so it
carries the first liquidations and refuses later ones, which are deleveraged or wait.
The invariants are checked every hour of tape and at the end (money conserved to the last
unit, fund never negative, flat accounts pay nothing, allocations sum to their loss,
bankrupt accounts end at zero or above, every account solvent at the end of every
command, replay equals live), every account in the log (the maker and the backstop
included) ends with equity >= 0, the decision audit finds nothing, no account below
maintenance is left marked healthy, and the test prints how many calls, liquidations, fund draws,
deleveragings and allocations each window produced.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from decimal import Decimal

import pytest

from clearing.audit.decisions import audit_log
from clearing.audit.invariants import check_ledger
from clearing.domain.risk.totals import margin_totals
from clearing.settings import store_env
from tests.conftest import SHARED_DATA
from tests.ledger import Ledger
from tests.margin_state import loss_allocations

TAPE = SHARED_DATA / "binance_um_btcusdt_perp_1m_crash_windows.csv"
LEVERAGES = (3, 5, 8, 10, 12, 15, 18, 20)
POLICIES = {
    "2020-03-12_black_thursday": "socialize_per_contract",
    "2021-05-19_china_ban_crash": "haircut_gains",
    "2025-10-10_tariff_crash_adl": "adl",
}


def windows() -> dict[str, list[dict[str, str]]]:
    rows: dict[str, list[dict[str, str]]] = defaultdict(list)
    with TAPE.open(newline="") as handle:
        for row in csv.DictReader(handle):
            rows[row["window"]].append(row)
    return rows


def population(entry: str, start: str, policy: str) -> list[dict]:
    lines: list[dict] = [
        {"type": "create_market", "id": "m", "market": "BTCUSDT", "kind": "perpetual", "tick_size": "0.01",
         "step_size": "0.001", "initial_margin_fraction": "0.05", "maintenance_margin_fraction": "0.03",
         "price_band": "0.2", "at": start},
        {"type": "set_parameters", "id": "sp", "market": "BTCUSDT", "parameters": {"loss_policy": policy}, "at": start},
        {"type": "price", "id": "p-open", "market": "BTCUSDT", "price": entry, "at": start},
        {"type": "fund_insurance", "id": "if", "amount": "300", "at": start},
        {"type": "open_account", "id": "o-maker", "account": "maker", "at": start},
        {"type": "deposit", "id": "d-maker", "account": "maker", "amount": "1000000", "at": start},
    ]
    size = Decimal("0.1")
    lines += [{"type": "open_account", "id": "o-backstop", "account": "backstop", "at": start},
              {"type": "deposit", "id": "d-backstop", "account": "backstop", "at": start,
               "amount": str((3 * size * Decimal(entry)).quantize(Decimal("0.01")))}]
    for leverage in LEVERAGES:
        deposit = (size * Decimal(entry) / leverage).quantize(Decimal("0.01"), rounding="ROUND_CEILING")
        for side in ("long", "short"):
            name = f"{side}{leverage}x"
            buyer, seller = (name, "maker") if side == "long" else ("maker", name)
            lines += [
                {"type": "open_account", "id": f"o-{name}", "account": name, "at": start},
                {"type": "deposit", "id": f"d-{name}", "account": name, "amount": str(deposit), "at": start},
                {"type": "trade", "id": f"t-{name}", "market": "BTCUSDT", "buyer": buyer, "seller": seller,
                 "size": str(size), "price": entry, "at": start},
            ]
    return lines


@pytest.mark.skipif(not TAPE.exists(), reason=f"crash data not found at {TAPE}")
@pytest.mark.parametrize("window", list(POLICIES))
def test_crash_window_through_the_risk_engine(window, sqlite_db, capsys):
    rows = windows()[window]
    ledger = Ledger(store_env(sqlite_db))
    ledger.post_ok(population(rows[0]["open"], rows[0]["open_time_utc"], POLICIES[window]))
    for n, row in enumerate(rows):
        commands = [{"type": "price", "id": f"p{n}", "market": "BTCUSDT", "price": row["close"], "at": row["open_time_utc"]}]
        if n and n % 480 == 0:
            commands.append({"type": "funding", "id": f"f{n}", "market": "BTCUSDT", "rate": "0.0001", "at": row["open_time_utc"]})
        outcomes = ledger.post(commands)
        assert all(o.status == "applied" for o in outcomes), [(o.command_id, o.code, o.message) for o in outcomes]
        if n % 60 == 59:
            check_ledger(ledger.app)
    fold = check_ledger(ledger.app)
    market = {"BTCUSDT": ledger.app.get_market("BTCUSDT")}
    for leverage in LEVERAGES:
        for side in ("long", "short"):
            account = ledger.app.get_account(f"{side}{leverage}x")
            totals = margin_totals(account.collateral, account.positions, market)
            assert account.collateral >= 0 or account.open_positions()
            if account.open_positions() and totals.equity < totals.maintenance_margin:
                assert account.risk_status != "healthy", account.account
    opened = [ledger.app.mapper.to_domain_event(n).account
              for n in ledger.app.recorder.select_notifications(start=1, limit=1_000_000)
              if n.topic.endswith(":Account.Opened")]
    assert {"maker", "backstop"} <= set(opened)
    for name in opened:  # every account in the log, the maker and the backstop included
        account = ledger.app.get_account(name)
        assert margin_totals(account.collateral, account.positions, market).equity >= 0, f"{name} ends below zero equity"
    assert audit_log(ledger.app, stop_at_first=False) == [], "the decision audit re-derives every decision of the tape"
    counts = fold.counts
    assert counts["Account.MarginCallIssued"] > 0 and counts["Account.Liquidated"] > 0, "a crash with 20x longs liquidates"
    taken = refused = 0
    for notification in ledger.app.recorder.select_notifications(start=1, limit=1_000_000):
        if notification.topic.endswith(":Account.PositionTaken"):
            taken += ledger.app.mapper.to_domain_event(notification).basis == "backstop"
        refused += notification.topic.endswith(":Account.TakeoverRefused")
    assert taken > 0 and refused > 0, "the backstop's capital carries some liquidations and not all"
    allocations = loss_allocations(ledger.app)
    adl = sum(1 for row in allocations if row["policy"] == "adl")
    with capsys.disabled():
        print(f"\n  {window} ({POLICIES[window]}): {len(rows)} marks, calls {counts['Account.MarginCallIssued']}, "
              f"liquidation fills {counts['Account.Liquidated']}, fund draws {counts['InsuranceFund.Drawn']}, "
              f"penalties {counts['InsuranceFund.Contributed'] - 1}, allocations {counts['Account.LossAllocated']}, "
              f"deleveraging fills {adl}, backstop takeovers {taken}, refused {refused}, fund {fold.insurance_fund}")
