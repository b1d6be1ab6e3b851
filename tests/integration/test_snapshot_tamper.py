"""Tampering with a stored snapshot is caught by ``audit verify``, naming the aggregate.

The hash chain covers the events; snapshots are not chained, yet every load starts from
the latest one. A ledger whose accounts, market, insurance fund and clearinghouse are all
past version 200 (``SNAPSHOT_INTERVAL``) is written by the application, so each has a stored
snapshot; then single edits are made straight to the snapshot table, each a valid JSON
state the library decodes without complaint: a market's margin fractions lowered (the
attack of issue 13: a 5.5M-notional trade let through on 22k equity), an account's
collateral raised, the fund's balance, a clearinghouse parameter, a number turned into
text, a snapshot copied beyond the aggregate's last event, a forged snapshot of a command
record, a state that no longer parses. ``audit verify`` must fail at its ``snapshots``
check naming the aggregate (kind and name), the snapshot's version and the first differing
field, and the ``replay_equals_live`` invariant must fail too (the repository loads
through the tampered snapshot). Each edit starts from the clean store: a fresh copy of the
SQLite file, or on PostgreSQL the row restored afterwards and the store verified clean.

SQLite's table is the library's ``stored_snapshots`` (ids as hex text); PostgreSQL's is
``clearing_snapshots`` in the test's schema (ids as uuid).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import pytest

from clearing.audit.invariants import check_ledger
from clearing.audit.snapshots import check_snapshots
from clearing.domain import ids
from clearing.errors import InvariantViolation
from clearing.settings import store_env
from cli.audit import run_verify
from cli.main import Store  # first: it loads the command tree, cli.audit among it
from tests.ledger import MARKET_BTC, Ledger, accounts_with

CLEARING = str(Path(sys.executable).parent / "clearing")
ROUNDS = 210  # each of market, alice, bob, fund and clearinghouse passes version 200
KINDS = {"Account": 2, "Clearinghouse": 1, "InsuranceFund": 1, "Market": 1}


def build(db: str) -> Ledger:
    """Every aggregate kind past version 200, the projections caught up (verify only reads)."""
    ledger = Ledger(store_env(db))
    ledger.post_ok(MARKET_BTC)
    ledger.post_ok(accounts_with(("alice", "100000"), ("bob", "100000"), ("whale", "22000"), ("maker", "10000000")))
    lines: list[dict[str, Any]] = []
    for index in range(ROUNDS):
        price = str(50000 + (index % 7) * 10)
        lines += [
            {"type": "price", "market": "BTC-PERP", "price": price},
            {"type": "trade", "market": "BTC-PERP", "buyer": "alice", "seller": "bob", "size": "0.01", "price": price},
            {"type": "fund_insurance", "amount": "10"},
            # raising the floor tightens risk, so it needs no officers' approval
            {"type": "set_parameters", "parameters": {"liquidation_floor": f"0.{501 + index}"}},
        ]
    ledger.post_ok(lines)
    Store(db).catch_up()
    return ledger


# -- the snapshot table, reached with plain SQL ------------------------------------------------------


@dataclass(frozen=True)
class Row:
    originator_id: Any  # as the driver returns it (hex text on SQLite, UUID on PostgreSQL)
    version: int
    topic: str
    state: bytes

    @property
    def kind(self) -> str:
        return json.loads(self.state)["topic"].rsplit(":", 1)[-1]

    @property
    def uuid(self) -> UUID:
        return self.originator_id if isinstance(self.originator_id, UUID) else UUID(self.originator_id)


class SnapshotTable:
    def __init__(self, connection: Any, name: str, mark: str, text_ids: bool) -> None:
        self.connection, self.name, self.mark, self.text_ids = connection, name, mark, text_ids

    def sql(self, statement: str, *params: Any) -> Any:
        return self.connection.execute(statement.replace("?", self.mark), params)

    def rows(self) -> list[Row]:
        found = self.sql(f"SELECT originator_id, originator_version, topic, state FROM {self.name} "
                         "ORDER BY originator_id, originator_version").fetchall()
        return [Row(i, v, t, bytes(s)) for i, v, t, s in found]

    def of(self, kind: str, aggregate_id: UUID | None = None) -> Row:
        """The latest snapshot of an aggregate of that kind (the one loads start from)."""
        rows = [r for r in self.rows() if r.kind == kind and (aggregate_id is None or r.uuid == aggregate_id)]
        return max(rows, key=lambda r: r.version)

    def key(self, aggregate_id: UUID) -> Any:
        return aggregate_id.hex if self.text_ids else aggregate_id

    def update(self, row: Row, state: bytes) -> None:
        self.sql(f"UPDATE {self.name} SET state = ? WHERE originator_id = ? AND originator_version = ?",
                 state, row.originator_id, row.version)
        self.commit()

    def insert(self, aggregate_id: UUID, version: int, topic: str, state: bytes) -> None:
        self.sql(f"INSERT INTO {self.name} (originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?)",
                 self.key(aggregate_id), version, topic, state)
        self.commit()

    def delete(self, aggregate_id: UUID, version: int) -> None:
        self.sql(f"DELETE FROM {self.name} WHERE originator_id = ? AND originator_version = ?",
                 self.key(aggregate_id), version)
        self.commit()

    def commit(self) -> None:
        if not getattr(self.connection, "autocommit", False):
            self.connection.commit()


def edited(row: Row, change: Callable[[dict[str, Any]], None]) -> bytes:
    """The row's state with ``change`` applied to the aggregate's attributes: valid JSON."""
    document = json.loads(row.state)
    change(document["state"])
    return json.dumps(document, separators=(",", ":")).encode()


def decimal(text: str) -> dict[str, str]:
    return {"_type_": "decimal_str", "_data_": text}


# -- the edits -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tampered:
    """What verify must name: code, 'Kind name' (or kind alone), version, the field."""

    code: str
    who: str
    version: int
    field: str
    undo: Callable[[], None]

    def line(self) -> str:
        return f"[{self.code}] {self.who} snapshot at version {self.version}: {self.field}"


def lower_margin_fractions(table: SnapshotTable, ledger: Ledger) -> Tampered:
    """Issue 13's edit: a market's initial and maintenance margin fractions lowered 100x."""
    row = table.of("Market")

    def change(state: dict[str, Any]) -> None:
        tier = state["tiers"][0]["_data_"]
        tier["initial_margin_fraction"] = decimal("0.001")
        tier["maintenance_margin_fraction"] = decimal("0.0005")

    table.update(row, edited(row, change))
    return Tampered("snapshot_differs", "Market BTC-PERP", row.version, "tiers[0].initial_margin_fraction: events 0.1, "
                    "snapshot 0.001", lambda: table.update(row, row.state))


def raise_collateral(table: SnapshotTable, ledger: Ledger) -> Tampered:
    row = table.of("Account", ids.account_id("alice"))
    table.update(row, edited(row, lambda state: state.update(collateral=decimal("1100000"))))
    return Tampered("snapshot_differs", "Account alice", row.version, "collateral: events 100000, snapshot 1100000",
                    lambda: table.update(row, row.state))


def fund_balance(table: SnapshotTable, ledger: Ledger) -> Tampered:
    row = table.of("InsuranceFund")
    balance = json.loads(row.state)["state"]["balance"]["_data_"]
    table.update(row, edited(row, lambda state: state.update(balance=decimal("99999"))))
    return Tampered("snapshot_differs", "InsuranceFund", row.version, f"balance: events {balance}, snapshot 99999",
                    lambda: table.update(row, row.state))


def clearinghouse_parameter(table: SnapshotTable, ledger: Ledger) -> Tampered:
    row = table.of("Clearinghouse")
    table.update(row, edited(row, lambda state: state["parameters"].update(liquidation_fee_rate=decimal("0"))))
    return Tampered("snapshot_differs", "Clearinghouse", row.version,
                    "parameters['liquidation_fee_rate']: events 0.01, snapshot 0", lambda: table.update(row, row.state))


def number_as_text(table: SnapshotTable, ledger: Ledger) -> Tampered:
    """Same digits, other type: the market's price band as a JSON string, not a Decimal."""
    row = table.of("Market")
    band = json.loads(row.state)["state"]["price_band"]["_data_"]
    table.update(row, edited(row, lambda state: state.update(price_band=band)))
    return Tampered("snapshot_differs", "Market BTC-PERP", row.version,
                    f"price_band: events {band} (Decimal), snapshot '{band}' (str)",
                    lambda: table.update(row, row.state))


