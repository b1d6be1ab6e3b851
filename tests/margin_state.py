"""The oracle the SQL projections are tested against: the same views, built from aggregates.

Account, market and insurance-fund views built from the aggregates (snapshot + later
events, through the library's repository) and the shared margin arithmetic in
``clearing.domain.risk.totals``. The command line reads the SQL projections instead
(``projections.queries``, same shapes); tests compare the two field by field.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.application import AggregateNotFoundError

from clearing.application import ClearingApplication
from clearing.audit.log import read_log
from clearing.domain import ids, loss_policies
from clearing.domain.account import Account
from clearing.domain.clearinghouse import Clearinghouse
from clearing.domain.fills import TradeFill, trade_fills
from clearing.domain.insurance import InsuranceFund
from clearing.domain.loss_policies import Holder
from clearing.domain.margin import total
from clearing.domain.market import Market
from clearing.domain.parameters import DEFAULTS, effective
from clearing.domain.risk.totals import account_margin, margin_totals
from clearing.money import ZERO, fmt


def account_view(app: ClearingApplication, name: str) -> dict[str, Any]:
    """Margin state of one account on current mark prices."""
    account = app.get_account(name)
    markets = {market: app.get_market(market) for market in account.open_positions()}
    margin = account_margin(account.collateral, account.positions, markets)
    return {
        "account": account.account,
        "status": "closed" if account.status == "closed" else account.risk_status,
        "margin_call": _call(account.margin_call),
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
                **_adl_standing(app, account, row.market),
            }
            for row in margin.positions
        ],
        "version": account.version,
    }


def _call(call: dict[str, Any] | None) -> dict[str, str] | None:
    if call is None:
        return None
    return {
        "market": call["market"],
        "issued_at": call["issued_at"].isoformat(),
        "deadline": call["deadline"].isoformat(),
        "amount_to_initial": fmt(call["amount_to_initial"]),
        "amount_due": fmt(call.get("amount_due", call["amount_to_initial"])),
        "rule": call.get("rule", "maintenance"),
    }


def _loss_policy(app: ClearingApplication, market: Market) -> str:
    """The market's ``loss_policy`` in force, from the aggregates: its override, else the default."""
    try:
        clearinghouse: Clearinghouse = app.repository.get(ids.clearinghouse_id())
        defaults = clearinghouse.parameters
    except AggregateNotFoundError:
        defaults = DEFAULTS
    return str(effective(defaults, market.overrides, 0, 0).loss_policy)


def _adl_standing(app: ClearingApplication, account: Account, name: str) -> dict[str, Any]:
    """The position's score and rank among the market's holders on its side under the
    market's loss policy (``loss_policies.scores``), and that policy."""
    market = app.get_market(name)
    policy = _loss_policy(app, market)
    long = account.position(name).size > ZERO
    book = []
    for holder in sorted(set(market.holders) | {account.account}):
        other = account if holder == account.account else app.get_account(holder)
        position = other.position(name)
        if position.size == ZERO or (position.size > ZERO) != long:
            continue
        markets = {market_name: app.get_market(market_name) for market_name in other.open_positions()}
        equity = margin_totals(other.collateral, other.positions, markets, with_maintenance=False).equity
        book.append(Holder(holder, position.size, position.cost, equity))
    ranked = loss_policies.scores(policy, book, market.mark, market.contract_size)
    rank = [holder for holder, _ in ranked].index(account.account) + 1
    return {"adl_score": _optional(ranked[rank - 1][1]), "adl_rank": rank, "adl_holders": len(ranked),
            "adl_policy": policy}


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
        "open_interest": fmt(sum((max(app.get_account(holder).position(name).size, ZERO) for holder in market.holders),
                                 ZERO)),
        **_traded(app, name),
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


