"""``clearing projections follow``: one long-running runner keeps the projections current.

Posting commits and returns (ADR 22); this runner follows the notification log and
applies each new page with the projector's own catch-up, so every event is applied
exactly once with the library's tracking records, in the same transaction as the rows
it produced. It can be killed at any point and restarted: it resumes from the tracked
positions. One follower runs per store (``follower_lock``); ``projections catch-up`` and
``post --sync`` may run beside it, serialised by the projection lock.

It polls: neither SQLite nor the library's recorders push new notifications to a reader
in another process, and reading the head is one indexed query. Example: with
``interval=0.2`` an idle follower asks for the head five times a second; a backlog is
applied page after page without sleeping.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from sqlalchemy import text

from clearing.settings import store_env
from clearing.writer_lock import advisory_key, flocked, sidecar
from projections.runner import ProjectionError, Projector
from projections.store import ProjectionStore

FOLLOW_PAGE = 10_000  # events per transaction: short enough for a waiting ``post --sync``
PAUSE_STEP = 0.05
FOLLOWER_LOCK_CLASS = 7202612  # the advisory-lock key's first half; the second names the schema


@dataclass
class Progress:
    """Where a follower is: the position every projection reached, the head it saw."""

    position: int
    head: int
    applied: int
    seconds: float

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)

    @property
    def rate(self) -> float:
        return self.applied / self.seconds if self.seconds > 0 else 0.0


def _refused(where: str) -> ProjectionError:
    return ProjectionError("follower_running", "projections", f"another `clearing projections follow` holds {where}")


@contextmanager
def follower_lock(store: ProjectionStore) -> Iterator[None]:
    """Hold the store's one follower slot for the block, or raise ``follower_running``.

    PostgreSQL: a session advisory lock keyed by the schema, on a connection kept open (it
    is released when the process dies). SQLite: an exclusive ``flock`` on
    ``<file>.follow.lock`` beside the store (released by the kernel when the process dies).
    """
    if store.dialect == "postgresql":
        schema = store_env(store.db).get("POSTGRES_SCHEMA") or "public"
        key = dict(zip(("a", "b"), advisory_key(schema, FOLLOWER_LOCK_CLASS), strict=True))
        # autocommit: a session lock outlives transactions, and an idle transaction held for
        # the follower's life could be ended by the server's idle_in_transaction_session_timeout
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            if not connection.execute(text("SELECT pg_try_advisory_lock(:a, :b)"), key).scalar():
                raise _refused(f"the follower lock of schema {schema}")
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:a, :b)"), key)
        return
    if store.db == ":memory:":
        yield
        return
    lock_path = sidecar(store.db, "follow.lock")
    with ExitStack() as held:
        try:
            held.enter_context(flocked(lock_path, fcntl.LOCK_EX | fcntl.LOCK_NB))
        except BlockingIOError:
            raise _refused(str(lock_path)) from None
        yield


class _Stopped(Exception):
    """Raised between two committed pages when the follower was asked to stop."""


class Follower:
    """Applies the log to the projections until stopped (or idle for ``max_idle`` seconds)."""

    def __init__(self, projector: Projector, interval: float = 0.2, max_idle: float | None = None,
                 page: int = FOLLOW_PAGE) -> None:
        self.projector = projector
        self.interval = interval
        self.max_idle = max_idle
        self.page = page
        self.stopping = False  # a plain flag: a signal handler may set it at any moment
        self.started = time.monotonic()
        self.start_position: int | None = None
        self.reached = 0
        self.head = 0

    def stop(self) -> None:
        """Ask the loop to end after the page it is applying (signal handlers call this: it
        only sets a flag, never takes a lock the interrupted thread may hold)."""
        self.stopping = True

    def progress(self) -> Progress:
        """Where the follower is; ``applied`` counts log positions passed since it started."""
        start = self.start_position if self.start_position is not None else self.reached
        return Progress(self.reached, self.head, self.reached - start, time.monotonic() - self.started)

    def begin(self) -> int:
        """The position the projections start from (the least of their tracked positions)."""
        self.start_position = self.reached = self.projector.position()
        self.head = self.projector.app.recorder.max_notification_id() or 0
        return self.start_position

    def run(self, report: Callable[[Progress], None] | None = None, report_every: float = 5.0) -> Progress:
        """Follow until stopped; ``report`` is called at most every ``report_every`` seconds."""
        if self.start_position is None:
            self.begin()
        last_report = idle_since = time.monotonic()
        while not self.stopping:
            try:
                read = self.projector.catch_up(page=self.page, progress=self._note)
            except _Stopped:
                break
            now = time.monotonic()
            if report is not None and now - last_report >= report_every:
                report(self.progress())
                last_report = now
            if read:
                idle_since = now
                continue
            if self.max_idle is not None and now - idle_since >= self.max_idle:
                break
            self._pause()
        return self.progress()

    def _pause(self) -> None:
        """Sleep ``interval`` seconds, in steps of at most 50 ms so a stop is seen soon."""
        deadline = time.monotonic() + self.interval
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, PAUSE_STEP))

    def _note(self, reached: int, head: int) -> None:
        """After each committed page: where it reached; stop here if asked to."""
        self.reached, self.head = reached, head
        if self.stopping and reached < head:
            raise _Stopped
