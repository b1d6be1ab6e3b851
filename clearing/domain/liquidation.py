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
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from clearing.domain.account import LIQUIDATING, MARGIN_CALL, Account, decide_fill
from clearing.domain.insurance import FundCause, InsuranceFund
from clearing.domain.liquidation_math import (
    bankruptcy_price,
    call_met,
    call_payment,
    quote_price,
    split_quote,
)
from clearing.domain.loss_policies import Holder, adl_bitmex, plan_deleveraging
from clearing.domain.margin import unrealized_pnl
from clearing.domain.market import Market
from clearing.domain.parameters import (
    ADL,
    CALL_RULE_CME,
    CALL_RULE_MAINTENANCE,
    QUEUE_POLICIES,
    SOCIALIZE_PER_CONTRACT,
    ParameterSet,
    deleveraging_policy,
)
from clearing.domain.risk.allocation import cash_allocation
from clearing.domain.risk.bankruptcy import bankruptcy_quote_for, deleveraging_fund_draw
from clearing.domain.risk.call import below_maintenance, call_terms, call_warranted
from clearing.domain.risk.capacity import Capacity
from clearing.domain.risk.due import liquidation_due
from clearing.domain.risk.fill import fill_quote
from clearing.domain.risk.penalty import decide_penalty
from clearing.domain.risk.step import status_after
from clearing.domain.risk.totals import MarginTotals, margin_totals
from clearing.money import ZERO, exact


class RiskContext(Protocol):
    """What the decisions need from the working set (``WorkingSet`` implements it)."""

    @property
    def markets(self) -> Mapping[str, Market]: ...

    def account(self, name: str, field: str) -> Account: ...
    def backstop(self, name: str, at: datetime) -> Account: ...
    def fund(self, at: datetime) -> InsuranceFund: ...
    def parameters(self, market: str) -> ParameterSet: ...
    def holders(self, market: str) -> Iterable[str]: ...
    def note_position(self, market: Market, account: Account, at: datetime) -> None: ...


def totals_of(account: Account, markets: Mapping[str, Market]) -> MarginTotals:
    return margin_totals(account.collateral, account.positions, markets)


# -- 1. and 2.: calls ---------------------------------------------------------------------


@exact
def check_call(account: Account, totals: MarginTotals, trigger: Market, params: ParameterSet, at: datetime, reason: str) -> bool:
    """Issue or clear the margin call; True when the account is due for liquidation now."""
    has_open_position = bool(account.open_positions())
    if not below_maintenance(totals, has_open_position):
        clear_call(account, totals, reason, at)  # under cme only at IM or paid: between MM and IM the call stands
        return False
    if call_warranted(totals, has_open_position, account.risk_status):
        terms = call_terms(totals, params, at)
        account.trigger_event(
            Account.MarginCallIssued,
            account=account.account,
            market=trigger.market,
            price_mark=trigger.price_mark,
            equity=totals.equity,
            initial_margin=totals.initial_margin,
            maintenance_margin=totals.maintenance_margin,
            amount_to_initial=terms.amount_to_initial,
            deadline=terms.deadline,
            parameters=params.as_record(),
            at=at,
        )
    assert account.margin_call is not None or account.risk_status == LIQUIDATING
    deadline = account.margin_call["deadline"] if account.margin_call is not None else None
    return liquidation_due(account.risk_status, deadline, at, totals, params.liquidation_floor)


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


# -- 2b.: held back, and back from bankruptcy ----------------------------------------------


def recover_from_bankruptcy(account: Account, at: datetime) -> None:
    """A flat bankrupt account made whole again by a deposit returns to ``healthy``."""
    account.trigger_event(Account.RecoveredFromBankruptcy, account=account.account, at=at)


def defer_liquidation(account: Account, market: Market, deviation: Decimal, params: ParameterSet, totals: MarginTotals,
                      at: datetime) -> None:
    """``LiquidationDeferred``: a due step waits while the mark is ``deviation`` from its TWAP
    (``risk.due.deferred_by_twap``)."""
    account.trigger_event(
        Account.LiquidationDeferred,
        account=account.account,
        market=market.market,
        price_mark=market.price_mark,
        price_twap=market.price_twap,
        deviation=deviation,
        twap_max_deviation=params.twap_max_deviation,
        equity=totals.equity,
        maintenance_margin=totals.maintenance_margin,
        at=at,
    )


# -- 5b.: can the liquidator carry it? ----------------------------------------------------------


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
    quote_fill = fill_quote(delta, price_fill, market.contract_size)
    penalty, fee_liquidator = decide_penalty(quote_fill, quote_bankruptcy, params, market.collateral_quantum)
    deficit = max(ZERO, quote_bankruptcy - quote_fill)
    price_bankruptcy = bankruptcy_price(quote_bankruptcy, delta, market.contract_size, market.tick_size)
    fill = FillTerms(delta, price_fill, price_bankruptcy, quote_bankruptcy, penalty, fee_liquidator, reason, "backstop", None,
                     quote_fill, capacity)
    _close_out(ctx, account, liquidator, market, fill, totals, params, liquidation_id, at, bankrupt=deficit > ZERO)
    if penalty - fee_liquidator > ZERO:
        ctx.fund(at).contribute(penalty - fee_liquidator, account.account, at, cause=FundCause.LIQUIDATION_PENALTY)
    return deficit


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
        risk_status_after=status_after(after, not any(p.size != ZERO for p in positions_after.values()), bankrupt),
        parameters=params.as_record(),
        at=at,
    )
    ctx.note_position(market, account, at)
    _take(ctx, taker, account, market, terms, liquidation_id, at)


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
    ctx.note_position(market, taker, at)


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
    wanted = deleveraging_fund_draw(position.size, market, totals)
    fund_paid = ctx.fund(at).pay_up_to(wanted, account.account, market.market, loss_id, at)
    if fund_paid > ZERO:
        record_loss_covered(account, loss_id, market, fund_paid, ZERO, "insurance_fund", at)
        totals = totals_of(account, ctx.markets)
    quote = bankruptcy_quote_for(position.size, delta, market, totals)
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
