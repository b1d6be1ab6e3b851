"""The command line's reads, from the projection tables (never by replaying aggregates).

Each function returns the same shape as the aggregate-based views in
``tests.margin_state`` (which tests use as the oracle): ``account_view``,
``market_view``, ``insurance_fund_view`` and ``loss_allocations``; ``account_list`` gives
``account_view``'s totals for every account, streamed. Margin figures are
computed from the stored inputs with the domain's margin functions (see
``projections.margin``). ``adl_rank_view`` ranks a market's holders under its loss policy;
the policy in force is the one thing read from the log itself (``LossPolicies``: no
projection holds the risk parameters), and every score is the loss policies' own
(``clearing.domain.loss_policies.scores``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from itertools import groupby
from typing import Any, Protocol

from sqlalchemy import func, select

from clearing.audit.log import read_log
from clearing.domain import loss_policies
from clearing.domain.account import AccountStatus, Position, RiskStatus
from clearing.domain.clearinghouse import Clearinghouse
from clearing.domain.loss_policies import Holder
from clearing.domain.loss_policies.base import leverage
from clearing.domain.margin import total
from clearing.domain.market import Market
from clearing.domain.parameters import DEFAULTS, effective
from clearing.domain.risk.totals import account_margin, margin_totals
from clearing.errors import InputError, NotFoundError
from clearing.money import ZERO, exact, fmt, is_multiple
from projections.margin import MarketTerms, tiers_from_text
from projections.read import Views
from projections.runner import ProjectionError, topic_of

PAGE = 1000  # rows fetched at a time by the streamed listings
#: ``status`` of an account view: its risk status, or ``closed``.
ACCOUNT_STATUSES = tuple(str(status) for status in (*RiskStatus, AccountStatus.CLOSED))  # risk statuses, then closed


def _optional(value: Decimal | None) -> str | None:
    return None if value is None else fmt(value)


def _one(connection: Any, table: Any, **where: Any) -> dict[str, Any] | None:
    query = select(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    row = connection.execute(query).mappings().first()
    return None if row is None else dict(row)


def account_view(views: Views, name: str, policies: PolicySource | None = None) -> dict[str, Any]:
    """Margin state of one account on current marks, from ``margin_*`` tables.

    Each open position carries its standing among the same-side holders of its market under
    the market's loss policy in force (``policies``; without it, ``DEFAULT_POLICY``), from
    ``adl_scores``: ``adl_policy``, ``adl_score`` (what it means per policy:
    ``loss_policies.scores``), ``adl_rank`` (1 = reached first) and ``adl_holders`` (holders
    on that side, the account included).
    """
    accounts, positions, markets = (views.table("margin", t) for t in ("margin_accounts", "margin_positions", "margin_markets"))
    with views.reading() as connection:
        row = _one(connection, accounts, account=name)
        if row is None:
            raise NotFoundError("account_not_found", "account", f"account {name} does not exist")
        held = [dict(r) for r in connection.execute(select(positions).where(positions.c.account == name)).mappings()]
        open_rows = [r for r in held if r["size"] != ZERO]
        terms = market_terms(connection, markets) if open_rows else {}
        standings = {r["market"]: _adl_standing(views, connection, accounts, positions, terms, r["market"], name,
                                                policies) for r in open_rows}
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

#: The read side's holder is the loss policies' own (kept under this name for callers).
AdlHolder = Holder
#: The policy a market is ranked under when no ``LossPolicies`` is given: the default.
DEFAULT_POLICY: str = DEFAULTS["loss_policy"]
_PARAMETER_TOPICS = (topic_of("Clearinghouse.ParametersSet"), topic_of("Market.ParametersSet"))


class PolicySource(Protocol):
    """What a view asks of the loss policies: the one in force in a market at a position."""

    def in_force(self, market: str, position: int) -> str: ...


class LossPolicies:
    """The ``loss_policy`` in force in each market at a log position, read from the log.

    No projection holds the risk parameters, so they are read from the two events that set
    them, at or before the position: the clearinghouse's last ``ParametersSet`` (defaults)
    and the market's last ``ParametersSet`` (its overrides), combined by the engine's own
    rule (``parameters.effective``: the override, else the default). Only those events are
    read (the recorder's topic filter) and what was read is kept, so a later position reads
    only the events after the one before. Example: defaults set to ``haircut_gains`` at
    position 5 and an X-PERP override ``adl`` at 9: X-PERP is ``haircut_gains`` at 7 and
    ``adl`` at 9; a market without overrides follows the defaults.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self._reached = 0
        self._defaults: Mapping[str, Any] = DEFAULTS
        self._overrides: dict[str, Mapping[str, Any]] = {}

    def in_force(self, market: str, position: int) -> str:
        """The market's ``loss_policy`` just after the event at ``position``."""
        if position < self._reached:  # an earlier position than the last one: read again from event 1
            self._reached, self._defaults, self._overrides = 0, DEFAULTS, {}
        self._read_until(position)
        return str(effective(self._defaults, self._overrides.get(market, {}), 0, 0).loss_policy)

    def _read_until(self, position: int) -> None:
        if self._reached >= position:
            return
        for page in read_log(self.app.recorder, self.app.mapper, start=self._reached + 1, stop=position, page=PAGE,
                             topics=_PARAMETER_TOPICS):
            for _, event in page.decoded():
                if isinstance(event, Market.ParametersSet):
                    self._overrides[event.market] = event.overrides_after
                elif isinstance(event, Clearinghouse.ParametersSet):
                    self._defaults = event.parameters_after
        self._reached = position


@exact
def adl_scores(market: MarketTerms, holders: Iterable[Holder], policy: str = DEFAULT_POLICY) -> list[tuple[str, Decimal | None]]:
    """Holders of ``market`` in the order ``policy`` reaches them (first = rank 1), with scores.

    The one entry point of the read side's ranking: ``loss_policies.scores`` (where each
    policy's score and order are defined, once) on the projection's figures: size, cost and
    the account's whole equity at the mark. Example (``adl``, mark 1,200, contract 1): long
    1 at 1,000 with equity 400 -> PnL 20 %, leverage 1,200 / 400 = 3, score 0.6; under
    ``waterfill_leverage`` the same holder scores its leverage, 3.
    """
    book = list(holders)
    if not book:
        return []
    assert market.price_mark is not None, f"position in {market.market} without a mark price"
    return loss_policies.scores(policy, book, market.price_mark, market.contract_size)


def _adl_standing(views: Views, connection: Any, accounts: Any, positions: Any, terms: dict[str, MarketTerms],
                  market: str, name: str, policies: PolicySource | None) -> dict[str, Any]:
    """``adl_score``, ``adl_rank``, ``adl_holders``, ``adl_policy`` of ``name``'s position in ``market``.

    The policy is the one in force at the projection's position (``DEFAULT_POLICY`` without
    ``policies``). The market's ranking (both sides) is computed once per projection
    position and policy and remembered by ``views``, so many accounts' views rank each
    market once.
    """
    position = views.position("margin", connection)
    policy = DEFAULT_POLICY if policies is None else policies.in_force(market, position)
    ranking = views.remembered(("adl", market, policy), position,
                               lambda: _market_ranking(connection, accounts, positions, terms, market, policy))
    score, rank, holders = ranking[name]
    return {"adl_score": _optional(score), "adl_rank": rank, "adl_holders": holders, "adl_policy": policy}


def _sides(connection: Any, accounts: Any, positions: Any, terms: dict[str, MarketTerms],
           market: str) -> tuple[list[Holder], list[Holder]]:
    """(longs, shorts): the open positions in ``market``, each with its account's equity."""
    longs: list[Holder] = []
    shorts: list[Holder] = []
    for holder in _holders(connection, accounts, positions, terms, market):
        (longs if holder.size > ZERO else shorts).append(holder)
    return longs, shorts


def _market_ranking(connection: Any, accounts: Any, positions: Any, terms: dict[str, MarketTerms],
                    market: str, policy: str) -> dict[str, tuple[Decimal | None, int, int]]:
    """Every holder of ``market``: (score, rank on its side, holders on its side) under ``policy``."""
    ranking: dict[str, tuple[Decimal | None, int, int]] = {}
    for side in _sides(connection, accounts, positions, terms, market):
        ranked = adl_scores(terms[market], side, policy)
        for rank, (account, score) in enumerate(ranked, 1):
            ranking[account] = (score, rank, len(ranked))
    return ranking


def adl_rank_view(views: Views, name: str, policies: PolicySource | None = None,
                  deficit: Decimal | None = None) -> dict[str, Any]:
    """Every holder of market ``name`` ranked under its loss policy, and a deficit's what-if.

    The header: ``market``, ``policy`` (in force at ``position``, the log position the view
    was read at), ``family`` (``queue`` or ``cash``), ``mark_price``, ``contract_size``,
    ``collateral_quantum``. ``longs`` and ``shorts``: one row per open position in the
    order the policy reaches them (``adl_scores``): ``rank`` (1 = first), ``account``,
    ``size``, ``equity`` (the account's, cross margin), ``leverage`` (notional / equity, None
    when equity <= 0), ``score`` and ``bears``.

    With ``deficit`` (on the collateral quantum, >= 0), ``bears`` is what each would bear if
    that deficit were allocated now (``loss_policies.bear``): under a queue policy a deficit
    comes from a bankrupt position on the *other* side, so each side is charged on its own,
    "if a bankrupt position of the opposite side left ``deficit``"; under a cash policy it
    is one allocation over every holder. ``what_if`` sums each allocation: ``charged``
    (``longs``, ``shorts`` or ``all``), ``borne`` and ``uncovered`` (what the policy cannot
    reach, e.g. the holders' gains are smaller). Without ``deficit``, ``bears`` is None and
    ``what_if`` empty. Example (``adl``, deficit 500, the longs' gains 400 and 300): if a
    short's bankruptcy left 500, the first long bears 400 and the second 100.

    Raises:
        NotFoundError: ``market_not_found``.
        InputError: ``deficit`` negative (``negative``) or off the market's collateral
            quantum (``too_many_decimals``).
    """
    accounts, positions, markets = (views.table("margin", t) for t in ("margin_accounts", "margin_positions", "margin_markets"))
    with views.reading() as connection:
        terms = market_terms(connection, markets)
        if name not in terms:
            raise NotFoundError("market_not_found", "market", f"market {name} does not exist")
        market = terms[name]
        _check_deficit(deficit, market.collateral_quantum)
        position = views.position("margin", connection)
        policy = DEFAULT_POLICY if policies is None else policies.in_force(name, position)
        longs, shorts = _sides(connection, accounts, positions, terms, name)
    borne, what_if = _what_if(policy, market, longs, shorts, deficit)
    return {
        "market": name, "policy": policy, "family": "queue" if policy in loss_policies.QUEUE_POLICIES else "cash",
        "mark_price": _optional(market.price_mark), "contract_size": fmt(market.contract_size),
        "collateral_quantum": fmt(market.collateral_quantum), "position": position,
        "deficit": _optional(deficit), "what_if": what_if,
        "longs": _rank_rows(market, longs, policy, borne), "shorts": _rank_rows(market, shorts, policy, borne),
    }


def _check_deficit(deficit: Decimal | None, quantum: Decimal) -> None:
    """A what-if deficit is >= 0 and on the collateral quantum (0.000001: 12.5 yes, 0.0000005 no)."""
    if deficit is None:
        return
    if deficit < ZERO:
        raise InputError("negative", "deficit", f"deficit must not be negative, got {fmt(deficit)}")
    if not is_multiple(deficit, quantum):
        raise InputError("too_many_decimals", "deficit",
                         f"deficit {fmt(deficit)} is not a multiple of the collateral quantum {fmt(quantum)}")


@exact
def _what_if(policy: str, market: MarketTerms, longs: list[Holder], shorts: list[Holder],
             deficit: Decimal | None) -> tuple[dict[str, Decimal], list[dict[str, str]]]:
    """({account: what it would bear}, [{charged, borne, uncovered}]) for ``deficit`` under ``policy``.

    Queue policy: each side charged alone (``bear`` over that side); cash: one ``bear`` over
    all holders. No deficit: nothing. A market nobody holds bears nothing (all uncovered).
    """
    if deficit is None:
        return {}, []
    queue = policy in loss_policies.QUEUE_POLICIES
    groups = [("longs", longs), ("shorts", shorts)] if queue else [("all", longs + shorts)]
    borne: dict[str, Decimal] = {}
    what_if: list[dict[str, str]] = []
    for charged, holders in groups:
        amounts = [] if not holders or market.price_mark is None else loss_policies.bear(
            policy, holders, market.price_mark, market.contract_size, deficit, market.collateral_quantum)
        borne.update(amounts)
        reached = sum((amount for _, amount in amounts), ZERO)
        what_if.append({"charged": charged, "borne": fmt(reached), "uncovered": fmt(deficit - reached)})
    return borne, what_if


@exact
def _rank_rows(market: MarketTerms, side: list[Holder], policy: str, borne: Mapping[str, Decimal]) -> list[dict[str, Any]]:
    """One side's rows in rank order (``adl_rank_view``), at the ledger's 60 digits."""
    by_name = {holder.account: holder for holder in side}
    rows = []
    for rank, (account, score) in enumerate(adl_scores(market, side, policy), 1):
        holder = by_name[account]
        assert market.price_mark is not None  # a holder implies a mark
        rows.append({
            "rank": rank, "account": account, "size": fmt(holder.size), "equity": fmt(holder.equity),
            "leverage": _optional(leverage(holder, market.price_mark, market.contract_size)),
            "score": _optional(score), "bears": _optional(borne.get(account)),
        })
    return rows


def _holders(connection: Any, accounts: Any, positions: Any, terms: dict[str, MarketTerms],
             market: str) -> Iterator[Holder]:
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
        yield Holder(account, rows[0]["held_size"], rows[0]["held_cost"], equity)


# -- every account ---------------------------------------------------------------------------


def account_list(views: Views, status: str | None = None, after: str | None = None) -> Iterator[dict[str, Any]]:
    """Every account (or those of one ``status``) by name, with its margin totals, streamed.

    ``status`` as in ``account_view``: a risk status (``healthy``, ``margin_call``,
    ``liquidating``, ``bankrupt``) or ``closed``. One query in one read transaction,
    fetched ``PAGE`` rows at a time: accounts left-joined to their open positions, in
    name order, so memory holds one page, not every account. Names are ordered by code
    point on both databases (``COLLATE "C"`` on PostgreSQL).
    """
    if status is not None and status not in ACCOUNT_STATUSES:
        raise InputError("invalid_value", "status", f"status {str(status)!r}: choose from {', '.join(ACCOUNT_STATUSES)}")
    accounts, positions, markets = (views.table("margin", t) for t in ("margin_accounts", "margin_positions", "margin_markets"))
    name = accounts.c.account.collate("C") if views.store.dialect == "postgresql" else accounts.c.account
    query = (select(accounts.c.account, accounts.c.status, accounts.c.risk_status, accounts.c.collateral,
                    positions.c.market, positions.c.size, positions.c.cost)
             .select_from(accounts.outerjoin(positions, (positions.c.account == accounts.c.account)
                                             & (positions.c.size != ZERO)))
             .order_by(name, positions.c.market)
             .execution_options(yield_per=PAGE))
    if after is not None:  # a page's cursor: the names after the last one shown
        query = query.where(name > after)
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
        "open_interest": fmt(row["open_interest"]), "volume": fmt(row["volume"]), "trades": row["trades"],
        "tiers": [{"notional_floor": fmt(t.notional_floor), "initial_margin_fraction": fmt(t.initial_margin_fraction),
                   "maintenance_margin_fraction": fmt(t.maintenance_margin_fraction),
                   "initial_margin_deduction": fmt(t.initial_margin_deduction),
                   "maintenance_margin_deduction": fmt(t.maintenance_margin_deduction)}
                  for t in tiers_from_text(row["tiers"])],
        "listed_at": row["listed_at"],
    }


