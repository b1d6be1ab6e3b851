"""``clearing audit replay --into`` is atomic: killed midway, it leaves no target; run again, it succeeds.

The replay runs as a subprocess of the real command line; a small wrapper makes the
projector commit pages of 3 events and SIGKILL its own process right after committing
one page partway through, so the kill lands between committed pages of a half-built
target, deterministically. Before this was atomic, that left a file (or schema) whose
tables and tracking records looked like a finished replay, and a re-run was refused.
Now the target name does not exist until the replay is complete; the re-run succeeds, and
its tables equal those of a clean replay; a completed target is still refused.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.e2e.test_audit_cli import clearing

AT = "2025-01-01T00:00:{:02d}Z"
SCRIPT = "\n".join(json.dumps(line) for line in [
    {"type": "create_market", "id": "m-btc", "market": "BTC-PERP", "kind": "perpetual", "tick_size": "0.1",
     "step_size": "0.001", "initial_margin_fraction": "0.1", "maintenance_margin_fraction": "0.05", "at": AT.format(0)},
    *({"type": kind, "id": f"{kind}-{name}", "account": name, **extra, "at": AT.format(1)}
      for name in ("alice", "bob", "carol") for kind, extra in (("open_account", {}), ("deposit", {"amount": "100000"}))),
    {"type": "price", "id": "p1", "market": "BTC-PERP", "price": "30000", "at": AT.format(2)},
    {"type": "trade", "id": "t1", "market": "BTC-PERP", "buyer": "bob", "seller": "alice", "size": "0.3",
     "price": "30000", "at": AT.format(3)},
    {"type": "fund_insurance", "id": "f1", "amount": "500", "at": AT.format(4)},
    {"type": "price", "id": "p2", "market": "BTC-PERP", "price": "29000", "at": AT.format(5)},
    {"type": "trade", "id": "t2", "market": "BTC-PERP", "buyer": "carol", "seller": "bob", "size": "0.1",
     "price": "29000", "at": AT.format(6)},
    {"type": "deposit", "id": "d-late", "account": "alice", "amount": "250", "at": AT.format(7)},
]) + "\n"

KILLED = -9
#: The command line with pages of 3 events, killed (SIGKILL) after the page reaching KILL_AT.
WRAPPER = """
import os, signal, sys
from projections import runner

kill_at = int(os.environ["KILL_AT"])
catch_up, confirm = runner.Projector.catch_up, runner.Projector._confirm

def small_pages(self, until=None, page=runner.PAGE, progress=None):
    return catch_up(self, until, 3, progress)

def confirm_then_die(self, reached):
    confirm(self, reached)
    if reached >= kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

