"""A price file as two stress scenarios: the worst fall and the worst rise of its history.

The file is a CSV with a price column and, optionally, a ``window`` column (each window a
separate history); docs/reports.md, "stress".
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from decimal import ROUND_UP, Decimal

from clearing.errors import InputError
from clearing.money import LEDGER_CONTEXT, ZERO, D, MoneyError, exact

SHOCK_QUANTUM = Decimal("0.000001")  # a price file's worst move, rounded away from zero
PRICE_COLUMNS = ("close", "price", "mark", "close_price", "mark_price")
GROUP_COLUMN = "window"


def load_prices(path: str) -> dict[str, list[Decimal]]:
    """Price series of a CSV file by window (``""`` when the file has no ``window`` column).

    The header must name a price column: the first of ``close``, ``price``, ``mark``,
    ``close_price``, ``mark_price`` (any case). Rows are taken in file order (oldest first);
    every price must be a plain decimal > 0. Example: ``close\\n100\\n90`` -> ``{"": [100, 90]}``.
    """
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            content = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
        raise InputError("unreadable_prices", "prices", f"cannot read {path}: {reason}") from None
    reader = csv.reader(io.StringIO(content))
    header = next(reader, None)
    if not header:
        raise InputError("invalid_prices", "prices", f"{path} is empty (a header row with a close/price column is needed)")
    names = [name.strip().lower() for name in header]
    column = next((names.index(name) for name in PRICE_COLUMNS if name in names), None)
    if column is None:
        raise InputError("invalid_prices", "prices", f"{path}: no close/price column in header {','.join(header)[:80]}")
    group = names.index(GROUP_COLUMN) if GROUP_COLUMN in names else None
    series: dict[str, list[Decimal]] = {}
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) <= column:
            raise InputError("invalid_prices", "prices", f"{path} line {line}: no value in column {header[column]}")
        try:
            price = D(row[column].strip())
        except MoneyError:
            raise InputError("invalid_prices", "prices",
                             f"{path} line {line}: {row[column][:40]!r} is not a plain decimal number") from None
        if price <= ZERO:
            raise InputError("invalid_prices", "prices", f"{path} line {line}: price {row[column]} is not positive")
        key = row[group].strip() if group is not None and len(row) > group else ""
        series.setdefault(key, []).append(price)
    if not any(len(prices) >= 2 for prices in series.values()):
        raise InputError("invalid_prices", "prices", f"{path}: at least two prices are needed")
    return series


def _worst_move(prices: list[Decimal], extreme: Callable[[Decimal, Decimal], Decimal],
                move: Callable[[Decimal, Decimal], Decimal]) -> Decimal:
    """The largest ``move(reference, price)`` over the history (0 at least), ``reference`` the
    ``extreme`` (max: the peak, min: the trough) of the prices up to and including ``price``."""
    reference, worst = prices[0], ZERO
    for price in prices[1:]:
        reference = extreme(reference, price)
        worst = max(worst, move(reference, price))
    return worst


@exact
def worst_fall(prices: list[Decimal]) -> Decimal:
    """Largest relative drop from a peak to a later trough, as a positive fraction.

    ``[100, 120, 90, 95, 130, 110]`` -> peak 120, later trough 90: (120 - 90) / 120 = 0.25.
    """
    return _worst_move(prices, max, lambda peak, price: (peak - price) / peak)


@exact
def worst_rise(prices: list[Decimal]) -> Decimal:
    """Largest relative rise from a trough to a later peak, as a positive fraction.

    ``[100, 120, 90, 95, 130, 110]`` -> trough 90, later peak 130: (130 - 90) / 90 = 0.4444...
    """
    return _worst_move(prices, min, lambda trough, price: (price - trough) / trough)


def price_scenarios(series: dict[str, list[Decimal]]) -> list[tuple[str, Decimal]]:
    """The two scenarios of a price file: its worst fall (negative shock) and worst rise.

    Each is the worst over the file's windows (a fall never spans two windows), rounded
    *away from zero* to 0.000001 so the scenario is never milder than history:
    0.4444444... -> ``+0.444445``; 0.25 -> ``-0.25``.
    """
    usable = [prices for _, prices in sorted(series.items()) if len(prices) >= 2]
    fall = max(worst_fall(prices) for prices in usable)
    rise = max(worst_rise(prices) for prices in usable)
    return [("prices:worst_fall", -fall.quantize(SHOCK_QUANTUM, rounding=ROUND_UP, context=LEDGER_CONTEXT)),
            ("prices:worst_rise", rise.quantize(SHOCK_QUANTUM, rounding=ROUND_UP, context=LEDGER_CONTEXT))]
