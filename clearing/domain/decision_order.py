"""The order in which a command's events were decided, across the aggregates it touched.

The library keeps each aggregate's pending events in its own list, so collecting a
command's events aggregate by aggregate logs them in the order the aggregates were first
touched: a fund draw could be logged before the fill whose deficit it pays, and a
deleveraging's counterparties in the order they were loaded rather than their ranks. Each
of our aggregates derives from ``InDecisionOrder``, which numbers every event it creates
(its created event and every triggered one) from one per-thread counter; the unit of work
collects a command's events and sorts them by that number (``in_decision_order``), so the
log reads in the order the decisions were made. An aggregate's own events keep their
version order, since its numbers only grow.

Example: a liquidation of alice to the backstop with a deficit the fund pays triggers, in
this order, alice ``Liquidated`` (1), backstop ``PositionTaken`` (2), fund ``Drawn`` (3),
alice ``LossCovered`` (4); collected by aggregate they would read 1, 4, 2, 3.

The number lives beside the event (keyed by its identity), never in it, so nothing stored
changes; it is forgotten when the events are collected, and whatever was never collected
(a discarded batch, a scratch account a check builds) is dropped when a batch starts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from itertools import count, pairwise
from operator import itemgetter
from typing import Any

from eventsourcing.domain import Aggregate

id_of = id  # ``InDecisionOrder._create`` takes the library's ``id`` keyword, which hides the builtin
_UNNUMBERED = -1  # an event created before numbering began keeps its place at the front, in collection order


class _Numbering(threading.local):
    def __init__(self) -> None:
        self.next = count().__next__
        self.numbers: dict[int, int] = {}


_numbering = _Numbering()


def in_decision_order(events: Iterable[Any]) -> list[Any]:
    """``events`` sorted by the order they were created in this thread (stable for ties)."""
    pop = _numbering.numbers.pop
    listed = list(events)
    order = [pop(id(event), _UNNUMBERED) for event in listed]
    if len(order) < 2 or (len(order) == 2 and order[0] < order[1]):  # a deposit; a trade's two fills
        return listed
    if all(before < after for before, after in pairwise(order)):
        return listed  # touched in decision order already
    return [event for _, event in sorted(zip(order, listed, strict=True), key=itemgetter(0))]


def forget_numbers() -> None:
    """Drop the numbers of events that will never be collected (a batch starts or is discarded)."""
    _numbering.numbers.clear()


_trigger = Aggregate.trigger_event


class InDecisionOrder(Aggregate):
    """An aggregate whose events are numbered as they are created (see the module docstring)."""

    @classmethod
    def _create(cls, event_class: Any, *, id: Any = None, **kwargs: Any) -> Any:
        aggregate = super()._create(event_class, id=id, **kwargs)
        numbering = _numbering
        numbering.numbers[id_of(aggregate.pending_events[-1])] = numbering.next()
        return aggregate

    def trigger_event(self, event_class: Any, **kwargs: Any) -> None:
        _trigger(self, event_class, **kwargs)
        numbering = _numbering
        numbering.numbers[id_of(self._pending_events[-1])] = numbering.next()

