"""The risk engine's control flow: sweeps after price moves, one account's check, the queue.

``sweep`` runs after every mark price: it asks the market's liquidation-price index for
the accounts the move can have taken below maintenance (plus the watch set) and checks
each one in risk order (lowest equity / maintenance first, then larger notional, then name).
An account is checked at most once per sweep; accounts that paid a share of a loss or were
deleveraged are checked after the others, since those payments can take them below
maintenance too.

``check_account`` runs the rule in ``clearing.domain.liquidation``: call, then - if due -
one liquidation step (or, for an account with equity <= 0, every position closed). Two
conditions hold a due liquidation back and are recorded: liquidations paused in that
market (the account is queued on the clearinghouse and liquidated in queue order when
they resume) and a mark too far from its TWAP (``LiquidationDeferred``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from clearing.domain.account import BANKRUPT, CLOSED, Account
from clearing.domain.clearinghouse import LIQUIDATIONS
from clearing.domain.liquidation import (
    check_call,
    cover_deficit,
    defer_liquidation,
    deleverage,
    liquidation_step,
    pay_call,
    recover_from_bankruptcy,
    refuse_takeover,
    totals_of,
)
from clearing.domain.liquidation_math import loss_bearer_left, risk_order
from clearing.domain.market import Market
from clearing.domain.parameters import QUEUE_POLICIES, ParameterSet
from clearing.domain.risk.capacity import Capacity, capacity_after, refused_self, total_notional
from clearing.domain.risk.due import deferred_by_twap
from clearing.domain.risk.fill import fill_quote
from clearing.domain.risk.penalty import decide_penalty
from clearing.domain.risk.step import close_for, plan_step, positions_by_priority
from clearing.errors import RuleError
from clearing.money import ZERO, exact, fmt

if TYPE_CHECKING:
    from clearing.working_set import WorkingSet


class Sequencer:
    """Liquidation ids unique within a command: ``<command id>/L<n>``.

    One per command (``sequencer_of``): a manual liquidation and the re-check of the
    accounts it charged, or a resume and its re-checks, share it.
    """

    def __init__(self, command_id: str) -> None:
        self.command_id = command_id
        self.count = 0

    def next(self) -> str:
        self.count += 1
        return f"{self.command_id}/L{self.count}"


def sequencer_of(ws: WorkingSet) -> Sequencer:
    """The command's sequencer (the working set forgets it when a command starts)."""
    if ws.sequencer is None:
        ws.sequencer = Sequencer(ws.command_id)
    return ws.sequencer


def sweep(ws: WorkingSet, market: Market, at: datetime, reason: str = "price") -> int:
    """Check every account the new mark of ``market`` can affect; returns how many."""
    index = ws.risk_index(market)
    candidates = index.crossing(market.mark)
    return check_accounts(ws, market, list(candidates), at, reason)


def _in_risk_order(ws: WorkingSet, names: Iterable[str]) -> list[str]:
    """Deepest below maintenance first, then larger notional, then name (``risk_order``)."""
    keyed = []
    for name in sorted(names):
        account = ws.peek_account(name)
        if account is None:
            keyed.append((name, ZERO, ZERO, ZERO))
            continue
        totals = totals_of(account, ws.markets)
        keyed.append((name, totals.equity, totals.maintenance_margin, total_notional(account.positions, ws.markets)))
    return risk_order(keyed)


def check_accounts(ws: WorkingSet, market: Market, names: list[str], at: datetime, reason: str) -> int:
    """Check ``names`` in risk order (``risk_order``: deepest below maintenance first, then
    larger notional, then name), then whoever their liquidations touched. No account is
    exempt: the backstop liquidator is called and liquidated like any other (issue 8).

    An account a liquidation charged (a loss share, a deleveraging fill) is checked again
    even if it was checked earlier in this sweep: the charge may have taken it below
    maintenance. Each re-check follows a liquidation step, which only closes positions,
    so the loop ends.
    """
    sequencer = sequencer_of(ws)
    done: set[str] = set()
    queue = _in_risk_order(ws, names)
    while queue:
        name = queue.pop(0)
        if name in done:
            continue
        done.add(name)
        account = ws.peek_account(name)
        if account is None or account.status == CLOSED:
            continue
        account = ws.account(name, "account")  # now part of the command
        affected = check_account(ws, account, market, at, reason, sequencer)
        for other in sorted(set(affected) - {name}):
            done.discard(other)
            queue.append(other)
    return len(done)


