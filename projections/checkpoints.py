"""Checkpoints of the margin projection: its state every ``EVERY`` log positions.

``--as-of`` needs the margin tables as they stood at a past log position P. Replaying the
log from position 1 up to P costs time in proportion to P (97 s at 970,000 events); from
a checkpoint it costs the tail after the checkpoint only, at most ``EVERY`` positions.

Rule: when the first event the projection reads beyond a multiple of ``EVERY`` arrives,
the state then (every event up to that multiple applied, nothing after it) is copied, in
the projection's own transaction, into the checkpoint tables labelled with the multiple:
accounts, positions and markets whole, the flows of the current business day (earlier
days' flows are final: a back-dated event is booked on the current day), and one row of
``margin_checkpoints`` with the business clock. Example, ``EVERY`` 40,000: events at
39,998 and 40,003 -> before 40,003 applies, the state is copied as checkpoint 40,000.

Because the label is a multiple of ``EVERY`` and the copy is made before the first event
past it, however the log is paged, a rebuild, a replay and ``audit verify``'s scratch
build all write the same checkpoint rows as the live projection (verify compares them
like every other table). Changing ``EVERY`` changes those rows: it is part of the margin
projection's layout and needs ``clearing projections rebuild margin``.

Seeding (``projections.replay.seed_from_checkpoint``): a fresh store's margin tables are
filled with checkpoint C's rows, the clock, and (``history``) the live store's flows and
end-of-day rows of the days before C's business day; its tracking record is set at C.
Catching it up to P then gives exactly the tables a replay from position 1 gives (without
the history, exactly its state tables): ``tests/integration/test_checkpoints.py`` checks
every cut.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Integer, String, Table, inspect, literal, select
from sqlalchemy.sql import insert

from projections.base import TableSpec

#: log positions between two checkpoints: a seeded ``--as-of`` replays at most this many
EVERY = 40_000

#: the state tables copied whole at a checkpoint, and the flows table (its current day)
COPIED = ("margin_accounts", "margin_positions", "margin_markets")
FLOWS = "margin_flows"
#: append tables whose rows of the days before the checkpoint's day are final
BY_DAY = ("margin_eod_accounts", "margin_eod_positions", "margin_eod_markets")
INDEX = "margin_checkpoints"
#: every checkpoint table; the first column of each is the checkpoint's label
TABLES = frozenset({*(f"margin_cp_{name.removeprefix('margin_')}" for name in (*COPIED, FLOWS)), INDEX})


def copy_name(table: str) -> str:
    """``margin_accounts`` -> ``margin_cp_accounts``."""
    return table.replace("margin_", "margin_cp_", 1)


def specs(state: dict[str, TableSpec]) -> tuple[TableSpec, ...]:
    """The checkpoint tables: a copy of each copied state table (and flows) keyed by
    ``checkpoint`` first, and the index of checkpoints with their business clock."""
    copies = tuple(
        TableSpec(copy_name(name), [Column("checkpoint", Integer, primary_key=True, autoincrement=False),
                                    *[column._copy() for column in state[name].columns]],
                  ("checkpoint", *state[name].key), kind="append")
        for name in (*COPIED, FLOWS))
    index = TableSpec(INDEX, [Column("position", Integer, primary_key=True, autoincrement=False),
                              Column("day", String(10), nullable=False),
                              Column("clock_position", Integer, nullable=False)], ("position",), kind="append")
    return (*copies, index)


def label(position: int) -> int:
    """The multiple of ``EVERY`` just before ``position``: 40,003 -> 40,000; 40,000 -> 0."""
    return ((position - 1) // EVERY) * EVERY


def due_after(position: int) -> int:
    """The multiple of ``EVERY`` at or above ``position`` (a projection at 40,000 has
    checkpoint 40,000 due when the next event arrives)."""
    return -(-position // EVERY) * EVERY


def write(session: Any, tables: dict[str, Table], checkpoint: int, clock: dict[str, Any]) -> None:
    """Copy the flushed state tables into checkpoint ``checkpoint`` (server-side copies)."""
    for name in (*COPIED, FLOWS):
        source, target = tables[name], tables[copy_name(name)]
        query = select(literal(checkpoint).label("checkpoint"), *source.c)
        if name == FLOWS:
            query = query.where(source.c.day == clock["day"])
        session.execute(insert(target).from_select(["checkpoint", *[c.name for c in source.c]], query))
    session.execute(insert(tables[INDEX]).values(position=checkpoint, day=clock["day"],
                                                 clock_position=clock["position"]))


@dataclass(frozen=True)
class Checkpoint:
    position: int
    day: str
    clock_position: int


def latest(connection: Any, tables: dict[str, Table], until: int) -> Checkpoint | None:
    """The last checkpoint at or before ``until``; None when there is none (or the store
    was built before checkpoints and cannot be given their tables, being read-only)."""
    index = tables[INDEX]
    if not inspect(connection).has_table(index.name):
        return None
    row = connection.execute(select(index).where(index.c.position <= until)
                             .order_by(index.c.position.desc()).limit(1)).mappings().first()
    return None if row is None else Checkpoint(row["position"], row["day"], row["clock_position"])


def seed_rows(connection: Any, tables: dict[str, Table], checkpoint: Checkpoint,
              history: bool = True) -> dict[str, list[dict[str, Any]]]:
    """The rows of each margin table at ``checkpoint``, read from the live store.

    ``history=False`` leaves out the closed days' flows and end-of-day rows: no handler
    reads them again (a closed day never changes), so the state tables, the clock and
    every later row come out the same, and a query as of a point (which reads the state
    tables) is served without copying every account's row of every past day.
    """
    rows: dict[str, list[dict[str, Any]]] = {}
    for name in (*COPIED, FLOWS):
        copy = tables[copy_name(name)]
        found = connection.execute(select(copy).where(copy.c.checkpoint == checkpoint.position)).mappings()
        rows[name] = [{key: value for key, value in row.items() if key != "checkpoint"} for row in found]
    rows["margin_clock"] = [{"id": 1, "day": checkpoint.day, "position": checkpoint.clock_position}]
    if not history:
        return rows
    flows = tables[FLOWS]
    rows[FLOWS] += [dict(row) for row in connection.execute(
        select(flows).where(flows.c.day < checkpoint.day)).mappings()]
    for name in BY_DAY:
        table = tables[name]
        rows[name] = [dict(row) for row in connection.execute(select(table).where(table.c.day < checkpoint.day)).mappings()]
    return rows