def beyond_the_log(table: SnapshotTable, ledger: Ledger) -> Tampered:
    """An account's snapshot copied to a version its events never reach (loads start there)."""
    row = table.of("Account", ids.account_id("bob"))
    version = ledger.app.get_account("bob").version + 50
    table.insert(row.uuid, version, row.topic, edited(row, lambda state: state.update(collateral=decimal("5"))))
    return Tampered("snapshot_without_events", "Account bob", version,
                    f"the log has events of this aggregate only up to version {version - 50}",
                    lambda: table.delete(row.uuid, version))


def forged_command_record(table: SnapshotTable, ledger: Ledger) -> Tampered:
    """A snapshot of a command record (never snapshotted: one event) with other content."""
    record_id = ids.command_id("dep-alice")
    record = ledger.app.repository.get(record_id)
    snapshot = type(record).Snapshot.take(record)
    snapshot.state["content"] = {**record.content, "amount": "1"}
    stored = ledger.app.mapper.to_stored_event(snapshot)
    table.insert(record_id, stored.originator_version, stored.topic, stored.state)
    return Tampered("snapshot_differs", "CommandRecord dep-alice", 1, "content['amount']: events '100000', snapshot '1'",
                    lambda: table.delete(record_id, 1))


def unparsable(table: SnapshotTable, ledger: Ledger) -> Tampered:
    row = table.of("Account", ids.account_id("alice"))
    table.update(row, row.state[:-3])
    return Tampered("snapshot_unreadable", "Account alice", row.version, "cannot be decoded: JSONDecodeError",
                    lambda: table.update(row, row.state))


EDITS = [lower_margin_fractions, raise_collateral, fund_balance, clearinghouse_parameter, number_as_text,
         beyond_the_log, forged_command_record, unparsable]