def check_account(
    ws: WorkingSet, account: Account, trigger: Market, at: datetime, reason: str, sequencer: Sequencer
) -> list[str]:
    """Call, clear or liquidate one account; returns accounts the liquidation touched."""
    open_markets = account.open_positions()
    if open_markets and trigger.market not in open_markets:
        trigger = ws.markets[min(open_markets)]  # the call is recorded against a market it holds
    params = ws.parameters(trigger.market)
    totals = totals_of(account, ws.markets)
    if not check_call(account, totals, trigger, params, at, reason):
        return []
    return liquidate_due(ws, account, at, sequencer)


def liquidate_due(ws: WorkingSet, account: Account, at: datetime, sequencer: Sequencer) -> list[str]:
    """One step for a solvent account; every position for an account with equity <= 0."""
    insolvent = totals_of(account, ws.markets).equity <= ZERO
    affected: list[str] = []
    for name in positions_by_priority(account.positions, ws.markets):
        market = ws.markets[name]
        params = ws.parameters(name)
        if _held_back(ws, account, market, params, at):
            return affected
        close = close_for(account.position(name).size, market, totals_of(account, ws.markets), params, insolvent)
        step_reason = "insolvent" if insolvent else "margin"
        affected.extend(_step(ws, account, ws.market(name), close, None, None, params, step_reason, sequencer, at))
        if not insolvent:
            break
    return affected


def _held_back(ws: WorkingSet, account: Account, market: Market, params: ParameterSet, at: datetime) -> bool:
    """Paused liquidations queue the account; a mark off its TWAP defers (both recorded)."""
    ch = ws.clearinghouse()
    if ch is not None and ch.is_paused(LIQUIDATIONS, market.market):
        if account.account not in ch.queued_accounts(market.market):
            totals = totals_of(account, ws.markets)
            ch.enqueue(account.account, market.market, market.price_mark, totals.equity, totals.maintenance_margin, at)
        return True
    deviation = deferred_by_twap(params, market.price_mark, market.price_twap)
    if deviation is not None:
        defer_liquidation(account, market, deviation, params, totals_of(account, ws.markets), at)
        return True
    return False


@exact
def _step(
    ws: WorkingSet,
    account: Account,
    market: Market,
    close: Decimal,
    price: Decimal | None,
    liquidator: Account | None,
    params: ParameterSet,
    reason: str,
    sequencer: Sequencer,
    at: datetime,
) -> list[str]:
    """One liquidation fill plus whatever its deficit needs (fund, loss policy, ADL)."""
    totals = totals_of(account, ws.markets)
    plan = plan_step(account.position(market.market).size, close, market, totals, params, price)
    delta, fill_price, quote_bankruptcy, shortfall = plan.delta, plan.price, plan.quote_bankruptcy, plan.shortfall
    liquidation_id = sequencer.next()
    if price is None and params.loss_policy in QUEUE_POLICIES and shortfall > ws.fund(at).balance:
        return deleverage(ws, account, market, params, liquidation_id, at)
    taker = liquidator if liquidator is not None else ws.backstop(params.backstop_liquidator, at)
    fund = ws.insurance_fund()
    balance = fund.balance if fund is not None else ZERO
    if shortfall > balance and not payers_after(ws, account, market, taker, delta):
        if price is not None:
            raise RuleError("deficit_without_payer", "price",
                            f"at {fmt(price)} the liquidation leaves a deficit of {fmt(shortfall)} "
                            f"the insurance fund ({fmt(balance)}) cannot pay and no open position in {market.market} "
                            "is left to bear it: choose a price at or above the bankruptcy price")
        return deleverage(ws, account, market, params, liquidation_id, at)
    capacity = taker_capacity(ws, account, market, taker, delta, fill_price, quote_bankruptcy, params)
    if not capacity.allowed:  # only the engine's own step: a manual one was refused by its handler
        insolvent = totals.equity <= ZERO or shortfall > ZERO
        outcome = "deleveraged" if insolvent else "waiting"
        refuse_takeover(account, market, taker, delta, fill_price, capacity, totals, outcome, at)
        return deleverage(ws, account, market, params, liquidation_id, at) if insolvent else []
    deficit = liquidation_step(
        ws, account, market, delta, fill_price, quote_bankruptcy, totals, taker, params, reason, liquidation_id, at, capacity
    )
    if deficit > ZERO:
        return cover_deficit(ws, account, market, deficit, params, liquidation_id, at)
    return []


