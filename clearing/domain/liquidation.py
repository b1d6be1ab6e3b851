"""Margin calls, liquidation steps, bankruptcy, and loss allocation: the decisions.

Each function decides from the aggregates it is given and triggers events that carry
every number it used; nothing here reads a clock or today's parameters from anywhere but
the ``ParameterSet`` passed in (which the events record).

The rule, per account below maintenance margin (equity < MM):

1. **Call.** ``MarginCallIssued`` with the amount that restores initial margin and a
   deadline ``at + margin_call_grace``. Under ``margin_call_rule`` ``cme`` (default) the
   call stands until equity reaches initial margin or the full called amount has been
   paid; each deposit pays it down (``MarginCallPaid``: amount paid, amount still due)
   and the deadline stands. Equity back between MM and IM is not liquidated (it is not
   below maintenance) but the call stays open: once the deadline has passed, the account
   is liquidated at the first check that finds it below MM, with no new grace. Under
   ``maintenance`` equity back at MM meets the call. (``MarginCallMet`` either way.)
   Example: IM 940, MM 470, equity 400 -> call for 540, grace 3600 s. Deposit 200 at
   +10 min: paid 200, due 340, equity 600 >= MM, call open. At +2 h the mark falls and
   equity is 450 < MM: the deadline has passed, so the account is liquidated at once.
   A deposit of 540 (or equity back to 940) instead meets the call.
2. **Due** when the deadline has passed, or at once when equity < ``liquidation_floor`` x
   MM or equity <= 0 (whatever the floor), or when the account is already being liquidated.
3. **Which position.** Largest maintenance requirement first, ties by market name.
4. **How much.** Solvent accounts: the size that brings equity back to MM x (1 +
   ``liquidation_buffer``) net of the spread and penalty (Drift's base-to-cover formula),
   rounded up to the step, capped at ``max_liquidation_fraction`` of the position; the
   whole position when its notional is at most ``liquidation_min_notional``. Accounts
   with equity <= 0: every position, in full.
5. **Price.** The backstop liquidator takes the size at mark -/+ ``liquidation_spread`` x
   MMF x mark x ABR (on the tick, against the account; ABR = clamp(1 - equity / MM, 0, 1),
   dYdX's fillable price, under ``liquidation_price_rule`` ``dydx``; 1 under
   ``full_spread``), or at an operator's auction price.
5b. **Who can take it.** A takeover is allowed only if the taker meets initial margin
   afterwards and its total position notional is at most ``liquidator_position_cap`` x its
   equity (``Capacity``; recorded on ``PositionTaken``). When the backstop cannot (or is
   itself the account liquidated), ``TakeoverRefused`` is recorded: an account at or below
   zero equity, or whose fill would be below its bankruptcy quote, is deleveraged at the
   bankruptcy price (step 7, under every loss policy); a solvent one waits, ``liquidating``,
   for the next check.
6. **Penalty / deficit.** With ``q_b`` the bankruptcy quote (dYdX, rounded so the fund
   never pays for rounding) and ``q_f`` the fill quote: a surplus ``q_f - q_b`` pays a
   penalty of at most ``liquidation_fee_rate`` x |q_f| (the liquidator's share to it, the
   rest to the fund); a deficit ``q_b - q_f`` is drawn from the insurance fund, and what
   the fund cannot pay is allocated by the market's ``loss_policy``.
7. **Deleveraging** (``loss_policy`` ``adl``, the fund short): the position is closed
   against ranked opposite positions at the **exact** bankruptcy quote, split over the
   slices by size (largest remainder on the quantum, so the slices add up to it exactly).
   No slice is booked at a tick-rounded price, so the bankrupt account ends at exactly 0
   (a single position; several close to 0 with the last) and the counterparties' cash is
   the quote. Why not round to the tick and let the fund pay the residual: deleveraging
   runs because the fund cannot pay, so the residual would have no payer; the exact quote
   moves money only between the two sides of each fill, and nobody is left short.
   Example: short 1 at 50,000 with 499.50, mark 51,000 -> quote -50,499.50: the account
   pays 50,499.50 (not 50,500 at tick 1) and ends at 0; the long receives 50,499.50.

Worked example (dYdX's insurance-fund example): deposit 100, long 500 at 1.00, MMF 3 %,
spread 1.5 (so 4.5 % of mark), tick 0.001. At mark 0.801 equity 0.50 < MM 12.015; the
notional 400.5 is at most ``liquidation_min_notional``, so the whole position closes.
Under ``full_spread`` at 0.801 x (1 - 0.045) = 0.764955 -> 0.764 (down, against the
account); q_f = 382 and q_b = 400.5 - 0.50 = 400 (the value at the mark less the equity)
-> the fund pays 18. Under ``dydx`` (default) ABR = 1 - 0.50 / 12.015 = 0.958385, the fill
is 0.801 - 0.801 x 0.045 x 0.958385 = 0.766455 -> 0.766, q_f = 383: the fund pays 17.
(The docs fill at 0.77, q_f = 385, and get 15.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from clearing.domain.account import BANKRUPT, HEALTHY, LIQUIDATING, MARGIN_CALL, Account, Position, decide_fill
from clearing.domain.insurance import FundCause, InsuranceFund
from clearing.domain.liquidation_math import (
    adjusted_bankruptcy_rating,
    allocate_largest_remainder,
    bankruptcy_price,
    bankruptcy_quote,
    base_to_cover_shortage,
    call_met,
    call_payment,
    can_carry,
    quote_price,
    split_quote,
)
from clearing.domain.loss_policies import Holder, adl_bitmex, leverage_weighted_gains, plan_deleveraging
from clearing.domain.margin import maintenance_requirement, position_notional, unrealized_pnl
from clearing.domain.market import Market
from clearing.domain.parameters import (
    ADL,
    CALL_RULE_CME,
    CALL_RULE_MAINTENANCE,
    HAIRCUT_GAINS,
    LEVERAGE_WEIGHTED_GAINS,
    PRICE_RULE_FULL_SPREAD,
    QUEUE_POLICIES,
    SOCIALIZE_PER_CONTRACT,
    ParameterSet,
    deleveraging_policy,
)
from clearing.domain.risk import MarginTotals, margin_totals
from clearing.money import ONE, ZERO, exact, round_down, round_up


class RiskContext(Protocol):
    """What the decisions need from the working set (``WorkingSet`` implements it)."""

    @property
    def markets(self) -> Mapping[str, Market]: ...

    def account(self, name: str, field: str) -> Account: ...
    def backstop(self, name: str, at: datetime) -> Account: ...
    def fund(self, at: datetime) -> InsuranceFund: ...
    def parameters(self, market: str) -> ParameterSet: ...
    def holders(self, market: str) -> Iterable[str]: ...
    def note_position(self, market: Market, account: Account, size_before: Decimal, volume: Decimal, at: datetime) -> None: ...


def totals_of(account: Account, markets: Mapping[str, Market]) -> MarginTotals:
    return margin_totals(account.collateral, account.positions, markets)


# -- 1. and 2.: calls ---------------------------------------------------------------------


@exact
def check_call(account: Account, totals: MarginTotals, trigger: Market, params: ParameterSet, at: datetime, reason: str) -> bool:
    """Issue or clear the margin call; True when the account is due for liquidation now."""
    if totals.equity >= totals.maintenance_margin or not account.open_positions():
        clear_call(account, totals, reason, at)  # under cme only at IM or paid: between MM and IM the call stands
        return False
    if account.risk_status not in (MARGIN_CALL, LIQUIDATING):
        account.trigger_event(
            Account.MarginCallIssued,
            account=account.account,
            market=trigger.market,
            price_mark=trigger.price_mark,
            equity=totals.equity,
            initial_margin=totals.initial_margin,
            maintenance_margin=totals.maintenance_margin,
            amount_to_initial=totals.initial_margin - totals.equity,
            deadline=at + timedelta(seconds=params.margin_call_grace),
            parameters=params.as_record(),
            at=at,
        )
    assert account.margin_call is not None or account.risk_status == LIQUIDATING
    deadline_passed = account.margin_call is None or account.margin_call["deadline"] <= at
    below_floor = totals.equity < params.liquidation_floor * totals.maintenance_margin or totals.equity <= ZERO
    return account.risk_status == LIQUIDATING or deadline_passed or below_floor


def clear_call(account: Account, totals: MarginTotals, reason: str, at: datetime) -> None:
    """``MarginCallMet`` for a called or liquidating account whose call is met.

    Met by ``liquidation_math.call_met`` under the rule the call was issued with
    (``margin_call_rule``): ``cme`` needs equity >= initial margin or the called amount
    paid in full, ``maintenance`` equity >= maintenance margin. A liquidating account with
    no call open (deferred) is met at maintenance.
    """
    if account.risk_status not in (MARGIN_CALL, LIQUIDATING):
        return
    call = account.margin_call or {}
    rule = call.get("rule", CALL_RULE_MAINTENANCE)
    due = call.get("amount_due", call.get("amount_to_initial", ZERO))
    if call_met(rule, totals.equity, totals.initial_margin, totals.maintenance_margin, due):
        account.trigger_event(
            Account.MarginCallMet,
            account=account.account,
            reason=reason,
            equity=totals.equity,
            maintenance_margin=totals.maintenance_margin,
            initial_margin=totals.initial_margin,
            amount_due=due,
            at=at,
        )


def pay_call(account: Account, totals: MarginTotals, deposit: Decimal, at: datetime) -> None:
    """A deposit on an open call: ``MarginCallPaid`` (amount paid, amount still due), then
    ``MarginCallMet`` if that meets it. ``totals`` are after the deposit.

    Example (``cme``): call for 540 (IM 940, equity 400, MM 470); deposit 200 -> paid 200,
    due 340, equity 600: the call stands with its deadline; deposit 340 -> due 0: met.
    """
    call = account.margin_call
    if account.risk_status == MARGIN_CALL and call is not None and call.get("rule") == CALL_RULE_CME:
        paid, due = call_payment(call.get("amount_due", call["amount_to_initial"]), deposit)
        if paid > ZERO:
            account.trigger_event(
                Account.MarginCallPaid,
                account=account.account,
                deposit=deposit,
                amount_paid=paid,
                amount_due=due,
                equity=totals.equity,
                initial_margin=totals.initial_margin,
                at=at,
            )
    clear_call(account, totals, "deposit", at)


def positions_by_priority(account: Account, markets: Mapping[str, Market]) -> list[str]:
    """Markets to reduce first: largest maintenance requirement, ties by name (step 3)."""
    keyed = []
    for name, position in account.open_positions().items():
        market = markets[name]
        notional = position_notional(position.size, market.mark, market.contract_size)
        keyed.append((-maintenance_requirement(market.tiers, notional, market.collateral_quantum), name))
    return [name for _, name in sorted(keyed)]


# -- 4. and 5.: size and price ----------------------------------------------------------------


@exact
def size_to_close(position: Position, market: Market, totals: MarginTotals, params: ParameterSet) -> Decimal:
    """Contracts to close in one step (step 4). Example: shortage 10 at mark 100, MMF 10 %,
    buffer 0, no spread or fee -> 1 contract (10 / (100 x 0.1))."""
    size = abs(position.size)
    notional = position_notional(position.size, market.mark, market.contract_size)
    if totals.equity <= ZERO or notional <= params.liquidation_min_notional:
        return size
    maintenance = maintenance_requirement(market.tiers, notional, market.collateral_quantum)
    fraction = maintenance / notional
    buffered = fraction * (ONE + params.liquidation_buffer)
    shortage = totals.maintenance_margin * (ONE + params.liquidation_buffer) - totals.equity
    cost_rate = params.liquidation_spread * fraction + params.liquidation_fee_rate
    base = base_to_cover_shortage(shortage, market.mark * market.contract_size, buffered, cost_rate, ZERO)
    if base is None:
        return size
    cap = max(round_up(params.max_liquidation_fraction * size, market.step_size), market.step_size)
    return min(max(round_up(base, market.step_size), market.step_size), cap, size)


@exact
def spread_price(position: Position, market: Market, params: ParameterSet, totals: MarginTotals) -> Decimal:
    """Mark moved against the account by spread x MMF x mark x ABR, on the tick (step 5).

    ABR (``liquidation_price_rule`` ``dydx``, the default) is dYdX v4's adjusted bankruptcy
    rating, clamp(1 - equity / maintenance, 0, 1): the closer the account is to bankruptcy,
    the more of the spread it pays; ``full_spread`` takes ABR = 1 (the rule before issue 8).
    Example: long 1 BTC, mark 50,000, MMF 5 %, spread 0.5: full spread 50,000 x (1 - 0.025)
    = 48,750; with equity 2,490 of maintenance 2,500 (ABR 0.004) -> 50,000 - 5 = 49,995.
    """
    mark = market.mark
    notional = position_notional(position.size, mark, market.contract_size)
    fraction = maintenance_requirement(market.tiers, notional, market.collateral_quantum) / notional
    move = mark * params.liquidation_spread * fraction * price_rating(totals, params)
    if position.size > ZERO:
        return max(round_down(mark - move, market.tick_size), market.tick_size)
    return round_up(mark + move, market.tick_size)


def price_rating(totals: MarginTotals, params: ParameterSet) -> Decimal:
    """The share of the spread charged: ABR under ``dydx``, 1 under ``full_spread``."""
    if params.liquidation_price_rule == PRICE_RULE_FULL_SPREAD:
        return ONE
    return adjusted_bankruptcy_rating(totals.equity, totals.maintenance_margin)


# -- 5b.: can the liquidator carry it? ----------------------------------------------------------


@dataclass(frozen=True)
class Capacity:
    """A liquidator's figures after a takeover it would make, and the verdict."""

    equity_after: Decimal
    initial_margin_after: Decimal
    notional_after: Decimal
    cap: Decimal
    allowed: bool


