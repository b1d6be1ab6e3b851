"""Projections off the posting path (ADR 22): ``post`` returns after its commit, ``--sync``
brings the projections up to its last command, and ``projections follow`` keeps them
current, exactly once, across kills and restarts, one follower per store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from click.testing import CliRunner

from clearing.audit.log import run as read_once
from clearing.settings import store_env
from cli.main import main
from projections.compare import ProjectionCheck
from projections.follow import Follower, follower_lock
from projections.runner import ProjectionError, Projector
from projections.store import ProjectionStore
from tests.e2e.test_cli import CLEARING, SCRIPT
from tests.ledger import Ledger, accounts_with, dated


def run(db: str, *args: str, stdin: str | None = None):
    return CliRunner().invoke(main, ["--db", db, *args], input=stdin, catch_exceptions=False)


def lags(db: str) -> dict[str, int]:
    shown = run(db, "projections", "status", "--json")
    assert shown.exit_code == 0, shown.output
    return {row["name"]: row["lag"] for row in json.loads(shown.stdout)}


def stream(count: int) -> str:
    """Accounts and ``count`` deposits among them: a log long enough to kill a follower in."""
    names = [f"a{n}" for n in range(20)]
    lines = [accounts_with(*((name, "1000") for name in names))]
    lines += [json.dumps({"type": "deposit", "id": f"d{n}", "account": names[n % 20], "amount": "1"})
              for n in range(count)]
    return dated("\n".join(lines), "2025-01-01T00:00:00Z")


def test_post_returns_after_the_commit_and_sync_brings_the_projections_up(tmp_path):
    db = str(tmp_path / "l.db")
    script = tmp_path / "s.jsonl"
    script.write_text(SCRIPT)
    assert run(db, "post", str(script)).exit_code == 0
    assert set(lags(db).values()) != {0}, "a post that is not synced leaves the projections behind"
    more = tmp_path / "more.jsonl"
    more.write_text('{"type":"deposit","id":"more","account":"alice","amount":"5","at":"2025-01-01T00:00:05Z"}\n')
    assert run(db, "post", "--sync", str(more)).exit_code == 0
    assert set(lags(db).values()) == {0}
    assert run(db, "deposit", "alice", "1", "--no-sync", "--at", "2025-01-01T00:00:06Z").exit_code == 0
    assert set(lags(db).values()) != {0}
    assert run(db, "deposit", "alice", "1", "--at", "2025-01-01T00:00:07Z").exit_code == 0  # terminal default: sync
    assert set(lags(db).values()) == {0}
    shown = run(db, "account", "show", "alice", "--json")
    assert json.loads(shown.stdout)["collateral"] == "1007"


def test_a_follower_applies_what_is_posted_and_a_second_is_refused(tmp_path):
    db = str(tmp_path / "l.db")
    env = {**os.environ, "CLEARING_DB": db}
    script = tmp_path / "s.jsonl"
    script.write_text(SCRIPT)
    assert subprocess.run([CLEARING, "post", str(script)], env=env, capture_output=True, timeout=120).returncode == 0
    follower = subprocess.Popen([CLEARING, "projections", "follow", "--max-idle", "3", "--interval", "0.05"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_lag_zero(db)
        second = subprocess.run([CLEARING, "projections", "follow", "--max-idle", "0"], env=env, capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 3
        assert "[follower_running]" in second.stderr
        more = tmp_path / "more.jsonl"
        more.write_text('{"type":"deposit","id":"more","account":"alice","amount":"5","at":"2025-01-01T00:00:05Z"}\n')
        assert subprocess.run([CLEARING, "post", str(more)], env=env, capture_output=True, timeout=120).returncode == 0
        _wait_for_lag_zero(db)
    finally:
        out, err = follower.communicate(timeout=120)
    assert follower.returncode == 0, err
    assert "stopped at position" in out and "lag 0" in out


def test_a_follower_killed_at_any_moment_and_restarted_applies_every_event_once(tmp_path):
    db = str(tmp_path / "l.db")
    env = {**os.environ, "CLEARING_DB": db}
    script = tmp_path / "s.jsonl"
    script.write_text(stream(3000))
    assert subprocess.run([CLEARING, "post", str(script)], env=env, capture_output=True, timeout=300).returncode == 0
    for delay in (0.5, 1.0, 1.5):
        follower = subprocess.Popen([CLEARING, "projections", "follow"], env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        time.sleep(delay)
        follower.send_signal(signal.SIGKILL)
        follower.wait(timeout=60)
    resumed = subprocess.run([CLEARING, "projections", "follow", "--max-idle", "0"], env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert set(lags(db).values()) == {0}
    verified = subprocess.run([CLEARING, "audit", "verify", "--skip", "decisions", "--skip", "snapshots"], env=env,
                              capture_output=True, text=True, timeout=300)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "projections  ok" in verified.stdout


def test_a_follower_stopped_between_pages_resumes_exactly_once(store_db):
    ledger = Ledger(store_env(store_db))
    ledger.post_ok(stream(400))
    head = ledger.head()
    store = ProjectionStore(store_db)
    try:
        first = Follower(Projector(ledger.app, store), page=100)
        first.begin()
        pages: list[int] = []
        original = first._note

        def stop_after_two(reached: int, head_seen: int) -> None:
            pages.append(reached)
            if len(pages) == 2:
                first.stop()
            original(reached, head_seen)

        first._note = stop_after_two  # type: ignore[method-assign]
        stopped = first.run()
        assert 0 < stopped.position < head, "stopped between two pages, before the head"
        second = Follower(Projector(ledger.app, store), max_idle=0)
        assert second.begin() == stopped.position
        done = second.run()
        assert done.position == head and done.lag == 0
        results = read_once(ledger.app, [ProjectionCheck(Projector(ledger.app, store), head)])
        assert results["projections"][0] is None, results  # equal to a fresh build of the same log
    finally:
        store.close()
        ledger.app.close()


def test_the_follower_lock_admits_one_holder_per_store(store_db, tmp_path):
    store, other = ProjectionStore(store_db), ProjectionStore(store_db)
    try:
        with follower_lock(store):
            with pytest.raises(ProjectionError) as refused, follower_lock(other):
                pass
            assert refused.value.code == "follower_running"
        with follower_lock(other):  # released when the holder ends
            pass
    finally:
        store.close()
        other.close()


def _wait_for_lag_zero(db: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if set(lags(db).values()) == {0}:
            return
        time.sleep(0.1)
    raise AssertionError(f"the follower did not reach the head within {seconds}s: {lags(db)}")
