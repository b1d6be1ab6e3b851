"""Tampering with the event log in SQL is caught by ``verify_chain``, at the exact position.

A log of a few hundred events (the demo scenario: markets, deposits, prices, trades) is
written by the application; its chain (``stored``) and digest are recorded; then single
mutations are applied straight to the table with a seeded generator: a byte of a state
(breaking its JSON or keeping it valid), an aggregate version, a deleted row, a copied row
inserted (at the end, and on PostgreSQL in a gap in the middle), the states and topics of
two rows swapped, two rows' positions swapped. Each mutation starts from the clean log: a
fresh copy of the SQLite file, or on PostgreSQL the touched rows restored afterwards (and
the restored log verified clean again).

The SQLite table is the library's ``stored_events`` (position = rowid); PostgreSQL's is
``clearing_events`` in the test's schema (position = ``notification_id``).
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from clearing.application import ClearingApplication
from clearing.audit.chain import ChainBreak, Digest, digest, iter_chain, verify_chain
from clearing.settings import store_env
from cli.demo import scenario
from tests.ledger import Ledger

SQLITE_MUTATIONS = 240
POSTGRES_MUTATIONS = 36
DIGEST_CODES = {"digest_mismatch", "log_truncated", "version_gap"}


@dataclass(frozen=True)
class Row:
    position: int
    originator_id: Any  # as the driver returns it (hex text on SQLite, UUID on PostgreSQL)
    originator_version: int
    topic: str
    state: bytes


class Table:
    """The events table of one store, reached with plain SQL (one dialect difference)."""

    def __init__(self, connection: Any, name: str, position: str, mark: str) -> None:
        self.connection, self.name, self.position, self.mark = connection, name, position, mark

    def sql(self, statement: str, *params: Any) -> Any:
        cursor = self.connection.execute(statement.replace("?", self.mark), params)
        return cursor

    def rows(self) -> list[Row]:
        found = self.sql(f"SELECT {self.position}, originator_id, originator_version, topic, state "
                         f"FROM {self.name} ORDER BY {self.position}").fetchall()
        return [Row(p, i, v, t, bytes(s)) for p, i, v, t, s in found]

    def update(self, position: int, **values: Any) -> None:
        assignments = ", ".join(f"{column} = ?" for column in values)
        self.sql(f"UPDATE {self.name} SET {assignments} WHERE {self.position} = ?", *values.values(), position)

    def delete(self, position: int) -> None:
        self.sql(f"DELETE FROM {self.name} WHERE {self.position} = ?", position)

    def insert(self, row: Row) -> None:
        self.sql(f"INSERT INTO {self.name} ({self.position}, originator_id, originator_version, topic, state) "
                 "VALUES (?, ?, ?, ?, ?)", row.position, row.originator_id, row.originator_version, row.topic, row.state)

    def move(self, source: int, target: int) -> None:
        self.sql(f"UPDATE {self.name} SET {self.position} = ? WHERE {self.position} = ?", target, source)

    def commit(self) -> None:
        if not getattr(self.connection, "autocommit", False):
            self.connection.commit()


@dataclass(frozen=True)
class Mutation:
    kind: str
    first: int  # the first altered log position
    expected: tuple[int, str]  # what verify_chain(stored=...) must say
    touched: tuple[int, ...]  # positions to restore afterwards
    versions_alone: tuple[int, str] | None = None  # what verify_chain() must say, when it can tell


@dataclass(frozen=True)
class Log:
    """The clean log: its rows, recorded chain and digest."""

    rows: list[Row]
    stored: list[tuple[int, bytes]]
    digest: Digest

    def later_of_aggregate(self, row: Row) -> int | None:
        return next((r.position for r in self.rows if r.position > row.position and r.originator_id == row.originator_id), None)

    def last_version(self, row: Row) -> int:
        return max(r.originator_version for r in self.rows if r.originator_id == row.originator_id)

    def free_middle_positions(self) -> list[int]:
        taken = {r.position for r in self.rows}
        return [p for p in range(self.rows[0].position + 1, self.rows[-1].position) if p not in taken]


def _pick(rng: random.Random, log: Log) -> Row:
    return rng.choice(log.rows)


def state_byte(rng: random.Random, table: Table, log: Log) -> Mutation:
    """One byte of a state replaced by any other byte (usually no longer valid JSON)."""
    row = _pick(rng, log)
    index = rng.randrange(len(row.state))
    byte = rng.choice([b for b in range(256) if b != row.state[index]])
    table.update(row.position, state=row.state[:index] + bytes([byte]) + row.state[index + 1:])
    return Mutation("state_byte", row.position, (row.position, "hash_mismatch"), (row.position,))


def state_digit(rng: random.Random, table: Table, log: Log) -> Mutation:
    """One digit of a state changed to another non-zero digit: still valid JSON, still parsable."""
    row = rng.choice([r for r in log.rows if any(chr(b).isdigit() for b in r.state)])
    index = rng.choice([i for i, b in enumerate(row.state) if chr(b).isdigit()])
    digit = rng.choice([d for d in b"123456789" if d != row.state[index]])
    state = row.state[:index] + bytes([digit]) + row.state[index + 1:]
    json.loads(state)  # the tampered state is still well-formed
    table.update(row.position, state=state)
    return Mutation("state_digit", row.position, (row.position, "hash_mismatch"), (row.position,))


def version(rng: random.Random, table: Table, log: Log) -> Mutation:
    """An event's aggregate version changed to one its aggregate does not use."""
    row = _pick(rng, log)
    new = rng.choice([0, log.last_version(row) + rng.randint(1, 50)])
    table.update(row.position, originator_version=new)
    return Mutation("version", row.position, (row.position, "hash_mismatch"), (row.position,),
                    versions_alone=(row.position, "version_gap"))