def assert_caught(db: str, tampered: Tampered, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert run_verify(Store(db), workers=1) is False
    out = capsys.readouterr().out
    assert "chain        ok" in out, out  # the events are untouched
    assert f"snapshots    FAILED {tampered.line()}" in out, out
    with pytest.raises(InvariantViolation) as violation:  # loads go through the latest snapshot
        check_ledger(Ledger(store_env(db)).app)
    assert "replay_equals_live" in str(violation.value) and tampered.who in str(violation.value)


def assert_clean(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert run_verify(Store(db), workers=1) is True
    out = capsys.readouterr().out
    assert "snapshots    ok   5 snapshot(s) of 5 aggregate(s) (Account 2, Clearinghouse 1, InsuranceFund 1, Market 1)" in out, out
    assert "5 aggregate(s) loaded through snapshots equal their events" in out, out


# -- SQLite: a fresh copy of the file per edit ------------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("snapshots") / "base.db"
    ledger = build(str(path))
    finding, summary = check_snapshots(ledger.app)
    assert finding is None and dict(summary.kinds) == KINDS
    return path


def fresh_copy(base: Path, target: Path) -> None:
    target.unlink(missing_ok=True)
    with sqlite3.connect(base) as source, sqlite3.connect(target) as copy:
        source.backup(copy)
    copy.close()


def sqlite_table(connection: sqlite3.Connection) -> SnapshotTable:
    return SnapshotTable(connection, "stored_snapshots", "?", text_ids=True)


def test_a_clean_sqlite_store_with_snapshots_of_every_kind_verifies(sqlite_base, tmp_path, capsys):
    copy = tmp_path / "copy.db"
    fresh_copy(sqlite_base, copy)
    assert_clean(str(copy), capsys)


@pytest.mark.parametrize("edit", EDITS, ids=[edit.__name__ for edit in EDITS])
def test_every_sqlite_snapshot_edit_is_caught_naming_the_aggregate(sqlite_base, tmp_path, capsys, edit):
    work = tmp_path / "work.db"
    fresh_copy(sqlite_base, work)
    with sqlite3.connect(work) as connection:
        tampered = edit(sqlite_table(connection), Ledger(store_env(str(work))))
    connection.close()
    assert_caught(str(work), tampered, capsys)


def test_lowered_margin_fractions_let_a_trade_through_and_verify_exits_four(sqlite_base, tmp_path):
    """The incident: 5.5M notional on 22k equity, decided on a tampered snapshot."""
    trade = ('{"type":"trade","id":"t-whale","market":"BTC-PERP","buyer":"whale","seller":"maker",'
             '"size":"110","price":"50000"}')
    clean = tmp_path / "clean.db"
    fresh_copy(sqlite_base, clean)
    (refused,) = Ledger(store_env(str(clean))).post(trade, auto_id=False)
    assert refused.status == "rejected"
    work = tmp_path / "work.db"
    fresh_copy(sqlite_base, work)
    with sqlite3.connect(work) as connection:
        tampered = lower_margin_fractions(sqlite_table(connection), Ledger(store_env(str(work))))
    connection.close()
    (applied,) = Ledger(store_env(str(work))).post(trade, auto_id=False)
    assert applied.status == "applied"  # the decision was taken on the snapshot
    subprocess.run([CLEARING, "--db", str(work), "projections", "catch-up"], check=True, capture_output=True)
    verify = subprocess.run([CLEARING, "--db", str(work), "audit", "verify"], capture_output=True, text=True, timeout=300)
    assert verify.returncode == 4, verify.stdout + verify.stderr
    assert f"snapshots    FAILED {tampered.line()}" in verify.stdout, verify.stdout
    assert "verified" not in verify.stdout


def test_a_deleted_snapshot_is_not_a_finding(sqlite_base, tmp_path, capsys):
    """Without a snapshot the repository folds the events: slower, never wrong."""
    work = tmp_path / "work.db"
    fresh_copy(sqlite_base, work)
    with sqlite3.connect(work) as connection:
        table = sqlite_table(connection)
        row = table.of("Market")
        table.delete(row.uuid, row.version)
    connection.close()
    capsys.readouterr()
    assert run_verify(Store(str(work)), workers=1) is True
    assert "snapshots    ok   4 snapshot(s) of 4 aggregate(s)" in capsys.readouterr().out


# -- PostgreSQL: edit, verify, restore the row, verify clean -------------------------------------------------


def test_every_postgres_snapshot_edit_is_caught_naming_the_aggregate(postgres_db, capsys):
    import psycopg

    ledger = build(postgres_db)
    schema = parse_qs(urlsplit(postgres_db).query)["schema"][0]
    assert_clean(postgres_db, capsys)
    with psycopg.connect(postgres_db.split("?")[0], autocommit=True) as connection:
        table = SnapshotTable(connection, f'"{schema}".clearing_snapshots', "%s", text_ids=False)
        for edit in EDITS:
            tampered = edit(table, ledger)
            assert_caught(postgres_db, tampered, capsys)
            tampered.undo()
    assert_clean(postgres_db, capsys)
