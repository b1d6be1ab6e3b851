"""Where the store's bytes go: bytes per event and per trade, by table, index and JSON part.

    .venv/bin/python bench/bench_store_size.py [--trades 100000] [--shape uniform|market] [--accounts 1000]
        [--batch-size 1000] [--postgres postgresql://postgres@127.0.0.1:5432/test] [--sample 5000] [--keep DIR]

1. Writes a setup file and a trade file. ``--shape uniform`` is ``bench_post.py``'s stream:
   one market, one mark, ``--accounts`` accounts with a deposit each, then uniform trades
   (``bench_trades.setup_lines`` and ``bench_post.trade_lines``). ``--shape market`` is
   ``bench_rebuild.py``'s: 3 perpetuals, 5,000 accounts, a mark move every 250 trades and a new
   business day every 28,800 trades, so calls, liquidations and end-of-day rows happen.
2. Posts both files to a fresh SQLite store with ``clearing post --no-sync`` (subprocesses, as
   an operator does; the trades with ``--batch-size``), then ``clearing projections catch-up``;
   with ``--postgres URL`` the same into a fresh schema of that database, dropped afterwards.
3. Reports, beside the input JSON Lines bytes (the baseline of the issue's "20 times"):
   - SQLite: the file after ``PRAGMA wal_checkpoint(TRUNCATE)``; bytes, used payload and page
     slack per table and per index from ``dbstat``; the same file after ``VACUUM INTO`` (what
     compaction alone would give back); the columns of the event table;
   - PostgreSQL: heap, TOAST, each index and the free-space/visibility maps per table
     (``pg_relation_size`` with each fork, ``pg_indexes_size``), the event columns
     (``pg_column_size``), and the total after ``VACUUM FULL`` (dead rows and slack);
   - each grouped into the event table, its index(es), snapshots, the library's tracking
     tables, our own tables (command index, markers), the hash chain and the read models;
   - the library's own ``Application.save()`` of one plain event per trade (``bench_post.py``'s
     ceiling aggregate) into a fresh SQLite file: the bytes a minimal event costs in this
     schema, beside ours;
   - from a sample of stored events: the average ``state``, how much of it is field names,
     the library's ``{"_type_": ..., "_data_": ...}`` wrappers, topic strings, values and
     punctuation, the fields that weigh most, and what per-row zlib (the library's
     ``ZlibCompressor``; with and without a preset dictionary) would save and cost in CPU.
     Computed offline on the sample; the store is not changed.

Sizes are deterministic for a given stream (the machine's noise only moves the times).
Nothing is asserted; the analysis of the figures goes to bench/README.md.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

CLEARING = str(Path(sys.executable).parent / "clearing")
MIB = 2**20

# -- the streams ---------------------------------------------------------------------------


def _bench(module: str) -> Any:
    """A sibling benchmark module (imported by name: they are scripts, not typed packages)."""
    return importlib.import_module(module)


def write_streams(directory: Path, shape: str, trades: int, accounts: int) -> tuple[Path, Path, int]:
    """The setup and trade files of ``shape``; returns them and the number of accounts."""
    if shape == "uniform":
        setup = _bench("bench_trades").setup_lines(accounts)
        lines = _bench("bench_post").trade_lines(trades, accounts, None, 7)
    else:
        rebuild = _bench("bench_rebuild")
        accounts = rebuild.ACCOUNTS
        setup = rebuild._setup()
        prices = {name: float(spec[0]) for name, spec in rebuild.MARKETS.items()}
        lines = rebuild._trading(0, trades, random.Random(7), prices)
    setup_file, trade_file = directory / "setup.jsonl", directory / "trades.jsonl"
    setup_file.write_text("\n".join(setup) + "\n")
    trade_file.write_text("\n".join(lines) + "\n")
    return setup_file, trade_file, accounts


def clearing(db: str, *args: str) -> tuple[float, str]:
    """Run ``clearing --db DB ARGS``; seconds and the last line it printed on stderr."""
    started = time.perf_counter()
    result = subprocess.run([CLEARING, "--db", db, *args], capture_output=True, text=True)
    if result.returncode not in (0, 1):
        raise SystemExit(f"clearing {' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}")
    lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
    return time.perf_counter() - started, lines[-1] if lines else ""


def post_everything(db: str, setup: Path, trades: Path, batch_size: int) -> dict[str, float]:
    seconds: dict[str, float] = {}
    seconds["post setup"], _ = clearing(db, "post", "--no-sync", str(setup))
    seconds["post trades"], summary = clearing(db, "post", "--no-sync", "--batch-size", str(batch_size), str(trades))
    seconds["catch-up"], _ = clearing(db, "projections", "catch-up")
    print(f"  {db}: posted ({summary}); " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()), file=sys.stderr)
    return seconds


# -- grouping of tables ----------------------------------------------------------------------

GROUPS = (
    "events: table",
    "events: indexes",
    "snapshots",
    "library tracking",
    "command index",
    "our markers",
    "hash chain",
    "read models",
    "schema",
)


NAMED_GROUPS = {"clearing_commands": "command index", "clearing_commands_built": "our markers",
                "clearing_schema": "our markers", "projection_registry": "our markers",
                "sqlite_schema": "schema", "sqlite_master": "schema"}


def group_of(table: str, is_index: bool, events_table: str, snapshots_table: str) -> str:
    """The part of the store a table (or an index of it) belongs to."""
    if table == events_table:
        return "events: indexes" if is_index else "events: table"
    if table == snapshots_table:
        return "snapshots"
    if table.endswith("_tracking"):
        return "library tracking"
    if table.startswith("audit_chain"):
        return "hash chain"
    return NAMED_GROUPS.get(table, "read models")


@dataclass
class Part:
    """One table or index: where it belongs, and its bytes."""

    name: str
    table: str
    group: str
    rows: int
    total: int  # bytes it occupies (SQLite: pages; PostgreSQL: every fork, TOAST included for a table)
    used: int = 0  # SQLite: cell payload; PostgreSQL: heap main fork (tables) or the index
    slack: int = 0  # SQLite: unused bytes in its pages; PostgreSQL: TOAST (tables)
    extra: int = 0  # PostgreSQL: free-space and visibility maps
    kind: str = "table"


@dataclass
class Sizes:
    database: str
    file_bytes: int
    parts: list[Part]
    notes: list[str] = field(default_factory=list)
    event_columns: list[tuple[str, int, str]] = field(default_factory=list)  # (column, bytes, remark)
    compacted_bytes: int | None = None
    compacted_label: str = ""


# -- SQLite --------------------------------------------------------------------------------------


def sqlite_sizes(db: str) -> Sizes:
    with closing(sqlite3.connect(db)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        page_count = connection.execute("PRAGMA page_count").fetchone()[0]
        free_pages = connection.execute("PRAGMA freelist_count").fetchone()[0]
        objects = {name: (kind, table) for kind, name, table in
                   connection.execute("SELECT type, name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')")}
        objects["sqlite_schema"] = ("table", "sqlite_schema")
        events = "stored_events"
        rows = {name: connection.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
                for name, (kind, _) in objects.items() if kind == "table" and name != "sqlite_schema"}
        parts: list[Part] = []
        notes = [f"page size {page_size} B, {page_count:,} pages, {free_pages} on the free list"]
        try:
            stats = connection.execute(
                "SELECT name, sum(pgsize), sum(payload), sum(unused), sum(pagetype = 'overflow') FROM dbstat "
                "GROUP BY name").fetchall()
        except sqlite3.OperationalError as error:  # SQLite built without the dbstat table
            stats = []
            notes.append(f"dbstat unavailable ({error}): only the file size is reported")
        for name, total, payload, unused, overflow in stats:
            kind, table = objects.get(name, ("table", name))
            is_index = kind == "index"
            parts.append(Part(name, table, group_of(table, is_index, events, "stored_snapshots"),
                              rows.get(table, 0), total, payload, unused, kind="index" if is_index else "table"))
            if overflow:
                notes.append(f"{name}: {overflow} overflow pages (rows longer than a page)")
        columns = connection.execute(
            "SELECT count(*), sum(length(CAST(originator_id AS BLOB))), sum(length(CAST(topic AS BLOB))), "
            "sum(length(state)) FROM stored_events").fetchone()
        count, ids, topics, states = columns
        event_table = next((p for p in parts if p.name == events), None)
        event_columns = [
            ("originator_id", ids, f"TEXT, {ids / count:.0f} B a row (hex of a 16-byte UUID)"),
            ("originator_version", 0, "INTEGER, 1-2 B a row (varint, in the record's payload)"),
            ("topic", topics, f"TEXT, {topics / count:.1f} B a row"),
            ("state", states, f"BLOB, {states / count:.1f} B a row"),
        ]
        if event_table is not None:
            other = event_table.used - ids - topics - states
            event_columns.append(("record headers, version (payload rest)", other, f"{other / count:.1f} B a row"))
            event_columns.append(("page slack and cell/page headers", event_table.total - event_table.used,
                                  f"{(event_table.total - event_table.used) / count:.1f} B a row"))
    sizes = Sizes("SQLite", os.path.getsize(db), parts, notes, event_columns)
    compacted = db + ".vacuumed"
    with closing(sqlite3.connect(db)) as connection:
        connection.execute(f"VACUUM INTO '{compacted}'")
    sizes.compacted_bytes, sizes.compacted_label = os.path.getsize(compacted), "after VACUUM INTO (compacted copy)"
    os.remove(compacted)
    return sizes


def library_baseline(directory: Path, trades: int, accounts: int) -> tuple[int, int, int]:
    """File bytes and events of the library's save() of one plain event per trade
    (``bench_post.library_save``: ``accounts`` aggregates, batches of 1,000), and its state bytes."""
    _bench("bench_post").library_save(str(directory), trades, accounts)
    db = next(directory.glob("ceiling-*.db"))
    with closing(sqlite3.connect(db)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        events, states = connection.execute("SELECT count(*), sum(length(state)) FROM stored_events").fetchone()
    return os.path.getsize(db), events, states


# -- PostgreSQL ------------------------------------------------------------------------------


def fresh_schema(url: str) -> tuple[str, str]:
    import psycopg

    schema = f"bench_size_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    return schema, f"{url}{'&' if '?' in url else '?'}schema={schema}"


def drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


PG_TABLES = """
SELECT c.oid, c.relname, pg_total_relation_size(c.oid), pg_relation_size(c.oid, 'main'),
       coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0), pg_indexes_size(c.oid),
       pg_relation_size(c.oid, 'fsm') + pg_relation_size(c.oid, 'vm')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY c.relname