@exact
def capacity_after(ctx: RiskContext, taker: Account, market: Market, delta_taker: Decimal, price: Decimal,
                   fee: Decimal, params: ParameterSet) -> Capacity:
    """The taker's equity, initial margin and total position notional after taking
    ``delta_taker`` at ``price`` plus ``fee``; allowed per ``liquidation_math.can_carry``.

    Example: backstop with 10,000, flat, takes long 0.1 BTC at 49,000 (mark 50,000, IMF
    5 %): equity 10,100, IM 250, notional 5,000 <= 1 x 10,100 -> allowed. The same taker
    with 1,000 of collateral: notional 5,000 > 1,100 -> refused.
    """
    position = taker.position(market.market)
    fill = decide_fill(position, delta_taker, price, market.contract_size, market.collateral_quantum)
    positions_after = dict(taker.positions)
    positions_after[market.market] = fill.position_after
    after = margin_totals(taker.collateral + fill.realized_pnl + fee, positions_after, ctx.markets)
    notional = total_notional(positions_after, ctx.markets)
    cap = params.liquidator_position_cap
    allowed = can_carry(after.equity, after.initial_margin, notional, cap)
    return Capacity(after.equity, after.initial_margin, notional, cap, allowed)


def total_notional(positions: Mapping[str, Position], markets: Mapping[str, Market]) -> Decimal:
    """Sum of |size| x mark x contract over the open positions (the liquidator's cap and the
    risk order both read it). Example: 0.1 BTC at 50,000 and 2 ETH at 3,000 -> 11,000."""
    return sum((position_notional(p.size, markets[m].mark, markets[m].contract_size)
                for m, p in positions.items() if p.size != ZERO), ZERO)


