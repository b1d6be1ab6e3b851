"""The writers' lock (clearing/writer_lock.py): a batch refused ``OPTIMISTIC_ATTEMPTS`` time(s)
is decided and saved holding it exclusively, and an exclusive holder keeps every other
writer's save waiting."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from decimal import Decimal

from eventsourcing.persistence import IntegrityError

from clearing import application
from clearing.application import save_in_order
from clearing.composition import real_parts
from clearing.settings import store_env
from clearing.writer_lock import WriterLock
from tests.ledger import Ledger, accounts_with


class RecordingLock(WriterLock):
    """The writer lock's own shared/exclusive logic over modes that are recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[str] = []

    @contextmanager
    def _mode(self, mode: str):
        self.held.append(mode)
        try:
            yield
        finally:
            self.held.remove(mode)

    def _shared(self):
        return self._mode("shared")

    def _exclusive(self):
        return self._mode("exclusive")


def test_a_refused_batch_is_serialised_and_applied(sqlite_db):
    ledger = Ledger(store_env(sqlite_db))
    ledger.post_ok(accounts_with(("alice", "10")))
    lock = RecordingLock()
    modes: list[tuple[str, ...]] = []

    def refused_three_times(app, events):
        modes.append(tuple(lock.held))
        if len(modes) <= application.OPTIMISTIC_ATTEMPTS:
            raise IntegrityError("another writer committed first")
        return save_in_order(app, events)

    ledger.app.writer_lock = lock  # type: ignore[assignment]
    ledger.app.parts = real_parts().replace(save_batch=refused_three_times, backoff=lambda attempt: 0)
    (outcome,) = ledger.post('{"type":"deposit","id":"d","account":"alice","amount":"5"}')
    assert outcome.status == "applied"
    assert modes == [("shared",)] * application.OPTIMISTIC_ATTEMPTS + [("exclusive",)]
    assert (ledger.app.conflicts_retried, ledger.app.batches_serialised) == (application.OPTIMISTIC_ATTEMPTS, 1)
    assert ledger.collateral("alice") == Decimal(15)


def test_an_exclusive_holder_keeps_another_writers_save_waiting(store_db):
    holder, other = Ledger(store_env(store_db)), Ledger(store_env(store_db))
    holder.post_ok(accounts_with(("alice", "10")))
    saved_at: list[float] = []

    def post_other() -> None:
        other.post_ok('{"type":"deposit","id":"waits","account":"alice","amount":"1"}')
        saved_at.append(time.monotonic())

    with holder.app.writer_lock.exclusive():
        thread = threading.Thread(target=post_other)
        thread.start()
        time.sleep(0.5)
        released_at = time.monotonic()
        assert not saved_at, "another writer committed while the exclusive lock was held"
    thread.join(timeout=60)
    assert saved_at and saved_at[0] >= released_at
    assert holder.collateral("alice") == Decimal(11)


def test_a_postgres_pool_of_one_connection_still_posts(postgres_db):
    """With a pool of one the lock opens a connection of its own: the save's pool connection
    is not waited for twice (found by review: a pool of one timed out)."""
    ledger = Ledger({**store_env(postgres_db), "POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "0",
                     "POSTGRES_CONN_MAX_AGE": "60"})
    ledger.post_ok(accounts_with(("alice", "10")))
    assert ledger.collateral("alice") == Decimal(10)
    ledger.app.close()
