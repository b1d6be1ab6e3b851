"""Decisions that span aggregates: trades (two accounts, one market) and withdrawals.

Everything is decided before any event is triggered, so a rejection leaves every
aggregate untouched, and the events carry what was decided (fill, mark price, equity and
initial margin after) for an auditor to re-check alone.

Margin rule for a trade, per side: accepted if the account ends at or above its initial
margin requirement; a fill that only reduces the position (no flip) is also accepted when
it does not lower the account's free collateral, because refusing it would keep the
account at more risk. Example: equity 1,000, IMF 10%, mark 50,000: buying 0.2 (IM 1,000)
is accepted, buying 0.3 (IM 1,500) is rejected as ``insufficient_margin``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from clearing.domain.account import CLOSED, Account, Fill, decide_fill
from clearing.domain.market import Market
from clearing.domain.risk.totals import MarginTotals, MarketTerms, margin_totals
from clearing.errors import RuleError
from clearing.money import ZERO, exact, fmt


def check_account_open(account: Account, field: str) -> None:
    if account.status == CLOSED:
        raise RuleError("account_closed", field, f"account {account.account} is closed")


@dataclass(frozen=True)
class SideDecision:
    account: Account
    counterparty: str
    fill: Fill
    collateral_after: Decimal
    totals_after: MarginTotals


@exact
def decide_side(
    account: Account,
    field: str,
    counterparty: str,
    market: Market,
    size_delta: Decimal,
    price: Decimal,
    markets: Mapping[str, MarketTerms],
) -> SideDecision:
    """Decide one side of a trade and check its margin; raises ``insufficient_margin``."""
    fill = decide_fill(account.position(market.market), size_delta, price, market.contract_size, market.collateral_quantum)
    collateral_after = account.collateral + fill.realized_pnl
    positions_after = dict(account.positions)
    positions_after[market.market] = fill.position_after
    after = margin_totals(collateral_after, positions_after, markets, with_maintenance=False)
    if after.free_collateral < ZERO:
        before = margin_totals(account.collateral, account.positions, markets, with_maintenance=False)
        if fill.risk_increasing or after.free_collateral < before.free_collateral:
            raise RuleError(
                "insufficient_margin",
                field,
                f"account {account.account} would have equity {fmt(after.equity)} below its initial margin "
                f"{fmt(after.initial_margin)} after this trade",
            )
    return SideDecision(account, counterparty, fill, collateral_after, after)


@exact
def decide_trade(
    market: Market,
    buyer: Account,
    seller: Account,
    size: Decimal,
    price: Decimal,
    at: datetime,
    markets: Mapping[str, MarketTerms],
) -> tuple[SideDecision, SideDecision]:
    """Check a trade of ``size`` at ``price`` between two accounts; returns both sides."""
    if buyer.id == seller.id:
        raise RuleError("self_trade", "seller", f"buyer and seller are the same account {buyer.account}")
    check_account_open(buyer, "buyer")
    check_account_open(seller, "seller")
    market.check_open_for_trading(at)
    market.check_size_on_step(size, "size")
    market.check_price_on_tick(price, "price")
    market.check_within_band(price, "price", "trade_price_outside_band", "trade")
    buy = decide_side(buyer, "buyer", seller.account, market, size, price, markets)
    sell = decide_side(seller, "seller", buyer.account, market, -size, price, markets)
    return buy, sell


def record_side(side: SideDecision, market: Market, trade_id: str, price: Decimal, at: datetime) -> None:
    """Trigger the decided ``TradeFilled`` event on one account (cannot fail)."""
    position = side.fill.position_after
    side.account.trigger_event(
        Account.TradeFilled,
        account=side.account.account,
        trade_id=trade_id,
        market=market.market,
        market_version=market.version,
        counterparty=side.counterparty,
        size_delta=side.fill.size_delta,
        price=price,
        price_mark=market.price_mark,
        realized_pnl=side.fill.realized_pnl,
        position_size_after=position.size,
        position_cost_after=position.cost,
        collateral_after=side.collateral_after,
        equity_after=side.totals_after.equity,
        initial_margin_after=side.totals_after.initial_margin,
        risk_increasing=side.fill.risk_increasing,
        at=at,
    )


@exact
def decide_withdrawal(account: Account, amount: Decimal, at: datetime, markets: Mapping[str, MarketTerms]) -> None:
    """Withdraw ``amount`` if collateral covers it and free collateral stays >= 0."""
    check_account_open(account, "account")
    if amount > account.collateral:
        raise RuleError(
            "insufficient_collateral",
            "amount",
            f"account {account.account} has collateral {fmt(account.collateral)}, cannot withdraw {fmt(amount)}",
        )
    after = margin_totals(account.collateral - amount, account.positions, markets, with_maintenance=False)
    if after.free_collateral < ZERO:
        free_now = after.free_collateral + amount
        raise RuleError(
            "insufficient_free_collateral",
            "amount",
            f"account {account.account} has free collateral {fmt(free_now)}, cannot withdraw {fmt(amount)}",
        )
    account.trigger_event(
        Account.Withdrawn,
        account=account.account,
        amount=amount,
        collateral_after=account.collateral - amount,
        equity_after=after.equity,
        initial_margin_after=after.initial_margin,
        at=at,
    )


def decide_deposit(account: Account, amount: Decimal, at: datetime) -> None:
    check_account_open(account, "account")
    account.trigger_event(
        Account.Deposited, account=account.account, amount=amount, collateral_after=account.collateral + amount, at=at
    )


def decide_close_account(account: Account, at: datetime) -> None:
    """Close an account that is flat and empty (withdraw everything first)."""
    check_account_open(account, "account")
    if account.open_positions():
        raise RuleError("account_not_flat", "account", f"account {account.account} still has open positions")
    if account.collateral != ZERO:
        raise RuleError(
            "account_not_empty", "account", f"account {account.account} still holds collateral {fmt(account.collateral)}"
        )
    account.trigger_event(Account.AccountClosed, account=account.account, at=at)
