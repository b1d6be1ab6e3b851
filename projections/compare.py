"""Projection tables compared row by row: a rebuild against the stored, live tables."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select

from clearing.money import fmt
from projections.runner import Projector


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
        for spec in projection.SPECS:
            ours = canonical_rows(left, projection.tables[spec.name], spec.key)
            theirs = canonical_rows(right, other.tables[spec.name], spec.key)
            if ours == theirs:
                continue
            for index, (a, b) in enumerate(zip(ours, theirs, strict=False)):
                if a != b:
                    return f"{spec.name}: row {index + 1} stored {a} but rebuilt {b}"
            return f"{spec.name}: {len(ours)} rows stored but {len(theirs)} rebuilt"
    return None
