"""First read model: an account's margin state, and market and insurance-fund views.

Built from the aggregates (snapshot + later events) and the shared margin arithmetic in
``clearing.domain.risk``; SQL projection tables replace this read path later. Every number
is returned as a ``Decimal`` and rendered as a plain string (never a float) for JSON.
"""

from __future__ import annotations

from typing import Any

from clearing.application import ClearingApplication
from clearing.domain.market import Market
from clearing.domain.insurance import InsuranceFund
from clearing.domain.margin import total
from clearing.domain.risk import account_margin
from clearing.money import fmt


def account_view(app: ClearingApplication, name: str) -> dict[str, Any]:
    """Margin state of one account on current mark prices."""
    account = app.get_account(name)
    markets = {market: app.get_market(market) for market in account.open_positions()}
    margin = account_margin(account.collateral, account.positions, markets)
    return {
        "account": account.account,
        "status": account.status,
        "collateral": fmt(margin.collateral),
        "equity": fmt(margin.equity),
        "initial_margin": fmt(margin.initial_margin),
        "maintenance_margin": fmt(margin.maintenance_margin),
        "free_collateral": fmt(margin.free_collateral),
        "margin_ratio": _optional(margin.margin_ratio),
        "realized_pnl": fmt(total(p.realized_pnl for p in account.positions.values())),
        "positions": [
            {
                "market": row.market,
                "size": fmt(row.size),
                "entry_price": fmt(row.entry_price),
                "mark_price": fmt(row.mark_price),
                "notional": fmt(row.notional),
                "unrealized_pnl": fmt(row.unrealized_pnl),
                "realized_pnl": fmt(row.realized_pnl),
                "initial_margin": fmt(row.initial_margin),
                "maintenance_margin": fmt(row.maintenance_margin),
                "liquidation_price": _optional(row.liquidation_price),
            }
            for row in margin.positions
        ],
        "version": account.version,
    }


def market_view(app: ClearingApplication, name: str) -> dict[str, Any]:
    """Contract terms, margin tiers, status and mark price of one market."""
    market: Market = app.get_market(name)
    return {
        "market": market.market,
        "kind": market.kind,
        "status": market.status,
        "expiry": market.expiry.isoformat() if market.expiry else None,
        "contract_size": fmt(market.contract_size),
        "tick_size": fmt(market.tick_size),
        "step_size": fmt(market.step_size),
        "price_band": fmt(market.price_band),
        "collateral_asset": market.collateral_asset,
        "mark_price": _optional(market.price_mark),
        "mark_time": market.price_mark_at.isoformat() if market.price_mark_at else None,
        "open_interest": fmt(market.open_interest),
        "volume": fmt(market.volume_total),
        "tiers": [
            {
                "notional_floor": fmt(tier.notional_floor),
                "initial_margin_fraction": fmt(tier.initial_margin_fraction),
                "maintenance_margin_fraction": fmt(tier.maintenance_margin_fraction),
                "initial_margin_deduction": fmt(tier.initial_margin_deduction),
                "maintenance_margin_deduction": fmt(tier.maintenance_margin_deduction),
            }
            for tier in market.tiers
        ],
        "listed_at": market.listed_at.isoformat(),
        "version": market.version,
    }


def insurance_fund_view(app: ClearingApplication) -> dict[str, Any]:
    """Balance and every movement of the insurance fund, read from its own events."""
    fund = app.get_insurance_fund()
    if fund is None:
        return {"balance": "0", "movements": []}
    movements = [
        {
            "at": event.at.isoformat(),
            "cause": event.cause,
            "amount": fmt(event.amount),
            "contributor": event.contributor,
            "balance_after": fmt(event.balance_after),
            "version": event.originator_version,
        }
        for event in app.events.get(fund.id)
        if isinstance(event, InsuranceFund.Contributed)
    ]
    return {"balance": fmt(fund.balance), "movements": movements}


def _optional(value: Any) -> str | None:
    return None if value is None else fmt(value)

