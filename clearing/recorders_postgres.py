"""The PostgreSQL recorder with read-set validation (``clearing.recorders`` has the rule).

Its own module so that psycopg and the library's PostgreSQL module are imported only for a
PostgreSQL store: ``clearing.recorders.RECORDER_TOPICS`` names it by topic, and the library
imports it when it builds a PostgreSQL application.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import SQL, Identifier

from clearing.recorders import READ_SET_KWARG, SHARED_LOCK_KWARG, _refuse_if_moved, _unwritten
from clearing.writer_lock import advisory_key


class ClearingPostgresRecorder(PostgresApplicationRecorder):
    """PostgreSQL: take the table lock, validate the read set, then insert."""

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

    def _insert_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        """First in the insert's transaction: the writers' lock, shared, until the commit
        (clearing/writer_lock.py), unless this save is the exclusive holder's."""
        if kwargs.get(SHARED_LOCK_KWARG):
            curs.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", advisory_key(self.datastore.schema))
        super()._insert_events(curs, stored_events, **kwargs)

    def _insert_stored_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
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