def delete(rng: random.Random, table: Table, log: Log) -> Mutation:
    """A row deleted; the versions alone show it when its aggregate has a later event."""
    row = _pick(rng, log)
    table.delete(row.position)
    later = log.later_of_aggregate(row)
    return Mutation("delete", row.position, (row.position, "event_missing"), (row.position,),
                    versions_alone=(later, "version_gap") if later else None)


def _copy(log: Log, row: Row, position: int) -> Row:
    """A plausible forgery: a copy of an event as its aggregate's next version."""
    return Row(position, row.originator_id, log.last_version(row) + 1, row.topic, row.state)


def insert_end(rng: random.Random, table: Table, log: Log) -> Mutation:
    """A copied row appended after the last position (after the chain and the digest)."""
    position = log.rows[-1].position + 1
    table.insert(_copy(log, _pick(rng, log), position))
    return Mutation("insert_end", position, (position, "event_unchained"), (position,))


def insert_middle(rng: random.Random, table: Table, log: Log) -> Mutation:
    """A copied row inserted with an explicit position in a gap in the middle of the log."""
    position = rng.choice(log.free_middle_positions())
    table.insert(_copy(log, _pick(rng, log), position))
    return Mutation("insert_middle", position, (position, "event_inserted"), (position,))


def _two(rng: random.Random, log: Log) -> tuple[Row, Row]:
    while True:
        first, second = sorted(rng.sample(log.rows, 2), key=lambda r: r.position)
        if (first.topic, first.state) != (second.topic, second.state):
            return first, second


def swap_content(rng: random.Random, table: Table, log: Log) -> Mutation:
    """The states and topics of two rows swapped."""
    first, second = _two(rng, log)
    table.update(first.position, topic=second.topic, state=second.state)
    table.update(second.position, topic=first.topic, state=first.state)
    return Mutation("swap_content", first.position, (first.position, "hash_mismatch"), (first.position, second.position))


def reorder(rng: random.Random, table: Table, log: Log) -> Mutation:
    """Two rows swap positions (the events themselves unchanged)."""
    first, second = _two(rng, log)
    table.move(first.position, -1)
    table.move(second.position, first.position)
    table.move(-1, second.position)
    return Mutation("reorder", first.position, (first.position, "hash_mismatch"), (first.position, second.position))


COMMON = [state_byte, state_digit, version, delete, insert_end, swap_content, reorder]
MutationFunction = Callable[[random.Random, Table, Log], Mutation]


# -- checking one mutated log -----------------------------------------------------------------


def _result(found: ChainBreak | None) -> tuple[int, str] | None:
    return None if found is None else (found.position, found.code)


def problems(recorder: Any, log: Log, mutation: Mutation) -> list[str]:
    """Everything verify_chain got wrong about one mutation (empty when all is right)."""
    wrong = []
    with_chain = _result(verify_chain(recorder, stored=log.stored))
    if with_chain != mutation.expected:
        wrong.append(f"stored: {with_chain} != {mutation.expected}")
    both = _result(verify_chain(recorder, stored=log.stored, digest=log.digest))
    if both != mutation.expected:
        wrong.append(f"stored+digest: {both} != {mutation.expected}")
    found = verify_chain(recorder, digest=log.digest)
    if mutation.first <= log.digest.position:
        if found is None or found.code not in DIGEST_CODES or not mutation.first <= found.position <= log.digest.position:
            wrong.append(f"digest alone: {_result(found)} for a change at {mutation.first}")
    elif found is not None:
        wrong.append(f"digest alone flagged {_result(found)} after the digest position")
    if mutation.versions_alone is not None:
        alone = _result(verify_chain(recorder))
        if alone != mutation.versions_alone:
            wrong.append(f"versions alone: {alone} != {mutation.versions_alone}")
    return [f"{mutation.kind} at {mutation.first}: {text}" for text in wrong]


