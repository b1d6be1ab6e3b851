"""The PostgreSQL recorder with read-set validation (``clearing.recorders`` has the rule).

Its own module so that psycopg and the library's PostgreSQL module are imported only for a
PostgreSQL store: ``clearing.recorders.RECORDER_TOPICS`` names it by topic, and the library
imports it when it builds a PostgreSQL application.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import SQL, Identifier

from clearing import store_schema
from clearing.command_index import BUILT_TABLE, COLUMNS, COMMANDS_KWARG, CommandRow
from clearing.command_index import TABLE as COMMAND_TABLE
from clearing.recorders import QUIET_SINCE_KWARG, READ_SET_KWARG, SHARED_LOCK_KWARG, _refuse_if_moved, _unwritten
from clearing.writer_lock import advisory_key


class ClearingPostgresRecorder(PostgresApplicationRecorder):
    """PostgreSQL: take the table lock, validate the read set, then insert; the command
    index (``clearing.command_index``) is written in the same transaction."""

    def __init__(self, datastore: Any, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.commands_table = SQL("{schema}.{table}").format(schema=Identifier(self.datastore.schema),
                                                            table=Identifier(COMMAND_TABLE))
        self.built_table = SQL("{schema}.{table}").format(schema=Identifier(self.datastore.schema),
                                                          table=Identifier(BUILT_TABLE))
        self.sql_create_statements.append(
            SQL("CREATE TABLE IF NOT EXISTS {table} (command_id text PRIMARY KEY, command_type text NOT NULL, "
                "content text NOT NULL, code text, field text, message text)").format(table=self.commands_table)
        )
        self.sql_create_statements.append(
            SQL("CREATE TABLE IF NOT EXISTS {table} (id integer PRIMARY KEY CHECK (id = 1))").format(table=self.built_table))
        schema_table = SQL("{schema}.{table}").format(schema=Identifier(self.datastore.schema),
                                                      table=Identifier(store_schema.SCHEMA_TABLE))
        self.sql_create_statements.extend(SQL(statement).format(table=schema_table)
                                          for statement in store_schema.POSTGRES_STATEMENTS)
        # the library's stored-function insert bypasses _insert_events: the read set and the
        # command index would go unwritten, so this recorder always inserts itself
        self.datastore.enable_db_functions = False

    def command_index_built(self) -> bool:
        """Whether the index holds every answer of the log (``command_index.ensure_built``)."""
        with self.datastore.get_connection() as connection, connection.cursor() as curs:
            curs.execute(SQL("SELECT count(*) AS found FROM {table}").format(table=self.built_table))
            row = curs.fetchone()
            return bool(row and row["found"])

    def build_command_index(self, rows: Sequence[CommandRow]) -> None:
        """The log's rows (those already stored kept) and the marker, in one transaction."""
        with self.datastore.transaction(commit=True) as curs:
            if rows:
                curs.executemany(SQL("INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING").format(
                    table=self.commands_table), rows)
            curs.execute(SQL("INSERT INTO {table} VALUES (1) ON CONFLICT DO NOTHING").format(table=self.built_table))

    def select_commands(self, command_ids: Sequence[str]) -> dict[str, CommandRow]:
        """The index rows of ``command_ids`` that are stored (one query)."""
        with self.datastore.get_connection() as connection, connection.cursor() as curs:
            curs.execute(SQL("SELECT {columns} FROM {table} WHERE command_id = ANY(%s)").format(
                columns=SQL(", ").join(Identifier(name) for name in COLUMNS), table=self.commands_table),
                (list(command_ids),))
            return {row["command_id"]: CommandRow(*(row[name] for name in COLUMNS)) for row in curs.fetchall()}

    def changed_since(self, start: int, stop: int) -> dict[UUID, int]:
        """Each aggregate written at log positions ``start``..``stop`` and its highest version
        there (see the SQLite recorder's)."""
        with self.datastore.get_connection() as connection, connection.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT originator_id, MAX(originator_version) AS version FROM {schema}.{table} "
                    "WHERE notification_id BETWEEN %s AND %s GROUP BY originator_id"
                ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name)),
                (start, stop),
            )
            return {row["originator_id"]: row["version"] for row in curs.fetchall()}

    def count_commands(self) -> int:
        """How many command ids the index holds."""
        with self.datastore.get_connection() as connection, connection.cursor() as curs:
            curs.execute(SQL("SELECT count(*) AS found FROM {table}").format(table=self.commands_table))
            row = curs.fetchone()
            return int(row["found"]) if row else 0

    def _insert_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        """First in the insert's transaction: the writers' lock, shared, until the commit
        (clearing/writer_lock.py), unless this save is the exclusive holder's."""
        if kwargs.get(SHARED_LOCK_KWARG):
            curs.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", advisory_key(self.datastore.schema))
        super()._insert_events(curs, stored_events, **kwargs)

    def _insert_stored_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        quiet_since = kwargs.get(QUIET_SINCE_KWARG)
        if quiet_since is not None:  # under the table lock every earlier insert has committed
            self._lock_table(curs)
            curs.execute(self.max_notification_id_statement)
            row = curs.fetchone()
            if row and (row["max"] or 0) > quiet_since:
                raise IntegrityError(f"another process wrote after position {quiet_since}, which this batch started from")
        expected = _unwritten(kwargs.get(READ_SET_KWARG), stored_events)
        if expected:
            self._lock_table(curs)  # the insert below takes it again (a no-op within one transaction)
            curs.execute(
                SQL(
                    "SELECT originator_id, MAX(originator_version) AS version FROM {schema}.{table} "
                    "WHERE originator_id = ANY(%s) GROUP BY originator_id"
                ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name)),
                (list(expected),),
            )
            _refuse_if_moved(expected, {row["originator_id"]: row["version"] for row in curs.fetchall()})
        super()._insert_stored_events(curs, stored_events, **kwargs)
        self._insert_command_rows(curs, kwargs.get(COMMANDS_KWARG))

    def _insert_command_rows(self, curs: Any, rows: Sequence[Any] | None) -> None:
        """The batch's rows of the command index: the last statement before the pipeline's sync.

        Not before the read set is validated: the library catches an exception raised in the
        insert and leaves its transaction block normally, so a refusal raised in Python after a
        statement had run would commit that statement (only a failed statement aborts the
        transaction). Not before the events' insert: a duplicate id must be the pipeline's
        first error, raised at its sync as the library's ``IntegrityError``; a statement queued
        after a failed one raises ``PipelineAborted`` (an ``OperationalError`` the library
        retries and then reports as the store failing). On a cursor of its own: the events'
        cursor returns their positions.
        """
        if rows:
            with curs.connection.cursor() as own:
                own.executemany(SQL("INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, %s)").format(
                    table=self.commands_table), rows)
