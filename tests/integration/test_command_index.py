"""Runs of fills and the command index (ADR 25), on SQLite and PostgreSQL.

A batch's consecutive trades store one ``Account.FillsRecorded`` per account and one row of
the command index per trade, and every answer (applied, rejected, conflicting) is given from
the index exactly as it was from the command records. ``audit verify``'s ``commands`` check
finds an index row edited, deleted or added.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from clearing.audit.command_check import CommandIndexCheck
from clearing.audit.log import CheckFailed, read_log
from clearing.command_index import COMMANDS_KWARG, CommandRow
from clearing.domain.account import Account
from clearing.domain.command_record import accepted
from clearing.domain.fills import trade_fills
from clearing.recorders import READ_SET_KWARG
from clearing.settings import store_env
from clearing.transfer import export_log, import_log
from projections.event_records import iter_events
from projections.queries import account_view
from projections.replay import replay_views, resolve_until
from tests.integration.test_concurrency_review import interleave
from tests.ledger import MARKET_BTC, T0, Ledger, accounts_with

BOOK = f"""
{MARKET_BTC}
{accounts_with(("alice", "100000"), ("bob", "100000"), ("carol", "100000"))}
{{"type":"price","id":"p1","market":"BTC-PERP","price":"50000","at":"2025-01-01T00:00:00Z"}}
"""
RUN = """
{"type":"trade","id":"t1","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"0.5","price":"50000","at":"2025-01-01T00:00:01Z"}
{"type":"trade","id":"t2","market":"BTC-PERP","buyer":"alice","seller":"carol","size":"0.2","price":"50000"}
{"type":"trade","id":"t3","market":"BTC-PERP","buyer":"carol","seller":"bob","size":"0.1","price":"50000","at":"2025-01-01T00:00:02Z"}
"""


def fills_rows(ledger: Ledger) -> list[Account.FillsRecorded]:
    return [event for page in read_log(ledger.app.recorder, ledger.app.mapper) for _, event in page.decoded()
            if isinstance(event, Account.FillsRecorded)]


def test_a_run_stores_one_event_per_account_and_one_index_row_per_trade(store_db):
    ledger = Ledger(store_env(store_db))
    ledger.post_ok(BOOK)
    versions = {name: ledger.app.get_account(name).version for name in ("alice", "bob", "carol")}
    head = ledger.head()
    outcomes = ledger.post_ok(RUN)

    rows = fills_rows(ledger)
    # three accounts touched: three rows for three trades (was nine), and the batch's TradingRecorded
    assert ledger.head() == head + 4
    assert [(row.account, [wire[0] for wire in row.fills]) for row in rows] == [
        ("alice", ["t1", "t2"]), ("bob", ["t1", "t3"]), ("carol", ["t2", "t3"])]
    for row in rows:  # each account written once, from the version it had, and left at it
        assert row.originator_version == versions[row.account] + 1
        assert ledger.app.get_account(row.account).version == row.originator_version
    alice = list(trade_fills(rows[0]))
    assert [(f.size_delta, f.position_size_after, f.counterparty) for f in alice] == [
        (Decimal("0.5"), Decimal("0.5"), "bob"), (Decimal("0.2"), Decimal("0.7"), "carol")]
    assert {o.command_id: o.positions for o in outcomes} == {"t1": [head + 1, head + 2], "t2": [head + 1, head + 3],
                                                             "t3": [head + 2, head + 3]}
    index = ledger.app.recorder.select_commands(["t1", "t2", "t3", "p1", "nothing"])
    assert sorted(index) == ["p1", "t1", "t2", "t3"]
    assert index["t1"].content_dict() == {"type": "trade", "market": "BTC-PERP", "buyer": "alice", "seller": "bob",
                                          "size": "0.5", "price": "50000", "at": "2025-01-01T00:00:01+00:00"}
    assert "at" not in index["t2"].content_dict()  # posted without one: stamped, not part of its content
    fresh = Ledger(store_env(store_db))  # replay from the log equals the live state
    assert [fresh.app.get_account(n).positions for n in ("alice", "bob", "carol")] == [
        ledger.app.get_account(n).positions for n in ("alice", "bob", "carol")]


def test_a_reposted_trade_is_answered_from_the_index(store_db):
    ledger = Ledger(store_env(store_db))
    ledger.post_ok(BOOK)
    ledger.post_ok(RUN)
    head = ledger.head()
    same, size, kind, at, stamped = ledger.post("""
{"type":"trade","id":"t1","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"0.50","price":"50000.0","at":"2025-01-01T00:00:01Z"}
{"type":"trade","id":"t1","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"0.6","price":"50000","at":"2025-01-01T00:00:01Z"}
{"type":"deposit","id":"t2","account":"alice","amount":"1"}
{"type":"trade","id":"t1","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"0.5","price":"50000"}
{"type":"trade","id":"t2","market":"BTC-PERP","buyer":"alice","seller":"carol","size":"0.2","price":"50000"}
""", auto_id=False)
    assert same.status == "already_applied" and stamped.status == "already_applied"
    assert [(o.code, o.field) for o in (size, kind, at)] == [("id_conflict", "size"), ("id_conflict", "type"),
                                                             ("id_conflict", "at")]
    assert ledger.head() == head  # nothing written


def test_a_rejected_trade_keeps_its_record_and_its_answer(store_db):
    ledger = Ledger(store_env(store_db))
    ledger.post_ok(BOOK)
    line = '{"type":"trade","id":"big","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"100","price":"50000"}'
    (first,) = ledger.post(line, auto_id=False)
    ledger.post_ok('{"type":"deposit","id":"more","account":"alice","amount":"10000000"}')
    (again,) = ledger.post(line, auto_id=False)  # today's state would accept it
    assert (first.status, first.code) == ("rejected", "insufficient_margin")
    assert (again.status, again.code, again.message) == ("already_rejected", "insufficient_margin", first.message)
    row = ledger.app.recorder.select_commands(["big"])["big"]
    assert (row.code, row.field) == ("insufficient_margin", "buyer")


def test_two_writers_answer_one_trade_id_once(store_db):
    first, second = Ledger(store_env(store_db)), Ledger(store_env(store_db))
    first.post_ok(BOOK)
    line = '{"type":"trade","id":"race","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"0.5","price":"50000"}'
    interleave(first, lambda: second.post_ok(line))  # second commits it between first's decide and save
    (outcome,) = first.post(line, auto_id=False)
    assert outcome.status == "already_applied"
    assert first.app.conflicts_retried >= 1
    fresh = Ledger(store_env(store_db))
    assert fresh.position("alice", "BTC-PERP") == Decimal("0.5")  # once, not twice
    assert len(fresh.app.recorder.select_commands(["race"])) == 1


def test_a_refused_save_writes_no_index_row(store_db):
    """The read-set check refuses the batch after the lock is taken: its index rows must not
    be committed without its events (on PostgreSQL the library leaves its transaction block
    normally after catching the refusal, so only statements run before it would commit)."""
    ledger = Ledger(store_env(store_db))
    ledger.post_ok(BOOK)
    recorder = ledger.app.recorder
    alice = ledger.app.get_account("alice")
    stale = {alice.id: alice.version - 1}  # read one version behind what is stored
    event = StoredEvent(originator_id=ledger.app.get_account("bob").id, originator_version=99, topic="x", state=b"{}")
    row = CommandRow("refused", "deposit", '{"type":"deposit"}', None, None, None)
    with pytest.raises(IntegrityError):
        recorder.insert_events([event], **{READ_SET_KWARG: stale, COMMANDS_KWARG: [row]})
    assert recorder.select_commands(["refused"]) == {}
    with pytest.raises(IntegrityError):  # and a duplicate id refuses the whole insert
        recorder.insert_events([event], **{COMMANDS_KWARG: [row._replace(command_id="t-dup"),
                                                             row._replace(command_id="p1")]})
    assert recorder.select_commands(["t-dup"]) == {}
    taken = StoredEvent(originator_id=alice.id, originator_version=alice.version, topic="x", state=b"{}")
    with pytest.raises(IntegrityError):  # a re-post: its event's version and its id both stored already
        recorder.insert_events([taken], **{COMMANDS_KWARG: [row._replace(command_id="p1")]})


def test_an_imported_store_answers_every_id_as_the_original(store_db, tmp_path):
    source = Ledger(store_env(str(tmp_path / "source.db")))
    source.post_ok(BOOK)
    source.post_ok(RUN)
    exported = tmp_path / "log.jsonl"
    with exported.open("w") as out:
        export_log(source.app.recorder, out)
    target = Ledger(store_env(store_db))
    import_log(target.app, exported, batch=4)  # batches cut through the run's rows
    ids = ["t1", "t2", "t3", "p1", "open-alice", "dep-bob"]
    assert target.app.recorder.select_commands(ids) == source.app.recorder.select_commands(ids)
    assert target.app.recorder.count_commands() == source.app.recorder.count_commands()
    assert [o.status for o in target.post(RUN, auto_id=False)] == ["already_applied"] * 3


def _check(ledger: Ledger) -> str:
    check = CommandIndexCheck(ledger.app)
    for page in read_log(ledger.app.recorder, ledger.app.mapper):
        check.consume(page)
    return check.finish(ledger.head())


@pytest.mark.parametrize(("statement", "finding"), [
    ("UPDATE clearing_commands SET content = replace(content, '0.5', '0.6') WHERE command_id = 't1'",
     "[command_index_differs] t1: content differs from the log"),
    ("DELETE FROM clearing_commands WHERE command_id = 't3'", "[command_index_missing] t3"),
    ("INSERT INTO clearing_commands VALUES ('never', 'deposit', '{}', NULL, NULL, NULL)",
     "[command_index_extra] the index holds 12 command id(s), the log answers 11"),
])
def test_the_commands_check_finds_an_index_row_edited_deleted_or_added(sqlite_db, statement, finding):
    ledger = Ledger(store_env(sqlite_db))
    ledger.post_ok(BOOK)
    ledger.post_ok(RUN)
    assert _check(ledger).startswith("11 command id(s) indexed as the log answers them, and no other")
    with sqlite3.connect(sqlite_db) as connection:
        connection.execute(statement)
    connection.close()
    with pytest.raises(CheckFailed) as failed:
        _check(ledger)
    assert str(failed.value).startswith(finding)


def _sql(recorder: object, statement: str) -> None:
    """One statement on the store itself (the index tables are schema-qualified on PostgreSQL)."""
    schema = getattr(recorder.datastore, "schema", None)  # type: ignore[attr-defined]
    if schema:
        statement = statement.replace("clearing_commands", f'"{schema}".clearing_commands')
    with recorder.datastore.transaction(commit=True) as cursor:  # type: ignore[attr-defined]
        cursor.execute(statement)


def test_a_store_written_before_the_index_answers_its_old_ids(store_db):
    """A store that predates the index: its answers are command records only (a trade's too),
    and no index. The first post builds the index from the records, so old ids keep their
    answers although a trade writes no record any more."""
    old = Ledger(store_env(store_db))
    old.post_ok(BOOK)
    content = {"type": "trade", "market": "BTC-PERP", "buyer": "alice", "seller": "bob", "size": "0.5", "price": "50000"}
    record = accepted("old-t", "trade", content, "", T0, None)  # as the code before the index recorded a trade
    old.app.recorder.insert_events([old.app.mapper.to_stored_event(record)])
    _sql(old.app.recorder, "DELETE FROM clearing_commands")
    _sql(old.app.recorder, "DELETE FROM clearing_commands_built")
    assert CommandIndexCheck(old.app).finish(old.head()).startswith("no command index yet")

    new = Ledger(store_env(store_db))
    same, as_trade, again = new.post("""
{"type":"trade","id":"old-t","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"0.5","price":"50000"}
{"type":"trade","id":"dep-alice","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"0.1","price":"50000"}
{"type":"deposit","id":"dep-bob","account":"bob","amount":"100000"}
""", auto_id=False)
    assert same.status == "already_applied" and again.status == "already_applied"
    assert (as_trade.code, as_trade.field) == ("id_conflict", "type")
    assert new.position("alice", "BTC-PERP") == 0  # the old trade was not decided again
    assert new.app.recorder.command_index_built() and new.app.recorder.count_commands() == 9
    assert _check(new).startswith("9 command id(s) indexed as the log answers them, and no other")


def test_as_of_a_time_inside_a_run_never_shows_half_a_trade(sqlite_db):
    """Rows of a run are one per account: a time between two of its trades must not keep a
    row of the first trade and drop its counterparty's."""
    ledger = Ledger(store_env(sqlite_db))
    ledger.post_ok(BOOK)
    ledger.post_ok("""
{"type":"trade","id":"t1","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"0.5","price":"50000","at":"2025-01-01T01:00:01Z"}
{"type":"trade","id":"t2","market":"BTC-PERP","buyer":"carol","seller":"bob","size":"0.2","price":"50000","at":"2025-01-01T01:00:03Z"}
""")
    rows = fills_rows(ledger)
    assert [row.account for row in rows] == ["alice", "bob", "carol"]  # bob's row holds t1 and t2
    until = resolve_until(ledger.app, "2025-01-01T01:00:02Z")
    assert until == ledger.head() - 4  # before the run's first row (three rows and TradingRecorded)
    views = replay_views(ledger.app, until, ["margin"])
    assert [account_view(views, name, None)["positions"] for name in ("alice", "bob")] == [[], []]


def test_events_pages_by_stored_event_and_shows_every_fill(sqlite_db):
    ledger = Ledger(store_env(sqlite_db))
    ledger.post_ok(BOOK)
    ledger.post_ok(RUN)
    start, shown = 1, []
    while True:
        page = list(iter_events(ledger.app, start, 2))
        if not page:
            break
        shown += page
        start = page[-1]["position"] + 1
    fills = [(r["data"]["trade_id"], r["data"]["account"]) for r in shown if r["type"] == "Account.FillsRecorded"]
    assert sorted(fills) == sorted([("t1", "alice"), ("t1", "bob"), ("t2", "alice"), ("t2", "carol"),
                                    ("t3", "carol"), ("t3", "bob")])
    assert len({r["position"] for r in shown}) == ledger.head()
