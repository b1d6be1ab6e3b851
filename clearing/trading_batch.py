"""What a batch traded, per market: the one ``TradingRecorded`` event per market (ADR 5).

Trades and liquidation fills of a batch change open interest, volume and the set of
holders of their markets. Rather than write an event on the market per fill, the batch
accumulates them here and records one ``TradingRecorded`` per market it changed when the
batch ends. Example: a batch of two trades in BTC-PERP (0.3 and 0.5, opening 0.3 and
0.2 of open interest) and one liquidation fill closing 0.1 records one event: trades 3,
volume 0.9, open interest change 0.4, with the holders that became and stopped being
holders in it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from clearing.domain.account import Account
from clearing.domain.decision_order import in_decision_order
from clearing.domain.market import Market
from clearing.money import ZERO

Totals = tuple[int, Decimal, Decimal, datetime | None]  # trades, volume, open interest change, time of the last


class TradingBatch:
    """The batch's trading per market, and the accounts whose positions it changed."""

    def __init__(self) -> None:
        self.totals: dict[str, Totals] = {}
        self.position_changes: dict[str, dict[str, Account]] = {}

    def __contains__(self, market: str) -> bool:
        """Whether the batch has traded ``market`` (a market moved under it makes it stale)."""
        return market in self.totals

    def clear(self) -> None:
        self.totals = {}
        self.position_changes = {}

    def note_trade(self, market: Market, volume: Decimal, open_interest_change: Decimal, at: datetime,
                   *accounts: Account) -> None:
        """One trade between ``accounts``."""
        trades, total, change, _ = self.totals.get(market.market, (0, ZERO, ZERO, at))
        self.totals[market.market] = (trades + 1, total + volume, change + open_interest_change, at)
        changed = self.position_changes.setdefault(market.market, {})
        for account in accounts:
            changed[account.account] = account

    def note_position(self, market: Market, account: Account, size_before: Decimal, volume: Decimal, at: datetime) -> None:
        """A position changed by a liquidation, deleveraging or settlement fill.

        ``volume`` is counted once per fill (the liquidated side passes it, the taker 0).
        """
        size_after = account.position(market.market).size
        change = max(size_after, ZERO) - max(size_before, ZERO)
        trades, total, oi_change, _ = self.totals.get(market.market, (0, ZERO, ZERO, at))
        self.totals[market.market] = (trades + (1 if volume else 0), total + volume, oi_change + change, at)
        self.position_changes.setdefault(market.market, {})[account.account] = account

    def forget_open_interest_change(self, market: Market) -> None:
        """Settlement zeroed the market's open interest and holders (``MarketSettled``): the
        batch's earlier trades must not add their open interest back in ``TradingRecorded``.

        Example: a batch trades 106.12 ETH-FUT long and then settles ETH-FUT; without this,
        the batch event would leave open interest 106.12 on a market with no positions.
        """
        trades, volume, _, at = self.totals.get(market.market, (0, ZERO, ZERO, market.price_mark_at or market.listed_at))
        self.totals[market.market] = (trades, volume, ZERO, at)

    def holders(self, market: Market) -> set[str]:
        """Accounts with an open position in ``market`` now: its stored holders and this batch's changes."""
        found = set(market.holders)
        for name, account in self.position_changes.get(market.market, {}).items():
            if account.position(market.market).size != ZERO:
                found.add(name)
            else:
                found.discard(name)
        return found

    def record(self, markets: Mapping[str, Market]) -> list[Any]:
        """One ``TradingRecorded`` per market the batch changed (``markets``: the batch's
        markets by name); then starts afresh."""
        events: list[Any] = []
        for name in {**self.totals, **self.position_changes}:
            market = markets[name]
            trades, volume, change, at = self.totals.get(name, (0, ZERO, ZERO, None))
            changed = self.position_changes.get(name, {})
            added = sorted(a for a, acc in changed.items() if acc.position(name).size != ZERO and a not in market.holders)
            removed = sorted(a for a, acc in changed.items() if acc.position(name).size == ZERO and a in market.holders)
            if at is None:
                at = market.price_mark_at or market.listed_at
            if trades or change or added or removed:
                market.record_trading(trades, volume, change, added, removed, at)
                events.extend(in_decision_order(market.collect_events()))
        self.clear()
        return events
