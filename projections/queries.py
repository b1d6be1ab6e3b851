"""The command line's reads, from the projection tables (never by replaying aggregates).

Each function returns the same shape as the aggregate-based views in
``projections.margin_state`` (which tests use as the oracle): ``account_view``,
``market_view``, ``insurance_fund_view`` and ``loss_allocations``; ``account_list`` gives
``account_view``'s totals for every account, streamed. Margin figures are
computed from the stored inputs with the domain's margin functions (see
``projections.margin``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from itertools import groupby
from typing import Any

from sqlalchemy import select

from clearing.domain.account import Position
from clearing.domain.liquidation_math import adl_ranking
from clearing.domain.margin import total
from clearing.domain.risk import account_margin, margin_totals
from clearing.errors import InputError, NotFoundError
from clearing.money import ZERO, exact, fmt
from projections.margin import MarketTerms, tiers_from_text
from projections.read import Views

PAGE = 1000  # rows fetched at a time by the streamed listings
#: ``status`` of an account view: its risk status, or ``closed``.
ACCOUNT_STATUSES = ("healthy", "margin_call", "liquidating", "bankrupt", "closed")


def _optional(value: Decimal | None) -> str | None:
    return None if value is None else fmt(value)


def _one(connection: Any, table: Any, **where: Any) -> dict[str, Any] | None:
    query = select(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    row = connection.execute(query).mappings().first()
    return None if row is None else dict(row)


def account_view(views: Views, name: str) -> dict[str, Any]:
    """Margin state of one account on current marks, from ``margin_*`` tables.

    Each open position carries its ADL standing among the same-side holders of its market
    (``adl_scores``): ``adl_score`` (None: ranked last), ``adl_rank`` (1 = deleveraged
    first) and ``adl_holders`` (holders on that side, the account included).
    """
    accounts, positions, markets = (views.table("margin", t) for t in ("margin_accounts", "margin_positions", "margin_markets"))
    with views.reading() as connection:
        row = _one(connection, accounts, account=name)
        if row is None:
            raise NotFoundError("account_not_found", "account", f"account {name} does not exist")
        held = [dict(r) for r in connection.execute(select(positions).where(positions.c.account == name)).mappings()]
        open_rows = [r for r in held if r["size"] != ZERO]
        terms = market_terms(connection, markets) if open_rows else {}
        standings = {r["market"]: _adl_standing(views, connection, accounts, positions, terms, r["market"], name)
                     for r in open_rows}
    open_positions = {r["market"]: Position(r["size"], r["cost"], r["realized_pnl"]) for r in open_rows}
    margin = account_margin(row["collateral"], open_positions, {market: terms[market] for market in open_positions})
    return {
        "account": name,
        "status": "closed" if row["status"] == "closed" else row["risk_status"],
        "margin_call": None if row["call_deadline"] is None else {
            "market": row["call_market"], "issued_at": row["call_issued_at"], "deadline": row["call_deadline"],
            "amount_to_initial": fmt(row["call_amount"]), "amount_due": fmt(row["call_due"]), "rule": row["call_rule"]},
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
             "liquidation_price": _optional(p.liquidation_price), **standings[p.market]}
            for p in margin.positions
        ],
        "version": row["version"],
    }


def market_terms(connection: Any, markets: Any) -> dict[str, MarketTerms]:
    """Every market's terms and mark (markets are few; accounts and positions are not)."""
    return {r["market"]: MarketTerms(dict(r)) for r in connection.execute(select(markets)).mappings()}


# -- auto-deleveraging rank ------------------------------------------------------------------


@dataclass(frozen=True)
class AdlHolder:
    """One holder of a position in a market, with the figures its ADL score is taken from."""

    account: str
    size: Decimal
    cost: Decimal
    equity: Decimal  # the account's equity over all its positions (cross margin)


@exact
def adl_scores(market: MarketTerms, holders: Iterable[AdlHolder]) -> list[tuple[str, Decimal | None]]:
    """Holders of one side of ``market`` in deleveraging order (first = rank 1), with scores.

    The one entry point for the read side's ADL ranking (a policy-aware ranking replaces
    this function). Score: BitMEX's ``liquidation_math.adl_ranking`` on the projection's
    figures, value_mark = size x mark x contract, value_entry = cost, value_bankrupt =
    value_mark - equity; None when equity <= 0 or cost == 0. Order: highest score first,
    None last, ties by account name. Example (mark 1,200, contract 1): long 1 at 1,000
    with equity 400 -> PnL 20 %, leverage 1,200 / 400 = 3, score 0.6.
    """
    scored = [(holder.account, _adl_score(market, holder)) for holder in holders]
    return sorted(scored, key=lambda item: (item[1] is None, -(item[1] if item[1] is not None else ZERO), item[0]))


def _adl_score(market: MarketTerms, holder: AdlHolder) -> Decimal | None:
    if holder.equity <= ZERO or holder.cost == ZERO:
        return None
    assert market.price_mark is not None, f"position in {market.market} without a mark price"
    value_mark = holder.size * market.price_mark * market.contract_size
    return adl_ranking(value_mark, holder.cost, value_mark - holder.equity)


