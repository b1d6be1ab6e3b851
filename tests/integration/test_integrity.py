"""Regressions of issue 13 ("Integrity first"), each with its reproduction, on SQLite and PostgreSQL.

Two applications on one store stand for two processes; interleavings are forced with
``interleave`` (the other writer runs right after a batch has caught up, before its save).
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from clearing import application
from clearing.application import ClearingApplication
from clearing.audit.invariants import check_ledger
from clearing.composition import real_parts
from clearing.settings import store_env
from tests import margin_state
from tests.integration.test_concurrency_review import interleave
from tests.ledger import MARKET_BTC, Ledger, accounts_with, dated

REPRODUCTION = """
{"type":"open_account","id":"c1","account":"alice","at":"2025-01-01T00:00:00Z"}
{"type":"deposit","id":"c2","account":"alice","amount":"100","at":"2025-01-01T00:00:01Z"}
{"type":"withdraw","id":"c3","account":"alice","amount":"200","at":"2025-01-01T00:00:02Z"}
{"type":"deposit","id":"c4","account":"alice","amount":"500","at":"2025-01-01T00:00:03Z"}
"""


def test_reposting_a_stream_never_decides_a_rejection_again(store_db):
    ledger = Ledger(store_env(store_db))
    first = ledger.post(REPRODUCTION, auto_id=False)
    assert [(o.status, o.code) for o in first] == [
        ("applied", None), ("applied", None), ("rejected", "insufficient_collateral"), ("applied", None)]
    head = ledger.head()

    again = Ledger(store_env(store_db)).post(REPRODUCTION, auto_id=False)  # a fresh process re-posts

    assert [(o.status, o.code) for o in again] == [
        ("already_applied", None), ("already_applied", None), ("already_rejected", "insufficient_collateral"),
        ("already_applied", None)]
    assert again[2].message == first[2].message
    assert ledger.collateral("alice") == Decimal("600")  # the withdrawal of 200 was not paid out
    assert ledger.head() == head


def test_two_processes_posting_one_id_get_one_answer(store_db):
    first, second = Ledger(store_env(store_db)), Ledger(store_env(store_db))
    first.post_ok('{"type":"open_account","id":"o","account":"alice"}\n{"type":"deposit","id":"d1","account":"alice","amount":"100"}')
    withdrawal = '{"type":"withdraw","id":"w","account":"alice","amount":"150","at":"2025-01-01T01:00:00Z"}'
    deposit = '{"type":"deposit","id":"d2","account":"alice","amount":"100","at":"2025-01-01T00:59:00Z"}'

    # While ``first`` decides the withdrawal (alice at 100: a rejection), ``second`` deposits
    # and pays the same id out. ``first``'s rejection record then collides with the stored
    # answer, and ``first`` reports that answer instead of its own.
    interleave(first, lambda: second.post_ok(f"{deposit}\n{withdrawal}"))
    (answer_one,) = first.post(withdrawal, auto_id=False)
    (answer_two,) = Ledger(store_env(store_db)).post(withdrawal, auto_id=False)

    assert answer_one.status == "already_applied", (answer_one.status, answer_one.code)
    assert answer_two.status == "already_applied"
    assert second.collateral("alice") == Decimal("50")


@pytest.mark.parametrize(("at", "code"), [
    ("9999-12-31T23:59:59Z", "time_out_of_range"),
    ("0001-01-01T00:00:00+01:00", "time_out_of_range"),
    ("1969-12-31T23:59:59Z", "time_out_of_range"),
    ("2205-10-10T00:00:00Z", "time_out_of_range"),
    ("2150-10-10T00:00:00Z", "time_in_future"),
])
def test_no_business_time_can_brick_the_store(sqlite_db, at, code):
    ledger = Ledger(store_env(sqlite_db))
    ledger.post_ok(f"{MARKET_BTC}\n{accounts_with(('alice', '100'))}")
    head = ledger.head()
    outcomes = ledger.post(
        f'{{"type":"deposit","id":"late","account":"alice","amount":"1","at":"{at}"}}\n'
        f'{{"type":"price","id":"mark","market":"BTC-PERP","price":"50000","at":"{at}"}}\n'
        '{"type":"deposit","id":"after","account":"alice","amount":"2"}', auto_id=False)

    assert [(o.status, o.code, o.field) for o in outcomes] == [
        ("rejected", code, "at"), ("rejected", code, "at"), ("applied", None, None)]
    assert ledger.head() == head + 2  # only the last deposit (its record and its event)
    ledger.post_ok('{"type":"price","market":"BTC-PERP","price":"50001"}')  # the feed is not frozen
    assert Ledger(store_env(sqlite_db)).collateral("alice") == Decimal("102")  # the store still loads


def test_a_time_far_before_the_log_is_refused_but_a_re_post_of_an_old_command_is_answered(sqlite_db):
    ledger = Ledger(store_env(sqlite_db))
    ledger.post_ok(dated(accounts_with(("alice", "100")), "2025-03-01T00:00:00Z"))
    old = '{"type":"deposit","id":"old","account":"alice","amount":"5","at":"2025-02-27T23:59:59Z"}'
    (refused,) = ledger.post(old, auto_id=False)
    assert (refused.status, refused.code, refused.field) == ("rejected", "time_before_log", "at")
    (repeat,) = ledger.post(dated(accounts_with(("alice", "100")), "2025-03-01T00:00:00Z").splitlines()[1], auto_id=False)
    assert repeat.status == "already_applied"


def test_a_withdrawal_decided_on_a_mark_that_moved_before_the_commit_is_decided_again(store_db):
    ledger = Ledger(store_env(store_db))
    ledger.post_ok(f"""
{MARKET_BTC}
{accounts_with(("alice", "10000"), ("bob", "100000"))}
{{"type":"price","id":"p0","market":"BTC-PERP","price":"50000","at":"2025-01-01T00:00:00Z"}}
{{"type":"trade","id":"t0","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"1","price":"50000","at":"2025-01-01T00:00:01Z"}}
""")
    other = Ledger(store_env(store_db))
    # At 50,000 alice has 5,000 free (10,000 - IM 5,000): a 4,000 withdrawal passes. At 46,000
    # her equity is 6,000 against IM 4,600: the same withdrawal must be refused.
    interleave(ledger, lambda: other.post_ok(
        '{"type":"price","id":"p1","market":"BTC-PERP","price":"46000","at":"2025-01-01T00:00:02Z"}'))
    (outcome,) = ledger.post('{"type":"withdraw","id":"w","account":"alice","amount":"4000","at":"2025-01-01T00:00:03Z"}',
                             auto_id=False)

    assert (outcome.status, outcome.code) == ("rejected", "insufficient_free_collateral")
    assert ledger.app.conflicts_retried >= 1
    assert Ledger(store_env(store_db)).collateral("alice") == Decimal("10000")
    check_ledger(ledger.app)


def test_a_batch_larger_than_the_transaction_cap_commits_in_several_bounded_transactions(store_db, monkeypatch):
    monkeypatch.setattr(application, "MAX_EVENTS_PER_TRANSACTION", 500)
    sizes: list[int] = []
    real = real_parts()

    def counting(app, events):
        sizes.append(len(events))
        return real.save_batch(app, events)

    ledger = Ledger(store_env(store_db), parts=real.replace(save_batch=counting))
    lines = [json.dumps({"type": "open_account", "id": "o", "account": "alice"})]
    lines += [json.dumps({"type": "deposit", "id": f"d{n}", "account": "alice", "amount": "1"}) for n in range(1200)]
    outcomes = ledger.post("\n".join(lines), batch_size=100_000, auto_id=False)

    assert all(o.status == "applied" for o in outcomes) and len(outcomes) == 1201
    assert max(sizes) <= 502 and len(sizes) >= 5  # whole commands (2 events each), at most the cap
    assert ledger.collateral("alice") == Decimal("1200")


def test_no_ddl_runs_on_postgres_tables_that_exist(postgres_db):
    ClearingApplication(env=store_env(postgres_db))
    again = ClearingApplication(env=store_env(postgres_db))
    assert again.factory.env.get("CREATE_TABLE") == "n"


def test_settling_a_future_in_the_batch_that_traded_it_leaves_no_open_interest(sqlite_db):
    """Found by the kill -9 harness: the batch's ``TradingRecorded`` (written after
    ``MarketSettled``) put the batch's trades' open interest back on a settled market. Since
    ADR 26 the batch's holder changes must not put its traders back as holders either."""
    ledger = Ledger(store_env(sqlite_db))
    ledger.post_ok(dated(accounts_with(("alice", "100000"), ("bob", "100000")), "2025-01-01T00:00:00Z") + "\n"
                   '{"type":"create_market","id":"f","market":"ETH-FUT","kind":"future","expiry":"2025-01-01T01:00:00Z",'
                   '"tick_size":"0.01","step_size":"0.01","initial_margin_fraction":"0.1","maintenance_margin_fraction":"0.05",'
                   '"at":"2025-01-01T00:00:00Z"}')
    ledger.post_ok("""
{"type":"price","market":"ETH-FUT","price":"3000","at":"2025-01-01T00:10:00Z"}
{"type":"trade","market":"ETH-FUT","buyer":"alice","seller":"bob","size":"2.5","price":"3000","at":"2025-01-01T00:20:00Z"}
{"type":"settle","market":"ETH-FUT","price":"3010","at":"2025-01-01T01:00:00Z"}
""")
    fresh = Ledger(store_env(sqlite_db)).app
    market = fresh.get_market("ETH-FUT")
    assert (market.status, dict(market.holders)) == ("settled", {})
    assert margin_state.market_view(fresh, "ETH-FUT")["open_interest"] == "0"
    assert ledger.collateral("alice") == Decimal("100025")
    check_ledger(ledger.app)


def test_twenty_thousand_deposits_in_one_postgres_batch_commit(postgres_db):
    """The reproduction: ``post --batch-size 100000`` of 20,000 deposits never committed
    (psycopg's pipeline deadlocks on one huge insert) while holding the table lock."""
    ledger = Ledger(store_env(postgres_db))
    lines = [json.dumps({"type": "open_account", "id": "o", "account": "alice"})]
    lines += [json.dumps({"type": "deposit", "id": f"d{n}", "account": "alice", "amount": "1"}) for n in range(20_000)]
    outcomes = ledger.post("\n".join(lines), batch_size=100_000, auto_id=False)
    assert sum(o.status == "applied" for o in outcomes) == 20_001
    assert Ledger(store_env(postgres_db)).collateral("alice") == Decimal("20000")


def test_a_process_starts_and_reads_while_another_holds_the_events_table_lock(postgres_db):
    """A long insert holds the events table's EXCLUSIVE lock; a process starting meanwhile
    used to hang on the library's ``CREATE INDEX IF NOT EXISTS`` behind it."""
    import concurrent.futures

    import psycopg

    Ledger(store_env(postgres_db)).post_ok(accounts_with(("alice", "100")))
    base, schema = postgres_db.split("?schema=")
    with psycopg.connect(base) as holder:  # a transaction, as an inserting writer's
        holder.execute(f'LOCK TABLE "{schema}".clearing_events IN EXCLUSIVE MODE')

        def start_and_read() -> Decimal:
            return ClearingApplication(env=store_env(postgres_db)).get_account("alice").collateral

        pool = concurrent.futures.ThreadPoolExecutor(1)
        try:
            assert pool.submit(start_and_read).result(timeout=20) == Decimal("100")
        finally:
            pool.shutdown(wait=False)  # a hung start must fail the test, not hang it


# The backstop liquidator is funded (ADR 13: it takes a position only if it can carry it at
# liquidator_position_cap 1): at 47,000 alice's step of 0.5 is 23,500 of notional.
SWEPT = f"""
{MARKET_BTC}
{accounts_with(("alice", "10000"), ("bob", "100000"), ("dave", "100000"), ("erin", "100000"), ("carol", "1"),
               ("backstop", "100000"))}
{{"type":"price","id":"p0","market":"BTC-PERP","price":"50000","at":"2025-01-01T00:00:00Z"}}
{{"type":"trade","id":"t0","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"1","price":"50000","at":"2025-01-01T00:00:01Z"}}
"""


def test_a_rejection_that_catches_up_a_market_read_earlier_in_the_batch_makes_the_batch_stale(store_db):
    """Review finding: the withdrawal (decided at 50,000) was committed at 46,000 because a
    later rejection caught the market up and a later trade then wrote it from the new version."""
    ledger, other = Ledger(store_env(store_db)), None
    ledger.post_ok(SWEPT)
    other = Ledger(store_env(store_db))
    interleave(ledger, lambda: other.post_ok(
        '{"type":"price","id":"p1","market":"BTC-PERP","price":"46000","at":"2025-01-01T00:00:02Z"}'))
    outcomes = ledger.post("""
{"type":"withdraw","id":"w","account":"alice","amount":"4000","at":"2025-01-01T00:00:03Z"}
{"type":"trade","id":"t1","market":"BTC-PERP","buyer":"carol","seller":"bob","size":"1","price":"46000","at":"2025-01-01T00:00:03Z"}
{"type":"trade","id":"t2","market":"BTC-PERP","buyer":"dave","seller":"erin","size":"0.1","price":"46000","at":"2025-01-01T00:00:03Z"}
""", auto_id=False)
    assert [(o.command_id, o.status, o.code) for o in outcomes] == [
        ("w", "rejected", "insufficient_free_collateral"), ("t1", "rejected", "insufficient_margin"), ("t2", "applied", None)]
    assert Ledger(store_env(store_db)).collateral("alice") == Decimal("10000")


def test_a_foreign_write_during_a_batch_is_not_hidden_from_the_risk_index(store_db):
    """Review finding: another process's withdrawal landed during our batch; our head then
    jumped past it, the cached risk index kept alice healthy and a price that makes her
    liquidatable checked nobody."""
    ledger = Ledger(store_env(store_db))
    ledger.post_ok(SWEPT + '{"type":"price","id":"p0b","market":"BTC-PERP","price":"50000","at":"2025-01-01T00:00:02Z"}')
    other = Ledger(store_env(store_db))
    interleave(ledger, lambda: other.post_ok(
        '{"type":"withdraw","id":"w","account":"alice","amount":"4900","at":"2025-01-01T00:00:03Z"}'))
    ledger.post_ok('{"type":"deposit","id":"d","account":"dave","amount":"1","at":"2025-01-01T00:00:04Z"}')
    (mark,) = ledger.post('{"type":"price","id":"p1","market":"BTC-PERP","price":"47000","at":"2025-01-01T00:00:05Z"}',
                          auto_id=False)
    assert "1 account(s) checked" in mark.summary, mark.summary
    # liquidated, as in the serial order: equity 5,100 - 3,000 = 2,100 < MM 2,350, 0.5 sold to the backstop
    assert Ledger(store_env(store_db)).collateral("alice") < Decimal("5100")
    assert Ledger(store_env(store_db)).position("backstop", "BTC-PERP") == Decimal("0.5")
    check_ledger(ledger.app)


def test_a_time_before_the_log_is_answered_the_same_way_for_ever(sqlite_db):
    """Review finding: concurrent batches could lower the log's watermark, and an id refused
    as ``time_before_log`` was then applied. The refusal is recorded, so the answer is final."""
    first = Ledger(store_env(sqlite_db))
    first.post_ok(dated(accounts_with(("alice", "100"), ("bob", "100")), "2025-03-01T00:00:00Z"))
    second = Ledger(store_env(sqlite_db))
    late = '{"type":"deposit","id":"X","account":"alice","amount":"5","at":"2025-03-03T00:00:00Z"}'
    answers = []

    def other() -> None:
        second.post_ok('{"type":"deposit","id":"late","account":"bob","amount":"1","at":"2025-03-05T00:00:00Z"}')
        answers.extend(second.post(late, auto_id=False))

    interleave(first, other)
    first.post_ok('{"type":"deposit","id":"a1","account":"alice","amount":"1","at":"2025-03-01T01:00:00Z"}')
    (again,) = Ledger(store_env(sqlite_db)).post(late, auto_id=False)

    assert [(a.status, a.code) for a in answers] == [("rejected", "time_before_log")]
    assert (again.status, again.code) == ("already_rejected", "time_before_log")
