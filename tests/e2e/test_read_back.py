"""Read back what can be set: ``market list``, ``parameters show``, ``controls show``, ``--version``.

One ledger on each store: an officer registered, liquidations paused in BTC-PERP, a
price that makes alice due (so her liquidation is queued), a pending approval, a default
and a market override set. Each read names what the log holds, at the head and as of an
earlier position.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from click.testing import CliRunner

from cli.main import main
from tests.e2e.test_cli import CLEARING, SCRIPT

T = "2025-01-01T00:00:0{}Z"


def run(db: str, *args: str, operator: str = "ops") -> Any:
    result = CliRunner().invoke(main, ["--db", db, "--as", operator, *args], catch_exceptions=False)
    return result


def posted(db: str, *args: str, operator: str = "ops") -> None:
    result = run(db, *args, "--json", operator=operator)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "applied", result.stdout


def read(db: str, *args: str) -> Any:
    result = run(db, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def ledger(store_db: str) -> str:
    result = CliRunner().invoke(main, ["--db", store_db, "post", "--sync", "-"], input=SCRIPT)
    assert result.exit_code == 0, result.output
    posted(store_db, "register-officer", "olga", "--at", T.format(2))
    posted(store_db, "approve", "olga", "pause", "liquidations", "--market", "BTC-PERP", "--at", T.format(3),
           operator="olga")
    posted(store_db, "pause", "liquidations", "--market", "BTC-PERP", "--at", T.format(4))
    posted(store_db, "price", "BTC-PERP", "31800", "--at", T.format(5))  # alice (short 0.3, liq. 31,746) is due
    posted(store_db, "approve", "olga", "set-parameters", "liquidation_fee_rate=0.02", "--at", T.format(6),
           operator="olga")
    posted(store_db, "set-parameters", "liquidation_floor=0.6", "--at", T.format(7))
    posted(store_db, "set-parameters", "liquidation_floor=0.7", "--market", "BTC-PERP", "--at", T.format(8))
    return store_db


def test_controls_show_names_the_pause_the_officer_the_pending_change_and_the_queue(ledger):
    view = read(ledger, "controls", "show")
    assert view["paused"] == [{"operation": "liquidations", "market": "BTC-PERP"}]
    assert view["officers"] == ["olga"] and view["approvals_required"] == 1
    (pending,) = view["pending_approvals"]
    assert (pending["action"], pending["scope"], pending["content"]) == (
        "set_parameters", "*", {"parameters": {"liquidation_fee_rate": "0.02"}})
    assert pending["describe"] == "set_parameters liquidation_fee_rate=0.02 in the clearinghouse"
    assert [(a["officer"], a["approved_at"], a["counts_until"]) for a in pending["approvals"]] == [
        ("olga", "2025-01-01T00:00:06+00:00", "2025-01-02T00:00:06+00:00")]  # approval_ttl one day
    (queued,) = view["liquidation_queue"]
    assert (queued["account"], queued["market"], queued["price_mark"], queued["queued_at"]) == (
        "alice", "BTC-PERP", "31800", "2025-01-01T00:00:05+00:00")
    text = run(ledger, "controls", "show").stdout
    assert "paused: liquidations in BTC-PERP" in text and "queued #1: alice in BTC-PERP" in text
    assert "pending: set_parameters liquidation_fee_rate=0.02 in the clearinghouse: 1 of 1" in text


def test_controls_as_of_a_position_before_the_pause(ledger):
    events = [json.loads(line) for line in run(ledger, "events", "--json").stdout.splitlines()]
    paused_at = next(e["position"] for e in events if e["type"] == "Clearinghouse.ControlApplied")
    before = read(ledger, "controls", "show", "--as-of", str(paused_at - 1))
    assert before["paused"] == [] and before["liquidation_queue"] == [] and before["officers"] == ["olga"]
    assert [p["action"] for p in before["pending_approvals"]] == ["pause"]  # approved, not yet applied
    at_time = read(ledger, "controls", "show", "--as-of", T.format(4))
    assert at_time["paused"] and not at_time["liquidation_queue"]


def test_parameters_show_gives_each_value_its_source(ledger):
    defaults = {row["name"]: row for row in read(ledger, "parameters", "show")["parameters"]}
    assert (defaults["liquidation_floor"]["value"], defaults["liquidation_floor"]["source"]) == ("0.6", "set")
    assert defaults["liquidation_fee_rate"]["value"] == "0.01"  # approved, never posted: not in force
    assert defaults["liquidation_fee_rate"]["source"] == "built-in"
    assert defaults["approvals_required"]["governed"] == "always"
    market = read(ledger, "parameters", "show", "--market", "BTC-PERP")
    rows = {row["name"]: row for row in market["parameters"]}
    assert (rows["liquidation_floor"]["value"], rows["liquidation_floor"]["source"]) == ("0.7", "market")
    assert "approvals_required" not in rows  # a clearinghouse-only parameter
    set_at = rows["liquidation_floor"]["set_at_position"]
    earlier = read(ledger, "parameters", "show", "--market", "BTC-PERP", "--as-of", str(set_at - 1))
    assert {r["name"]: r["value"] for r in earlier["parameters"]}["liquidation_floor"] == "0.6"
    missing = run(ledger, "parameters", "show", "--market", "NOPE-PERP")
    assert missing.exit_code == 1 and "market_not_found" in missing.stderr


def test_market_list_is_one_document_and_empty_is_an_empty_document(store_db, ledger):
    markets = read(ledger, "market", "list")
    assert [(m["market"], m["mark_price"], m["open_interest"], m["trades"]) for m in markets] == [
        ("BTC-PERP", "31800", "0.3", 1)]
    assert "BTC-PERP" in run(ledger, "market", "list").stdout
    accounts = read(ledger, "account", "list")
    assert [a["account"] for a in accounts] == ["alice", "bob"]


def test_an_empty_store_lists_nothing_as_an_empty_document(tmp_path):
    db = str(tmp_path / "empty.db")
    assert CliRunner().invoke(main, ["--db", db, "post", "-"], input="").exit_code == 0  # a store, no events
    assert CliRunner().invoke(main, ["--db", db, "projections", "catch-up"]).exit_code == 0
    for group in ("market", "account"):
        assert read(db, group, "list") == []
        assert run(db, group, "list").stdout.strip() in ("no markets", "no accounts")


def test_version_names_the_libraries_and_the_store_schema(tmp_path):
    db = tmp_path / "v.db"
    before = subprocess.run([CLEARING, "--db", str(db), "--version"], capture_output=True, text=True, timeout=60)
    assert before.returncode == 0, before.stderr
    first, libraries, store = before.stdout.splitlines()
    assert first.startswith("clearing-ledger 0.1.0 (store schema ") and "eventsourcing 9.5." in libraries
    assert all(name in libraries for name in ("SQLAlchemy", "pydantic", "click", "psycopg", "Python 3."))
    assert "none yet" in store and not db.exists()  # --version never creates a store
    subprocess.run([CLEARING, "--db", str(db), "deposit", "alice", "1"], capture_output=True, timeout=60)
    after = subprocess.run([CLEARING, "--version", "--db", str(db)], capture_output=True, text=True, timeout=60)
    assert after.stdout.splitlines()[2] == f"store {db}: schema 1"


def test_version_on_postgres_reads_the_schema_and_hides_the_password(postgres_db):
    posted(postgres_db, "open-account", "alice")
    with_password = postgres_db.replace("postgresql://postgres@", "postgresql://postgres:s3cret@")
    result = subprocess.run([CLEARING, "--db", with_password, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.splitlines()[2].endswith(": schema 1"), result.stdout
    assert "s3cret" not in result.stdout + result.stderr
