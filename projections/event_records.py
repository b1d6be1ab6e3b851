"""The log's events as plain records, for ``clearing events`` and the HTTP API's event pages."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

from eventsourcing.domain import DomainEvent

from clearing.audit.log import read_log
from clearing.domain.account import Account
from clearing.domain.fills import trade_fills

PAGE = 1000
_SKIP = {"originator_id", "originator_version", "timestamp", "originator_topic"}


def iter_events(app: Any, start: int, limit: int | None) -> Iterator[dict[str, Any]]:
    """Events from log position ``start`` on, at most ``limit`` (``clearing.audit.log.read_log``).

    ``islice`` stops before asking for the page after the last event wanted, so a later row
    that cannot be decoded is never read. A limit counts stored events (log positions), so
    paging on with ``--from`` the last position shown plus one misses nothing: a run's row of
    fills (ADR 25) is printed whole, one record per fill.
    """
    page = PAGE if limit is None else max(1, min(PAGE, limit))
    pages = read_log(app.recorder, app.mapper, start=start, page=page)
    rows = islice(((notification, event) for log_page in pages for notification, event in log_page.decoded()), limit)
    return (record for notification, event in rows for record in _records(notification, event))


def _records(notification: Any, event: Any) -> Iterator[dict[str, Any]]:
    """The event as one record; an account's fills of a run of trades (ADR 25) as one record
    per fill, each with the fields a ``TradeFilled`` has and its place in the event
    (``fill``: 1-based, ``fills``: how many), so every trade is shown on its own."""
    assert isinstance(event, DomainEvent)  # every event in the log is an aggregate's (it has a timestamp)
    record = {
        "position": notification.id,
        "type": notification.topic.rsplit(":", 1)[-1],
        "aggregate_id": str(event.originator_id),
        "aggregate_version": event.originator_version,
        "recorded_at": event.timestamp.isoformat(),
    }
    data = {k: v for k, v in vars(event).items() if k not in _SKIP}
    if not isinstance(event, Account.FillsRecorded):
        yield {**record, "data": data}
        return
    shared = {k: v for k, v in data.items() if k != "fills"}
    count = len(event.fills)
    for number, fill in enumerate(trade_fills(event), start=1):
        fields = {key: value for key, value in fill._asdict().items() if key not in _SKIP}
        yield {**record, "data": {**shared, "fill": number, "fills": count, **fields}}


def plain(record: dict[str, Any]) -> dict[str, Any]:
    """A record with its values as JSON gives them (decimals and times as text)."""
    from clearing.jsonable import jsonable

    return {**record, "data": {k: jsonable(v) for k, v in record["data"].items()}}


def event_at(app: Any, position: int) -> list[dict[str, Any]]:
    """The plain records of the event at log ``position`` (a run of fills: one per fill); [] past the head."""
    return [plain(record) for record in iter_events(app, position, 1) if record["position"] == position]
