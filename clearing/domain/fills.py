"""One account's trade fills of a run of trades, stored in one event (ADR 25).

A trade used to store three rows: a ``TradeFilled`` on each account and the command's
record. Consecutive trades of a batch (a *run*) now store one ``Account.FillsRecorded`` per
account the run touched, carrying that account's fills in the order they were decided.
Each fill holds exactly what a ``TradeFilled`` holds, as a list in ``FILL_FIELDS`` order,
numbers and times as text (exact: ``Decimal(str(d)) == d`` with the same exponent), so
that the stored JSON is plain strings the encoder and decoder handle without a callback.

Readers never see the list: :func:`trade_fills` gives one :class:`TradeFill` per fill,
with the field names of ``TradeFilled``, so every consumer of the log (the invariants, the
decision audit, the projections, ``events``) reads a fill of a run as it read a
``TradeFilled``. Example: a run of two trades, alice buys 0.5 from bob and then buys 0.2
from carol, stores alice's event with two fills, bob's with one and carol's with one:
three rows for two trades, not six.

``posted_at`` says whether the trade command carried its own ``at`` (part of its canonical
content, from which the command index is rebuilt on import: ``clearing.command_index``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple


class TradeFill(NamedTuple):
    """One side of one trade, as a ``TradeFilled`` event would carry it (the same fields,
    checked by ``tests/unit/test_fills.py``), and where it is stored."""

    account: str
    trade_id: str
    market: str
    market_version: int
    counterparty: str
    size_delta: Decimal
    price: Decimal
    price_mark: Decimal
    realized_pnl: Decimal
    position_size_after: Decimal
    position_cost_after: Decimal
    collateral_after: Decimal
    equity_after: Decimal
    initial_margin_after: Decimal
    risk_increasing: bool
    at: datetime
    posted_at: bool
    originator_id: Any = None  # the stored event's aggregate and version (every fill of it shares them)
    originator_version: int = 0


#: The stored list's fields, in order: the fill's own (not its account or where it is stored).
FILL_FIELDS = TradeFill._fields[1:-2]
_DECIMALS = tuple(range(FILL_FIELDS.index("size_delta"), FILL_FIELDS.index("initial_margin_after") + 1))
_AT = FILL_FIELDS.index("at")


def to_wire(event: Any, posted_at: bool) -> list[Any]:
    """The stored form of a decided ``TradeFilled``: ``FILL_FIELDS`` in order, as text."""
    return [
        event.trade_id, event.market, event.market_version, event.counterparty, str(event.size_delta), str(event.price),
        str(event.price_mark), str(event.realized_pnl), str(event.position_size_after), str(event.position_cost_after),
        str(event.collateral_after), str(event.equity_after), str(event.initial_margin_after), event.risk_increasing,
        event.at.isoformat(), posted_at,
    ]


def from_wire(account: str, wire: Sequence[Any], originator_id: Any = None, originator_version: int = 0) -> TradeFill:
    """The fill a stored list holds (the inverse of :func:`to_wire`)."""
    values = list(wire)
    for index in _DECIMALS:
        values[index] = Decimal(values[index])
    values[_AT] = datetime.fromisoformat(values[_AT])
    return TradeFill._make([account, *values, originator_id, originator_version])


def trade_fills(event: Any) -> Iterator[TradeFill]:
    """Each fill of a ``FillsRecorded`` event, in the order they were decided."""
    account, aggregate_id, version = event.account, event.originator_id, event.originator_version
    for wire in event.fills:
        yield from_wire(account, wire, aggregate_id, version)


def latest_fill_at(event: Any) -> datetime:
    """The latest business time among a ``FillsRecorded`` event's fills.

    A state "as of" a time includes a run of fills only when every fill of every row of it is
    at or before that time (``projections.replay``), so it never shows a trade made after the
    time asked for, nor one side of a trade without the other.
    """
    return max(datetime.fromisoformat(wire[_AT]) for wire in event.fills)