def market_list(views: Views) -> list[dict[str, Any]]:
    """Every market by name: kind, status, mark, open interest, volume and trades."""
    table = views.table("margin", "margin_markets")
    name = table.c.market.collate("C") if views.store.dialect == "postgresql" else table.c.market
    with views.reading() as connection:
        rows = list(connection.execute(select(table).order_by(name)).mappings())
    return [{"market": r["market"], "kind": r["kind"], "status": r["status"], "mark_price": _optional(r["mark"]),
             "mark_time": r["mark_at"], "open_interest": fmt(r["open_interest"]), "volume": fmt(r["volume"]),
             "trades": r["trades"], "expiry": r["expiry"], "listed_at": r["listed_at"]} for r in rows]


def require_reached(views: Views, connection: Any, projection: str, until: int) -> None:
    """``projection_behind`` unless ``projection`` has reached log position ``until``: the rows
    as of a position are complete only once every event up to it was applied."""
    reached = views.position(projection, connection)
    if reached < until:
        raise ProjectionError("projection_behind", projection,
                              f"projection {projection} is at log position {reached}, before {until}; a writer "
                              "catches it up (`clearing projections catch-up`)")


def insurance_fund_view(views: Views, until: int | None = None) -> dict[str, Any]:
    """Balance and every movement of the insurance fund, from ``fund_movements``; with
    ``until``, as of that log position (the movements at or before it: the table only
    grows, each row at its event's position, so no replay is needed)."""
    table = views.table("insurance_fund", "fund_movements")
    query = select(table).order_by(table.c.position)
    with views.reading() as connection:
        if until is not None:
            require_reached(views, connection, "insurance_fund", until)
            query = query.where(table.c.position <= until)
        rows = [dict(r) for r in connection.execute(query).mappings()]
    inflows = total(r["amount"] for r in rows if r["direction"] == "in")
    outflows = total(r["amount"] for r in rows if r["direction"] == "out")
    return {
        "balance": fmt(rows[-1]["balance_after"]) if rows else "0",
        "inflows": fmt(inflows),
        "outflows": fmt(outflows),
        "movements": [_fund_row(r) for r in rows],
    }


