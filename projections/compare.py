"""Projection tables compared row by row: a rebuild against the stored, live tables."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select

from clearing.audit.log import CheckFailed, LogPage
from clearing.money import fmt
from projections import checkpoints
from projections.runner import READ_MODELS, Projector
from projections.store import ProjectionStore


def canonical_rows(connection: Any, table: Any, key: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """All rows as tuples of canonical values, sorted by key in Python (collation-free)."""
    names = [column.name for column in table.columns]
    rows = [tuple(_canonical(row[name]) for name in names) for row in connection.execute(select(table)).mappings()]
    index = [names.index(name) for name in key]
    rows.sort(key=lambda row: tuple(row[i] for i in index))
    return rows


def _canonical(value: Any) -> Any:
    return fmt(value) if isinstance(value, Decimal) else value


def first_difference(stored: Projector, rebuilt: Projector, name: str) -> str | None:
    """``None`` when every table of ``name`` holds the same rows in both; else what differs."""
    if stored.outdated.get(name):
        return f"built by an older version: no {', '.join(stored.outdated[name])} (run `clearing projections rebuild {name}`)"
    projection = stored.projections[name]
    other = rebuilt.projections[name]
    with stored.store.engine.connect() as left, rebuilt.store.engine.connect() as right:
        labels = _stored_checkpoints(left, projection.tables) if name == "margin" else None
        for spec in projection.SPECS:
            ours = canonical_rows(left, projection.tables[spec.name], spec.key)
            theirs = canonical_rows(right, other.tables[spec.name], spec.key)
            if labels is not None and spec.name in checkpoints.TABLES:
                theirs = [row for row in theirs if row[0] in labels]
            if ours == theirs:
                continue
            for index, (a, b) in enumerate(zip(ours, theirs, strict=False)):
                if a != b:
                    return f"{spec.name}: row {index + 1} stored {a} but rebuilt {b}"
            return f"{spec.name}: {len(ours)} rows stored but {len(theirs)} rebuilt"
    return None


def _stored_checkpoints(connection: Any, tables: dict[str, Any]) -> set[Any]:
    """The checkpoints the stored margin tables hold (``projections.checkpoints``).

    A store whose margin projection was built before checkpoints has none for the log
    before its upgrade (they start at the next multiple its writers reach), while a build
    from event 1 has them all: only the stored ones are compared, each of them whole, so
    such a store verifies without a rebuild. A checkpoint removed whole costs a longer
    replay for ``--as-of``, never a wrong answer.
    """
    index = tables[checkpoints.INDEX]
    return {row[0] for row in connection.execute(select(index.c.position))}


class ProjectionCheck:
    """``audit verify``'s ``projections`` check as a consumer of the one read of the log.

    Rule: every read model rebuilt from event 1 into a scratch in-memory store, from the
    pages the verify pass read and decoded, equals the stored tables row for row at the
    same head. The stored tables must be at the head already: verify only reads, so a
    projection behind the log is reported (``projections_behind``), not caught up.
    """

    name = "projections"

    def __init__(self, live: Projector, head: int) -> None:
        self.live = live
        self.head = head
        positions = {s.name: s.position for s in live.status() if s.name in READ_MODELS}
        behind = ", ".join(f"{name} {'not built' if name in live.missing else f'at {position}'}"
                           for name, position in positions.items() if position != head or name in live.missing)
        if behind:
            raise CheckFailed(f"[projections_behind] head is {head} but {behind}; run `clearing projections catch-up` "
                              "(verify only reads)")
        self.scratch = Projector(live.app, ProjectionStore(":memory:"), READ_MODELS)

    def consume(self, page: LogPage) -> None:
        page.require_readable()
        self.scratch.feed(page.notifications, page.events)

    def finish(self, head: int) -> str:
        for name in READ_MODELS:
            difference = first_difference(self.live, self.scratch, name)
            if difference is not None:
                raise CheckFailed(f"[projection_differs] {name}: {difference}")
        return f"{len(READ_MODELS)} projections rebuilt to position {head} equal the stored tables"