def _adl_standing(views: Views, connection: Any, accounts: Any, positions: Any, terms: dict[str, MarketTerms],
                  market: str, name: str) -> dict[str, Any]:
    """``adl_score``, ``adl_rank``, ``adl_holders`` of ``name``'s position in ``market``.

    The market's ranking (both sides) is computed once per projection position and
    remembered by ``views``, so listing many accounts' views ranks each market once.
    """
    position = views.position("margin", connection)
    ranking = views.remembered(("adl", market), position,
                               lambda: _market_ranking(connection, accounts, positions, terms, market))
    score, rank, holders = ranking[name]
    return {"adl_score": _optional(score), "adl_rank": rank, "adl_holders": holders}


def _market_ranking(connection: Any, accounts: Any, positions: Any, terms: dict[str, MarketTerms],
                    market: str) -> dict[str, tuple[Decimal | None, int, int]]:
    """Every holder of ``market``: (score, rank on its side, holders on its side)."""
    longs: list[AdlHolder] = []
    shorts: list[AdlHolder] = []
    for holder in _holders(connection, accounts, positions, terms, market):
        (longs if holder.size > ZERO else shorts).append(holder)
    ranking: dict[str, tuple[Decimal | None, int, int]] = {}
    for side in (longs, shorts):
        ranked = adl_scores(terms[market], side)
        for rank, (account, score) in enumerate(ranked, 1):
            ranking[account] = (score, rank, len(ranked))
    return ranking


def _holders(connection: Any, accounts: Any, positions: Any, terms: dict[str, MarketTerms],
             market: str) -> Iterator[AdlHolder]:
    """Open positions in ``market``, each with its account's equity, streamed.

    One query: the market's holders joined to their accounts and to all their open
    positions, in account order, so memory holds one account's positions at a time.
    """
    held, other = positions.alias("held"), positions.alias("other")
    query = (select(accounts.c.account, accounts.c.collateral, held.c.size.label("held_size"), held.c.cost.label("held_cost"),
                    other.c.market, other.c.size, other.c.cost)
             .select_from(held.join(accounts, accounts.c.account == held.c.account)
                          .join(other, other.c.account == held.c.account))
             .where(held.c.market == market, held.c.size != ZERO, other.c.size != ZERO)
             .order_by(held.c.account, other.c.market)
             .execution_options(yield_per=PAGE))
    for account, group in groupby(connection.execute(query).mappings(), key=lambda r: r["account"]):
        rows = list(group)
        open_positions = {r["market"]: Position(r["size"], r["cost"], ZERO) for r in rows}
        equity = margin_totals(rows[0]["collateral"], open_positions, terms, with_maintenance=False).equity
        yield AdlHolder(account, rows[0]["held_size"], rows[0]["held_cost"], equity)


# -- every account ---------------------------------------------------------------------------


def account_list(views: Views, status: str | None = None) -> Iterator[dict[str, Any]]:
    """Every account (or those of one ``status``) by name, with its margin totals, streamed.

    ``status`` as in ``account_view``: a risk status (``healthy``, ``margin_call``,
    ``liquidating``, ``bankrupt``) or ``closed``. One query in one read transaction,
    fetched ``PAGE`` rows at a time: accounts left-joined to their open positions, in
    name order, so memory holds one page, not every account. Names are ordered by code
    point on both databases (``COLLATE "C"`` on PostgreSQL).
    """
    if status is not None and status not in ACCOUNT_STATUSES:
        raise InputError("invalid_value", "status", f"status {status!r}: choose from {', '.join(ACCOUNT_STATUSES)}")
    accounts, positions, markets = (views.table("margin", t) for t in ("margin_accounts", "margin_positions", "margin_markets"))
    name = accounts.c.account.collate("C") if views.store.dialect == "postgresql" else accounts.c.account
    query = (select(accounts.c.account, accounts.c.status, accounts.c.risk_status, accounts.c.collateral,
                    positions.c.market, positions.c.size, positions.c.cost)
             .select_from(accounts.outerjoin(positions, (positions.c.account == accounts.c.account)
                                             & (positions.c.size != ZERO)))
             .order_by(name, positions.c.market)
             .execution_options(yield_per=PAGE))
    if status == "closed":
        query = query.where(accounts.c.status == "closed")
    elif status is not None:
        query = query.where(accounts.c.status != "closed", accounts.c.risk_status == status)
    with views.reading() as connection:
        terms = market_terms(connection, markets)
        for account, group in groupby(connection.execute(query).mappings(), key=lambda r: r["account"]):
            rows = list(group)
            open_positions = {r["market"]: Position(r["size"], r["cost"], ZERO) for r in rows if r["market"] is not None}
            totals = margin_totals(rows[0]["collateral"], open_positions, terms)
            yield {
                "account": account,
                "status": "closed" if rows[0]["status"] == "closed" else rows[0]["risk_status"],
                "collateral": fmt(rows[0]["collateral"]),
                "equity": fmt(totals.equity),
                "initial_margin": fmt(totals.initial_margin),
                "maintenance_margin": fmt(totals.maintenance_margin),
                "positions": len(open_positions),
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
