"""Crash tapes: 1-minute candles read from a CSV file, grouped by its ``window`` column.

The file is the shared one described in ``../shared/data/README.md``: columns ``window``,
``open_time_utc`` (ISO-8601), ``open``, ``high``, ``low``, ``close`` and Binance's other
kline columns (ignored here). Prices are read with :func:`clearing.money.D`, so they stay
exact. A window's *entry* is its first candle's open (the price every member trades at);
its *worst* candle is the one whose close is farthest from the entry (for the three crash
windows, the lowest close), and the side that loses there is the *losing side*::

    window 2025-10-10_tariff_crash_adl: entry 116605.2, worst close 103441.3 at 21:19, longs lose
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from clearing.errors import InputError
from clearing.money import ZERO, D, MoneyError

REQUIRED_COLUMNS = ("window", "open_time_utc", "open", "high", "low", "close")
MAX_ROWS = 1_000_000  # a tape is minutes of a few crashes; anything larger is not one


@dataclass(frozen=True)
class Candle:
    """One minute: its open time (UTC) and its open, high, low and close prices."""

    at: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal


@dataclass(frozen=True)
class Window:
    """One crash window of the tape, its candles in time order."""

    name: str
    candles: tuple[Candle, ...]

    @property
    def entry(self) -> Decimal:
        return self.candles[0].open

    @property
    def worst_index(self) -> int:
        """The candle whose close is farthest from the entry (the first such on ties)."""
        distances = [abs(candle.close - self.entry) for candle in self.candles]
        return distances.index(max(distances))

    @property
    def worst(self) -> Candle:
        return self.candles[self.worst_index]

    @property
    def losing_side(self) -> str:
        """``long`` when the worst close is below the entry (a crash), else ``short``."""
        return "long" if self.worst.close < self.entry else "short"


def load_tape(path: Path) -> list[Window]:
    """The tape's windows in the order they first appear; raises ``InputError`` naming the line."""
    grouped: dict[str, list[Candle]] = {}
    for line, row in _rows(path):
        candle = _candle(row, line, path)
        candles = grouped.setdefault(row["window"], [])
        if candles and candle.at <= candles[-1].at:
            raise InputError("tape_malformed", "tape", f"{path} line {line}: {row['open_time_utc']} is not after the "
                                                        f"previous candle of window {row['window']}")
        candles.append(candle)
    if not grouped:
        raise InputError("tape_malformed", "tape", f"{path} holds no candles")
    return [Window(name, tuple(candles)) for name, candles in grouped.items()]


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as error:
        raise InputError("tape_not_found", "tape", f"cannot read the tape {path}: {error.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        missing = [name for name in REQUIRED_COLUMNS if name not in (reader.fieldnames or ())]
        if missing:
            raise InputError("tape_malformed", "tape", f"{path} is not a crash tape: missing column(s) {', '.join(missing)}")
        for number, row in enumerate(reader, start=2):
            if number > MAX_ROWS:
                raise InputError("tape_malformed", "tape", f"{path} has more than {MAX_ROWS} rows")
            yield number, row


def _candle(row: dict[str, str], line: int, path: Path) -> Candle:
    try:
        at = datetime.fromisoformat(row["open_time_utc"])
        prices = [D((row[name] or "").strip()) for name in ("open", "high", "low", "close")]
    except (ValueError, MoneyError) as error:
        raise InputError("tape_malformed", "tape", f"{path} line {line}: {error}") from None
    if at.tzinfo is None:
        raise InputError("tape_malformed", "tape", f"{path} line {line}: open_time_utc has no time zone")
    if not row["window"] or min(prices) <= ZERO:
        raise InputError("tape_malformed", "tape", f"{path} line {line}: needs a window name and positive prices")
    return Candle(at.astimezone(UTC), *prices)