def payers_after(ws: WorkingSet, account: Account, market: Market, taker: Account, delta: Decimal) -> bool:
    """Whether any open position in ``market`` would be left to bear a deficit after the
    taker takes ``delta`` of ``account`` (``liquidation_math.loss_bearer_left``).

    Example: a short of 0.7 taken by the backstop's long of 0.7, nobody else holding: no
    one is left, so a deficit the fund cannot pay is deleveraged against the backstop at
    the bankruptcy price instead (nobody could be charged after the takeover).
    """
    others = (peeked.position(market.market).size for name in ws.holders(market.market)
              if name not in (account.account, taker.account) and (peeked := ws.peek_account(name)) is not None)
    return loss_bearer_left(others, taker.position(market.market).size, delta)


def taker_capacity(
    ws: WorkingSet, account: Account, market: Market, taker: Account, delta: Decimal, price: Decimal,
    quote_bankruptcy: Decimal, params: ParameterSet,
) -> Capacity:
    """The taker's figures after taking ``delta`` of ``account`` at ``price`` (and its fee).

    The backstop being liquidated itself has no taker: its own figures, refused.
    """
    cap = params.liquidator_position_cap
    if taker.account == account.account:
        return refused_self(account.collateral, account.positions, ws.markets, cap)
    quote_fill = fill_quote(delta, price, market.contract_size)
    fee = decide_penalty(quote_fill, quote_bankruptcy, params, market.collateral_quantum).fee_liquidator
    return capacity_after(taker.collateral, taker.positions, ws.markets, market.market, -delta, price, fee, cap)


def manual_liquidation(
    ws: WorkingSet, account: Account, market: Market, close: Decimal, price: Decimal, liquidator: Account, at: datetime
) -> list[str]:
    """An operator's liquidation at an auction price (checked by the handler first)."""
    params = ws.parameters(market.market)
    return _step(ws, account, market, close, price, liquidator, params, "manual", sequencer_of(ws), at)


def drain_queue(ws: WorkingSet, market_scope: str | None, at: datetime) -> int:
    """After liquidations resume: each queued account in order, liquidated or recovered."""
    ch = ws.clearinghouse()
    if ch is None:
        return 0
    entries = [e for e in list(ch.queue) if market_scope is None or e["market"] == market_scope]
    sequencer = sequencer_of(ws)
    for entry in entries:
        if ch.is_paused(LIQUIDATIONS, entry["market"]):
            continue
        account = ws.account(entry["account"], "account")
        market = ws.markets[entry["market"]]
        totals = totals_of(account, ws.markets)
        params = ws.parameters(entry["market"])
        due = bool(account.open_positions()) and check_call(account, totals, market, params, at, "resume")
        recovered = not account.open_positions() or totals.equity >= totals.maintenance_margin
        ch.dequeue(entry, "liquidated" if due else "recovered" if recovered else "called", at)
        if due:
            charged = liquidate_due(ws, account, at, sequencer)
            check_accounts(ws, market, sorted(set(charged) - {account.account}), at, "loss_allocation")
    return len(entries)


def after_deposit(ws: WorkingSet, account: Account, at: datetime, amount: Decimal = ZERO) -> None:
    """A deposit pays down (and can meet) an open call, or returns a flat bankrupt account to healthy."""
    if account.risk_status == BANKRUPT and not account.open_positions():
        recover_from_bankruptcy(account, at)
    else:
        pay_call(account, totals_of(account, ws.markets), amount, at)