def fund_page(views: Views, until: int | None = None, offset: int = 0, limit: int = 100,
              newest_first: bool = False) -> dict[str, Any]:
    """One page of the fund's movements (``insurance_fund_view``'s rows) with the balance and
    the number of movements, as of ``until``: the balance is the last row's
    ``balance_after`` (exact, no sum), the page is ``limit`` rows from ``offset`` in log
    order (or newest first)."""
    table = views.table("insurance_fund", "fund_movements")
    where = [] if until is None else [table.c.position <= until]
    order = table.c.position.desc() if newest_first else table.c.position
    with views.reading() as connection:
        if until is not None:
            require_reached(views, connection, "insurance_fund", until)
        count = int(connection.execute(select(func.count()).select_from(table).where(*where)).scalar() or 0)
        last = connection.execute(select(table.c.balance_after).where(*where).order_by(table.c.position.desc())
                                  .limit(1)).scalar()
        rows = [dict(r) for r in connection.execute(select(table).where(*where).order_by(order).offset(offset)
                                                    .limit(limit)).mappings()]
    return {"balance": fmt(last) if last is not None else "0", "movements_total": count, "offset": offset,
            "movements": [_fund_row(r) for r in rows]}


def _fund_row(r: dict[str, Any]) -> dict[str, Any]:
    return {"at": r["at"], "direction": r["direction"], "cause": r["cause"], "amount": fmt(r["amount"]),
            "counterparty": r["counterparty"], "reference": r["reference"], "balance_after": fmt(r["balance_after"]),
            "position": r["position"]}


