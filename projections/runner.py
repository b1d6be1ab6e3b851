"""Keeping projections current, rebuilding them, and replaying them to a past position.

One pass over the log serves every projection: each page of notifications (``PAGE``
events) is read once through the library's recorder, decoded once by its mapper, handed to
each projection that has not yet seen it, and written in **one** transaction together with
each projection's tracking record (``eventsourcing_sqlalchemy``). The transaction starts
with a lock (``ProjectionStore.lock``), so two processes never apply the same event; and
the library's tracking insert refuses a position that does not advance.

``rebuild`` fills a new generation of a projection's tables from event 1 while the old
generation stays live, then, in one locked transaction, applies the events that arrived
meanwhile, switches the registry and drops the old tables: readers see the old view or
the new one, never a half-built one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.utils import get_topic
from sqlalchemy import Table, func, select

from clearing.audit.log import read_log
from clearing.domain.account import Account
from clearing.domain.clearinghouse import Clearinghouse
from clearing.domain.fills import trade_fills
from clearing.domain.insurance import InsuranceFund
from clearing.domain.market import Market
from clearing.errors import ClearingError
from projections.base import Projection
from projections.chain_table import ChainProjection
from projections.ledgers import InsuranceFundProjection, LiquidationRegisterProjection, LossesProjection
from projections.margin import MarginProjection
from projections.store import ProjectionStore

APPLICATION = "Clearing"  # the upstream application name in every tracking record
PAGE = 50_000
ALL: tuple[type[Projection], ...] = (
    MarginProjection, InsuranceFundProjection, LossesProjection, LiquidationRegisterProjection, ChainProjection,
)
BY_NAME = {cls.NAME: cls for cls in ALL}
READ_MODELS = tuple(cls.NAME for cls in ALL if cls.REBUILDABLE)
#: Event types that move the business clock: everything any read model reads, whichever
#: projections a run builds, so every read model books an event on the same day.
#: A run's fills (``Account.FillsRecorded``, ADR 25) are read as the ``TradeFilled`` events they
#: replace: each fill observed and handled in turn (``Projector._apply``).
FILLS_KIND, FILL_KIND = "Account.FillsRecorded", "Account.TradeFilled"
CLOCK_KINDS = frozenset(kind for name in READ_MODELS for kind in BY_NAME[name]().dispatch) | {FILLS_KIND}
_AGGREGATES = {"Account": Account, "Market": Market, "InsuranceFund": InsuranceFund, "Clearinghouse": Clearinghouse}

Progress = Callable[[int, int], None]  # (position reached, head)


class ProjectionError(ClearingError):
    """A projection operation the operator asked for cannot be done."""


def check_names(names: Iterable[str] | None, rebuildable: bool = False) -> list[str]:
    """Validate projection names given on the command line."""
    valid = READ_MODELS if rebuildable else tuple(BY_NAME)
    chosen = list(names or valid)
    for name in chosen:
        if name not in valid:
            hint = " (the chain is extended, never rebuilt)" if name == "chain" and rebuildable else ""
            raise ProjectionError("unknown_projection", "name",
                                  f"no projection {name!r}{hint}; choose from {', '.join(valid)}")
    return chosen


def topic_of(kind: str) -> str:
    """Full library topic of an event type named ``Aggregate.Event``."""
    aggregate, event = kind.split(".", 1)
    return get_topic(getattr(_AGGREGATES[aggregate], event))


CLOCK_TOPICS = sorted(topic_of(kind) for kind in CLOCK_KINDS)
FILLS_TOPIC = topic_of(FILLS_KIND)


@dataclass
class Status:
    name: str
    generation: int | None
    position: int
    head: int
    rows: int
    description: str

    @property
    def lag(self) -> int:
        return self.head - self.position


class Projector:
    """Runs a set of projections over one application's log into one projection store."""

    def __init__(self, app: Any, store: ProjectionStore, names: Iterable[str] | None = None,
                 generations: dict[str, int] | None = None) -> None:
        self.app = app
        self.store = store
        self.projections: dict[str, Projection] = {name: BY_NAME[name]() for name in (names or BY_NAME)}
        self.pinned = dict(generations or {})  # a rebuild writes a generation that is not live yet
        self.bound: dict[str, int] = {}
        self.expected: dict[str, int] = {}
        self.trackers: dict[str, Any] = {}
        self.outdated: dict[str, list[str]] = {}  # columns the bound tables lack (built by an older version)
        self.missing: set[str] = set()  # never built (a read-only store creates nothing)
        self._prepared = False

    def require_built(self, names: Iterable[str] | None = None) -> None:
        """``projection_missing`` for the first of ``names`` (default: all) never built."""
        self.prepare()
        for name in names or self.projections:
            if name in self.missing:
                raise ProjectionError("projection_missing", name,
                                      f"projection {name} has not been built in this store; a writer builds it "
                                      "(`clearing projections catch-up`, or post with --sync)")

    # -- binding to table generations ---------------------------------------------------

    def prepare(self) -> None:
        """Create missing tables; the first generation of a new projection is 1. On a
        read-only store nothing is created: a projection never built is left unbound and
        named in ``missing`` (``require_built`` refuses it)."""
        if self._prepared:
            return
        for name in self.projections:
            generation = self.pinned.get(name) or self.store.generation(name)
            if generation is None and self.store.read_only:
                self.missing.add(name)
                continue
            if generation is None:
                self._bind(name, 1)
                with self.store.datastore.transaction(commit=True) as session:
                    self.store.lock(session)
                    if self.store.generation(name, session) is None:
                        self.store.set_generation(session, name, 1)
                        self.store.point_views(session, list(self.tables_of(name, 1).values()))
            else:
                self._bind(name, generation)
        self._prepared = True
        self._add_missing_views()

    def _add_missing_views(self) -> None:
        """A store built before the stable views gets them from its first writer (one
        catalog read; nothing when they exist, never on a read-only store)."""
        if self.store.read_only or self.pinned:
            return
        live = [table for name, generation in self.bound.items() for table in self.tables_of(name, generation).values()]
        missing = self.store.missing_views(live)
        if missing:
            with self.store.datastore.transaction(commit=True) as session:
                self.store.lock(session)
                self.store.point_views(session, missing)

    def tables_of(self, name: str, generation: int) -> dict[str, Table]:
        projection = self.projections[name]
        return {spec.name: self.store.table(spec.name, spec.columns, generation) for spec in projection.SPECS}

    def _bind(self, name: str, generation: int) -> None:
        tables = self.tables_of(name, generation)
        self.store.create_tables(list(tables.values()))
        self.outdated[name] = self.store.missing_columns(list(tables.values()))
        self.projections[name].bind(tables)
        self.projections[name].forget()
        self.trackers[name] = self.store.tracker(name, generation)
        self.bound[name] = generation
        self.expected.pop(name, None)

    # -- catching up --------------------------------------------------------------------

    def catch_up(self, until: int | None = None, page: int = PAGE, progress: Progress | None = None) -> int:
        """Apply every event up to the head (or ``until``); returns events read."""
        self.prepare()
        self.check_schema()
        read = 0
        while True:
            try:
                with self.store.datastore.transaction(commit=True) as session:
                    self.store.lock(session)
                    count, reached, head = self._page(session, until, page)
            except BaseException:
                self._forget_all()
                raise
            self._confirm(reached)
            read += count
            if progress is not None:
                progress(reached, head)
            if count == 0 or reached >= head:
                return read

    def position(self) -> int:
        """The least position the projections have reached (where the next catch-up starts)."""
        self.prepare()
        return min((self.trackers[name].max_tracking_id(APPLICATION) or 0) for name in self.projections)

    def feed(self, notes: Sequence[Any], events: Sequence[Any]) -> None:
        """Apply one page already read and decoded by someone else, in one transaction.

        ``audit verify`` reads and decodes the log once for all its checks
        (``clearing.audit.log``) and hands each page here: ``events[i]`` is ``notes[i]``
        decoded. The page must start right after the position already reached.
        """
        if not notes:
            return
        self.prepare()
        with self.store.datastore.transaction(commit=True) as session:
            self.store.lock(session)
            positions = self._positions(session)
            self._apply(notes, positions, session, events)
            reached = notes[-1].id
            self._advance(session, positions, reached)
        self._confirm(reached)

    def check_schema(self) -> None:
        """Refuse to write into tables an older version built without today's columns."""
        for name, missing in self.outdated.items():
            if missing and name not in self.pinned:
                raise ProjectionError(
                    "projection_outdated", name,
                    f"projection {name} generation {self.bound[name]} was built by an older version (no "
                    f"{', '.join(missing)}); run `clearing projections rebuild {name}`")

    def _page(self, session: Any, until: int | None, page: int) -> tuple[int, int, int]:
        """One page in the caller's transaction: (events read, position reached, head)."""
        positions = self._positions(session)
        start = min(positions.values())
        head = self.app.recorder.max_notification_id() or 0
        if until is not None:
            head = min(head, until)
        if start >= head:
            return 0, start, head
        topics = self._topics()
        first = next(read_log(self.app.recorder, start=start + 1, stop=head, page=page, topics=topics), None)
        notes = first.notifications if first is not None else []
        self._apply(notes, positions, session)
        reached = notes[-1].id if len(notes) == page else head
        self._advance(session, positions, reached)
        return len(notes), reached, head

    def _advance(self, session: Any, positions: dict[str, int], reached: int) -> None:
        """Write each projection's rows and its tracking record at ``reached``, in ``session``."""
        for name, projection in self.projections.items():
            if reached > positions[name]:
                projection.flush(session)
                self.trackers[name]._insert_tracking(session, Tracking(APPLICATION, reached))
                self.expected[name] = reached

    def _positions(self, session: Any) -> dict[str, int]:
        """Each projection's tracked position, re-binding when another process rebuilt it."""
        positions: dict[str, int] = {}
        for name, projection in self.projections.items():
            if name not in self.pinned:
                live = self.store.generation(name, session)
                if live is not None and live != self.bound[name]:
                    self._bind(name, live)
            position = self.trackers[name].max_tracking_id(APPLICATION) or 0
            if self.expected.get(name) != position:
                projection.forget()  # another process advanced it: cached rows may be stale
                if position == 0 and self._is_empty(session, projection):
                    projection.mark_empty()
            projection.begin_page(session)
            projection.at_position(position)
            positions[name] = position
        return positions

    def _is_empty(self, session: Any, projection: Projection) -> bool:
        return all(session.execute(select(func.count()).select_from(table)).scalar() == 0
                   for table in projection.tables.values())

    def _topics(self) -> list[str]:
        """Topics to read: all (empty list) when the chain is among the projections."""
        if any(p.ALL_EVENTS for p in self.projections.values()):
            return []
        return CLOCK_TOPICS

    def _apply(self, notes: Sequence[Any], positions: dict[str, int], session: Any,
               events: Sequence[Any] | None = None) -> None:
        """Hand each note to each projection not past it; ``events``: the notes already decoded.

        Each topic's calls (every projection's ``observe`` and handler for it) are looked up
        once per page; a projection already past a note (another process advanced it) is
        skipped by position.
        """
        to_event = self.app.mapper.to_domain_event
        behind = min(positions.values())
        calls_of: dict[str, list[tuple[int, Projection, Callable[..., None] | None]]] = {}
        raw = [(positions[name], p) for name, p in self.projections.items() if p.ALL_EVENTS]
        for index, note in enumerate(notes):
            position = note.id
            if position <= behind:
                continue
            for reached, projection in raw:
                if position > reached:
                    projection.on_any(position, note)
            calls = calls_of.get(note.topic)
            if calls is None:
                calls = calls_of[note.topic] = self._calls(note.topic, positions)
            if not calls:
                continue
            for reached, projection, _ in calls:
                if position > projection.checkpoint_due and position > reached:
                    projection.checkpoint(position)  # the state before this event (projections.checkpoints)
            event = to_event(note) if events is None else events[index]
            for each in trade_fills(event) if note.topic == FILLS_TOPIC else (event,):
                for reached, projection, handler in calls:
                    if position > reached:
                        projection.observe(position, each)
                        if handler is not None:
                            handler(position, each, note)

    def _calls(self, topic: str, positions: dict[str, int]) -> list[tuple[int, Projection, Callable[..., None] | None]]:
        """(position reached, projection, handler or None) of every projection a topic's events reach."""
        kind = topic.rsplit(":", 1)[-1]
        if kind not in CLOCK_KINDS:
            return []
        if kind == FILLS_KIND:
            kind = FILL_KIND
        return [(positions[name], projection, projection.dispatch.get(kind))
                for name, projection in self.projections.items() if not projection.ALL_EVENTS]

    def _confirm(self, reached: int) -> None:
        """The commit really happened (the SQLite datastore can swallow a failed commit).

        The tracked position read back may be *beyond* ``reached``: another process can
        take the lock and advance the projection between our commit and this read. Only a
        position below ``reached`` means our page was not committed.
        """
        for name in self.projections:
            if self.expected.get(name) == reached:
                stored = self.trackers[name].max_tracking_id(APPLICATION) or 0
                if stored < reached:
                    self._forget_all()
                    raise ProjectionError("projection_not_committed", name,
                                          f"projection {name} did not commit position {reached} (tracked {stored})")
                return

    def _forget_all(self) -> None:
        for name, projection in self.projections.items():
            projection.forget()
            self.expected.pop(name, None)

    # -- status -------------------------------------------------------------------------

    def status(self) -> list[Status]:
        self.prepare()
        head = self.app.recorder.max_notification_id() or 0
        result = []
        with self.store.engine.connect() as connection:
            for name, projection in self.projections.items():
                if name in self.missing:  # never built: generation 0, nothing applied
                    result.append(Status(name, 0, 0, head, 0, projection.DESCRIPTION))
                    continue
                rows = sum(connection.execute(select(func.count()).select_from(t)).scalar() or 0
                           for t in projection.tables.values())
                position = self.trackers[name].max_tracking_id(APPLICATION) or 0
                result.append(Status(name, self.bound[name], position, head, rows, projection.DESCRIPTION))
        return result


