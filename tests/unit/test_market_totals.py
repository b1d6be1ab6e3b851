"""The market aggregate keeps holders, not totals (ADR 26), and reads old snapshots and events."""

from __future__ import annotations

from decimal import Decimal

from clearing.domain.market import Market
from tests.ledger import MARKET_BTC, Ledger, accounts_with

TRADES = """
{"type":"price","id":"p","market":"BTC-PERP","price":"50000","at":"2025-01-01T00:00:00Z"}
{"type":"trade","id":"t1","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"0.5","price":"50000","at":"2025-01-01T00:01:00Z"}
"""


def _book() -> Ledger:
    ledger = Ledger()
    ledger.post_ok(MARKET_BTC + "\n" + accounts_with(("alice", "100000"), ("bob", "100000")) + TRADES)
    return ledger


def test_a_version_1_snapshot_loads_without_open_interest_or_volume():
    market = _book().app.get_market("BTC-PERP")
    taken = Market.Snapshot.take(market)
    state = dict(taken.state)
    assert state.pop("class_version") == 2 and "open_interest" not in state
    old = Market.Snapshot(originator_id=taken.originator_id, originator_version=taken.originator_version,
                          timestamp=taken.timestamp, topic=taken.topic,
                          state={**state, "open_interest": Decimal("0.5"), "volume_total": Decimal("0.5")})
    loaded = old.mutate(None)
    assert loaded is not None and not hasattr(loaded, "open_interest") and not hasattr(loaded, "volume_total")
    assert dict(loaded.holders) == dict(market.holders) == {"alice": True, "bob": True}


def test_a_trading_recorded_event_of_an_old_log_applies_its_holders_only():
    market = _book().app.get_market("BTC-PERP")
    market.trigger_event(Market.TradingRecorded, market="BTC-PERP", trades=1, volume=Decimal("0.5"),
                         open_interest_after=Decimal("0"), volume_total_after=Decimal("1"), price_mark=Decimal(50000),
                         holders_added=["carol"], holders_removed=["alice", "bob"], at=market.price_mark_at)
    assert dict(market.holders) == {"carol": True} and not hasattr(market, "open_interest")


def test_a_batch_among_existing_holders_writes_nothing_on_the_market():
    ledger = _book()
    version = ledger.app.get_market("BTC-PERP").version
    ledger.post_ok('{"type":"trade","id":"t2","market":"BTC-PERP","buyer":"bob","seller":"alice","size":"0.2",'
                   '"price":"50000","at":"2025-01-01T00:02:00Z"}')
    assert ledger.app.get_market("BTC-PERP").version == version
    ledger.post_ok('{"type":"trade","id":"t3","market":"BTC-PERP","buyer":"bob","seller":"alice","size":"0.3",'
                   '"price":"50000","at":"2025-01-01T00:03:00Z"}')
    market = ledger.app.get_market("BTC-PERP")
    assert market.version == version + 1 and market.holders == {}
