"""Error codes no other test reached (found by tests/unit/test_error_registry.py): each one
rejected as documented in docs/errors.md, with its code and field and nothing written."""

from __future__ import annotations

from types import SimpleNamespace

import psycopg
import pytest
from click.testing import CliRunner

from clearing.errors import ClearingError, InputError
from clearing.lab.tape import load_tape
from cli.main import main
from projections.read import Views
from projections.replay import REPLAY_LOCK, ReplayTarget
from projections.reports.inputs import DayState
from projections.reports.reader import as_of
from projections.store import ProjectionStore
from tests.conftest import require_postgres


def run(*arguments: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(arguments), env=env or {})
    return result.exit_code, result.output


def test_a_db_given_as_an_sqlite_url_is_invalid_db(tmp_path):
    code, output = run("--db", f"sqlite:///{tmp_path / 'ledger.db'}", "open-account", "alice")
    assert code != 0 and "[invalid_db]" in output and "db" in output, output
    assert not list(tmp_path.iterdir()), "nothing is created"


def test_an_operator_that_is_not_a_name_is_invalid_operator(tmp_path):
    db = str(tmp_path / "ledger.db")
    code, output = run("--db", db, "--as", "two words", "open-account", "alice")
    assert code != 0 and "[invalid_operator]" in output, output


def test_a_time_limit_that_is_not_seconds_is_invalid_setting(tmp_path):
    db = str(tmp_path / "ledger.db")
    code, output = run("--db", db, "open-account", "alice", env={"CLEARING_MAX_FUTURE_SKEW": "an hour"})
    assert code != 0 and "[invalid_setting]" in output and "CLEARING_MAX_FUTURE_SKEW" in output, output


def test_reading_a_projection_never_built_is_projection_missing():
    views = Views(ProjectionStore(":memory:"))
    with pytest.raises(ClearingError) as raised:
        views.table("margin", "margin_accounts")
    assert (raised.value.code, raised.value.field) == ("projection_missing", "margin")


def test_a_report_over_a_lagging_projection_is_projection_behind():
    """A closed day needs every projection at the day's end-of-day position (here 40); one at 30 is behind."""
    lagging = SimpleNamespace(tracked={"margin": 40, "losses": 30})
    state = DayState(day="2025-10-10", provisional=False, as_of_position=40, eod_day="2025-10-10")
    with pytest.raises(ClearingError) as raised:
        as_of(lagging, state, ["margin", "losses"])  # type: ignore[arg-type]
    assert (raised.value.code, raised.value.field) == ("projection_behind", "losses")
    assert "at log position 30, the report needs 40" in raised.value.message


def test_a_tape_that_cannot_be_read_is_tape_not_found(tmp_path):
    with pytest.raises(InputError) as raised:
        load_tape(tmp_path)  # a directory: it exists, and cannot be read as a file
    assert (raised.value.code, raised.value.field) == ("tape_not_found", "tape")


def test_a_second_replay_into_the_same_schema_is_replay_in_progress():
    url = require_postgres()
    schema = "replay_busy_test"
    with psycopg.connect(url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (REPLAY_LOCK, schema))
        separator = "&" if "?" in url else "?"
        with pytest.raises(InputError) as raised:
            ReplayTarget(f"{url}{separator}schema={schema}")
        assert (raised.value.code, raised.value.field) == ("replay_in_progress", "into")
        holder.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (REPLAY_LOCK, schema))


def test_a_read_of_a_store_that_does_not_exist_is_store_not_found(tmp_path):
    code, output = run("--db", str(tmp_path / "missing.db"), "account", "list")
    assert code == 3 and "[store_not_found]" in output, output
    assert not (tmp_path / "missing.db").exists()
