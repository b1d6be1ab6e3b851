"""Regressions for staleness and failure paths found in review (SQLite and PostgreSQL).

Two applications on one store stand for two processes. Interleavings are forced by
hooking the first application between its batch's start and its save.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from eventsourcing.persistence import OperationalError

from clearing.audit.decisions import audit_log
from clearing.audit.invariants import check_ledger
from clearing.settings import store_env
from projections.queries import market_view
from projections.read import Views
from projections.runner import READ_MODELS, Projector
from projections.store import ProjectionStore
from tests import margin_state
from tests.ledger import MARKET_BTC, Ledger, accounts_with

SETUP = f"""
{MARKET_BTC}
{accounts_with(("alice", "100000"), ("bob", "100000"))}
{{"type":"price","id":"p0","market":"BTC-PERP","price":"50000","at":"2025-01-01T00:00:00Z"}}
"""


def interleave(ledger: Ledger, other_writer) -> None:
    """Run ``other_writer`` once, right after ``ledger``'s next batch has caught up."""
    working_set = ledger.app.working_set
    original = working_set.begin_batch
    done = []

    def begin_batch() -> None:
        original()
        if not done:
            done.append(1)
            other_writer()

    working_set.begin_batch = begin_batch


def test_a_rejection_is_decided_again_on_fresh_state(store_db):
    first, second = Ledger(store_env(store_db)), Ledger(store_env(store_db))
    first.post_ok(accounts_with(("x", "100")))  # first now holds x in memory
    second.post_ok('{"type":"deposit","id":"big","account":"x","amount":"1000"}')
    (outcome,) = first.post('{"type":"withdraw","id":"w","account":"x","amount":"500"}')
    assert outcome.status == "applied", outcome.message
    assert Ledger(store_env(store_db)).collateral("x") == Decimal(600)


def test_a_trade_decided_before_another_process_closed_the_market_is_refused(store_db):
    first, second = Ledger(store_env(store_db)), Ledger(store_env(store_db))
    first.post_ok(SETUP)
    interleave(first, lambda: second.post_ok('{"type":"close_market","id":"close","market":"BTC-PERP"}'))
    (outcome,) = first.post('{"type":"trade","id":"t","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"0.1",'
                            '"price":"50000"}')
    assert (outcome.status, outcome.code) == ("rejected", "market_closed")
    assert first.app.conflicts_retried == 1
    assert Ledger(store_env(store_db)).position("alice", "BTC-PERP") == 0


def test_a_trade_decided_on_an_old_mark_is_decided_again_on_the_new_one(store_db):
    first, second = Ledger(store_env(store_db)), Ledger(store_env(store_db))
    first.post_ok(SETUP)
    interleave(first, lambda: second.post_ok('{"type":"price","id":"crash","market":"BTC-PERP","price":"30000",'
                                             '"at":"2025-01-01T00:01:00Z"}'))
    (outcome,) = first.post('{"type":"trade","id":"t","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"0.1",'
                            '"price":"50000"}')
    # band 0.5 around the new mark 30,000 is 15,000..45,000
    assert (outcome.status, outcome.code) == ("rejected", "trade_price_outside_band")
    check_ledger(Ledger(store_env(store_db)).app)


def test_a_store_error_while_deciding_forgets_the_batch_so_no_money_is_made(store_db):
    ledger = Ledger(store_env(store_db))
    ledger.post_ok(accounts_with(("x", "100")))

    def broken(app, envelopes):
        raise OperationalError("disk I/O error")

    real = ledger.app.parts
    ledger.app.parts = real.replace(stored_answers=broken)  # the store's reads fail for one batch
    with pytest.raises(OperationalError):  # the rejected withdrawal looks up its id and fails
        ledger.post('{"type":"deposit","id":"d1","account":"x","amount":"1000"}\n'
                    '{"type":"withdraw","id":"w1","account":"x","amount":"999999"}')
    ledger.app.parts = real
    (after,) = ledger.post('{"type":"withdraw","id":"w2","account":"x","amount":"1001"}')
    assert (after.status, after.code) == ("rejected", "insufficient_collateral")
    fresh = Ledger(store_env(store_db))
    assert fresh.collateral("x") == Decimal(100)
    check_ledger(fresh.app)


