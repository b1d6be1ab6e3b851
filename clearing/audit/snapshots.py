"""Stored snapshots checked against the events they stand for (ADR 11).

A snapshot is a copy of an aggregate's state at one version, written every
``SNAPSHOT_INTERVAL`` versions so that loads are fast. The library's repository starts from
the latest snapshot at or below the version asked for and applies only the later events,
so every decision is taken on whatever the snapshot table holds. The events are covered by
the hash chain; the snapshots are not. A snapshot that equals the aggregate rebuilt from
its events alone is exactly as trustworthy as those events, so:

* ``check_snapshots`` (``audit verify``'s ``snapshots`` check, ``SnapshotCheck``): every
  stored snapshot is decoded with the application's mapper and ``Snapshot.mutate`` (the
  repository's own decode) and compared with the aggregate rebuilt from its events alone up
  to the snapshot's version. The check is a consumer of the one read of the log
  (``clearing.audit.log``): the versions of every snapshot are listed first (no states), each
  aggregate that has one is folded as its events stream by, and a snapshot's state is read
  when the fold reaches its version, so the work is the ``mutate`` of those aggregates'
  events, whatever the number of snapshots.
* ``live_equals_replay`` (the ``replay_equals_live`` invariant): every aggregate that has a
  snapshot, loaded through ``app.repository`` (latest snapshot + later events: the path the
  working set decides on), equals the aggregate rebuilt from its events alone at the same
  version. An aggregate without a stored snapshot is loaded by the repository by folding
  exactly the events the rebuild folds (``project_aggregate`` over
  ``events.get(id)``), so for it the two paths are the same computation; the set of
  aggregates with a snapshot is read from the snapshot table itself, so a forged snapshot of
  any aggregate of any kind is among them.

What is compared: the aggregate's class and its whole ``__dict__``: ``_id``, ``_version``,
``_created_on``, ``_modified_on``, ``_pending_events`` and every domain attribute. Nothing
is left out. Two normalizations, both forced by the JSON encoding of snapshots and neither
able to hide a changed value:

* a tuple equals a list with equal items, in order (JSON has only arrays: ``Market.tiers``,
  ``recent_marks`` and tuple parameter overrides come back from a snapshot as lists);
* the order of the aggregate's own attributes is ignored (``Snapshot.mutate`` sets ``_id``,
  ``_version`` and ``_pending_events`` last; attribute order means nothing). The order of
  keys *inside* a dict is compared (``Market.holders`` is an ordered set).

Everything else is strict: types (``True`` is not ``1``), Decimals by their exact text
(``0.05`` is not ``0.050``: the encoding keeps the text), datetimes with their UTC offset,
dataclasses (``Position``, ``MarginTier``) field by field.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from clearing.audit.log import CheckFailed, LogPage, read_log

WINDOW = 5000  # events per read when folding one aggregate

SNAPSHOT_DIFFERS = "snapshot_differs"
SNAPSHOT_UNREADABLE = "snapshot_unreadable"
SNAPSHOT_WITHOUT_EVENTS = "snapshot_without_events"
LIVE_DIFFERS = "live_differs"
REPLAY_FAILED = "replay_failed"

_NAME_ATTRIBUTES = ("account", "market", "command_id")


@dataclass(frozen=True)
class Finding:
    """The first snapshot (or load) that does not match its events."""

    code: str
    kind: str
    name: str | None
    aggregate_id: UUID | str  # the library's type of a stored event's originator id
    version: int | None
    difference: str
    subject: str = "snapshot"  # or "loaded by the repository"

    def __str__(self) -> str:
        # the fund and the clearinghouse have no name: one of each, with a fixed id
        who = f"{self.kind} {self.name}" if self.name else self.kind if self.kind != "aggregate" else (
            f"aggregate {self.aggregate_id}")
        at = f" at version {self.version}" if self.version is not None else ""
        return f"[{self.code}] {who} {self.subject}{at}: {self.difference}"


@dataclass
class Summary:
    """What a clean check covered."""

    snapshots: int = 0
    aggregates: int = 0
    kinds: Counter[str] = field(default_factory=Counter)  # aggregates per class
    events: int = 0  # events read and folded

    def describe(self) -> str:
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(self.kinds.items()))
        snapshots = f"{self.snapshots} snapshot(s) of " if self.snapshots else ""
        return f"{snapshots}{self.aggregates} aggregate(s){f' ({kinds})' if kinds else ''}"


# -- the checks ------------------------------------------------------------------------------------


def check_snapshots(app: Any) -> tuple[Finding | None, Summary]:
    """Every stored snapshot against the aggregate rebuilt from its events at that version.

    Returns the first finding (in log order of the snapshot's version) or None, and what was
    covered: ``SnapshotCheck`` over one read of the log.
    """
    check = SnapshotCheck(app)
    try:
        for page in read_log(app.recorder, app.mapper, stop=app.recorder.max_notification_id() or 0):
            check.consume(page)
        check.finish(0)
    except _Found as found:
        return found.finding, check.summary
    return None, check.summary


class _Found(CheckFailed):
    def __init__(self, finding: Finding) -> None:
        super().__init__(str(finding))
        self.finding = finding


class SnapshotCheck:
    """The ``snapshots`` check as a consumer of the one read of the log.

    Rule: each aggregate that has stored snapshots is rebuilt from its events alone, with
    each event's ``mutate``, as the log streams by; when the rebuild reaches the version of
    one of its snapshots, that snapshot is read (the repository's decode) and compared field
    by field. Example: an account with snapshots at versions 200 and 400 and 450 events is
    compared twice, at its 200th and its 400th event; a snapshot at version 500 would be
    ``snapshot_without_events``. Memory: one rebuilt aggregate per aggregate with a snapshot.
    """

    name = "snapshots"

    def __init__(self, app: Any) -> None:
        self.app = app
        self.pending: dict[Any, list[int]] = stored_snapshot_versions(app)
        self.rebuilt: dict[Any, Any] = {}
        self.summary = Summary(snapshots=sum(len(v) for v in self.pending.values()), aggregates=len(self.pending))
        self._compared: set[Any] = set()

    def consume(self, page: LogPage) -> None:
        pending = self.pending
        if not pending:
            return
        for index, notification in enumerate(page.notifications):
            aggregate_id = notification.originator_id
            versions = pending.get(aggregate_id)
            if not versions:  # no snapshot of it, or every one already compared
                continue
            event: Any = page.events[index]  # an aggregate event of this application's mapper
            rebuilt = self.rebuilt.get(aggregate_id)
            try:
                if event is None:
                    raise page.unreadable[index]
                rebuilt = self.rebuilt[aggregate_id] = event.mutate(rebuilt)
            except Exception as error:
                stored = self._stored(aggregate_id, versions[0])
                assert stored is not None, "a snapshot listed a moment ago is gone"
                raise _Found(_finding(REPLAY_FAILED, rebuilt, stored, f"its events do not replay: {_error(error)}")) from None
            self.summary.events += 1
            if versions and versions[0] == notification.originator_version:
                self._compare(aggregate_id, versions.pop(0), rebuilt)

    def finish(self, head: int) -> str:
        for aggregate_id, versions in self.pending.items():
            if versions:
                stored = self._stored(aggregate_id, versions[0])
                assert stored is not None, "a snapshot listed a moment ago is gone"
                rebuilt = self.rebuilt.get(aggregate_id)
                if rebuilt is None:
                    raise _Found(_finding(SNAPSHOT_WITHOUT_EVENTS, None, stored, "the log has no events of this aggregate",
                                          self._decoded_or_none(stored)))
                raise _Found(_finding(SNAPSHOT_WITHOUT_EVENTS, rebuilt, stored,
                                      f"the log has events of this aggregate only up to version {rebuilt.version}"))
        if not self.summary.snapshots:
            return "no stored snapshots (every load folds the events)"
        return f"{self.summary.describe()} equal their aggregates rebuilt from {self.summary.events} event(s)"

    def _compare(self, aggregate_id: Any, version: int, rebuilt: Any) -> None:
        stored = self._stored(aggregate_id, version)
        assert stored is not None, "a snapshot listed a moment ago is gone"
        try:
            loaded = self._decode(stored)
        except Exception as error:
            raise _Found(_finding(SNAPSHOT_UNREADABLE, rebuilt, stored, f"cannot be decoded: {_error(error)}")) from None
        difference = state_difference(rebuilt, loaded, "snapshot")
        if difference is not None:
            raise _Found(_finding(SNAPSHOT_DIFFERS, rebuilt, stored, difference))
        if aggregate_id not in self._compared:
            self._compared.add(aggregate_id)
            self.summary.kinds[type(rebuilt).__name__] += 1

    def _stored(self, aggregate_id: Any, version: int) -> StoredEvent | None:
        rows = self.app.snapshots.recorder.select_events(aggregate_id, gt=version - 1, lte=version)
        return rows[0] if rows else None

    def _decode(self, stored: StoredEvent) -> Any:
        """The aggregate a snapshot holds, decoded as the repository decodes it."""
        return self.app.mapper.to_domain_event(stored).mutate(None)

    def _decoded_or_none(self, stored: StoredEvent) -> Any:
        try:
            return self._decode(stored)
        except Exception:
            return None


def live_equals_replay(app: Any, rebuilt: dict[Any, Any] | None = None) -> tuple[Finding | None, Summary]:
    """Each aggregate with a stored snapshot: the repository's load equals the events' rebuild.

    ``rebuilt`` maps the ids of ``stored_snapshot_ids`` to those aggregates already folded
    from their events (None when no event was seen), as ``clearing.audit.invariants.fold_log``
    does while it reads the log anyway; without it each is folded here from its events.
    The repository load (``app.repository.get(id)``: latest snapshot + later events) is
    compared with the rebuild advanced to the load's version, so an aggregate that a
    concurrent writer advanced meanwhile is compared like with like, and a snapshot forged
    beyond the last event shows as a version the events never reach.
    """
    summary = Summary()
    ids = list(rebuilt) if rebuilt is not None else stored_snapshot_ids(app)
    for aggregate_id in ids:
        summary.aggregates += 1
        replayed = rebuilt.get(aggregate_id) if rebuilt is not None else None
        try:
            live = app.repository.get(aggregate_id)
        except Exception as error:
            return _live_finding(SNAPSHOT_UNREADABLE, replayed, aggregate_id, None,
                                 f"the repository cannot load it: {_error(error)}"), summary
        try:
            replayed, read = fold_events(app, aggregate_id, replayed, live.version)
        except Exception as error:
            return _live_finding(REPLAY_FAILED, live, aggregate_id, live.version,
                                 f"its events do not replay: {_error(error)}"), summary
        summary.events += read
        if replayed is None:
            return _live_finding(SNAPSHOT_WITHOUT_EVENTS, live, aggregate_id, live.version,
                                 "the log has no events of this aggregate"), summary
        difference = state_difference(replayed, live, "repository")
        if difference is not None:
            return _live_finding(LIVE_DIFFERS, replayed, aggregate_id, live.version, difference), summary
        summary.kinds[type(replayed).__name__] += 1
    return None, summary


def stored_snapshot_versions(app: Any) -> dict[Any, list[int]]:
    """Each aggregate with stored snapshots -> their versions, ascending (no states read)."""
    versions: dict[Any, list[int]] = {}
    for aggregate_id, version in _snapshot_keys(app):
        versions.setdefault(aggregate_id, []).append(version)
    return versions


def _snapshot_keys(app: Any) -> list[tuple[Any, int]]:
    store = getattr(app, "snapshots", None)
    if store is None:
        return []
    recorder = store.recorder
    module = type(recorder).__module__
    if module.startswith("eventsourcing.popo"):
        with recorder._database_lock:
            return sorted(((s.originator_id, s.originator_version) for s in recorder._stored_events),
                          key=lambda key: (str(key[0]), key[1]))
    if module.startswith("eventsourcing.sqlite"):
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT originator_id, originator_version FROM {recorder.events_table_name} "
                           "ORDER BY originator_id, originator_version")
            return [(recorder.convert_originator_id(row[0]), row[1]) for row in cursor.fetchall()]
    from psycopg.sql import SQL, Identifier

    statement = SQL("SELECT originator_id, originator_version FROM {schema}.{table} "
                    "ORDER BY originator_id, originator_version").format(
        schema=Identifier(recorder.datastore.schema), table=Identifier(recorder.events_table_name))
    with recorder.datastore.get_connection() as connection, connection.cursor() as cursor:
        cursor.execute(statement)
        return [(row["originator_id"], row["originator_version"]) for row in cursor.fetchall()]


def stored_snapshot_ids(app: Any) -> list[Any]:
    """The ids of every aggregate with at least one stored snapshot, in id order (no states read)."""
    return list(stored_snapshot_versions(app))


def fold_events(app: Any, aggregate_id: Any, aggregate: Any, version: int) -> tuple[Any, int]:
    """``aggregate`` (None: nothing yet) advanced by its events up to ``version``, events only.

    Reads through the application's event store (never the snapshot store), ``WINDOW``
    events at a time; returns the aggregate (None when there are no events) and events read.
    """
    read = 0
    while True:
        start = aggregate.version if aggregate is not None else 0
        if start >= version:
            return aggregate, read
        events = list(app.events.get(aggregate_id, gt=start, lte=min(version, start + WINDOW)))
        if not events:
            return aggregate, read
        read += len(events)
        aggregate = apply_events(aggregate, events)


def apply_events(aggregate: Any, events: Any) -> Any:
    """The library's ``project_aggregate`` (each event's ``mutate`` in turn), minus its assert.

    ``project_aggregate`` asserts ``isinstance(event, CanMutateProtocol)`` per event, a
    runtime-protocol check that cost 40% of this audit; every event here comes from the
    application's mapper, and ``mutate`` is the same call.
    """
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


# -- comparing states ------------------------------------------------------------------------------


def state_difference(rebuilt: Any, other: Any, label: str) -> str | None:
    """The first field where ``other`` differs from the aggregate rebuilt from events, or None.

    Fields in the rebuilt aggregate's attribute order, then any the other has in addition.
    """
    if type(rebuilt) is not type(other):
        return f"class: events {type(rebuilt).__name__}, {label} {type(other).__name__}"
    mine, theirs = vars(rebuilt), vars(other)
    for key in [*mine, *(k for k in theirs if k not in mine)]:
        if key not in theirs:
            return f"{key}: missing from the {label}"
        if key not in mine:
            return f"{key}: in the {label} but not in the aggregate rebuilt from events"
        difference = _difference(mine[key], theirs[key], key, label)
        if difference is not None:
            return difference
    return None


def _difference(mine: Any, theirs: Any, path: str, label: str) -> str | None:
    mine, theirs = _plain_enum(mine), _plain_enum(theirs)
    if isinstance(mine, (list, tuple)) and isinstance(theirs, (list, tuple)):
        return _sequence_difference(mine, theirs, path, label)
    if type(mine) is not type(theirs):
        return f"{path}: events {_show(mine)} ({type(mine).__name__}), {label} {_show(theirs)} ({type(theirs).__name__})"
    if isinstance(mine, dict):
        return _mapping_difference(mine, theirs, path, label)
    if dataclasses.is_dataclass(mine):
        return _fields_difference(mine, theirs, path, label)
    return _value_difference(mine, theirs, path, label)


def _plain_enum(value: Any) -> Any:
    """A ``StrEnum`` member as its string: the live aggregate holds the member a decision
    named (``RiskStatus.HEALTHY``), JSON and so every snapshot and replay the plain value."""
    return str(value) if isinstance(value, StrEnum) else value


def _sequence_difference(mine: list[Any] | tuple[Any, ...], theirs: list[Any] | tuple[Any, ...], path: str,
                         label: str) -> str | None:
    if len(mine) != len(theirs):
        return f"{path}: {len(mine)} item(s) from events, {len(theirs)} in the {label}"
    for index, (a, b) in enumerate(zip(mine, theirs, strict=True)):
        difference = _difference(a, b, f"{path}[{index}]", label)
        if difference is not None:
            return difference
    return None


def _mapping_difference(mine: dict[Any, Any], theirs: dict[Any, Any], path: str, label: str) -> str | None:
    for key in [*mine, *(k for k in theirs if k not in mine)]:
        if key not in theirs:
            return f"{path}[{key!r}]: missing from the {label}"
        if key not in mine:
            return f"{path}[{key!r}]: in the {label} but not in the events"
        difference = _difference(mine[key], theirs[key], f"{path}[{key!r}]", label)
        if difference is not None:
            return difference
    if list(mine) != list(theirs):
        return f"{path}: keys in another order in the {label}"
    return None


def _fields_difference(mine: Any, theirs: Any, path: str, label: str) -> str | None:
    for item in dataclasses.fields(mine):
        difference = _difference(getattr(mine, item.name), getattr(theirs, item.name), f"{path}.{item.name}", label)
        if difference is not None:
            return difference
    return None


def _value_difference(mine: Any, theirs: Any, path: str, label: str) -> str | None:
    if isinstance(mine, Decimal):
        same = str(mine) == str(theirs)
    elif isinstance(mine, datetime):
        same = mine == theirs and mine.utcoffset() == theirs.utcoffset()
    elif hasattr(mine, "__dict__") and _default_equality(mine):
        return _difference(vars(mine), vars(theirs), path, label)
    else:
        same = mine == theirs
    return None if same else f"{path}: events {_show(mine)}, {label} {_show(theirs)}"


def _default_equality(value: object) -> bool:
    """True when ``value``'s class compares by identity (``object.__eq__``, not overridden)."""
    method: object = type(value).__eq__
    return method is object.__eq__


def _show(value: Any) -> str:
    text = str(value) if isinstance(value, (Decimal, datetime, UUID)) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _name(aggregate: Any) -> str | None:
    for attribute in _NAME_ATTRIBUTES:
        value = getattr(aggregate, attribute, None)
        if isinstance(value, str):
            return value
    return None


def _finding(code: str, rebuilt: Any, stored: StoredEvent, difference: str, loaded: Any = None) -> Finding:
    """Kind and name from the events when they exist, else from the snapshot, else its topic."""
    source = rebuilt if rebuilt is not None else loaded
    if source is not None:
        kind, name = type(source).__name__, _name(source)
    else:
        kind, name = _kind_from_topic(stored), None
    return Finding(code, kind, name, stored.originator_id, stored.originator_version, difference)


def _live_finding(code: str, source: Any, aggregate_id: Any, version: int | None, difference: str) -> Finding:
    kind = type(source).__name__ if source is not None else "aggregate"
    name = _name(source) if source is not None else None
    return Finding(code, kind, name, aggregate_id, version, difference, subject="loaded by the repository")


def _kind_from_topic(stored: StoredEvent) -> str:
    """The aggregate class named inside an undecodable snapshot, when that much is readable."""
    import json

    try:
        topic = json.loads(stored.state)["topic"]
        return str(topic).rsplit(":", 1)[-1].rsplit(".", 1)[-1]
    except Exception:
        return "aggregate"


def _error(error: BaseException) -> str:
    """The root cause: the library wraps decode errors (``MapperDeserialisationError``)."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}"[:200]