def refuse_takeover(account: Account, market: Market, taker: Account, delta: Decimal, price: Decimal,
                    capacity: Capacity, totals: MarginTotals, outcome: str, at: datetime) -> None:
    """``TakeoverRefused``: no liquidator can carry the step (see the event)."""
    account.trigger_event(
        Account.TakeoverRefused,
        account=account.account,
        market=market.market,
        liquidator=taker.account,
        size_delta=delta,
        price_fill=price,
        liquidator_equity_after=capacity.equity_after,
        liquidator_initial_margin_after=capacity.initial_margin_after,
        liquidator_notional_after=capacity.notional_after,
        liquidator_position_cap=capacity.cap,
        equity=totals.equity,
        maintenance_margin=totals.maintenance_margin,
        outcome=outcome,
        at=at,
    )


# -- 6.: one step ---------------------------------------------------------------------------


@exact
def bankruptcy_quote_for(account: Account, market: Market, delta: Decimal, totals: MarginTotals) -> Decimal:
    """dYdX bankruptcy quote for closing ``delta`` of the account's position in ``market``."""
    position = account.position(market.market)
    before, after = _maintenance_before_after(position, market, delta)
    if totals.maintenance_margin <= ZERO:
        return -delta * market.mark * market.contract_size - totals.equity
    return bankruptcy_quote(
        position.size, delta, market.mark, market.contract_size, before, after,
        totals.equity, totals.maintenance_margin, market.collateral_quantum,
    )


