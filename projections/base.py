"""The shape every projection shares: tables, event handlers, and a batch of row changes.

A projection declares its tables (``TableSpec``: columns, key, and whether rows are only
appended or kept as current state) and one handler per event type it reads. The runner
(``projections.runner``) feeds it a page of events; handlers change rows in memory
(``Rows``) and the page is written with one statement per table when the runner flushes,
in the same transaction as the projection's tracking record.

Rows of state tables are cached across pages (a row read from the table once stays in
memory) up to ``CACHE_ROWS``; the runner drops the cache when another process advanced
the projection meanwhile. During a rebuild from an empty table nothing is read back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import Any

from sqlalchemy import Column, Integer, String, Table, and_, bindparam, select

from clearing.money import fmt

CACHE_ROWS = 300_000
NEVER = 1 << 62  # a position no log reaches: no checkpoint is ever due


@dataclass(frozen=True)
class TableSpec:
    """A projection table: its columns, key columns, and kind (``state`` or ``append``)."""

    name: str
    columns: list[Column[Any]]
    key: tuple[str, ...]
    kind: str = "state"


class Rows:
    """Current rows of one state table, by key, with the keys changed in this page."""

    def __init__(self, spec: TableSpec) -> None:
        self.spec = spec
        self.table: Table | None = None
        self.cache: dict[Any, dict[str, Any]] = {}
        self.dirty: set[Any] = set()
        self.known_empty = False  # rebuilding from nothing: a key not cached does not exist
        self.session: Any = None

    def get(self, key: Any) -> dict[str, Any] | None:
        row = self.cache.get(key)
        if row is None and not self.known_empty:
            row = self._load(key)
        return row

    def put(self, key: Any, row: dict[str, Any]) -> dict[str, Any]:
        self.cache[key] = row
        self.dirty.add(key)
        return row

    def touch(self, key: Any) -> dict[str, Any] | None:
        """The row for a change: marked dirty, ``None`` when it does not exist."""
        row = self.get(key)
        if row is not None:
            self.dirty.add(key)
        return row

    def _load(self, key: Any) -> dict[str, Any] | None:
        assert self.table is not None and self.session is not None
        columns = [self.table.c[name] for name in self.spec.key]
        values = key if isinstance(key, tuple) else (key,)
        condition = and_(*[column == value for column, value in zip(columns, values, strict=True)])
        found = self.session.execute(select(self.table).where(condition)).mappings().first()
        if found is None:
            return None
        row = dict(found)
        self.cache[key] = row
        return row

    def changed_rows(self) -> list[dict[str, Any]]:
        rows = [self.cache[key] for key in self.dirty]
        self.dirty = set()
        return rows

    def forget(self) -> None:
        self.cache.clear()
        self.dirty.clear()
        self.known_empty = False


@dataclass
class Appended:
    """Rows appended to an append-only table in this page."""

    spec: TableSpec
    table: Table | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)


class Projection:
    """Base class: ``SPECS`` and ``handlers()`` are defined by each projection."""

    NAME = ""
    DESCRIPTION = ""
    SPECS: tuple[TableSpec, ...] = ()
    REBUILDABLE = True
    CLOCK = ""  # name of the projection's business-clock table (one row)
    ALL_EVENTS = False  # True: every notification goes to ``on_any`` (no clock, no handlers)

    def __init__(self) -> None:
        self._day_ends: datetime | None = None
        self._clock_row: dict[str, Any] | None = None  # the clock row, once touched in this page
        self.state = {spec.name: Rows(spec) for spec in self.SPECS if spec.kind == "state"}
        self.appended = {spec.name: Appended(spec) for spec in self.SPECS if spec.kind == "append"}
        self.tables: dict[str, Table] = {}
        self.session: Any = None
        self.dispatch: dict[str, Callable[[int, Any, Any], None]] = self.handlers()
        self.checkpoint_due = NEVER  # the runner calls ``checkpoint`` for an event beyond this position

    def handlers(self) -> dict[str, Callable[[int, Any, Any], None]]:
        """Event type (``Account.Deposited``) -> handler(position, event, notification)."""
        raise NotImplementedError

    def observe(self, position: int, event: Any) -> None:
        """Advance the business clock; called for every event of ``CLOCK_KINDS`` in log order.

        The business day is the UTC date of the latest business time (``at``) seen so far
        among those events, the same for every read model however the log was read. A
        back-dated event is booked on the current day, like a late entry in a ledger, so a
        closed day's figures never change. When the clock moves to a later date,
        ``on_day_closed(day, last position of that day)`` runs before the event applies.
        Example: events at 03-01 23:59 (position 7) then 03-02 00:01 (position 8) ->
        ``on_day_closed("2025-03-01", 7)``; the event at 8 is on 03-02.
        """
        clock = self._clock_row  # set once the row is marked changed in this page (None after a flush)
        if clock is None:
            clock = self._clock_row = self.state[self.CLOCK].touch(1)
        if clock is not None and self._day_ends is not None and event.at < self._day_ends:
            clock["position"] = position  # the same business day: no date arithmetic
            return
        clocks = self.state[self.CLOCK]
        day = day_of(event.at)
        if clock is None:
            clock = clocks.put(1, {"id": 1, "day": day, "position": position})
        elif day > clock["day"]:
            self.on_day_closed(clock["day"], clock["position"])
            clock = clocks.touch(1)
            assert clock is not None, "the clock row was written before the day closed"
            clock.update(day=day, position=position)
        else:
            clock["position"] = position
        self._day_ends = _day_end(clock["day"])
        self._clock_row = clock

    @property
    def day(self) -> str:
        """The current business day (after ``observe`` of the event being applied)."""
        clock = self.state[self.CLOCK].get(1)
        assert clock is not None, "the business day is read after observe"
        day: str = clock["day"]
        return day

    def on_any(self, position: int, notification: Any) -> None:
        """Apply one notification of any type (projections with ``ALL_EVENTS``)."""
        raise NotImplementedError

    def on_day_closed(self, day: str, as_of_position: int) -> None:
        """A business day ended (the margin projection writes its end-of-day rows here)."""

    def at_position(self, position: int) -> None:
        """The runner starts a page with the projection at log ``position`` (the margin
        projection sets when its next checkpoint is due, ``projections.checkpoints``)."""

    def checkpoint(self, position: int) -> None:
        """The event at ``position`` is the first beyond ``checkpoint_due``: called before it applies."""

    def bind(self, tables: dict[str, Table]) -> None:
        self.tables = tables
        for name, rows in self.state.items():
            rows.table = tables[name]
        for name, appended in self.appended.items():
            appended.table = tables[name]

    def begin_page(self, session: Any) -> None:
        self.session = session
        self._clock_row = None  # the page's first event marks the row changed again
        for rows in self.state.values():
            rows.session = session

    def append(self, table: str, row: dict[str, Any]) -> None:
        self.appended[table].rows.append(row)

    def flush(self, session: Any) -> None:
        """Write the page's changes: upsert changed state rows, insert appended rows."""
        self._clock_row = None  # written now: the next event marks it changed again
        for rows in self.state.values():
            changed = rows.changed_rows()
            if changed:
                assert rows.table is not None
                write_many(session, rows.table, changed, rows.spec.key)
        for appended in self.appended.values():
            if appended.rows:
                assert appended.table is not None
                write_many(session, appended.table, appended.rows, None)
                appended.rows = []
        for rows in self.state.values():
            if len(rows.cache) > CACHE_ROWS:
                rows.cache.clear()
                rows.known_empty = False

    def forget(self) -> None:
        self._day_ends = None
        self._clock_row = None
        for rows in self.state.values():
            rows.forget()
        for appended in self.appended.values():
            appended.rows = []

    def mark_empty(self) -> None:
        for rows in self.state.values():
            rows.known_empty = True

    def hold(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        """Take ``rows`` as every row of each state table named (just written to an empty
        store, ``projections.replay.seed_from_checkpoint``): they are cached and a key not
        among them does not exist, so applying events reads nothing back.
        Example: ``{"margin_accounts": [{"account": "alice", ...}]}`` -> ``get("alice")``
        is that dict, ``get("bob")`` None without a query."""
        for name, table_rows in rows.items():
            state = self.state.get(name)
            if state is None:
                continue
            key = state.spec.key
            if len(key) == 1:
                state.cache = {row[key[0]]: row for row in table_rows}
            else:
                state.cache = {tuple(row[column] for column in key): row for row in table_rows}
            state.known_empty = True


_STATEMENTS: dict[tuple[str, str, bool], tuple[str, list[str] | None]] = {}


def write_many(session: Any, table: Table, rows: list[dict[str, Any]], key: tuple[str, ...] | None) -> None:
    """Insert (``key`` None) or upsert ``rows`` with one ``executemany`` on the driver.

    SQLAlchemy builds and compiles the statement once per table and dialect; the rows go
    straight to the DB-API cursor, because binding each value through SQLAlchemy costs
    more than the database write at rebuild volume. Decimals are written as their
    canonical text on SQLite (``fmt``, what ``ExactDecimal`` does) and as ``Decimal`` on PostgreSQL.
    """
    connection = session.connection()
    dialect = connection.dialect
    sql, order = _statement(table, key, dialect)
    if dialect.name == "sqlite":
        assert order is not None, "SQLite binds by position"
        columns = itemgetter(*order) if len(order) > 1 else (lambda row: (row[order[0]],))
        values: list[Any] = [tuple([fmt(v) if v.__class__ is Decimal else v for v in columns(row)]) for row in rows]
    else:
        values = rows
    cursor = connection.connection.driver_connection.cursor()
    try:
        cursor.executemany(sql, values)
    finally:
        cursor.close()


def _upsert_of(dialect_name: str) -> Any:
    """The dialect's ``insert`` with ``on_conflict_do_update``, imported when first needed
    (the PostgreSQL dialect costs a SQLite process 20 ms of start-up)."""
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def _statement(table: Table, key: tuple[str, ...] | None, dialect: Any) -> tuple[str, list[str] | None]:
    cache_key = (table.name, dialect.name, key is not None)
    if cache_key not in _STATEMENTS:
        insert = _upsert_of(dialect.name)
        statement = insert(table).values({column.name: bindparam(column.name) for column in table.columns})
        if key is not None:
            updates = {c.name: statement.excluded[c.name] for c in table.columns if c.name not in key}
            statement = statement.on_conflict_do_update(index_elements=list(key), set_=updates)
        compiled = statement.compile(dialect=dialect)
        positions = compiled.positiontup if compiled.positional else None
        order = None if positions is None else list(positions)
        _STATEMENTS[cache_key] = (str(compiled), order)
    return _STATEMENTS[cache_key]


def clock_spec(name: str) -> TableSpec:
    """The one-row table holding a projection's business day and last observed position."""
    return TableSpec(name, [Column("id", Integer, primary_key=True, autoincrement=False),
                            Column("day", String(10), nullable=False),
                            Column("position", Integer, nullable=False)], ("id",))


def _day_end(day: str) -> datetime:
    """Midnight UTC after ``day``: business times before it are on ``day`` or earlier."""
    return datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1)


def day_of(at: datetime) -> str:
    """The UTC calendar date of a business time, as ``YYYY-MM-DD``."""
    return at.astimezone(UTC).date().isoformat() if at.tzinfo else at.date().isoformat()