def rebuild(app: Any, store: ProjectionStore, names: str | Iterable[str], page: int = PAGE,
            progress: Progress | None = None) -> dict[str, int]:
    """Rebuild projections into new generations (one pass over the log) and switch to them.

    Returns each projection's new generation. The old generations keep serving (and being
    caught up by other processes) until the switch: in one locked transaction the events
    that arrived meanwhile are applied to the new tables, the registry rows are switched
    and the old tables dropped.
    """
    chosen = check_names([names] if isinstance(names, str) else names, rebuildable=True)
    live = Projector(app, store, chosen)
    live.prepare()
    old = dict(live.bound)
    new = {name: generation + 1 for name, generation in old.items()}
    builder = Projector(app, store, chosen, generations=new)
    for name in chosen:
        _drop(store, builder, name, new[name])  # leftovers of an interrupted rebuild
    builder.prepare()
    builder.catch_up(page=page, progress=progress)
    with store.datastore.transaction(commit=True) as session:
        store.lock(session)
        while builder._page(session, None, page)[0]:
            pass
        for name in chosen:
            store.set_generation(session, name, new[name])
            store.point_views(session, list(builder.tables_of(name, new[name]).values()))
            store.drop_generation(session, list(live.tables_of(name, old[name]).values()), name, old[name])
    return new


def _drop(store: ProjectionStore, projector: Projector, name: str, generation: int) -> None:
    with store.datastore.transaction(commit=True) as session:
        store.lock(session)
        store.drop_generation(session, list(projector.tables_of(name, generation).values()), name, generation)
