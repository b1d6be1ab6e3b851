"""Funding periods and final settlement: the events they record on accounts and markets.

The numbers are decided before these run (``risk.funding.funding_split``; a settlement's
price and each position's PnL at it); these functions only trigger the events that carry
them, so every ``Account`` and ``Market`` event is triggered from the domain.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from clearing.domain.account import Account
from clearing.domain.market import Market
from clearing.domain.risk.funding import FundingSplit
from clearing.money import ZERO


def record_funding(accounts: Sequence[Account], market: Market, rate: Decimal, split: FundingSplit, funding_id: str,
                   at: datetime) -> None:
    """``FundingPaid`` on every holder (0 for a side that neither pays nor receives), then
    ``FundingApplied`` on the market."""
    mark = market.mark
    for account in accounts:
        amount = split.amounts.get(account.account, ZERO)
        account.trigger_event(
            Account.FundingPaid,
            account=account.account,
            market=market.market,
            funding_id=funding_id,
            rate=rate,
            price_mark=mark,
            size=account.position(market.market).size,
            amount=amount,
            collateral_after=account.collateral + amount,
            at=at,
        )
    market.trigger_event(
        Market.FundingApplied,
        market=market.market,
        rate=rate,
        price_mark=mark,
        paid_by_longs=split.paid if rate > ZERO else -split.paid,
        accounts=len(accounts),
        funding_count=market.funding_count + 1,
        at=at,
    )


def record_settlement(market: Market, settled: Sequence[tuple[Account, Decimal, Decimal]], price: Decimal, at: datetime) -> None:
    """``PositionSettled`` for each (account, size, PnL at ``price``), then ``MarketSettled``."""
    for account, size, pnl in settled:
        account.trigger_event(
            Account.PositionSettled,
            account=account.account,
            market=market.market,
            price_settlement=price,
            size=size,
            realized_pnl=pnl,
            collateral_after=account.collateral + pnl,
            at=at,
        )
    market.trigger_event(Market.MarketSettled, market=market.market, price_settlement=price, positions_settled=len(settled),
                         at=at)
