"""The writers' lock: how a batch that keeps conflicting is serialised instead of failing.

Writers decide optimistically: each decides its batch on the state it holds and the store
refuses a stale commit (ADR 12). Under heavy contention a writer may lose that race again
and again. After ``OPTIMISTIC_ATTEMPTS`` refusals it takes this lock **exclusively** for
deciding and saving the batch, and every writer takes it **shared** around each save. So
while one writer holds it exclusively no other batch commits, and its batch, decided on
the state read after the lock was granted, cannot be refused by another writer's commit.
Example: eight processes post to one account; a process refused once waits for the lock,
decides on fresh state, and commits at the first attempt.

* PostgreSQL: advisory locks keyed by the store's schema: shared, a transaction lock the
  save takes in its own transaction; exclusive, a session lock on a connection of the
  library's pool, or of its own when the pool cannot lend two (released by the server if
  the process dies).
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

from clearing.recorders import is_postgres_factory

WRITER_LOCK_CLASS = 7202613  # the advisory key's first half; the second names the schema


def sidecar(db_path: str, suffix: str) -> Path:
    """A file beside an SQLite store: ``sidecar("ledger.db", "writer.lock")`` is ``ledger.db.writer.lock``."""
    path = Path(db_path).expanduser().resolve()
    return path.with_name(f"{path.name}.{suffix}")


@contextmanager
def flocked(path: Path, mode: int) -> Iterator[None]:
    """``flock(mode)`` on ``path`` for the block (created if absent); closing releases it.
    With ``LOCK_NB`` a lock held elsewhere raises ``BlockingIOError``."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, mode)
        yield
    finally:
        os.close(descriptor)


def advisory_key(schema: str, lock_class: int = WRITER_LOCK_CLASS) -> tuple[int, int]:
    """A PostgreSQL advisory-lock key of one schema: (class, signed crc32 of the name)."""
    return lock_class, zlib.crc32((schema or "public").encode()) - 2**31


class WriterLock:
    """Shared around every save, exclusive around a serialised batch; a save of the
    exclusive holder takes nothing more (another handle on the lock would wait for it)."""

    shares_in_transaction = False  # True: the recorder takes the shared lock in the insert's transaction

    def __init__(self) -> None:
        self.exclusive_held = False

    def shared(self) -> ContextManager[None]:
        return nullcontext() if self.exclusive_held else self._shared()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._exclusive():
            self.exclusive_held = True
            try:
                yield
            finally:
                self.exclusive_held = False

    def save_takes_shared(self) -> bool:
        """Whether the next save's own transaction must take the lock shared (PostgreSQL)."""
        return self.shares_in_transaction and not self.exclusive_held

    def _shared(self) -> ContextManager[None]:
        return nullcontext()

    def _exclusive(self) -> ContextManager[None]:
        return nullcontext()


class FileWriterLock(WriterLock):
    """``flock`` on ``<file>.writer.lock`` beside an SQLite store."""

    def __init__(self, db_path: str) -> None:
        super().__init__()
        self.path = sidecar(db_path, "writer.lock")

    def _shared(self) -> ContextManager[None]:
        return flocked(self.path, fcntl.LOCK_SH)

    def _exclusive(self) -> ContextManager[None]:
        return flocked(self.path, fcntl.LOCK_EX)


class AdvisoryWriterLock(WriterLock):
    """A PostgreSQL advisory lock keyed by schema.

    *Shared*: taken by the save itself, as a transaction lock inside the insert's own
    transaction (``ClearingPostgresRecorder``, told by ``save_takes_shared``), so a save
    needs no connection more than before. *Exclusive*: a session lock held across deciding
    and saving, on a connection of the library's pool when the pool can lend two at once
    (the save needs one of its own while the lock is held), else on a connection opened for
    that use and closed after unlocking.
    """

    shares_in_transaction = True

    def __init__(self, datastore: Any) -> None:
        super().__init__()
        self.datastore = datastore
        self.kwargs = {key: value for key, value in datastore.pool.kwargs.items() if key != "row_factory"}
        self.pooled = datastore.pool.max_size >= 2
        self.lock_class, self.key = advisory_key(datastore.schema)

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        if self.pooled:
            with self.datastore.get_connection() as connection:
                yield connection
            return
        import psycopg

        try:
            connection = psycopg.connect(**self.kwargs, autocommit=True)
        except psycopg.Error as error:
            raise OperationalError(str(error)) from error
        with connection:
            yield connection

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        with self._connection() as connection:
            connection.execute("SELECT pg_advisory_lock(%s, %s)", (self.lock_class, self.key))
            try:
                yield
            finally:
                connection.execute("SELECT pg_advisory_unlock(%s, %s)", (self.lock_class, self.key))



def writer_lock_of(factory: Any) -> WriterLock:
    """The lock for the application's store (its persistence factory)."""
    if is_postgres_factory(factory):
        return AdvisoryWriterLock(factory.datastore)
    sqlite = sys.modules.get("eventsourcing.sqlite")
    if sqlite is not None and isinstance(factory, sqlite.SQLiteFactory):
        pool = factory.datastore.pool
        if not pool.is_sqlite_memory_mode:
            return FileWriterLock(pool.db_name)
    return WriterLock()