def _maintenance_before_after(position: Position, market: Market, delta: Decimal) -> tuple[Decimal, Decimal]:
    mark, contract, quantum = market.mark, market.contract_size, market.collateral_quantum
    before = maintenance_requirement(market.tiers, position_notional(position.size, mark, contract), quantum)
    after = maintenance_requirement(market.tiers, position_notional(position.size + delta, mark, contract), quantum)
    return before, after


@exact
def liquidation_step(
    ctx: RiskContext,
    account: Account,
    market: Market,
    delta: Decimal,
    price_fill: Decimal,
    quote_bankruptcy: Decimal,
    totals: MarginTotals,
    liquidator: Account,
    params: ParameterSet,
    reason: str,
    liquidation_id: str,
    at: datetime,
    capacity: Capacity | None = None,
) -> Decimal:
    """Close ``delta`` of ``account`` in ``market`` at ``price_fill`` to ``liquidator``.

    ``quote_bankruptcy`` and ``totals`` are the account's, decided by the caller just
    before, as is the liquidator's ``capacity`` (recorded on its ``PositionTaken``).
    Returns the deficit (> 0 when the fill was below the bankruptcy quote).
    """
    quote_fill = -delta * price_fill * market.contract_size
    penalty, fee_liquidator = penalty_and_fee(quote_fill, quote_bankruptcy, params, market.collateral_quantum)
    deficit = max(ZERO, quote_bankruptcy - quote_fill)
    price_bankruptcy = bankruptcy_price(quote_bankruptcy, delta, market.contract_size, market.tick_size)
    fill = FillTerms(delta, price_fill, price_bankruptcy, quote_bankruptcy, penalty, fee_liquidator, reason, "backstop", None,
                     quote_fill, capacity)
    _close_out(ctx, account, liquidator, market, fill, totals, params, liquidation_id, at, bankrupt=deficit > ZERO)
    if penalty - fee_liquidator > ZERO:
        ctx.fund(at).contribute(penalty - fee_liquidator, account.account, at, cause=FundCause.LIQUIDATION_PENALTY)
    return deficit


