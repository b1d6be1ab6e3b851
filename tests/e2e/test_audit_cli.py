"""Projections and audit through the command line, as a subprocess: what an operator runs."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_cli import SCRIPT

CLEARING = str(Path(sys.executable).parent / "clearing")
LATER = """{"type":"price","id":"p2","market":"BTC-PERP","price":"29000","at":"2025-01-02T00:00:00Z"}
{"type":"deposit","id":"d-late","account":"alice","amount":"250","at":"2025-01-02T00:00:01Z"}
"""


def clearing(db: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CLEARING, "--db", db, *args], input=stdin, capture_output=True, text=True, timeout=120)


HEAD_AFTER_SCRIPT: dict[str, int] = {}


@pytest.fixture
def ledger_db(tmp_path) -> str:
    db = str(tmp_path / "audit.db")
    assert clearing(db, "post", "--sync", "-", stdin=SCRIPT).returncode == 0
    HEAD_AFTER_SCRIPT[db] = json.loads(clearing(db, "projections", "status", "--json").stdout)[0]["head"]
    assert clearing(db, "post", "--sync", "-", stdin=LATER).returncode == 0
    return db


def test_a_synced_post_is_in_the_projections_when_the_command_returns(ledger_db):
    status = json.loads(clearing(ledger_db, "projections", "status", "--json").stdout)
    assert {row["name"]: row["lag"] for row in status} == dict.fromkeys(
        ("margin", "insurance_fund", "losses", "liquidations", "chain"), 0)
    assert clearing(ledger_db, "deposit", "bob", "5", "--id", "d-more").returncode == 0
    status = json.loads(clearing(ledger_db, "projections", "status", "--json").stdout)
    assert all(row["lag"] == 0 and row["position"] == row["head"] for row in status)
    shown = json.loads(clearing(ledger_db, "account", "show", "bob", "--json").stdout)
    assert shown["collateral"] == "100005"


def test_as_of_shows_the_account_before_a_later_deposit(ledger_db):
    cut = str(HEAD_AFTER_SCRIPT[ledger_db])
    before = json.loads(clearing(ledger_db, "account", "show", "alice", "--json", "--as-of", cut).stdout)
    after = json.loads(clearing(ledger_db, "account", "show", "alice", "--json").stdout)
    assert before["collateral"] == "1000" and after["collateral"] == "1250"
    bad = clearing(ledger_db, "account", "show", "alice", "--as-of", "yesterday")
    assert bad.returncode == 1 and "[invalid_until]" in bad.stderr


def test_rebuild_switches_generation_and_verify_passes(ledger_db):
    result = clearing(ledger_db, "projections", "rebuild")
    assert result.returncode == 0, result.stderr
    status = {row["name"]: row for row in json.loads(clearing(ledger_db, "projections", "status", "--json").stdout)}
    assert status["margin"]["generation"] == 2 and status["chain"]["generation"] == 1
    assert clearing(ledger_db, "projections", "rebuild", "chain").returncode == 1
    verify = clearing(ledger_db, "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.strip().endswith("verified")


def test_replay_until_writes_projections_into_a_separate_file(ledger_db, tmp_path):
    target = str(tmp_path / "replay.db")
    cut = str(HEAD_AFTER_SCRIPT[ledger_db])
    result = clearing(ledger_db, "audit", "replay", "--until", cut, "--into", target)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(target) as connection:
        tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        accounts = [t for t in tables if t.startswith("margin_accounts_g")]
        (collateral,) = connection.execute(f'SELECT collateral FROM "{accounts[0]}" WHERE account = ?',
                                           ("alice",)).fetchone()
    assert collateral == "1000"
    with sqlite3.connect(target) as connection:  # the chain too, as the stable view names it, up to the cut
        (last,) = connection.execute("SELECT max(position) FROM audit_chain").fetchone()
    assert last == int(cut)
    again = clearing(ledger_db, "audit", "replay", "--until", "3", "--into", target)
    assert again.returncode == 1 and "[target_exists]" in again.stderr


def test_verify_names_the_position_of_a_changed_event_and_a_digest_catches_a_rewrite(ledger_db):
    digest = clearing(ledger_db, "audit", "digest").stdout.strip()
    with sqlite3.connect(ledger_db) as connection:
        rowid, state = connection.execute(
            "SELECT rowid, state FROM stored_events WHERE topic LIKE '%Deposited' ORDER BY rowid LIMIT 1").fetchone()
        connection.execute("UPDATE stored_events SET state = ? WHERE rowid = ?",
                           (state.replace(b'"1000"', b'"9000"'), rowid))
    verify = clearing(ledger_db, "audit", "verify")
    assert verify.returncode == 4
    assert f"at position {rowid}" in verify.stdout and "chain" in verify.stdout
    with_digest = clearing(ledger_db, "audit", "verify", "--digest", digest, "--skip", "projections")
    assert with_digest.returncode == 4


def test_an_event_edited_with_a_text_function_is_a_hash_mismatch_at_its_position_not_a_crash(ledger_db):
    """SQLite's replace() on the BLOB state stores TEXT: the chain hashes it as UTF-8 and names the row."""
    with sqlite3.connect(ledger_db) as connection:
        rowid = connection.execute(
            "SELECT rowid FROM stored_events WHERE topic LIKE '%Deposited' ORDER BY rowid LIMIT 1").fetchone()[0]
        connection.execute("UPDATE stored_events SET state = replace(state, '\"1000\"', '\"9000\"') WHERE rowid = ?",
                           (rowid,))
        assert connection.execute("SELECT typeof(state) FROM stored_events WHERE rowid = ?", (rowid,)).fetchone()[0] == "text"
    verify = clearing(ledger_db, "audit", "verify")
    assert verify.returncode == 4
    assert f"chain        FAILED [hash_mismatch] at position {rowid}:" in verify.stdout, verify.stdout
    assert "Traceback" not in verify.stderr and "check_failed" not in verify.stdout