runner.Projector.catch_up = small_pages
runner.Projector._confirm = confirm_then_die
from cli.main import main
main(sys.argv[1:], prog_name="clearing")
"""


@pytest.fixture
def ledger_db(tmp_path) -> str:
    db = str(tmp_path / "audit.db")
    posted = clearing(db, "post", "--sync", "-", stdin=SCRIPT)
    assert posted.returncode == 0, posted.stdout + posted.stderr
    return db


def head(db: str) -> int:
    return json.loads(clearing(db, "projections", "status", "--json").stdout)[0]["head"]


def killed_replay(db: str, until: int, into: str, kill_at: int) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "KILL_AT": str(kill_at)}
    return subprocess.run([sys.executable, "-c", WRAPPER, "--db", db, "audit", "replay", "--until", str(until),
                           "--into", into], capture_output=True, text=True, timeout=120, env=env)


def sqlite_tables(path: str) -> dict[str, list]:
    """Every table of a replay file, rows sorted: what an auditor would query."""
    with sqlite3.connect(path) as connection:
        names = [n for (n,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {name: sorted(map(repr, connection.execute(f'SELECT * FROM "{name}"'))) for name in names}


def test_a_replay_killed_midway_leaves_no_target_and_a_rerun_equals_a_clean_replay(ledger_db, tmp_path):
    until = head(ledger_db)
    target = tmp_path / "past.db"
    killed = killed_replay(ledger_db, until, str(target), kill_at=9)
    assert killed.returncode == KILLED, killed.stderr
    assert not target.exists()
    (partial,) = [p for p in tmp_path.iterdir()
                  if p.name.startswith(".past.db.partial-") and not p.name.endswith(("-wal", "-shm"))]
    with sqlite3.connect(partial) as connection:  # the killed run had committed pages into its staging file
        tracked = [n for (n,) in connection.execute("SELECT name FROM sqlite_master WHERE name LIKE '%tracking'")]
        assert tracked and max(connection.execute(f'SELECT max(notification_id) FROM "{tracked[0]}"').fetchone()) < until

    rerun = clearing(ledger_db, "audit", "replay", "--until", str(until), "--into", str(target))
    assert rerun.returncode == 0, rerun.stderr
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name], "the killed run's staging file is removed"
    clean = tmp_path / "clean.db"
    assert clearing(ledger_db, "audit", "replay", "--until", str(until), "--into", str(clean)).returncode == 0
    assert sqlite_tables(str(target)) == sqlite_tables(str(clean))
    assert not Path(f"{target}-wal").exists()  # one self-contained file

    again = clearing(ledger_db, "audit", "replay", "--until", str(until), "--into", str(target))
    assert again.returncode == 1 and "[target_exists]" in again.stderr


def test_a_replay_that_fails_midway_removes_its_staging_file(ledger_db, tmp_path, monkeypatch):
    from clearing.application import ClearingApplication
    from clearing.settings import store_env
    from projections import runner
    from projections.replay import ReplayTarget, replay_to

    pages = []
    original = runner.Projector._page

    def failing(self, session, until, page):
        if pages:
            raise OSError("disk full")
        pages.append(page)
        return original(self, session, until, 3)

    monkeypatch.setattr(runner.Projector, "_page", failing)
    target = tmp_path / "past.db"
    with pytest.raises(OSError, match="disk full"):
        replay_to(ClearingApplication(env=store_env(ledger_db)), ReplayTarget(str(target)), head(ledger_db))
    assert pages and not target.exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def _schemas(url: str, like: str) -> list[str]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        return [n for (n,) in connection.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s ORDER BY 1",
                                                 (like,))]


def _drop(url: str, *schemas: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        for schema in schemas:
            connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _pg_tables(url: str, schema: str) -> dict[str, list]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        names = [n for (n,) in connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (schema,))]
        return {name: sorted(map(repr, connection.execute(f'SELECT * FROM "{schema}"."{name}"'))) for name in names}


def test_a_postgres_replay_killed_midway_leaves_no_schema_and_a_rerun_equals_a_clean_replay(postgres_db):
    url = postgres_db.split("?")[0]
    store_schema = parse_qs(urlsplit(postgres_db).query)["schema"][0]
    target, clean = f"{store_schema}_past", f"{store_schema}_clean"
    into = f"{url}?schema={target}"
    try:
        posted = clearing(postgres_db, "post", "--sync", "-", stdin=SCRIPT)
        assert posted.returncode == 0, posted.stdout + posted.stderr
        until = head(postgres_db)
        _drop(url, target)
        import psycopg

        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f'CREATE SCHEMA "{target}"')  # an empty schema made ready by the operator
        killed = killed_replay(postgres_db, until, into, kill_at=9)
        assert killed.returncode == KILLED, killed.stderr
        assert _pg_tables(url, target) == {}, "the target is untouched"
        assert _schemas(url, f"{target}__partial") == [f"{target}__partial"]

        rerun = clearing(postgres_db, "audit", "replay", "--until", str(until), "--into", into)
        assert rerun.returncode == 0, rerun.stderr
        assert _schemas(url, f"{target}__partial") == [], "the killed run's staging schema is dropped"
        assert clearing(postgres_db, "audit", "replay", "--until", str(until), "--into",
                        f"{url}?schema={clean}").returncode == 0
        replayed = _pg_tables(url, target)
        assert replayed and replayed == _pg_tables(url, clean)

        again = clearing(postgres_db, "audit", "replay", "--until", str(until), "--into", into)
        assert again.returncode == 1 and "[target_exists]" in again.stderr
        into_the_store = clearing(postgres_db, "audit", "replay", "--until", str(until), "--into", postgres_db)
        assert into_the_store.returncode == 1 and "[target_exists]" in into_the_store.stderr
    finally:
        _drop(url, target, clean, f"{target}__partial", f"{clean}__partial")
