"""The command line's one error contract (``cli.failures``): each exit status of its table,
a line ``error: [code] message`` (JSON with ``--json``), no traceback without ``--debug``,
and no password in any output."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from click.testing import CliRunner
from eventsourcing.persistence import OperationalError

from clearing.application import Outcome
from cli import queries
from cli.context import exit_status
from cli.failures import EXIT_CODES
from cli.main import main
from tests.e2e.test_cli import CLEARING, SCRIPT


def clearing(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLEARING, *args], input=stdin, capture_output=True, text=True, timeout=120)


@pytest.fixture
def db(tmp_path) -> str:
    path = str(tmp_path / "ledger.db")
    assert clearing("--db", path, "post", "--sync", "-", stdin=SCRIPT).returncode == 0
    return path


def test_done_rejected_and_usage(db):
    assert clearing("--db", db, "deposit", "alice", "1").returncode == 0
    rejected = clearing("--db", db, "withdraw", "alice", "999999")
    assert rejected.returncode == 1 and "rejected insufficient" in rejected.stdout
    usage = clearing("--db", db, "account", "show", "alice", "--no-such-option")
    assert usage.returncode == 2 and "No such option" in usage.stderr


def test_a_missing_store_and_an_unreachable_server_exit_3_without_the_password(tmp_path):
    missing = clearing("--db", str(tmp_path / "nothing.db"), "account", "list")
    assert missing.returncode == 3 and missing.stderr.startswith("error: [store_not_found] ")
    unreachable = clearing("--db", "postgresql://alice:s3cret@127.0.0.1:1/ledger", "account", "list")
    assert unreachable.returncode == 3, unreachable.stderr
    assert unreachable.stderr.startswith("error: [connection_refused] ") and "Traceback" not in unreachable.stderr
    assert "s3cret" not in unreachable.stderr + unreachable.stdout


def test_a_failed_verification_exits_4(db):
    wrong = "sha256-v1:3:3:" + "0" * 64
    failed = clearing("--db", db, "audit", "verify", "--digest", wrong)
    assert failed.returncode == 4, failed.stdout + failed.stderr
    assert "FAILED" in failed.stdout


def test_retries_exhausted_is_exit_5_and_outranks_a_rejection():
    rejected = Outcome(line=1, status="rejected", command_id="a", command_type="deposit", code="insufficient_collateral")
    exhausted = Outcome(line=2, status="rejected", command_id="b", command_type="deposit", code="retries_exhausted")
    assert exit_status([rejected]) == 1 and exit_status([rejected, exhausted]) == 5 and exit_status([]) == 0


@pytest.mark.parametrize(("raised", "code", "status"), [
    (RuntimeError("boom"), "internal_error", 70),
    (KeyboardInterrupt(), "interrupted", 130),
    (OperationalError("disk I/O error"), "store_failed", 3),
    (OSError("No space left on device"), "io_failed", 3),
])
def test_every_other_failure_is_one_line_with_its_status(db, monkeypatch, raised, code, status):
    def explode(*args, **kwargs):
        raise raised

    monkeypatch.setattr(queries, "account_list", explode)
    result = CliRunner().invoke(main, ["--db", db, "account", "list"])
    assert result.exit_code == status, result.output
    assert result.stderr.startswith(f"error: [{code}] ") and "Traceback" not in result.stderr
    debugged = CliRunner().invoke(main, ["--db", db, "--debug", "account", "list"])
    assert debugged.exit_code == status and "Traceback (most recent call last)" in debugged.stderr


def test_with_json_an_error_is_a_json_object(db):
    missing = clearing("--db", db, "account", "show", "nobody", "--json")
    assert missing.returncode == 1
    document = json.loads(missing.stderr)
    assert document["error"]["code"] == "account_not_found" and document["error"]["field"] == "account"


def test_the_table_names_every_status():
    assert sorted(EXIT_CODES) == [0, 1, 2, 3, 4, 5, 70, 130]


def test_demo_refuses_a_store_that_holds_events_and_defaults_to_its_own_file(db, tmp_path):
    refused = clearing("--db", db, "demo", "--accounts", "2", "--steps", "1", "--reports", str(tmp_path / "r"))
    assert refused.returncode == 1 and refused.stderr.startswith("error: [demo_store_not_empty] ")
    assert "already holds" in refused.stderr and not (tmp_path / "r").exists()
    env = {key: value for key, value in os.environ.items() if key != "CLEARING_DB"}
    own = subprocess.run([CLEARING, "demo", "--accounts", "2", "--steps", "1", "--reports", "r"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert own.returncode == 0, own.stderr
    assert (tmp_path / "demo.db").exists() and not (tmp_path / "clearing.db").exists()
    forced = clearing("--db", str(tmp_path / "demo.db"), "demo", "--accounts", "2", "--steps", "1", "--force",
                      "--reports", str(tmp_path / "r2"))
    assert forced.returncode == 0 and "already applied" in forced.stdout, forced.stdout + forced.stderr


@pytest.mark.parametrize(("change", "code"), [
    ({"user": "nobody_here", "password": "s3cret"}, "auth_failed"),
    ({"database": "no_such_database", "password": "s3cret"}, "database_missing"),
    ({"host": "no-such-host.invalid", "password": "s3cret"}, "host_unknown"),
    ({"port": "1", "password": "s3cret"}, "connection_refused"),
])
def test_each_postgres_failure_has_its_own_code_and_never_shows_the_password(postgres_db, change, code):
    """One direct connection before the library's pool (``clearing.pg_probe``) says why."""
    from urllib.parse import urlsplit

    parts = urlsplit(postgres_db)
    values = {"user": parts.username or "postgres", "host": parts.hostname, "port": str(parts.port or 5432),
              "database": parts.path.lstrip("/"), **change}
    url = f"postgresql://{values['user']}:{values['password']}@{values['host']}:{values['port']}/{values['database']}"
    for args in (("account", "list"), ("deposit", "alice", "1")):  # a read and a write
        result = clearing("--db", url, *args)
        assert result.returncode == 3, result.stderr
        assert result.stderr.startswith(f"error: [{code}] ") and len(result.stderr.splitlines()) == 1, result.stderr
        assert "s3cret" not in result.stdout + result.stderr


def test_a_schema_name_that_is_not_an_identifier_is_a_usage_error(postgres_db):
    result = clearing("--db", postgres_db.split("?")[0] + '?schema=a";drop', "account", "list")
    assert result.returncode == 2 and "[invalid_db]" in result.stderr and "Traceback" not in result.stderr