def assert_clean(recorder: Any, log: Log) -> None:
    assert verify_chain(recorder) is None
    assert verify_chain(recorder, stored=log.stored) is None
    assert verify_chain(recorder, digest=log.digest) is None
    assert verify_chain(recorder, stored=log.stored, digest=log.digest) is None
    assert digest(recorder) == log.digest


def record(recorder: Any, table: Table) -> Log:
    return Log(table.rows(), list(iter_chain(recorder)), digest(recorder))


def build(db: str, accounts: int, steps: int, seed: int) -> Ledger:
    ledger = Ledger(store_env(db))
    outcomes = ledger.post(list(scenario(accounts, steps, seed)), auto_id=False)
    assert sum(o.status == "applied" for o in outcomes) > 100
    return ledger


# -- SQLite: a fresh copy of the file per mutation ------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Log]:
    path = tmp_path_factory.mktemp("tamper") / "base.db"
    ledger = build(str(path), accounts=16, steps=12, seed=11)
    with sqlite3.connect(path) as connection:
        log = record(ledger.app.recorder, sqlite_table(connection))
    assert 300 <= log.digest.events == log.digest.position
    return path, log


def sqlite_table(connection: sqlite3.Connection) -> Table:
    return Table(connection, "stored_events", "rowid", "?")


def fresh_copy(base: Path, target: Path) -> None:
    target.unlink(missing_ok=True)
    with sqlite3.connect(base) as source, sqlite3.connect(target) as copy:
        source.backup(copy)
    copy.close()


def test_a_clean_sqlite_log_verifies_without_false_positives(sqlite_base, tmp_path):
    base, log = sqlite_base
    copy = tmp_path / "copy.db"
    fresh_copy(base, copy)
    for path in (copy, base):
        app = ClearingApplication(env=store_env(str(path)))  # keep it: closing it closes its recorder
        assert_clean(app.recorder, log)


def test_every_sqlite_mutation_is_caught_at_its_first_position(sqlite_base, tmp_path):
    base, log = sqlite_base
    rng = random.Random(20251010)
    work = tmp_path / "work.db"
    wrong: list[str] = []
    kinds: Counter[str] = Counter()
    for number in range(SQLITE_MUTATIONS):
        fresh_copy(base, work)
        with sqlite3.connect(work) as connection:
            mutation = COMMON[number % len(COMMON)](rng, sqlite_table(connection), log)
        connection.close()
        kinds[mutation.kind] += 1
        app = ClearingApplication(env=store_env(str(work)))
        wrong += problems(app.recorder, log, mutation)
        app.close()
    assert not wrong, "\n".join(wrong[:20])
    assert sum(kinds.values()) == SQLITE_MUTATIONS and len(kinds) == len(COMMON)


# -- PostgreSQL: mutate, verify, restore the touched rows, verify clean ----------------------------


def postgres_table(connection: Any, db: str) -> Table:
    schema = parse_qs(urlsplit(db).query)["schema"][0]
    return Table(connection, f'"{schema}".clearing_events', "notification_id", "%s")


def spread_positions(table: Table) -> None:
    """Renumber positions 1, 2, 3, ... to 3, 6, 9, ...: gaps in the middle, and a log
    whose positions changed (the chain must not depend on them)."""
    table.sql(f"UPDATE {table.name} SET notification_id = -notification_id")
    table.sql(f"UPDATE {table.name} SET notification_id = -3 * notification_id")


def restore(table: Table, log: Log, mutation: Mutation) -> None:
    original = {row.position: row for row in log.rows}
    for position in mutation.touched:
        table.delete(position)
    for position in mutation.touched:
        if position in original:
            table.insert(original[position])


def test_every_postgres_mutation_is_caught_at_its_first_position(postgres_db):
    import psycopg

    url = postgres_db.split("?")[0]
    ledger = build(postgres_db, accounts=12, steps=8, seed=5)
    recorder = ledger.app.recorder
    with psycopg.connect(url, autocommit=True) as connection:
        table = postgres_table(connection, postgres_db)
        before = digest(recorder)
        spread_positions(table)
        log = record(recorder, table)
        assert (log.digest.head, log.digest.events) == (before.head, before.events)
        assert log.digest.position == 3 * before.position
        assert_clean(recorder, log)
        rng = random.Random(1010)
        kinds: Counter[str] = Counter()
        wrong: list[str] = []
        functions: list[MutationFunction] = [*COMMON, insert_middle]
        for number in range(POSTGRES_MUTATIONS):
            mutation = functions[number % len(functions)](rng, table, log)
            kinds[mutation.kind] += 1
            wrong += problems(recorder, log, mutation)
            restore(table, log, mutation)
            assert_clean(recorder, log)
    assert not wrong, "\n".join(wrong[:20])
    assert len(kinds) == len(functions)
