"""Projections as of a past point of the log: ``audit replay --until`` and ``--as-of``.

A cut is a log position: every event at or before it is in, nothing after. A business
time T cuts the log before the first event (in log order) whose business time ``at`` is
later than T, so the state shown is the one the ledger had when T had just passed.
Example: events at 10:00 (position 5) and 10:05 (position 9); ``--as-of 10:02`` -> 8.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from clearing.errors import InputError
from projections.read import Views
from projections.runner import PAGE, Progress, Projector
from projections.store import ProjectionStore


def resolve_until(app: Any, text: str) -> int:
    """A log position from ``POSITION`` (an integer) or an ISO-8601 business time with zone."""
    head = app.recorder.max_notification_id() or 0
    if text.strip().isdigit():
        position = int(text)
        if position < 1:
            raise InputError("invalid_until", "until", "a log position starts at 1")
        return min(position, head)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError("invalid_until", "until", f"{text!r} is neither a log position nor an ISO-8601 time") from None
    if moment.tzinfo is None:
        raise InputError("invalid_until", "until", "give the time with its zone, e.g. 2025-10-10T21:00:00Z")
    return _position_before(app, moment, head)


def _position_before(app: Any, moment: datetime, head: int) -> int:
    start = 0
    while notes := app.recorder.select_notifications(start=start, limit=PAGE, inclusive_of_start=False):
        for note in notes:
            at = getattr(app.mapper.to_domain_event(note), "at", None)
            if at is not None and at > moment:
                return note.id - 1
        start = notes[-1].id
    return head


def replay_into(app: Any, target: ProjectionStore, until: int, names: list[str] | None = None,
                progress: Progress | None = None) -> Projector:
    """Build projections into ``target`` (a separate file, schema or memory) up to ``until``."""
    projector = Projector(app, target, names)
    projector.catch_up(until=until, progress=progress)
    return projector


def replay_views(app: Any, until: int, names: list[str]) -> Views:
    """Projections ``names`` replayed into an in-memory database up to ``until``."""
    store = ProjectionStore(":memory:")
    replay_into(app, store, until, names)
    return Views(store)