@exact
def penalty_and_fee(
    quote_fill: Decimal, quote_bankruptcy: Decimal, params: ParameterSet, quantum: Decimal
) -> tuple[Decimal, Decimal]:
    """(penalty, liquidator's fee) of a fill (step 6): the penalty is at most
    ``liquidation_fee_rate`` x |q_f| and never more than the surplus above the bankruptcy
    quote; ``liquidator_fee_share`` of it goes to the liquidator (rounded down, the fund
    keeps the rest). Example: q_f 4,600, q_b 4,501, rate 1 %, share 0.5 -> (46, 23)."""
    surplus = quote_fill - quote_bankruptcy
    penalty = min(surplus, round_up(params.liquidation_fee_rate * abs(quote_fill), quantum)) if surplus > ZERO else ZERO
    return penalty, round_down(penalty * params.liquidator_fee_share, quantum)


@dataclass(frozen=True)
class FillTerms:
    """The decided terms of one liquidation fill (what ``Liquidated`` records)."""

    delta: Decimal
    price: Decimal
    price_bankruptcy: Decimal
    quote_bankruptcy: Decimal
    penalty: Decimal
    fee_liquidator: Decimal
    reason: str
    basis: str  # backstop / adl
    rank: Decimal | None
    quote: Decimal  # what the liquidated account receives (+) or pays (-): the money booked
    capacity: Capacity | None = None  # the liquidator's check, on a takeover


@exact
def _close_out(
    ctx: RiskContext,
    account: Account,
    taker: Account,
    market: Market,
    terms: FillTerms,
    totals: MarginTotals,
    params: ParameterSet,
    liquidation_id: str,
    at: datetime,
    bankrupt: bool,
) -> None:
    """Record one liquidation fill on both sides: ``Liquidated`` and ``PositionTaken``."""
    position = account.position(market.market)
    fill = decide_fill(position, terms.delta, terms.price, market.contract_size, market.collateral_quantum, quote=terms.quote)
    collateral_after = account.collateral + fill.realized_pnl - terms.penalty
    positions_after = dict(account.positions)
    positions_after[market.market] = fill.position_after
    after = margin_totals(collateral_after, positions_after, ctx.markets)
    account.trigger_event(
        Account.Liquidated,
        account=account.account,
        liquidation_id=liquidation_id,
        market=market.market,
        reason=terms.reason,
        counterparty=taker.account,
        size_delta=terms.delta,
        price_mark=market.price_mark,
        price_fill=terms.price,
        price_bankruptcy=terms.price_bankruptcy,
        quote_fill=terms.quote,
        quote_bankruptcy=terms.quote_bankruptcy,
        equity_before=totals.equity,
        initial_margin_before=totals.initial_margin,
        maintenance_margin_before=totals.maintenance_margin,
        penalty=terms.penalty,
        fee_liquidator=terms.fee_liquidator,
        realized_pnl=fill.realized_pnl,
        position_size_after=fill.position_after.size,
        position_cost_after=fill.position_after.cost,
        collateral_after=collateral_after,
        equity_after=after.equity,
        maintenance_margin_after=after.maintenance_margin,
        risk_status_after=BANKRUPT if bankrupt else _status_after(after, positions_after),
        parameters=params.as_record(),
        at=at,
    )
    ctx.note_position(market, account, position.size, abs(terms.delta), at)
    _take(ctx, taker, account, market, terms, liquidation_id, at)


def _status_after(after: MarginTotals, positions: Mapping[str, Position]) -> str:
    if not any(p.size != ZERO for p in positions.values()) or after.equity >= after.maintenance_margin:
        return HEALTHY
    return LIQUIDATING


@exact
def _take(
    ctx: RiskContext, taker: Account, liquidated: Account, market: Market, terms: FillTerms, liquidation_id: str, at: datetime
) -> None:
    """The counterparty's side of a liquidation fill (backstop or deleveraged account)."""
    delta = -terms.delta
    position = taker.position(market.market)
    quote = -terms.quote
    fill = decide_fill(position, delta, terms.price, market.contract_size, market.collateral_quantum,
                       quote=quote if terms.basis == ADL else None)
    taker.trigger_event(
        Account.PositionTaken,
        account=taker.account,
        liquidation_id=liquidation_id,
        market=market.market,
        basis=terms.basis,
        liquidated_account=liquidated.account,
        size_delta=delta,
        price=terms.price,
        price_mark=market.price_mark,
        fee_received=terms.fee_liquidator,
        adl_rank=terms.rank,
        loss_vs_mark=-quote - delta * market.mark * market.contract_size,  # > 0: worse than mark
        realized_pnl=fill.realized_pnl,
        position_size_after=fill.position_after.size,
        position_cost_after=fill.position_after.cost,
        collateral_after=taker.collateral + fill.realized_pnl + terms.fee_liquidator,
        at=at,
        quote=quote,
        equity_after=terms.capacity.equity_after if terms.capacity else None,
        initial_margin_after=terms.capacity.initial_margin_after if terms.capacity else None,
        notional_after=terms.capacity.notional_after if terms.capacity else None,
    )
    ctx.note_position(market, taker, position.size, ZERO, at)


