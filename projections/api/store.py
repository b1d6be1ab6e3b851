"""The server's one read-only view of a store: the log, the projection tables, the tokens.

Opened as every read command opens it (``store_env(..., read_only=True)``): nothing is
created or written, so a read-only SQLite copy or a PostgreSQL role granted only ``SELECT``
serves. Connections come from the library's and SQLAlchemy's pools, shared by the
server's worker threads.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from clearing.errors import NotFoundError
from clearing.settings import is_postgres, store_env
from projections.access import TokenRegistry

LAG_SECONDS = 0.25
REPORTS_KEPT = 64


class ReadStore:
    """The application, the projection tables and the token registry, opened read-only."""

    def __init__(self, db: str) -> None:
        from clearing.application import open_application
        from projections.read import Views
        from projections.runner import Projector
        from projections.store import ProjectionStore

        if not is_postgres(db) and db != ":memory:" and not Path(db).exists():
            raise NotFoundError("store_not_found", "db", f"no event store at {db} (use --db or CLEARING_DB)")
        if is_postgres(db):
            from clearing.pg_probe import probe

            probe(store_env(db))  # the cause of a refusal (auth, database, host), before a pool hides it
        self.db = db
        self.app = open_application(store_env(db, read_only=True))
        self.projection_store = ProjectionStore(db, read_only=True)
        self.projector = Projector(self.app, self.projection_store)
        self.tokens = TokenRegistry(self.app)
        self._views = Views(self.projection_store)
        self._lock = threading.Lock()
        self._policies = SharedPolicies(self.app)
        self._lag: tuple[float, dict[str, int]] | None = None
        self._reports: dict[tuple[Any, ...], Any] = {}
        self._building: dict[tuple[Any, ...], threading.Lock] = {}

    def close(self) -> None:
        self.projection_store.close()
        self.app.close()

    def report(self, key: tuple[Any, ...], build: Any) -> Any:
        """``build()`` once per ``key`` (a report's name, day, format, options and the
        projections' position: equal positions mean equal tables, so equal bytes), the last
        ``REPORTS_KEPT`` kept; concurrent requests for one key wait for the one building it."""
        with self._lock:
            found = self._reports.get(key)
            if found is not None:
                return found
            building = self._building.setdefault(key, threading.Lock())
        with building:
            with self._lock:
                found = self._reports.get(key)
            if found is None:
                found = build()
                with self._lock:
                    while len(self._reports) >= REPORTS_KEPT:
                        self._reports.pop(next(iter(self._reports)))
                    self._reports[key] = found
                    self._building.pop(key, None)
            return found

    def position(self) -> int:
        """The projections' position, read now (not the ``lag`` kept for a moment)."""
        return self._read_lag()["position"]

    def policies(self) -> Any:
        """The loss policies in force, read from the log once and then only what is new (the
        live tables' position only grows); a replay as of a past point gets its own."""
        return self._policies

    def head(self) -> int:
        return int(self.app.recorder.max_notification_id() or 0)

    def views(self) -> Any:
        """The projection tables, refusing ``projection_missing`` / ``projection_outdated``."""
        from projections.runner import READ_MODELS

        with self._lock:  # the projector's catalogue checks are not thread-safe
            self.projector.require_built(READ_MODELS)
            self.projector.check_schema()
        return self._views

    def lag(self) -> dict[str, int]:
        """How far the projections are behind the log: ``position`` (the least of the read
        models'), ``head`` and ``behind``; read at most every ``LAG_SECONDS`` (it costs a
        query per read model, as much as a small view), so a document's ``lag`` may be that
        much older than its rows."""
        now = time.monotonic()
        cached = self._lag
        if cached is not None and now - cached[0] < LAG_SECONDS:
            return dict(cached[1])
        found = self._read_lag()
        self._lag = (now, found)
        return dict(found)

    def _read_lag(self) -> dict[str, int]:
        from projections.runner import READ_MODELS

        views = self.views()
        head = self.head()
        with views.reading() as connection:
            position = min(views.position(name, connection) for name in READ_MODELS)
        return {"position": position, "head": head, "behind": max(0, head - position)}


class SharedPolicies:
    """``projections.queries.LossPolicies`` shared by the server's threads: one reader of the
    parameter events, under a lock, so a request reads only the events since the last one."""

    def __init__(self, app: Any) -> None:
        from projections.queries import LossPolicies

        self._policies = LossPolicies(app)
        self._lock = threading.Lock()

    def in_force(self, market: str, position: int) -> str:
        with self._lock:
            return self._policies.in_force(market, position)