def test_verify_with_whole_groups_skipped_runs_what_is_left(ledger_db):
    """Skipping every check of one process group (or all five) leaves one process, not a crash."""
    group = clearing(ledger_db, "audit", "verify", "--skip", "chain", "--skip", "snapshots", "--skip", "invariants")
    assert group.returncode == 0, group.stderr
    assert "projections  ok" in group.stdout and "decisions    ok" in group.stdout and "chain        skipped" in group.stdout
    everything = clearing(ledger_db, "audit", "verify", *(arg for name in ("chain", "snapshots", "projections",
                                                                          "invariants", "decisions")
                                                          for arg in ("--skip", name)))
    assert everything.returncode == 0 and everything.stdout.count("skipped") == 5, everything.stderr


def test_verify_with_the_first_group_skipped_runs_the_other_in_one_process(ledger_db):
    """``GROUPS[0]`` (snapshots, invariants, decisions) skipped whole: the chain and projections alone."""
    from clearing.audit.verify import GROUPS

    skipped = clearing(ledger_db, "audit", "verify", *(arg for name in GROUPS[0] for arg in ("--skip", name)))
    assert skipped.returncode == 0, skipped.stderr
    assert "chain        ok" in skipped.stdout and "projections  ok" in skipped.stdout, skipped.stdout
    assert "read once for every check" in skipped.stdout and "decisions    skipped" in skipped.stdout, skipped.stdout


BAD_AUDIT_INPUT = [
    (["account", "show", "alice", "--as-of", "0"], "invalid_until"),
    (["account", "show", "alice", "--as-of", "2025-01-01T00:00:00"], "invalid_until"),
    (["audit", "replay", "--until", "soon", "--into", "{tmp}/r.db"], "invalid_until"),
    (["audit", "replay", "--until", "3", "--into", "{db}"], "target_exists"),
    (["audit", "replay", "--until", "3", "--into", "postgresql://postgres@127.0.0.1/test"], "invalid_target"),
    (["audit", "replay", "--until", "3", "--into", "{tmp}/r2.db", "margins"], "unknown_projection"),
    (["projections", "rebuild", "margins"], "unknown_projection"),
    (["audit", "verify", "--digest", "sha256-v1:1:1:zz"], "invalid_digest"),
    (["report", "daily-margin", "--date", "2025-13-01"], "invalid_date"),
    (["report", "margin", "--date", "2025-01-01"], "unknown_report"),
]


@pytest.mark.parametrize(("args", "code"), BAD_AUDIT_INPUT, ids=[code + "-" + args[0] for args, code in BAD_AUDIT_INPUT])
def test_bad_audit_and_report_input_names_its_code_exits_one_and_writes_nothing(ledger_db, tmp_path, args, code):
    head_before = json.loads(clearing(ledger_db, "projections", "status", "--json").stdout)[0]["head"]
    result = clearing(ledger_db, *[arg.format(tmp=tmp_path, db=ledger_db) for arg in args])
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"[{code}]" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert json.loads(clearing(ledger_db, "projections", "status", "--json").stdout)[0]["head"] == head_before
    assert not (tmp_path / "r.db").exists() and not (tmp_path / "r2.db").exists()


def test_events_stops_at_an_undecodable_row_with_its_position_and_no_traceback(ledger_db):
    with sqlite3.connect(ledger_db) as connection:
        rowid = connection.execute(
            "SELECT rowid FROM stored_events WHERE topic LIKE '%Deposited' ORDER BY rowid LIMIT 1").fetchone()[0]
        connection.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (b"{not json", rowid))
    listed = clearing(ledger_db, "events")
    assert listed.returncode == 3, listed.stderr
    assert f"error: [unreadable_event] the event at position {rowid} cannot be decoded" in listed.stderr, listed.stderr
    assert "Traceback" not in listed.stderr
    assert len(listed.stdout.splitlines()) == rowid - 1  # every event before it was listed
    before = clearing(ledger_db, "events", "--limit", str(rowid - 1))
    assert before.returncode == 0 and len(before.stdout.splitlines()) == rowid - 1



def test_verify_after_a_post_that_did_not_sync_names_what_is_behind_until_caught_up(tmp_path):
    """Verify only reads (ADR 22): after a --no-sync post the chain and the read models are
    behind the head, verify says so (event_unchained, projections_behind) and exits 4;
    after `projections catch-up` it passes."""
    db = str(tmp_path / "lagging.db")
    assert clearing(db, "post", "--sync", "-", stdin=SCRIPT).returncode == 0
    assert clearing(db, "post", "--no-sync", "-", stdin=LATER).returncode == 0
    behind = clearing(db, "audit", "verify")
    assert behind.returncode == 4 and "[event_unchained]" in behind.stdout, behind.stdout
    read_models = clearing(db, "audit", "verify", "--skip", "chain")
    assert read_models.returncode == 4 and "[projections_behind]" in read_models.stdout, read_models.stdout
    assert clearing(db, "projections", "catch-up").returncode == 0
    verified = clearing(db, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