def _traded(app: ClearingApplication, name: str) -> dict[str, Any]:
    """Volume and trades of a market from the log: each trade's buying fill, each liquidation step.

    The market aggregate keeps neither (ADR 26); this reads the events the aggregates are built
    from, not the projection's tables."""
    volume, trades = ZERO, 0
    for page in read_log(app.recorder, app.mapper):
        for _, event in page.decoded():
            fills = trade_fills(event) if isinstance(event, Account.FillsRecorded) else [event]
            for fill in fills:
                if isinstance(fill, (Account.TradeFilled, TradeFill)) and fill.market == name and fill.size_delta > ZERO:
                    volume, trades = volume + fill.size_delta, trades + 1
                elif isinstance(fill, Account.Liquidated) and fill.market == name and fill.size_delta:
                    volume, trades = volume + abs(fill.size_delta), trades + 1
    return {"volume": fmt(volume), "trades": trades}


def insurance_fund_view(app: ClearingApplication) -> dict[str, Any]:
    """Balance and every inflow and outflow of the insurance fund, with its cause."""
    fund = app.get_insurance_fund()
    if fund is None:
        return {"balance": "0", "inflows": "0", "outflows": "0", "movements": []}
    movements: list[dict[str, Any]] = []
    inflows = outflows = ZERO
    for event in app.events.get(fund.id):
        if isinstance(event, InsuranceFund.Contributed):
            inflows += event.amount
            movements.append({"at": event.at.isoformat(), "direction": "in", "cause": event.cause, "amount": fmt(event.amount),
                              "counterparty": event.contributor, "reference": None,
                              "balance_after": fmt(event.balance_after), "version": event.originator_version})
        elif isinstance(event, InsuranceFund.Drawn):
            outflows += event.amount
            movements.append({"at": event.at.isoformat(), "direction": "out", "cause": event.cause, "amount": fmt(event.amount),
                              "counterparty": event.account, "reference": event.reference,
                              "balance_after": fmt(event.balance_after), "version": event.originator_version})
    return {"balance": fmt(fund.balance), "inflows": fmt(inflows), "outflows": fmt(outflows), "movements": movements}


def loss_allocations(app: ClearingApplication, market: str | None = None) -> list[dict[str, Any]]:
    """Every loss allocation and deleveraging fill in log order (optionally one market).

    Read from the log by topic (the oracle of the ``losses`` projection).
    """
    rows: list[dict[str, Any]] = []
    start = 1
    while notifications := app.recorder.select_notifications(start=start, limit=5000, topics=_LOSS_TOPICS):
        for notification in notifications:
            event = app.mapper.to_domain_event(notification)
            assert isinstance(event, Account.LossAllocated | Account.PositionTaken)  # the two _LOSS_TOPICS
            if market is not None and event.market != market:
                continue
            if isinstance(event, Account.PositionTaken) and event.basis != "adl":
                continue  # a backstop fill, not a loss allocation
            rows.append(_loss_row(event))
        start = notifications[-1].id + 1
    return rows


def _loss_row(event: Account.LossAllocated | Account.PositionTaken) -> dict[str, Any]:
    if isinstance(event, Account.LossAllocated):
        return {"at": event.at.isoformat(), "loss_id": event.loss_id, "market": event.market, "account": event.account,
                "policy": event.policy, "share": fmt(event.share), "basis": fmt(event.basis),
                "basis_total": fmt(event.basis_total), "loss_total": fmt(event.loss_total), "price_mark": fmt(event.price_mark)}
    return {"at": event.at.isoformat(), "loss_id": event.liquidation_id, "market": event.market, "account": event.account,
            "policy": "adl", "share": fmt(event.loss_vs_mark), "basis": fmt(abs(event.size_delta)),
            "basis_total": None, "loss_total": None, "price_mark": fmt(event.price_mark),
            "price": fmt(event.price), "rank": _optional(event.adl_rank), "liquidated_account": event.liquidated_account}


def _optional(value: Any) -> str | None:
    return None if value is None else fmt(value)



_LOSS_TOPICS = [
    "clearing.domain.account:Account.LossAllocated",
    "clearing.domain.account:Account.PositionTaken",
]