"""
PG_INDEXES = """
SELECT i.relname, t.relname, pg_total_relation_size(i.oid)
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = %s ORDER BY i.relname
"""


def postgres_sizes(url: str, schema: str) -> Sizes:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as connection:
        tables = connection.execute(PG_TABLES, (schema,)).fetchall()
        names = [row[1] for row in tables]
        events = next((name for name in names if name.endswith("_events")), "stored_events")
        snapshots = next((name for name in names if name.endswith("_snapshots")), "stored_snapshots")
        parts: list[Part] = []
        for _, name, total, main, toast, indexes, maps in tables:
            counted = connection.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(name))).fetchone()
            rows = int(counted[0]) if counted else 0
            parts.append(Part(name, name, group_of(name, False, events, snapshots), rows, total - indexes, main, toast, maps))
        rows_of = {part.name: part.rows for part in parts}
        for index, table, size in connection.execute(PG_INDEXES, (schema,)).fetchall():
            parts.append(Part(index, table, group_of(table, True, events, snapshots), rows_of.get(table, 0), size, size,
                              kind="index"))
        table = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(events))
        stats = connection.execute(sql.SQL(
            "SELECT count(*), sum(pg_column_size(originator_id)), sum(pg_column_size(originator_version)), "
            "sum(pg_column_size(topic)), sum(octet_length(state)), sum(pg_column_size(state)), "
            "sum(pg_column_size(notification_id)), sum(pg_column_size(t.*)) FROM {} t").format(table)).fetchone()
        assert stats is not None
        count, ids, versions, topics, raw, stored, notifications, tuples = (int(value or 0) for value in stats)
        dead = connection.execute(
            "SELECT coalesce(sum(n_dead_tup), 0), coalesce(sum(n_live_tup), 0) FROM pg_stat_user_tables "
            "WHERE schemaname = %s", (schema,)).fetchone()
        event_part = next(part for part in parts if part.name == events)
        event_columns = [
            ("originator_id", ids, f"uuid, {ids / count:.0f} B a row"),
            ("originator_version", versions, "bigint, 8 B a row"),
            ("topic", topics, f"text, {topics / count:.1f} B a row (with its length header)"),
            ("state", stored, f"bytea, {stored / count:.1f} B a row stored: {raw / count:.1f} B of data, its "
                              "1-4 B length header, TOAST's compression of values over ~2 KB"),
            ("notification_id", notifications, "bigserial, 8 B a row"),
            ("tuple headers, alignment", tuples and (tuples - ids - versions - topics - stored - notifications),
             "row headers (24 B) and padding"),
            ("item pointers, page headers, free space", event_part.used + event_part.slack - tuples,
             f"{(event_part.used + event_part.slack - tuples) / count:.1f} B a row"),
        ]
        total = sum(part.total for part in parts)
        notes = [f"schema {schema}; the statistics collector counts {dead[0] if dead else 0:,} dead and "
                 f"{dead[1] if dead else 0:,} live rows in it (approximate)"]
        for name in names:
            connection.execute(sql.SQL("VACUUM FULL {}.{}").format(sql.Identifier(schema), sql.Identifier(name)))
        after = sum(int(row[2]) for row in connection.execute(PG_TABLES, (schema,)).fetchall())
    sizes = Sizes("PostgreSQL", total, parts, notes, event_columns)
    sizes.compacted_bytes, sizes.compacted_label = after, "after VACUUM FULL of every table"
    return sizes


# -- printing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """What sizes are divided by."""

    input_bytes: int
    events: int
    trades: int

    def line(self, label: str, size: int, width: int = 34) -> str:
        return (f"| {label:<{width}} | {size:>13,} | {size / MIB:>8.1f} | {size / self.events:>8.1f} | "
                f"{size / self.trades:>8.1f} | {size / self.input_bytes:>6.2f} |")

    @staticmethod
    def header(label: str, width: int = 34) -> str:
        return (f"| {label:<{width}} | {'bytes':>13} | {'MiB':>8} | {'B/event':>8} | {'B/trade':>8} | {'x input':>6} |\n"
                f"|{'-' * (width + 2)}|{'-' * 15}|{'-' * 10}|{'-' * 10}|{'-' * 10}|{'-' * 8}|")


def print_parts(sizes: Sizes, scale: Scale) -> None:
    """One line per table and index, the largest first; the one- and two-page ones summed."""
    if sizes.database == "SQLite":
        print(f"| {'table or index':<40} | {'group':<16} | {'rows':>9} | {'bytes':>12} | {'payload':>12} | "
              f"{'unused':>10} | {'B/row':>6} | {'B/event':>7} |")
        print(f"|{'-' * 42}|{'-' * 18}|{'-' * 11}|{'-' * 14}|{'-' * 14}|{'-' * 12}|{'-' * 8}|{'-' * 9}|")
    else:
        print(f"| {'table or index':<40} | {'group':<16} | {'rows':>9} | {'bytes':>12} | {'heap/index':>12} | "
              f"{'TOAST':>10} | {'fsm+vm':>8} | {'B/row':>6} | {'B/event':>7} |")
        print(f"|{'-' * 42}|{'-' * 18}|{'-' * 11}|{'-' * 14}|{'-' * 14}|{'-' * 12}|{'-' * 10}|{'-' * 8}|{'-' * 9}|")
    small_limit = 2 * min(part.total for part in sizes.parts if part.total)  # two pages
    small = [part for part in sizes.parts if part.total <= small_limit]
    for part in sorted(sizes.parts, key=lambda p: -p.total):
        if part.total <= small_limit:
            continue
        per_row = f"{part.total / part.rows:6.0f}" if part.rows else f"{'-':>6}"
        label = part.name if part.kind == "table" else f"  {part.name} (index)"
        if sizes.database == "SQLite":
            print(f"| {label[:40]:<40} | {part.group:<16} | {part.rows:>9,} | {part.total:>12,} | {part.used:>12,} | "
                  f"{part.slack:>10,} | {per_row} | {part.total / scale.events:>7.1f} |")
        else:
            print(f"| {label[:40]:<40} | {part.group:<16} | {part.rows:>9,} | {part.total:>12,} | {part.used:>12,} | "
                  f"{part.slack:>10,} | {part.extra:>8,} | {per_row} | {part.total / scale.events:>7.1f} |")
    if small:
        print(f"| {f'{len(small)} more of at most 2 pages each':<40} | {'(by group above)':<16} | {'':>9} | "
              f"{sum(part.total for part in small):>12,} | |")


def print_sizes(sizes: Sizes, scale: Scale) -> None:
    print(f"\n### {sizes.database}: {sizes.file_bytes:,} bytes, {sizes.file_bytes / scale.input_bytes:.2f} x the input; "
          f"{sizes.file_bytes / scale.events:.0f} B an event, {sizes.file_bytes / scale.trades:.0f} B a trade")
    for note in sizes.notes:
        print(f"- {note}")
    by_group: dict[str, int] = defaultdict(int)
    for part in sizes.parts:
        by_group[part.group] += part.total
    print()
    print(Scale.header("part"))
    for group in GROUPS:
        if by_group.get(group):
            print(scale.line(group, by_group[group]))
    print(scale.line("all parts", sum(by_group.values())))
    if sizes.compacted_bytes is not None:
        print(scale.line(sizes.compacted_label[:34], sizes.compacted_bytes))
        print(scale.line("  given back by compaction", sum(by_group.values()) - sizes.compacted_bytes))
    print()
    print_parts(sizes, scale)
    print(f"\nThe event table's columns ({sizes.database}):\n")
    print(Scale.header("column"))
    for column, size, remark in sizes.event_columns:
        print(scale.line(column, size) + f" {remark}")


# -- the state column ------------------------------------------------------------------------


@dataclass
class Breakdown:
    """Bytes of stored JSON by kind, and by top-level field (field name and value together)."""

    keys: float = 0.0
    wrappers: float = 0.0
    topics: float = 0.0
    values: float = 0.0
    punctuation: float = 0.0
    fields: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    nested_keys: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def total(self) -> float:
        return self.keys + self.wrappers + self.topics + self.values + self.punctuation


def _size(value: Any) -> int:
    return len(orjson.dumps(value))


def measure_json(value: Any, into: Breakdown, weight: float, top: bool = False) -> None:
    """Add the bytes of ``value`` as orjson writes it (the store's bytes) to ``into``, by kind."""
    if isinstance(value, dict):
        if set(value) == {"_type_", "_data_"}:  # the library's transcoding of a Decimal, datetime, ...
            into.wrappers += weight * (len('{"_type_":,"_data_":}') + _size(value["_type_"]))
            measure_json(value["_data_"], into, weight)
            return
        into.punctuation += weight * (2 + max(0, len(value) - 1))
        for key, item in value.items():
            key_bytes = _size(key) + 1
            into.keys += weight * key_bytes
            if not top:
                into.nested_keys[key] += weight * key_bytes
            if key == "originator_topic":
                into.topics += weight * _size(item)
            else:
                measure_json(item, into, weight)
            if top:
                into.fields[key] += weight * (key_bytes + _size(item))
        return
    if isinstance(value, list):
        into.punctuation += weight * (2 + max(0, len(value) - 1))
        for item in value:
            measure_json(item, into, weight)
        return
    into.values += weight * _size(value)


@dataclass
class StateReport:
    rows: int
    sampled: int
    total_bytes: int
    compressed_rows: int
    reencoded_differently: int
    breakdown: Breakdown
    per_topic: list[tuple[str, int, int, float]]  # topic, rows, bytes, weighted share
    zlib_bytes: float
    zlib_dict_bytes: float
    compress_us: float
    decompress_us: float
    fills: tuple[int, int, int] | None  # sampled FillsRecorded events, their fills, the bytes of their fills
    command_index: tuple[int, int, int] = (0, 0, 0)  # rows, content bytes, of which field names
    chain: tuple[int, int] = (0, 0)  # rows, hash text bytes


def _states(connection: sqlite3.Connection, rowids: list[int]) -> list[bytes]:
    found: list[bytes] = []
    for start in range(0, len(rowids), 900):
        chunk = rowids[start:start + 900]
        found += [row[0] for row in connection.execute(
            f"SELECT state FROM stored_events WHERE rowid IN ({','.join('?' * len(chunk))})", chunk)]
    return found


def sample_states(connection: sqlite3.Connection, per_topic: list[tuple[str, int, int]], sample: int,
                  rng: random.Random) -> tuple[list[tuple[str, bytes]], list[bytes]]:
    """A random sample of the stored states, stratified by topic (every topic, at least 50 rows
    of it or all), and other rows, about 400, to train a zlib dictionary on."""
    rows = sum(count for _, count, _ in per_topic)
    picked: list[tuple[str, bytes]] = []
    training: list[bytes] = []
    for topic, count, _ in per_topic:
        ids = [row[0] for row in connection.execute("SELECT rowid FROM stored_events WHERE topic = ?", (topic,))]
        chosen = rng.sample(ids, min(count, max(50, round(sample * count / rows))))
        rest = sorted(set(ids) - set(chosen))
        picked += [(topic, state) for state in _states(connection, chosen)]
        training += _states(connection, rng.sample(rest, min(len(rest), round(400 * count / rows))))
    rng.shuffle(training)
    return picked, training


def side_tables(connection: sqlite3.Connection) -> tuple[tuple[int, int, int], tuple[int, int]]:
    """The command index (rows, bytes of its values, bytes of field names in ``content``) and
    the hash chain (rows, bytes of its hex text)."""
    rows, size = connection.execute(
        "SELECT count(*), coalesce(sum(length(CAST(command_id AS BLOB)) + length(command_type) + length(content) "
        "+ coalesce(length(code), 0) + coalesce(length(field), 0) + coalesce(length(message), 0)), 0) "
        "FROM clearing_commands").fetchone()
    key_bytes = sum(sum(_size(key) + 1 for key in orjson.loads(row[0]))
                    for row in connection.execute("SELECT content FROM clearing_commands"))
    chain = (0, 0)
    for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'audit_chain_g%'").fetchall():
        found = connection.execute(f'SELECT count(*), coalesce(sum(length(hash)), 0) FROM "{name}"').fetchone()
        chain = (int(found[0]), int(found[1]))
    return (int(rows), int(size), key_bytes), chain


def state_report(db: str, sample: int) -> StateReport:
    """Decode a random sample of the stored events, stratified by topic (each topic's rows
    weighted up to all of its bytes), and measure what their JSON is made of; per-row zlib of
    the same rows, and with a preset dictionary taken from other rows."""
    rng = random.Random(1)
    with closing(sqlite3.connect(db)) as connection:
        per_topic = connection.execute(
            "SELECT topic, count(*), sum(length(state)) FROM stored_events GROUP BY topic ORDER BY 3 DESC").fetchall()
        rows = sum(count for _, count, _ in per_topic)
        picked, training = sample_states(connection, per_topic, sample, rng)
        command_index, chain = side_tables(connection)
    counts = {topic: (count, size) for topic, count, size in per_topic}
    sampled_bytes: dict[str, int] = defaultdict(int)
    for topic, state in picked:
        sampled_bytes[topic] += len(state)
    weights = {topic: counts[topic][1] / size for topic, size in sampled_bytes.items()}
    breakdown = Breakdown()
    compressed = different = 0
    zlib_total = zdict_total = 0.0
    fill_events = fill_count = fill_bytes = 0
    dictionary = b"".join(training)[-32768:]
    states = [state for _, state in picked]
    started = time.perf_counter()
    squeezed = [zlib.compress(state) for state in states]
    compress_us = (time.perf_counter() - started) / max(1, len(states)) * 1e6
    started = time.perf_counter()
    for blob in squeezed:
        zlib.decompress(blob)
    decompress_us = (time.perf_counter() - started) / max(1, len(states)) * 1e6
    for (topic, state), blob in zip(picked, squeezed, strict=True):
        weight = weights[topic]
        if state[:1] != b"{":  # not plain JSON: compressed or enciphered by the application
            compressed += 1
            continue
        value = orjson.loads(state)
        different += orjson.dumps(value) != state
        measure_json(value, breakdown, weight, top=True)
        zlib_total += weight * len(blob)
        packer = zlib.compressobj(zdict=dictionary)
        zdict_total += weight * len(packer.compress(state) + packer.flush())
        if topic.endswith("FillsRecorded"):
            fill_events += 1
            fill_count += len(value["fills"])
            fill_bytes += _size(value["fills"])
    total_bytes = sum(size for _, size in counts.values())
    return StateReport(
        rows, len(picked), total_bytes, compressed, different, breakdown,
        [(topic, count, size, size / total_bytes) for topic, count, size in per_topic],
        zlib_total, zdict_total, compress_us, decompress_us,
        (fill_events, fill_count, fill_bytes) if fill_events else None,
        command_index, chain)


def codec_settings(db: str) -> str:
    """The application's compressor and cipher, as the library's mapper has them."""
    from clearing.application import ClearingApplication
    from clearing.settings import store_env

    app = ClearingApplication(env=store_env(db, read_only=True))
    try:
        mapper = app.mapper
        return (f"transcoder {type(mapper.transcoder).__name__}, compressor {type(mapper.compressor).__name__}, "
                f"cipher {type(mapper.cipher).__name__}")
    finally:
        app.close()


def print_state(report: StateReport, scale: Scale) -> None:
    print(f"\n### The `state` column: {report.total_bytes:,} bytes in {report.rows:,} events "
          f"({report.total_bytes / report.rows:.0f} B an event, {report.total_bytes / scale.trades:.0f} B a trade); "
          f"{report.sampled:,} sampled rows, weighted per topic")
    if report.compressed_rows:
        print(f"- {report.compressed_rows} sampled rows are not plain JSON (compressed or enciphered): left out")
    if report.reencoded_differently:
        print(f"- {report.reencoded_differently} sampled rows re-encode to other bytes (the split below is approximate)")
    print(f"\n| {'topic':<52} | {'rows':>9} | {'state bytes':>12} | {'B/row':>6} | {'share':>6} |")
    print(f"|{'-' * 54}|{'-' * 11}|{'-' * 14}|{'-' * 8}|{'-' * 8}|")
    for topic, count, size, share in report.per_topic:
        print(f"| {topic.split(':')[-1] if len(topic) > 52 else topic:<52} | {count:>9,} | {size:>12,} | "
              f"{size / count:>6.0f} | {share:>6.1%} |")
    b = report.breakdown
    print("\nWhat the JSON is made of (extrapolated to every row of each topic):\n")
    print(Scale.header("kind"))
    for label, part in (("field names (keys, quotes, colon)", b.keys),
                        ('library type wrappers {"_type_":..}', b.wrappers),
                        ("topic strings (originator_topic)", b.topics),
                        ("values", b.values), ("punctuation ({} [] ,)", b.punctuation)):
        print(scale.line(label, round(part)) + f" {part / b.total():.1%}")
    print(scale.line("all (check: the column's bytes)", round(b.total())))
    print("\nThe heaviest top-level fields (name and value together):\n")
    print(Scale.header("field"))
    for name, weight in sorted(b.fields.items(), key=lambda item: -item[1])[:10]:
        print(scale.line(name, round(weight)) + f" {weight / b.total():.1%}")
    nested = sorted(b.nested_keys.items(), key=lambda item: -item[1])[:6]
    if nested:
        print("- names of nested fields, the heaviest: " + ", ".join(f"{k} {v / scale.events:.1f} B/event" for k, v in nested))
    if report.fills:
        events, fills, size = report.fills
        print(f"- Account.FillsRecorded (sampled {events:,}): {fills / events:.2f} fills an event, "
              f"{size / fills:.0f} B a fill in its list (16 values: ids, market, numbers and time as text)")
    saved = b.total() - report.zlib_bytes
    saved_dict = b.total() - report.zlib_dict_bytes
    print("\nPer-row zlib of the state (offline, the library's ZlibCompressor; the store is not changed):\n")
    print(Scale.header("state"))
    print(scale.line("as stored", round(b.total())))
    print(scale.line("zlib level 6, per row", round(report.zlib_bytes)) + f" saves {saved / b.total():.1%}")
    print(scale.line("zlib, 32 KiB preset dictionary", round(report.zlib_dict_bytes)) +
          f" saves {saved_dict / b.total():.1%}")
    print(f"- CPU: compress {report.compress_us:.1f} us, decompress {report.decompress_us:.1f} us an event "
          "(this machine, sampled rows)")
    rows, size, keys = report.command_index
    if rows:
        print(f"- command index: {rows:,} rows, {size:,} B of column values ({size / rows:.0f} B a row), of which "
              f"~{keys:,} B field names in `content` ({keys / rows:.0f} B a row)")
    rows, size = report.chain
    if rows:
        print(f"- hash chain: {rows:,} rows, {size:,} B of hex text ({size / rows:.0f} B a row; 32 B as a BLOB)")


# -- main ---------------------------------------------------------------------------------------


def event_count_sqlite(db: str) -> int:
    with closing(sqlite3.connect(db)) as connection:
        return int(connection.execute("SELECT count(*) FROM stored_events").fetchone()[0])


def print_baseline(directory: Path, trades: int, accounts: int, db: str, events: int, report: StateReport) -> None:
    """Our store beside the library's own store of one plain event per trade."""
    directory.mkdir(exist_ok=True)
    for old in directory.glob("ceiling-*"):
        old.unlink()
    size, plain_events, plain_states = library_baseline(directory, trades, accounts)
    print(f"\n### Baseline: the library's save() of one plain event per trade ({accounts:,} aggregates, "
          f"batches of 1,000), SQLite\n")
    print(f"| {'store':<34} | {'bytes':>13} | {'events':>9} | {'B/event':>8} | {'B/trade':>8} | "
          f"{'state B/event':>13} |")
    print(f"|{'-' * 36}|{'-' * 15}|{'-' * 11}|{'-' * 10}|{'-' * 10}|{'-' * 15}|")
    print(f"| {'library, one plain event a trade':<34} | {size:>13,} | {plain_events:>9,} | "
          f"{size / plain_events:>8.1f} | {size / trades:>8.1f} | {plain_states / plain_events:>13.1f} |")
    ours = os.path.getsize(db)
    print(f"| {'clearing (everything above)':<34} | {ours:>13,} | {events:>9,} | {ours / events:>8.1f} | "
          f"{ours / trades:>8.1f} | {report.total_bytes / events:>13.1f} |")
    print(f"- ours / the library's plain store: {ours / size:.2f} x per trade")


def count_lines(paths: Iterable[Path]) -> tuple[int, int]:
    lines = size = 0
    for path in paths:
        data = path.read_bytes()
        lines += data.count(b"\n")
        size += len(data)
    return lines, size


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trades", type=int, default=100_000)
    parser.add_argument("--shape", choices=("uniform", "market"), default="uniform",
                        help="uniform: bench_post's stream (one market); market: bench_rebuild's (3 markets, 5,000 "
                             "accounts, marks, days)")
    parser.add_argument("--accounts", type=int, default=1_000, help="accounts of the uniform shape")
    parser.add_argument("--postgres", default=None, help="also post into a fresh schema of this PostgreSQL URL")
    parser.add_argument("--sample", type=int, default=5_000, help="stored events decoded for the state analysis")
    parser.add_argument("--batch-size", type=int, default=1000, help="clearing post --batch-size for the trades")
    parser.add_argument("--keep", default=None, help="directory to keep the streams and the SQLite store in (the "
                        "PostgreSQL schema is always dropped)")
    parser.add_argument("--skip-baseline", action="store_true", help="leave out the library's plain-event store")
    args = parser.parse_args(argv)
    keep = Path(args.keep) if args.keep else None
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        directory = keep or Path(scratch)
        db = str(directory / "store.db")
        for suffix in ("", "-wal", "-shm", ".writer.lock"):
            Path(db + suffix).unlink(missing_ok=True)
        setup, trades, accounts = write_streams(directory, args.shape, args.trades, args.accounts)
        lines, input_bytes = count_lines((setup, trades))
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, SQLite "
              f"{sqlite3.sqlite_version}, load {os.getloadavg()[0]:.2f}; shape {args.shape}: {args.trades:,} trades, "
              f"{accounts:,} accounts; input {lines:,} lines, {input_bytes:,} bytes ({input_bytes / MIB:.1f} MiB, "
              f"{trades.stat().st_size / args.trades:.0f} B a trade line)")
        timings = post_everything(db, setup, trades, args.batch_size)
        events = event_count_sqlite(db)
        print(f"stored: {events:,} events ({events / args.trades:.2f} a trade); {codec_settings(db)}; "
              + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
        scale = Scale(input_bytes, events, args.trades)
        print("\n## SQLite")
        print_sizes(sqlite_sizes(db), scale)
        report = state_report(db, args.sample)
        print_state(report, scale)
        if not args.skip_baseline:
            print_baseline(directory / "baseline", args.trades, accounts, db, events, report)
        if args.postgres:
            schema, url = fresh_schema(args.postgres)
            try:
                post_everything(url, setup, trades, args.batch_size)
                print("\n## PostgreSQL")
                sizes = postgres_sizes(args.postgres, schema)
                stored = next(part.rows for part in sizes.parts if part.group == "events: table")
                if stored != events:
                    sizes.notes.append(f"{stored:,} events stored here, {events:,} in the SQLite store: per-event "
                                       "figures use the SQLite count")
                print_sizes(sizes, scale)
            finally:
                drop_schema(args.postgres, schema)
        if keep:
            print(f"\nkept {directory}", file=sys.stderr)


if __name__ == "__main__":
    main()
