"""The library's recorders plus read-set validation: no batch commits on stale reads.

A batch's decisions read aggregates they do not write: the mark of a market priced for a
withdrawal's margin check, the clearinghouse's parameters, the accounts a price sweep
found healthy. The library's optimistic concurrency (a unique (id, version)) only guards
what a batch *writes*, so a withdrawal decided on a mark that another process moved before
the commit would be committed after the new mark (write skew).

The working set therefore hands the save the version it read of every aggregate
(``read_versions``; 0 for an id it looked up and did not find). Inside the insert's own
transaction, holding the store's write lock (SQLite's single writer after the insert;
PostgreSQL's ``EXCLUSIVE`` table lock, which every writer takes before inserting), the
recorder checks that each aggregate the batch read but did not write is still at that
version, and refuses the whole batch with the library's ``IntegrityError`` otherwise; the
application then decides the batch again on fresh state, as for any other conflict.

Example: process A reads BTC-PERP at version 7 and approves a withdrawal; process B stores
a new mark (version 8) and commits first; A's insert finds version 8 where it read 7 and
rolls back, so A decides the withdrawal again against the new mark.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.popo import POPOApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import get_topic

from clearing import store_schema
from clearing.command_index import BUILT_TABLE, COLUMNS, COMMANDS_KWARG, CommandRow
from clearing.command_index import TABLE as COMMAND_TABLE

READ_SET_KWARG = "read_versions"
SHARED_LOCK_KWARG = "take_shared_writer_lock"  # PostgreSQL: take the writers' lock shared in the insert's transaction
SQLITE_CHUNK = 900  # ids per statement, well below SQLite's variable limit
#: The log head a batch started from when its decisions need that no other process wrote since
#: (``WorkingSet.require_quiet_store``); None for every other batch.
QUIET_SINCE_KWARG = "quiet_since"


def _unwritten(read_versions: Mapping[UUID, int] | None, stored_events: Sequence[StoredEvent]) -> dict[UUID, int]:
    """The read set minus what the batch writes, once each written aggregate is shown to be
    written from the version that was read (the unique (id, version) guards the rest)."""
    if not read_versions:
        return {}
    first_written: dict[UUID | str, int] = {}  # the library types a stored event's id UUID | str
    for event in stored_events:
        first_written.setdefault(event.originator_id, event.originator_version)
    for aggregate_id, version in first_written.items():
        read = read_versions.get(aggregate_id) if isinstance(aggregate_id, UUID) else None  # read ids are UUIDs
        if read is not None and version != read + 1:
            raise IntegrityError(f"aggregate {aggregate_id} was read at version {read} but is written from version {version}")
    return {aggregate_id: version for aggregate_id, version in read_versions.items() if aggregate_id not in first_written}


def _refuse_if_moved(expected: Mapping[UUID, int], found: Mapping[UUID, int]) -> None:
    for aggregate_id, version in expected.items():
        now = found.get(aggregate_id, 0)
        if now != version:
            raise IntegrityError(f"read set changed: aggregate {aggregate_id} was read at version {version}, is now {now}")


class ClearingSQLiteRecorder(SQLiteApplicationRecorder):
    """SQLite: insert first (taking the write lock), then validate the read set; the
    command index (``clearing.command_index``) is written in the same transaction."""

    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {COMMAND_TABLE} (command_id TEXT PRIMARY KEY, command_type TEXT NOT NULL, "
            "content TEXT NOT NULL, code TEXT, field TEXT, message TEXT) WITHOUT ROWID"
        )
        statements.append(f"CREATE TABLE IF NOT EXISTS {BUILT_TABLE} (id INTEGER PRIMARY KEY CHECK (id = 1))")
        statements.append(store_schema.SQLITE_CREATE)
        return statements

    def create_table(self) -> None:
        """The library's tables and ours; the schema version is written only when the
        store records none or an older one (``store_schema.SQLITE_READ``)."""
        super().create_table()
        with self.datastore.transaction(commit=False) as c:
            c.execute(store_schema.SQLITE_READ)
            row = c.fetchone()
        if row is None or int(row[0]) < store_schema.STORE_SCHEMA:
            with self.datastore.transaction(commit=True) as c:  # the first statement writes: the lock is waited for
                for statement in store_schema.SQLITE_RECORD:
                    c.execute(statement)

    def command_index_built(self) -> bool:
        """Whether the index holds every answer of the log (``command_index.ensure_built``)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT count(*) FROM {BUILT_TABLE}")
            return bool(c.fetchone()[0])

    def build_command_index(self, rows: Sequence[CommandRow]) -> None:
        """The log's rows (those already stored kept) and the marker, in one transaction."""
        with self.datastore.transaction(commit=True) as c:
            c.executemany(f"INSERT OR IGNORE INTO {COMMAND_TABLE} VALUES (?, ?, ?, ?, ?, ?)", rows)
            c.execute(f"INSERT OR IGNORE INTO {BUILT_TABLE} VALUES (1)")

    def select_commands(self, command_ids: Sequence[str]) -> dict[str, CommandRow]:
        """The index rows of ``command_ids`` that are stored (one query per chunk)."""
        found: dict[str, CommandRow] = {}
        with self.datastore.transaction(commit=False) as c:
            for start in range(0, len(command_ids), SQLITE_CHUNK):
                chunk = list(command_ids[start : start + SQLITE_CHUNK])
                c.execute(f"SELECT {', '.join(COLUMNS)} FROM {COMMAND_TABLE} WHERE command_id IN "
                          f"({','.join('?' * len(chunk))})", chunk)
                found.update({row[0]: CommandRow(*row) for row in c.fetchall()})
        return found

    def changed_since(self, start: int, stop: int) -> dict[UUID, int]:
        """Each aggregate written at log positions ``start``..``stop`` and its highest version
        there: what another writer changed (``WorkingSet._forget_changed``), without the
        events' state."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT originator_id, MAX(originator_version) FROM {self.events_table_name} "
                "WHERE rowid BETWEEN ? AND ? GROUP BY originator_id",
                (start, stop),
            )
            return {UUID(row[0]): row[1] for row in c.fetchall()}

    def count_commands(self) -> int:
        """How many command ids the index holds."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT count(*) FROM {COMMAND_TABLE}")
            return int(c.fetchone()[0])

    def _insert_events(self, c: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        returning = super()._insert_events(c, stored_events, **kwargs)
        quiet_since = kwargs.get(QUIET_SINCE_KWARG)
        if quiet_since is not None and returning and returning[0] != quiet_since + 1:  # holding the write lock
            raise IntegrityError(f"another process wrote after position {quiet_since}, which this batch started from")
        expected = _unwritten(kwargs.get(READ_SET_KWARG), stored_events)
        ids = list(expected)
        found: dict[UUID, int] = {}
        for start in range(0, len(ids), SQLITE_CHUNK):
            chunk = ids[start : start + SQLITE_CHUNK]
            marks = ",".join("?" * len(chunk))
            c.execute(
                f"SELECT originator_id, MAX(originator_version) FROM {self.events_table_name} "
                f"WHERE originator_id IN ({marks}) GROUP BY originator_id",
                [aggregate_id.hex for aggregate_id in chunk],
            )
            found.update({UUID(row[0]): row[1] for row in c.fetchall()})
        _refuse_if_moved(expected, found)
        rows = kwargs.get(COMMANDS_KWARG)
        if rows:  # a duplicate id fails here: sqlite3's IntegrityError, the library's once converted
            c.executemany(f"INSERT INTO {COMMAND_TABLE} VALUES (?, ?, ?, ?, ?, ?)", rows)
        return returning


class ClearingPOPORecorder(POPOApplicationRecorder):
    """In memory (the unit tests' store): the command index is a dict, checked and written
    under the recorder's lock with the events."""

    def __init__(self) -> None:
        super().__init__()
        self._commands: dict[str, CommandRow] = {}
        self._built = False

    def select_commands(self, command_ids: Sequence[str]) -> dict[str, CommandRow]:
        with self._database_lock:
            return {command_id: self._commands[command_id] for command_id in command_ids if command_id in self._commands}

    def count_commands(self) -> int:
        with self._database_lock:
            return len(self._commands)

    def command_index_built(self) -> bool:
        return self._built

    def build_command_index(self, rows: Sequence[CommandRow]) -> None:
        with self._database_lock:
            for row in rows:
                self._commands.setdefault(row.command_id, row)
            self._built = True

    def _assert_uniqueness(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        super()._assert_uniqueness(stored_events, **kwargs)
        rows = kwargs.get(COMMANDS_KWARG) or ()
        ids = [row.command_id for row in rows]
        if len(set(ids)) < len(ids) or any(command_id in self._commands for command_id in ids):
            raise IntegrityError("command id already in the command index")

    def _update_table(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        returning = super()._update_table(stored_events, **kwargs)
        self._commands.update({row.command_id: row for row in kwargs.get(COMMANDS_KWARG) or ()})
        return returning


RECORDER_TOPICS = {
    "eventsourcing.sqlite": get_topic(ClearingSQLiteRecorder),
    # named, not imported: psycopg and the library's PostgreSQL module load only for a PostgreSQL store
    "eventsourcing.postgres": "clearing.recorders_postgres:ClearingPostgresRecorder",
}


def is_postgres_factory(factory: Any) -> bool:
    """The library's PostgreSQL factory (its module is imported only when a store uses it)."""
    module = sys.modules.get("eventsourcing.postgres")
    return module is not None and isinstance(factory, module.PostgresFactory)
