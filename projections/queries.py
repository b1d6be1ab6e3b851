"""The command line's reads, from the projection tables (never by replaying aggregates).

Each function returns the same shape as the aggregate-based views in
``projections.margin_state`` (which tests use as the oracle): ``account_view``,
``market_view``, ``insurance_fund_view`` and ``loss_allocations``. Margin figures are
computed from the stored inputs with the domain's margin functions (see
``projections.margin``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select

from clearing.domain.account import Position
from clearing.domain.margin import total
from clearing.domain.risk import account_margin
from clearing.errors import NotFoundError
from clearing.money import ZERO, fmt
from projections.margin import MarketTerms, tiers_from_text
from projections.read import Views


def _optional(value: Decimal | None) -> str | None:
    return None if value is None else fmt(value)


def _one(connection: Any, table: Any, **where: Any) -> dict[str, Any] | None:
    query = select(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    row = connection.execute(query).mappings().first()
    return None if row is None else dict(row)


def account_view(views: Views, name: str) -> dict[str, Any]:
    """Margin state of one account on current marks, from ``margin_*`` tables."""
    accounts, positions, markets = (views.table("margin", t) for t in ("margin_accounts", "margin_positions", "margin_markets"))
    with views.reading() as connection:
        row = _one(connection, accounts, account=name)
        if row is None:
            raise NotFoundError("account_not_found", "account", f"account {name} does not exist")
        held = [dict(r) for r in connection.execute(select(positions).where(positions.c.account == name)).mappings()]
        terms = {r["market"]: MarketTerms(_one(connection, markets, market=r["market"])) for r in held if r["size"] != ZERO}
    open_positions = {r["market"]: Position(r["size"], r["cost"], r["realized_pnl"]) for r in held if r["size"] != ZERO}
    margin = account_margin(row["collateral"], open_positions, terms)
    return {
        "account": name,
        "status": "closed" if row["status"] == "closed" else row["risk_status"],
        "margin_call": None if row["call_deadline"] is None else {
            "market": row["call_market"], "issued_at": row["call_issued_at"], "deadline": row["call_deadline"],
            "amount_to_initial": fmt(row["call_amount"])},
        "collateral": fmt(margin.collateral),
        "equity": fmt(margin.equity),
        "initial_margin": fmt(margin.initial_margin),
        "maintenance_margin": fmt(margin.maintenance_margin),
        "free_collateral": fmt(margin.free_collateral),
        "margin_ratio": _optional(margin.margin_ratio),
        "realized_pnl": fmt(total(r["realized_pnl"] for r in held)),
        "positions": [
            {"market": p.market, "size": fmt(p.size), "entry_price": fmt(p.entry_price), "mark_price": fmt(p.mark_price),
             "notional": fmt(p.notional), "unrealized_pnl": fmt(p.unrealized_pnl), "realized_pnl": fmt(p.realized_pnl),
             "initial_margin": fmt(p.initial_margin), "maintenance_margin": fmt(p.maintenance_margin),
             "liquidation_price": _optional(p.liquidation_price)}
            for p in margin.positions
        ],
        "version": row["version"],
    }


def market_view(views: Views, name: str) -> dict[str, Any]:
    """Contract terms, margin tiers, status and mark of one market."""
    with views.reading() as connection:
        row = _one(connection, views.table("margin", "margin_markets"), market=name)
    if row is None:
        raise NotFoundError("market_not_found", "market", f"market {name} does not exist")
    return {
        "market": name, "kind": row["kind"], "status": row["status"], "expiry": row["expiry"],
        "contract_size": fmt(row["contract_size"]), "tick_size": fmt(row["tick_size"]),
        "step_size": fmt(row["step_size"]), "price_band": fmt(row["price_band"]),
        "collateral_asset": row["collateral_asset"], "mark_price": _optional(row["mark"]), "mark_time": row["mark_at"],
        "open_interest": fmt(row["open_interest"]), "volume": fmt(row["volume"]),
        "tiers": [{"notional_floor": fmt(t.notional_floor), "initial_margin_fraction": fmt(t.initial_margin_fraction),
                   "maintenance_margin_fraction": fmt(t.maintenance_margin_fraction),
                   "initial_margin_deduction": fmt(t.initial_margin_deduction),
                   "maintenance_margin_deduction": fmt(t.maintenance_margin_deduction)}
                  for t in tiers_from_text(row["tiers"])],
        "listed_at": row["listed_at"],
    }


def insurance_fund_view(views: Views) -> dict[str, Any]:
    """Balance and every movement of the insurance fund, from ``fund_movements``."""
    table = views.table("insurance_fund", "fund_movements")
    with views.reading() as connection:
        rows = [dict(r) for r in connection.execute(select(table).order_by(table.c.position)).mappings()]
    inflows = total(r["amount"] for r in rows if r["direction"] == "in")
    outflows = total(r["amount"] for r in rows if r["direction"] == "out")
    return {
        "balance": fmt(rows[-1]["balance_after"]) if rows else "0",
        "inflows": fmt(inflows),
        "outflows": fmt(outflows),
        "movements": [{"at": r["at"], "direction": r["direction"], "cause": r["cause"], "amount": fmt(r["amount"]),
                       "counterparty": r["counterparty"], "reference": r["reference"],
                       "balance_after": fmt(r["balance_after"]), "position": r["position"]} for r in rows],
    }


def loss_allocations(views: Views, market: str | None = None) -> list[dict[str, Any]]:
    """Every loss allocation and deleveraging fill in log order (optionally one market)."""
    table = views.table("losses", "loss_allocations")
    query = select(table).order_by(table.c.position)
    if market is not None:
        query = query.where(table.c.market == market)
    with views.reading() as connection:
        rows = [dict(r) for r in connection.execute(query).mappings()]
    return [_loss_row(r) for r in rows]


def _loss_row(r: dict[str, Any]) -> dict[str, Any]:
    row = {"at": r["at"], "loss_id": r["loss_id"], "market": r["market"], "account": r["account"], "policy": r["policy"],
           "share": fmt(r["share"]), "basis": fmt(r["basis"]), "basis_total": _optional(r["basis_total"]),
           "loss_total": _optional(r["loss_total"]), "price_mark": fmt(r["price_mark"])}
    if r["policy"] == "adl":
        row.update(price=fmt(r["price"]), rank=_optional(r["adl_rank"]), liquidated_account=r["liquidated_account"])
    return row


def account_names(views: Views) -> list[str]:
    table = views.table("margin", "margin_accounts")
    with views.reading() as connection:
        return [r[0] for r in connection.execute(select(table.c.account).order_by(table.c.account))]