# -- deficits: fund, then the loss policy ------------------------------------------------------


def record_loss_covered(
    account: Account, loss_id: str, market: Market, fund_paid: Decimal, allocated: Decimal, policy: str, at: datetime
) -> None:
    """Credit a bankrupt account what the fund and the allocations paid for its deficit."""
    account.trigger_event(
        Account.LossCovered,
        account=account.account,
        loss_id=loss_id,
        market=market.market,
        deficit=fund_paid + allocated,
        fund_paid=fund_paid,
        allocated=allocated,
        policy=policy,
        collateral_after=account.collateral + fund_paid + allocated,
        at=at,
    )


@exact
def cover_deficit(
    ctx: RiskContext,
    account: Account,
    market: Market,
    deficit: Decimal,
    params: ParameterSet,
    loss_id: str,
    at: datetime,
) -> list[str]:
    """Make a bankrupt account whole: fund first, then ``socialize_per_contract`` or
    ``haircut_gains``. Returns the accounts that paid a share (to be re-checked)."""
    fund_paid = ctx.fund(at).pay_up_to(deficit, account.account, market.market, loss_id, at)
    rest = deficit - fund_paid
    payers: list[str] = []
    policy = "insurance_fund"
    if rest > ZERO:
        policy = params.loss_policy if params.loss_policy not in QUEUE_POLICIES else SOCIALIZE_PER_CONTRACT
        payers = allocate_loss(ctx, account, market, rest, policy, loss_id, at)
    record_loss_covered(account, loss_id, market, fund_paid, rest, policy, at)
    return payers


def open_holders(ctx: RiskContext, market: Market, excluding: str | None = None) -> list[Account]:
    """Accounts with an open position in ``market``, in name order."""
    accounts = [ctx.account(name, "account") for name in sorted(ctx.holders(market.market)) if name != excluding]
    return [a for a in accounts if a.position(market.market).size != ZERO]


@dataclass(frozen=True)
class ShareGroup:
    """One set of ``LossAllocated`` of a loss: the policy, its total, the basis and the shares."""

    policy: str
    loss: Decimal
    basis_total: Decimal
    shares: tuple[tuple[str, Decimal, Decimal], ...]  # (account, share, basis), shares may be 0
    ranks: tuple[tuple[str, Decimal | None], ...] = ()  # (account, score) of a queue plan at settlement


@exact
def cash_allocation(policy: str, holders: Sequence[Holder], mark: Decimal, contract_size: Decimal, loss: Decimal,
                    quantum: Decimal) -> list[ShareGroup]:
    """How a cash ``policy`` splits ``loss`` over ``holders`` (the open positions of the market
    but the bankrupt one's, in name order): the one rule the engine books and the audit checks.

    ``socialize_per_contract``: pro rata to |size| over longs + shorts (Drift / Mango).
    ``haircut_gains``: pro rata to unrealized gains at the mark rounded down to the quantum,
    at most each gain (a gain below one quantum bears nothing). ``leverage_weighted_gains``:
    ``loss_policies.leverage_weighted_gains.shares`` (weights leverage x gain, each at most
    its gain; the basis is the weight). What gains cannot cover goes per contract, in a
    second group. Largest remainder at the quantum, so each group adds up exactly.
    Example: 1.00 per contract over sizes 1, 1, 1 -> 0.34, 0.33, 0.33.
    """
    groups: list[ShareGroup] = []
    if policy == HAIRCUT_GAINS:
        gains = [(h.account, round_down(max(ZERO, unrealized_pnl(h.size, h.cost, mark, contract_size)), quantum))
                 for h in holders]
        gains = [(name, gain) for name, gain in gains if gain > ZERO]
        haircut = min(loss, sum((gain for _, gain in gains), ZERO))
        if haircut > ZERO:
            groups.append(_pro_rata(HAIRCUT_GAINS, haircut, gains, quantum))
        loss -= haircut
    elif policy == LEVERAGE_WEIGHTED_GAINS:
        paid, uncovered = leverage_weighted_gains.shares(holders, mark, contract_size, loss, quantum)
        if loss > uncovered:
            groups.append(ShareGroup(LEVERAGE_WEIGHTED_GAINS, loss - uncovered, sum((w for _, _, w in paid), ZERO), tuple(paid)))
        loss = uncovered
    if loss > ZERO:
        groups.append(_pro_rata(SOCIALIZE_PER_CONTRACT, loss, [(h.account, abs(h.size)) for h in holders], quantum))
    return groups


