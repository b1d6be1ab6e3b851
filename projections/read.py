"""Read access to the live generation of the projection tables, for queries and reports."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Table, func, select

from projections.runner import APPLICATION, BY_NAME, ProjectionError
from projections.store import ProjectionStore


class Views:
    """The live tables of every projection in ``store``, read in one snapshot.

    ``with views.reading() as connection`` opens one read transaction, so a report built
    from several tables sees them all at the same log position.
    """

    def __init__(self, store: ProjectionStore) -> None:
        self.store = store
        # figures derived from many rows (a market's ADL ranking), keyed by the projection's
        # tracked position they were read at: equal positions mean equal tables
        self.memo: dict[Any, Any] = {}

    def remembered(self, key: tuple[Any, ...], position: int, compute: Any) -> Any:
        """``compute()`` once per ``key`` while the projection stays at ``position``."""
        if self.memo.get("position") != position:
            self.memo = {"position": position}
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]

    def table(self, projection: str, name: str) -> Table:
        generation = self.store.generation(projection)
        if generation is None:
            raise ProjectionError("projection_missing", projection,
                                  f"projection {projection} has not been built; run `clearing projections rebuild`")
        spec = next(spec for spec in BY_NAME[projection].SPECS if spec.name == name)
        return self.store.table(spec.name, spec.columns, generation)

    def position(self, projection: str, connection: Any) -> int:
        """The projection's tracked log position, read in the caller's transaction."""
        generation = self.store.generation(projection, connection)
        if generation is None:
            raise ProjectionError("projection_missing", projection, f"projection {projection} has not been built")
        recorder = self.store.tracker(projection, generation)
        table = recorder.tracking_table
        found = connection.execute(select(func.max(table.c.notification_id))
                                   .where(table.c.application_name == APPLICATION)).scalar()
        return int(found or 0)

    @contextmanager
    def reading(self) -> Iterator[Any]:
        """One read transaction (SQLite needs an explicit BEGIN for a stable snapshot)."""
        with self.store.engine.connect() as connection:
            if self.store.dialect == "sqlite":
                connection.exec_driver_sql("BEGIN")
            try:
                yield connection
            finally:
                connection.rollback()
