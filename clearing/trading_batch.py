"""Which holders a batch changed, per market: ``HoldersChanged`` only when there are some (ADR 26).

Trades and liquidation fills change the set of a market's holders (accounts with an open
position), which a price sweep values. Rather than write an event on the market per fill,
or one per batch (the ``TradingRecorded`` of ADR 5, which made every writer of a market
collide on it), the batch remembers the accounts whose positions it changed and, when it
ends, records one ``HoldersChanged`` per market whose holder set moved. Open interest and
volume are not recorded on the market: their readers sum them from the fills.
Example: a batch in which A (flat) buys 0.5 from B (short 1), then B buys 1 from C
(long 2) adds A and removes B: one event, added ``[A]``, removed ``[B]``. A batch in which
only existing holders trade writes nothing on the market; the trades still read it, so a
new mark or a close in another process refuses the batch (the read set, ADR 12).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from clearing.domain.account import Account
from clearing.domain.decision_order import in_decision_order
from clearing.domain.market import Market
from clearing.money import ZERO


class TradingBatch:
    """The accounts whose positions the batch changed, per market, and the time of the last."""

    def __init__(self) -> None:
        self.position_changes: dict[str, dict[str, Account]] = {}
        self.last_at: dict[str, datetime] = {}

    def __contains__(self, market: str) -> bool:
        """Whether the batch has traded ``market`` (a market moved under it makes it stale)."""
        return market in self.position_changes

    def clear(self) -> None:
        self.position_changes = {}
        self.last_at = {}

    def note_position(self, market: Market, at: datetime, *accounts: Account) -> None:
        """A fill (trade, liquidation, deleveraging, settlement) changed the positions of ``accounts``."""
        changed = self.position_changes.setdefault(market.market, {})
        for account in accounts:
            changed[account.account] = account
        self.last_at[market.market] = at

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
        """One ``HoldersChanged`` per market whose holders the batch changed (``markets``: the
        batch's markets by name); then starts afresh."""
        events: list[Any] = []
        for name, changed in self.position_changes.items():
            market = markets[name]
            added = sorted(a for a, acc in changed.items() if acc.position(name).size != ZERO and a not in market.holders)
            removed = sorted(a for a, acc in changed.items() if acc.position(name).size == ZERO and a in market.holders)
            if added or removed:
                market.change_holders(added, removed, self.last_at[name])
                events.extend(in_decision_order(market.collect_events()))
        self.clear()
        return events