def _pro_rata(policy: str, loss: Decimal, weights: Sequence[tuple[str, Decimal]], quantum: Decimal) -> ShareGroup:
    shares = allocate_largest_remainder(loss, list(weights), quantum)
    return ShareGroup(policy, loss, sum((w for _, w in weights), ZERO), tuple((name, shares[name], w) for name, w in weights))


@exact
def settlement_allocation(policy: str, bankrupt_size: Decimal, others: Sequence[Holder], price: Decimal,
                          contract_size: Decimal, step: Decimal, loss: Decimal, quantum: Decimal) -> tuple[str, list[ShareGroup]]:
    """How a settlement deficit left after the fund is charged: (policy used, share groups).

    ``others``: every settled position but the bankrupt ones, valued at the final ``price``
    (equity with this market at ``price``), in name order. Queue policies: as any
    deleveraging, the bankrupt position (``bankrupt_size``) is closed against the
    opposite-side winners by the policy's plan (``loss_policies.plan_deleveraging`` at
    ``price``) at its bankruptcy price, so each planned winner bears ``loss`` x its contracts
    / the position's size; with too few winners, per contract. ``leverage_weighted_gains``:
    its shares, what gains cannot cover per contract. ``haircut_gains``: pro rata to
    settlement gains. ``socialize_per_contract``, or nobody with a gain: per contract.
    Example: bankrupt long 3, 150 left after the fund; shorts ranked c (size 2), a (size 5):
    c bears 100, a 50 - not pro rata to gains.
    """
    gains = {h.account: unrealized_pnl(h.size, h.cost, price, contract_size) for h in others}
    if policy in QUEUE_POLICIES:
        opposite = [h for h in others if (h.size > ZERO) != (bankrupt_size > ZERO) and gains[h.account] > ZERO]
        if sum((abs(h.size) for h in opposite), ZERO) >= abs(bankrupt_size):
            plan = plan_deleveraging(policy, opposite, price, contract_size, abs(bankrupt_size), step)
            group = _pro_rata(policy, loss, [(name, take) for name, take, _ in plan], quantum)
            scores = tuple((name, score) for name, _, score in plan)
            return policy, [ShareGroup(policy, loss, abs(bankrupt_size), group.shares, scores)]
        policy = SOCIALIZE_PER_CONTRACT
    groups: list[ShareGroup] = []
    if policy == LEVERAGE_WEIGHTED_GAINS:
        paid, uncovered = leverage_weighted_gains.shares(others, price, contract_size, loss, quantum)
        if loss > uncovered:
            groups.append(ShareGroup(LEVERAGE_WEIGHTED_GAINS, loss - uncovered, sum((w for _, _, w in paid), ZERO), tuple(paid)))
        if uncovered == ZERO:
            return policy, groups
        loss, policy = uncovered, SOCIALIZE_PER_CONTRACT
    winners = [(h.account, gains[h.account]) for h in others if gains[h.account] > ZERO]
    if policy == HAIRCUT_GAINS and winners:
        return policy, [*groups, _pro_rata(HAIRCUT_GAINS, loss, winners, quantum)]
    sizes = [(h.account, abs(h.size)) for h in others]
    return SOCIALIZE_PER_CONTRACT, [*groups, _pro_rata(SOCIALIZE_PER_CONTRACT, loss, sizes, quantum)]


@exact
def allocate_loss(
    ctx: RiskContext, bankrupt: Account, market: Market, loss: Decimal, policy: str, loss_id: str, at: datetime
) -> list[str]:
    """Charge ``loss`` to the open positions in ``market`` by ``cash_allocation`` (never to a
    flat account); returns the accounts that could be charged (to be re-checked)."""
    accounts = open_holders(ctx, market, excluding=bankrupt.account)
    by_name = {a.account: a for a in accounts}
    holders = [holder_of(a, market, ctx.markets) for a in accounts]
    for group in cash_allocation(policy, holders, market.mark, market.contract_size, loss, market.collateral_quantum):
        record_shares(market, [(by_name[name], share, basis) for name, share, basis in group.shares], group.loss, group.policy,
                      loss_id, at, basis_total=group.basis_total)
    return [a.account for a in accounts]


def record_shares(market: Market, rows: Sequence[tuple[Account, Decimal, Decimal]], loss: Decimal, policy: str,
                  loss_id: str, at: datetime, ranks: Mapping[str, Decimal | None] | None = None,
                  basis_total: Decimal = ZERO) -> None:
    """``LossAllocated`` for each (account, share, basis) with a share > 0."""
    for account, share, weight in rows:
        if share == ZERO:
            continue
        account.trigger_event(
            Account.LossAllocated,
            account=account.account,
            loss_id=loss_id,
            market=market.market,
            policy=policy,
            loss_total=loss,
            share=share,
            basis=weight,
            basis_total=basis_total,
            price_mark=market.price_mark,
            collateral_after=account.collateral - share,
            at=at,
            rank=(ranks or {}).get(account.account),
        )


