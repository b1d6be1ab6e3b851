"""Reads never write (issue 11): every read command works on a store it cannot change.

SQLite: the store and its directory are made immutable (``chattr +i``), which refuses every
write even to root (the suite runs as root in CI, where ``chmod a-w`` would not stop a
write); skipped where the file system has no such attribute. The file's bytes are compared
before and after. PostgreSQL: a role granted only ``USAGE`` on the schema and ``SELECT`` on
its tables; the same role is shown to be refused a deposit, so the check can fail.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.e2e.test_cli import CLEARING, SCRIPT

#: Commands that only read, with what their output must show.
READS = (
    (("account", "list"), "alice"),
    (("account", "show", "alice"), "alice"),
    (("account", "show", "alice", "--json"), '"account"'),
    (("account", "show", "alice", "--as-of", "9"), "alice"),
    (("market", "show", "BTC-PERP"), "BTC-PERP"),
    (("market", "show", "BTC-PERP", "--as-of", "2025-01-01T00:00:00Z"), "BTC-PERP"),
    (("insurance-fund", "show"), "balance"),
    (("insurance-fund", "show", "--as-of", "9"), "balance"),
    (("losses",), "no loss allocations"),
    (("losses", "--as-of", "2025-01-01T00:00:00Z"), "no loss allocations"),
    (("query", "account", "show", "alice"), "alice"),
    (("audit", "export"), '"position"'),
    (("adl", "rank", "BTC-PERP"), "alice"),
    (("events", "--limit", "3"), "CommandRecord.Accepted"),
    (("report", "positions", "--date", "2025-01-01"), "market,BTC-PERP"),
    (("report", "daily-margin", "--date", "2025-01-01", "--format", "json"), '"rows"'),
    (("projections", "status"), "margin"),
    (("audit", "digest"), "sha256-v1:"),
    (("audit", "verify"), "verified"),
    (("export",), '"position"'),
)
LATER = '{"type":"deposit","id":"late","account":"alice","amount":"5","at":"2025-01-01T00:00:02Z"}\n'


def clearing(db: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLEARING, "--db", db, *args], input=stdin, capture_output=True, text=True, timeout=300)


def written(db: str) -> None:
    """The scenario, its projections caught up."""
    assert clearing(db, "post", "--sync", "-", stdin=SCRIPT).returncode == 0


def assert_reads_work(db: str) -> None:
    for args, shown in READS:
        result = clearing(db, *args)
        assert result.returncode == 0, (args, result.stderr)
        assert shown in result.stdout, (args, result.stdout[:400])
        assert "Traceback" not in result.stderr and "note:" not in result.stderr, (args, result.stderr)


def assert_queries_show_their_lag(db: str) -> None:
    """A deposit posted without --sync: a query shows the projections as they stand and says
    so, and does not catch them up (a second query says the same)."""
    assert clearing(db, "post", "--no-sync", "-", stdin=LATER).returncode == 0
    for _ in range(2):
        shown = clearing(db, "account", "show", "alice", "--json")
        assert shown.returncode == 0 and json.loads(shown.stdout)["collateral"] == "1000", shown.stdout
        # the deposit's record and its event
        assert "(2 event(s) not shown yet); run `clearing projections catch-up`" in shown.stderr, shown.stderr
    assert clearing(db, "projections", "catch-up").returncode == 0
    caught_up = clearing(db, "account", "show", "alice", "--json")
    assert json.loads(caught_up.stdout)["collateral"] == "1005" and "note:" not in caught_up.stderr


@pytest.fixture
def frozen(tmp_path: Path) -> Iterator[Path]:
    """A directory for a store, made immutable by the test (and mutable again afterwards)."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    directory = tmp_path / "copy"
    directory.mkdir()
    probe = directory / "probe"
    probe.write_text("x")
    if subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode != 0:
        pytest.skip("this file system has no immutable attribute")
    subprocess.run(["chattr", "-i", str(probe)], check=True)
    probe.unlink()
    yield directory
    subprocess.run(["chattr", "-R", "-i", str(directory)], check=False)


def test_every_read_works_on_an_immutable_sqlite_copy_and_changes_no_byte(tmp_path, frozen):
    original = str(tmp_path / "ledger.db")
    written(original)
    assert clearing(original, "events", "--limit", "1").returncode == 0
    copy = frozen / "ledger.db"
    shutil.copyfile(original, copy)  # a checkpointed copy: the write-ahead log is folded in on close
    before = hashlib.sha256(copy.read_bytes()).hexdigest()
    subprocess.run(["chattr", "+i", str(copy), str(frozen)], check=True)
    assert_reads_work(str(copy))
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in frozen.iterdir()) == ["ledger.db"]
    refused = clearing(str(copy), "deposit", "alice", "1")  # a writer is refused: the copy cannot change
    assert refused.returncode != 0
    assert_queries_show_their_lag(original)


@contextmanager
def select_only_role(url: str) -> Iterator[str]:
    """The store at ``url`` seen by a new role granted only ``USAGE`` on its schema and
    ``SELECT`` on its tables: that role's URL, dropped afterwards."""
    import psycopg

    parts = urlsplit(url)
    schema = parts.query.split("schema=", 1)[1].split("&", 1)[0]
    role = f"reader_{uuid.uuid4().hex[:8]}"
    admin = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE ROLE "{role}" LOGIN')
        connection.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        connection.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
    try:
        yield urlunsplit((parts.scheme, f"{role}@{parts.hostname}:{parts.port or 5432}", parts.path, parts.query, ""))
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP OWNED BY "{role}"')
            connection.execute(f'DROP ROLE "{role}"')


def test_every_read_works_with_a_role_that_may_only_select(postgres_db):
    written(postgres_db)
    with select_only_role(postgres_db) as reader:
        assert_reads_work(reader)
        refused = clearing(reader, "deposit", "alice", "1")
        assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr
        assert_queries_show_their_lag(postgres_db)


def test_a_copy_with_a_write_ahead_log_it_cannot_read_is_refused_with_its_code(tmp_path, frozen):
    """The log's transactions would be missed by an immutable open: refused (exit 3), not misread."""
    import sqlite3

    original = tmp_path / "ledger.db"
    written(str(original))
    holder = sqlite3.connect(original)  # a writer that has not checkpointed: its -wal holds a transaction
    holder.execute("PRAGMA wal_autocheckpoint=0")
    holder.execute("CREATE TABLE pending (x)")
    holder.commit()
    try:
        for suffix in ("", "-wal"):
            shutil.copyfile(f"{original}{suffix}", frozen / f"ledger.db{suffix}")
    finally:
        holder.close()
    subprocess.run(["chattr", "+i", *map(str, frozen.iterdir()), str(frozen)], check=True)
    refused = clearing(str(frozen / "ledger.db"), "account", "show", "alice")
    assert refused.returncode == 3, refused.stderr
    assert refused.stderr.startswith("error: [store_read_only] ") and "Traceback" not in refused.stderr
