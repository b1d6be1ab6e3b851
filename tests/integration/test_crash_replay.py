"""Real crash tapes through the ledger: 1-minute BTC perpetual closes as mark prices.

Uses ../shared/data (skipped with the reason when absent; never copied into the package).
A long and a short at 10x face each other from the window's first open; every minute's close
is posted as the mark. Checks, per window: no mark is refused by a 20% price band, money is
conserved to the last unit, and each side's equity is exactly deposit + size x (last close -
entry). Without the risk engine (issue 3) nobody is liquidated; the test reports how deep the
long went below maintenance margin.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from decimal import Decimal

import pytest

from clearing.invariants import check_ledger
from clearing.settings import store_env
from tests.conftest import SHARED_DATA
from tests.ledger import Ledger

TAPE = SHARED_DATA / "binance_um_btcusdt_perp_1m_crash_windows.csv"


def windows() -> dict[str, list[dict[str, str]]]:
    rows: dict[str, list[dict[str, str]]] = defaultdict(list)
    with TAPE.open(newline="") as handle:
        for row in csv.DictReader(handle):
            rows[row["window"]].append(row)
    return rows


@pytest.mark.skipif(not TAPE.exists(), reason=f"crash data not found at {TAPE}")
@pytest.mark.parametrize("window", ["2020-03-12_black_thursday", "2021-05-19_china_ban_crash", "2025-10-10_tariff_crash_adl"])
def test_crash_window_marks_conserve_money_exactly(window, sqlite_db, capsys):
    rows = windows()[window]
    entry, size, deposit = Decimal(rows[0]["open"]), Decimal(1), Decimal(rows[0]["open"]) / 10
    deposit = deposit.quantize(Decimal("0.01"))
    start = rows[0]["open_time_utc"]
    ledger = Ledger(store_env(sqlite_db))
    setup = [
        {"type": "create_market", "id": "m", "market": "BTCUSDT", "kind": "perpetual", "tick_size": "0.01",
         "step_size": "0.001", "initial_margin_fraction": "0.1", "maintenance_margin_fraction": "0.05",
         "price_band": "0.2", "at": start},
        {"type": "price", "id": "p-open", "market": "BTCUSDT", "price": rows[0]["open"], "at": start},
        {"type": "open_account", "id": "o-long", "account": "long", "at": start},
        {"type": "open_account", "id": "o-short", "account": "short", "at": start},
        {"type": "deposit", "id": "d-long", "account": "long", "amount": str(deposit), "at": start},
        {"type": "deposit", "id": "d-short", "account": "short", "amount": str(deposit), "at": start},
        {"type": "trade", "id": "t", "market": "BTCUSDT", "buyer": "long", "seller": "short", "size": str(size),
         "price": rows[0]["open"], "at": start},
    ]
    ledger.post_ok(setup)
    marks = [{"type": "price", "id": f"p{n}", "market": "BTCUSDT", "price": row["close"], "at": row["open_time_utc"]}
             for n, row in enumerate(rows)]
    outcomes = ledger.post(marks)
    refused = [o for o in outcomes if o.status != "applied"]
    assert not refused, [(o.command_id, o.code, o.message) for o in refused]

    last = Decimal(rows[-1]["close"])
    long, short = ledger.account("long"), ledger.account("short")
    assert Decimal(long["equity"]) == deposit + size * (last - entry)
    assert Decimal(short["equity"]) == deposit - size * (last - entry)
    check_ledger(ledger.app)
    lows = min(Decimal(row["close"]) for row in rows)
    worst_long = deposit + size * (lows - entry)
    with capsys.disabled():
        print(f"\n  {window}: {len(rows)} marks, long equity at the lowest close {worst_long} "
              f"vs maintenance {(lows * Decimal('0.05')).quantize(Decimal('0.01'))}")