# -- ADL ----------------------------------------------------------------------------------------


def holder_of(account: Account, market: Market, markets: Mapping[str, Market], price: Decimal | None = None) -> Holder:
    """The loss policies' view of one position: size, cost and the account's whole equity,
    with ``market`` valued at ``price`` when given (a settlement's final price) instead of its mark."""
    position = account.position(market.market)
    equity = totals_of(account, markets).equity
    if price is not None:
        equity += unrealized_pnl(position.size, position.cost, price, market.contract_size) - _upnl(account, market)
    return Holder(account.account, position.size, position.cost, equity)


def _upnl(account: Account, market: Market) -> Decimal:
    position = account.position(market.market)
    return unrealized_pnl(position.size, position.cost, market.mark, market.contract_size)


def adl_rank(account: Account, market: Market, markets: Mapping[str, Market]) -> Decimal | None:
    """BitMEX ranking of one position (``loss_policies.adl_bitmex.score``): PnL% x effective
    leverage, leverage against the account's equity; None (ranked last) when equity <= 0."""
    return adl_bitmex.score(holder_of(account, market, markets), market.mark, market.contract_size)


@exact
def deleverage(
    ctx: RiskContext, account: Account, market: Market, params: ParameterSet, loss_id: str, at: datetime
) -> list[str]:
    """Close the bankrupt position against opposite positions at its exact bankruptcy quote.

    The fund first pays what it can of the account's negative equity (at most that); the
    bankruptcy quote of the whole position is then computed with that payment. Which
    opposite positions close, and how much of each, is the queue policy's plan
    (``loss_policies.plan_deleveraging`` under ``parameters.deleveraging_policy``: the
    market's ``loss_policy`` when it is a queue policy, ``adl`` otherwise): ``adl`` and
    ``adl_hyperliquid`` walk their ranking, highest first, each up to its size;
    ``waterfill_leverage`` drains the most levered until their leverage is equal. The quote
    is split over the slices by size (``split_quote``: largest remainder, summing to it
    exactly) and each slice books its share, never a tick-rounded price x size (step 7 of
    the module docstring): the account is left at exactly 0 and no rounding residual exists
    for anyone to pay. Example: short 3 closed against longs of 1 and 2 for a quote of
    -151,350.01 -> slices -50,450.003333 and -100,900.006667. Each slice records the plan's
    score (``PositionTaken.adl_rank``: the ranking score, or the leverage before under
    water-filling). Returns the deleveraged accounts (to be re-checked).
    """
    position = account.position(market.market)
    delta = -position.size
    totals = totals_of(account, ctx.markets)
    before, after = _maintenance_before_after(position, market, delta)
    share = (before - after) / totals.maintenance_margin if totals.maintenance_margin > ZERO else ONE
    wanted = max(ZERO, round_up(-totals.equity * share, market.collateral_quantum))
    fund_paid = ctx.fund(at).pay_up_to(wanted, account.account, market.market, loss_id, at)
    if fund_paid > ZERO:
        record_loss_covered(account, loss_id, market, fund_paid, ZERO, "insurance_fund", at)
        totals = totals_of(account, ctx.markets)
    quote = bankruptcy_quote_for(account, market, delta, totals)
    price = quote_price(quote, delta, market.contract_size, market.collateral_quantum)
    opposites = opposite_holders(ctx, account, market)
    plan = plan_deleveraging(deleveraging_policy(params.loss_policy), [holder_of(a, market, ctx.markets) for a in opposites],
                             market.mark, market.contract_size, abs(delta), market.step_size)
    by_name = {other.account: other for other in opposites}
    quotes = split_quote(quote, [size for _, size, _ in plan], market.collateral_quantum)
    touched: list[str] = []
    for (name, size, score), slice_quote in zip(plan, quotes, strict=True):
        slice_delta = size if delta > ZERO else -size
        terms = FillTerms(slice_delta, price, price, slice_quote, ZERO, ZERO, "adl", "adl", score, slice_quote)
        _close_out(ctx, account, by_name[name], market, terms, totals, params, loss_id, at, bankrupt=True)
        touched.append(name)
    return touched


def opposite_holders(ctx: RiskContext, account: Account, market: Market) -> list[Account]:
    """Open positions in ``market`` on the other side of ``account``'s, in name order."""
    side_long = account.position(market.market).size > ZERO
    return [other for other in open_holders(ctx, market, excluding=account.account)
            if (other.position(market.market).size > ZERO) != side_long]