def test_a_batch_writes_on_the_market_only_when_its_holders_change(store_db):
    """ADR 26: holders are recorded per batch that changes them; open interest and volume are
    summed from the fills by the projection."""
    ledger = Ledger(store_env(store_db))
    ledger.post_ok(SETUP)
    version = lambda: Ledger(store_env(store_db)).app.get_market("BTC-PERP").version  # noqa: E731
    listed = version()
    ledger.post_ok('{"type":"trade","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"0.3","price":"50000"}\n'
                   '{"type":"trade","market":"BTC-PERP","buyer":"bob","seller":"alice","size":"0.5","price":"50000"}')
    assert version() == listed + 1  # alice and bob became holders: one HoldersChanged
    assert dict(Ledger(store_env(store_db)).app.get_market("BTC-PERP").holders) == {"alice": True, "bob": True}
    ledger.post_ok('{"type":"trade","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"0.1","price":"50000"}')
    assert version() == listed + 1  # the same holders: nothing written on the market
    ledger.post_ok('{"type":"trade","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"0.1","price":"50000"}')
    assert version() == listed + 2 and Ledger(store_env(store_db)).app.get_market("BTC-PERP").holders == {}
    Projector(ledger.app, ProjectionStore(store_db), READ_MODELS).catch_up()
    view = market_view(Views(ProjectionStore(store_db)), "BTC-PERP")
    oracle = margin_state.market_view(ledger.app, "BTC-PERP")  # from the aggregates and the log
    oracle.pop("version")
    assert view == oracle
    # alice long 0.3, short 0.2, flat after two buys of 0.1; volume 0.3 + 0.5 + 0.1 + 0.1
    assert (view["open_interest"], view["volume"], view["trades"]) == ("0", "1", 4)
    check_ledger(ledger.app)


def test_a_market_caught_up_mid_batch_makes_the_batch_decided_again(store_db):
    first, second = Ledger(store_env(store_db)), Ledger(store_env(store_db))
    first.post_ok(SETUP + '\n{"type":"open_account","id":"o-poor","account":"poor"}')
    interleave(first, lambda: second.post_ok('{"type":"close_market","id":"close","market":"BTC-PERP"}'))
    trade, rejected_trade = first.post(
        '{"type":"trade","id":"t1","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"0.1","price":"50000"}\n'
        '{"type":"trade","id":"t2","market":"BTC-PERP","buyer":"poor","seller":"bob","size":"0.1","price":"50000"}')
    # t2's rejection (poor has no collateral) catches BTC-PERP up, which t1 was decided on
    assert (trade.status, trade.code) == ("rejected", "market_closed")
    assert (rejected_trade.status, rejected_trade.code) == ("rejected", "market_closed")
    assert Ledger(store_env(store_db)).position("alice", "BTC-PERP") == 0


@pytest.mark.parametrize("other_write", [
    '{"type":"withdraw","id":"w","account":"carol","amount":"500","at":"2025-01-01T00:00:02Z"}',
    '{"type":"trade","id":"t-more","market":"BTC-PERP","buyer":"carol","seller":"dave","size":"0.11","price":"50000",'
    '"at":"2025-01-01T00:00:02Z"}',
])
def test_a_price_decided_beside_another_writer_sees_the_holder_it_changed(store_db, other_write):
    """Write skew between a price and another process's write to a holder the sweep did not
    value: the other write was decided on the old mark, the price without the new state; the
    price must be decided again. Carol (long 0.19 at 50,000) is healthy until another process
    withdraws 500 or buys more; at 47,000 she is then below maintenance and must be called."""
    first, second = Ledger(store_env(store_db)), Ledger(store_env(store_db))
    first.post_ok(MARKET_BTC + "\n" + accounts_with(("carol", "1500"), ("dave", "100000")) + """
{"type":"price","id":"p0","market":"BTC-PERP","price":"50000","at":"2025-01-01T00:00:00Z"}
{"type":"trade","id":"t0","market":"BTC-PERP","buyer":"carol","seller":"dave","size":"0.19","price":"50000","at":"2025-01-01T00:00:01Z"}
{"type":"price","id":"p0b","market":"BTC-PERP","price":"50000","at":"2025-01-01T00:00:01Z"}""")
    interleave(first, lambda: second.post_ok(other_write))
    (outcome,) = first.post('{"type":"price","id":"p1","market":"BTC-PERP","price":"47000","at":"2025-01-01T00:01:00Z"}')
    assert outcome.status == "applied" and first.app.conflicts_retried >= 1
    fresh = Ledger(store_env(store_db))
    carol = fresh.account("carol")
    assert carol["status"] != "healthy", (carol["equity"], carol["maintenance_margin"])
    assert audit_log(fresh.app, stop_at_first=False) == []
    check_ledger(fresh.app)
