"""The writers' lock: how a batch that keeps conflicting is serialised instead of failing.

Writers decide optimistically: each decides its batch on the state it holds and the store
refuses a stale commit (ADR 12). Under heavy contention a writer may lose that race again
and again. After ``OPTIMISTIC_ATTEMPTS`` refusals it takes this lock **exclusively** for
deciding and saving the batch, and every writer takes it **shared** around each save. So
while one writer holds it exclusively no other batch commits, and its batch, decided on
the state read after the lock was granted, cannot be refused by another writer's commit.
Example: eight processes post to one account; a process refused once waits for the lock,
decides on fresh state, and commits at the first attempt.

* PostgreSQL: a session advisory lock (``pg_advisory_lock`` / ``..._shared``) keyed by the
  store's schema, on a connection of its own (released by the server if the process dies).
* SQLite: ``flock`` on ``<file>.writer.lock`` beside the store (released by the kernel
  if the process dies).
* An in-memory store has one process: nothing to serialise.
"""

from __future__ import annotations

import fcntl
import os
import sys
import zlib
from collections.abc import Iterator
from contextlib import AbstractContextManager as ContextManager
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from eventsourcing.persistence import OperationalError

WRITER_LOCK_CLASS = 7202613  # the advisory key's first half; the second names the schema


class WriterLock:
    """Shared around every save, exclusive around a serialised batch."""

    def shared(self) -> ContextManager[None]:
        return nullcontext()

    def exclusive(self) -> ContextManager[None]:
        return nullcontext()

    def close(self) -> None:
        """Give back what the lock holds open (the PostgreSQL one's connection)."""


class FileWriterLock(WriterLock):
    """``flock`` on a file beside an SQLite store."""

    def __init__(self, db_path: str) -> None:
        path = Path(db_path).expanduser().resolve()
        self.path = path.with_name(path.name + ".writer.lock")

    @contextmanager
    def _held(self, mode: int) -> Iterator[None]:
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, mode)
            yield
        finally:
            os.close(descriptor)  # closing releases the lock

    def shared(self) -> ContextManager[None]:
        return self._held(fcntl.LOCK_SH)

    def exclusive(self) -> ContextManager[None]:
        return self._held(fcntl.LOCK_EX)


class AdvisoryWriterLock(WriterLock):
    """A PostgreSQL session advisory lock keyed by schema, on a connection of its own.

    Not a pool connection: the save needs one of those while the lock is held, and a pool
    of one would then wait for itself. The connection is opened on first use, in
    autocommit (a session lock outlives transactions; an idle transaction could be ended by
    the server's ``idle_in_transaction_session_timeout``), and closed with the application.
    """

    def __init__(self, datastore: Any) -> None:
        self.kwargs = {key: value for key, value in datastore.pool.kwargs.items() if key != "row_factory"}
        schema = datastore.schema or "public"
        self.key = zlib.crc32(schema.encode()) - 2**31  # a signed int4
        self._connection: Any = None

    def _connect(self) -> Any:
        import psycopg

        if self._connection is None or self._connection.closed:
            try:
                self._connection = psycopg.connect(**self.kwargs, autocommit=True)
            except psycopg.Error as error:
                raise OperationalError(str(error)) from error
        return self._connection

    def _execute(self, statement: str) -> None:
        import psycopg

        try:
            self._connect().execute(statement, (WRITER_LOCK_CLASS, self.key))
        except psycopg.Error as error:
            self.close()  # the session (and any lock it held) is gone or unusable
            raise OperationalError(str(error)) from error

    @contextmanager
    def _held(self, suffix: str) -> Iterator[None]:
        self._execute(f"SELECT pg_advisory_lock{suffix}(%s, %s)")
        try:
            yield
        finally:
            if self._connection is not None and not self._connection.closed:
                self._execute(f"SELECT pg_advisory_unlock{suffix}(%s, %s)")

    def shared(self) -> ContextManager[None]:
        return self._held("_shared")

    def exclusive(self) -> ContextManager[None]:
        return self._held("")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def writer_lock_of(factory: Any) -> WriterLock:
    """The lock for the application's store (its persistence factory)."""
    postgres = sys.modules.get("eventsourcing.postgres")
    if postgres is not None and isinstance(factory, postgres.PostgresFactory):
        return AdvisoryWriterLock(factory.datastore)
    sqlite = sys.modules.get("eventsourcing.sqlite")
    if sqlite is not None and isinstance(factory, sqlite.SQLiteFactory):
        pool = factory.datastore.pool
        if not pool.is_sqlite_memory_mode:
            return FileWriterLock(pool.db_name)
    return WriterLock()
