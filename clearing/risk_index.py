"""Which accounts a mark-price move can make liquidatable: an index by liquidation price.

For each market, every account holding a position there is in exactly one place:

* ``longs`` / ``shorts`` - accounts with this as their only open position, sorted by the
  mark at which their equity would equal maintenance margin (their liquidation price).
  A long crosses when the mark falls to or below it, a short when the mark rises to or
  above it, so a price update finds the crossing accounts by bisection and reads only
  those: the work follows the accounts that cross, not the open positions.
* ``watch`` - accounts checked on every price update of the market: those with positions
  in several markets (another market's mark moves their liquidation price here), those
  under a margin call or being liquidated, and those already below maintenance.
* nowhere - a position no price of this market can liquidate (a long whose equity stays
  above maintenance even at a mark of 0).

Entries are recomputed for every account a command changed (``mark_dirty``) before the
next sweep. The index is memory only: it is rebuilt from the market's holders when a
process first sweeps a market, and dropped with the working set.

Example: long 1 at 100 with 10 of equity and MMF 5 % -> liquidation price 94.8 (rounded
up to the tick 0.1); a mark of 95.0 does not cross, 94.8 does.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Mapping
from decimal import Decimal

from clearing.domain.account import HEALTHY, Account
from clearing.domain.margin import PositionAtMark, liquidation_price
from clearing.domain.market import Market
from clearing.domain.risk.totals import MarketTerms, margin_totals
from clearing.money import ZERO

_LAST = "\U0010ffff"


class MarketRiskIndex:
    """Liquidation-price index of one market."""

    def __init__(self, market: str) -> None:
        self.market = market
        self.longs: list[tuple[Decimal, str]] = []
        self.shorts: list[tuple[Decimal, str]] = []
        self.watch: set[str] = set()
        self._entry: dict[str, tuple[str, Decimal]] = {}

    def __len__(self) -> int:
        return len(self._entry) + len(self.watch)

    def holds(self, name: str) -> bool:
        return name in self._entry or name in self.watch

    def remove(self, name: str) -> None:
        self.watch.discard(name)
        entry = self._entry.pop(name, None)
        if entry is not None:
            side, trigger = entry
            book = self.longs if side == "long" else self.shorts
            index = bisect_left(book, (trigger, name))
            if index < len(book) and book[index] == (trigger, name):
                del book[index]

    def update(self, account: Account, markets: Mapping[str, MarketTerms]) -> None:
        """Place ``account`` where its current state puts it (see the module docstring)."""
        name = account.account
        self.remove(name)
        position = account.position(self.market)
        if position.size == ZERO:
            return
        open_count = sum(1 for p in account.positions.values() if p.size != ZERO)
        if open_count > 1 or account.risk_status != HEALTHY:
            self.watch.add(name)
            return
        market = markets[self.market]
        mark = market.price_mark
        if mark is None:
            return
        totals = margin_totals(account.collateral, account.positions, markets)
        if totals.equity < totals.maintenance_margin:
            self.watch.add(name)
            return
        at_mark = PositionAtMark(position.size, mark, market.contract_size, tuple(market.tiers))
        trigger = liquidation_price(at_mark, totals.equity, ZERO, market.tick_size)
        if trigger is None:
            return  # no price of this market takes it below maintenance
        side = "long" if position.size > ZERO else "short"
        insort(self.longs if side == "long" else self.shorts, (trigger, name))
        self._entry[name] = (side, trigger)

    def crossing(self, mark: Decimal) -> set[str]:
        """Accounts at or beyond their liquidation price at ``mark``, plus the watch set."""
        found = set(self.watch)
        for _, name in self.longs[bisect_left(self.longs, (mark, "")) :]:
            found.add(name)
        for _, name in self.shorts[: bisect_right(self.shorts, (mark, _LAST))]:
            found.add(name)
        return found


class RiskIndexes:
    """The per-market indexes of one working set, and the accounts changed since a sweep."""

    def __init__(self) -> None:
        self.by_market: dict[str, MarketRiskIndex] = {}
        self.dirty: set[str] = set()

    def clear(self) -> None:
        self.by_market.clear()
        self.dirty.clear()

    def mark_dirty(self, name: str) -> None:
        if self.by_market:
            self.dirty.add(name)

    def built(self, market: Market) -> MarketRiskIndex | None:
        return self.by_market.get(market.market)

    def add(self, index: MarketRiskIndex) -> None:
        self.by_market[index.market] = index