#: The liquidation register's columns as the API and its CSV give them (``liquidation_register``).
REGISTER_FIELDS = ("position", "at", "day", "kind", "account", "market", "reference", "reason", "size_delta", "price_mark",
                   "price", "price_bankruptcy", "equity", "maintenance_margin", "amount", "penalty", "fee_liquidator",
                   "counterparty")


def liquidation_register(views: Views, day: str | None = None, account: str | None = None, offset: int = 0,
                         limit: int = 100) -> dict[str, Any]:
    """Margin calls, liquidation fills, deleveraging, fund draws and loss cover in log order
    (the ``liquidations`` projection), optionally of one business day or one account;
    ``limit`` rows from ``offset``, with the number of rows that match."""
    table = views.table("liquidations", "liquidation_register")
    where = [table.c[name] == value for name, value in (("day", day), ("account", account)) if value is not None]
    with views.reading() as connection:
        count = int(connection.execute(select(func.count()).select_from(table).where(*where)).scalar() or 0)
        rows = [dict(r) for r in connection.execute(select(table).where(*where).order_by(table.c.position)
                                                    .offset(offset).limit(limit)).mappings()]
    return {"rows_total": count, "offset": offset,
            "rows": [{name: _text_of(r[name]) for name in REGISTER_FIELDS} for r in rows]}


def _text_of(value: Any) -> Any:
    return fmt(value) if isinstance(value, Decimal) else value


def loss_allocations(views: Views, market: str | None = None, until: int | None = None) -> list[dict[str, Any]]:
    """Every loss allocation and deleveraging fill in log order (optionally one market;
    with ``until``, those at or before that log position, as ``insurance_fund_view``)."""
    table = views.table("losses", "loss_allocations")
    query = select(table).order_by(table.c.position)
    if market is not None:
        query = query.where(table.c.market == market)
    with views.reading() as connection:
        if until is not None:
            require_reached(views, connection, "losses", until)
            query = query.where(table.c.position <= until)
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
