"""Funding, expiry settlement and the checks of an operator's manual liquidation.

Funding (perpetuals): each position pays or receives ``size x mark x contract x rate``.
Payers' amounts are rounded up to the quantum; their total is split among the receivers
pro rata to size by largest remainder, so funding is zero-sum to the last unit. Example:
rate 0.0001, mark 50,000: a long of 1 pays 5; two shorts of 0.5 receive 2.5 each.

Settlement (futures, at or after expiry): every position closes at the final price and
realizes its PnL; an account then below zero with nothing else open is made whole by the
insurance fund and then by the market's loss policy, applied to the settled positions
(queue policies such as ``adl``: the opposite-side winners by the policy's plan, as closing
them at the bankrupt account's bankruptcy price takes, concentrated on the first ranked;
``socialize_per_contract``: per contract settled; ``haircut_gains``: pro rata to
settlement gains; ``leverage_weighted_gains``: leverage x gain at the final price). Accounts still holding other positions
are re-checked by the risk engine instead.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from clearing import risk_engine
from clearing.domain.account import Account
from clearing.domain.clearinghouse import LIQUIDATIONS
from clearing.domain.liquidation import (
    holder_of,
    open_holders,
    record_loss_covered,
    record_shares,
    totals_of,
)
from clearing.domain.margin import unrealized_pnl
from clearing.domain.market import FUTURE, PERPETUAL, Market
from clearing.domain.parameters import ParameterSet
from clearing.domain.risk.allocation import settlement_allocation
from clearing.domain.risk.bankruptcy import bankruptcy_quote_for
from clearing.domain.risk.call import below_maintenance
from clearing.domain.risk.funding import funding_split
from clearing.domain.risk.manual import manual_liquidation_change, out_of_band
from clearing.domain.risk.totals import MarginTotals
from clearing.domain.settling import record_funding, record_settlement
from clearing.errors import RuleError
from clearing.money import ZERO, exact, fmt, round_up

if TYPE_CHECKING:
    from clearing.working_set import WorkingSet

Settled = tuple[Account, Decimal, Decimal]  # (account, size settled, realized PnL)
Cover = tuple[Account, str, Decimal, Decimal, str]  # (bankrupt account, loss id, fund paid, allocated, policy)


@exact
def pay_funding(ws: WorkingSet, market: Market, rate: Decimal, at: datetime) -> tuple[Decimal, int]:
    """One funding period on ``market``; returns (total paid, positions)."""
    if market.kind != PERPETUAL:
        raise RuleError("not_a_perpetual", "market", f"market {market.market} is a {market.kind}; funding is for perpetuals")
    market.check_not_settled("it pays no more funding")
    if market.price_mark is None:
        raise RuleError("no_mark_price", "market", f"market {market.market} has no mark price yet")
    accounts = open_holders(ws, market)
    sizes = [(account.account, account.position(market.market).size) for account in accounts]
    split = funding_split(sizes, market.mark, market.contract_size, rate, market.collateral_quantum)
    record_funding(accounts, market, rate, split, ws.command_id, at)
    risk_engine.check_accounts(ws, market, list(split.payers), at, "funding")
    return split.paid, len(accounts)


@exact
def settle_market(ws: WorkingSet, market: Market, price: Decimal, at: datetime) -> tuple[int, int]:
    """Close every position of an expired future at ``price``; returns (positions, losses)."""
    if market.kind != FUTURE:
        raise RuleError("not_a_future", "market", f"market {market.market} is a {market.kind}; only futures settle")
    market.check_not_settled("it settles once")
    assert market.expiry is not None
    if at < market.expiry:
        raise RuleError("not_expired", "at", f"market {market.market} expires at {market.expiry.isoformat()}, not before")
    market.check_price_on_tick(price, "price")
    params = ws.parameters(market.market)
    accounts = open_holders(ws, market)
    contract = market.contract_size
    settled: list[Settled] = []
    for account in accounts:
        position = account.position(market.market)
        pnl = unrealized_pnl(position.size, position.cost, price, contract)
        settled.append((account, position.size, pnl))
    covers = _allocate_settlement_losses(ws, market, settled, params, price, at)  # while positions are open
    record_settlement(market, settled, price, at)
    for account, loss_id, fund_paid, rest, policy in covers:
        record_loss_covered(account, loss_id, market, fund_paid, rest, policy, at)
    losses = len(covers)
    touched = [a.account for a, _, _ in settled if a.open_positions()]
    if touched:
        risk_engine.check_accounts(ws, market, touched, at, "settlement")
    return len(settled), losses


def _allocate_settlement_losses(ws: WorkingSet, market: Market, settled: list[Settled], params: ParameterSet, price: Decimal,
                                at: datetime) -> list[Cover]:
    """Fund draws and allocations for accounts the final price leaves below zero.

    Decided before the positions close, so every payer still holds a position when it
    pays (flat accounts never pay). Returns what each bankrupt account is then credited.
    """
    covers: list[Cover] = []
    after = {a.account: a.collateral + pnl for a, _, pnl in settled}
    bankrupt = {a.account for a, _, _ in settled if after[a.account] < ZERO and len(a.open_positions()) == 1}
    for account, _, _ in settled:
        if account.account not in bankrupt:
            continue
        deficit = -after[account.account]
        loss_id = f"{ws.command_id}/S{len(covers) + 1}"
        fund_paid = ws.fund(at).pay_up_to(deficit, account.account, market.market, loss_id, at)
        rest = deficit - fund_paid
        policy = "insurance_fund"
        if rest > ZERO:
            others = [(a, size, pnl) for a, size, pnl in settled if a.account not in bankrupt]
            policy = _charge_settlement_loss(ws, market, account, others, rest, params.loss_policy, loss_id, at, price)
        covers.append((account, loss_id, fund_paid, rest, policy))
    return covers


def _charge_settlement_loss(
    ws: WorkingSet, market: Market, bankrupt: Account, others: list[Settled], rest: Decimal, policy: str, loss_id: str,
    at: datetime,
    price: Decimal,
) -> str:
    """Charge what the fund could not pay of a settlement deficit by ``risk.allocation.settlement_allocation``
    (the other settled positions valued at the final price); returns the policy used."""
    accounts = {a.account: a for a, _, _ in others}
    holders = [holder_of(a, market, ws.markets, price) for a, _, _ in sorted(others, key=lambda item: item[0].account)]
    used, groups = settlement_allocation(policy, bankrupt.position(market.market).size, holders, price, market.contract_size,
                                         market.step_size, rest, market.collateral_quantum)
    for group in groups:
        record_shares(market, [(accounts[name], share, basis) for name, share, basis in group.shares], group.loss, group.policy,
                      loss_id, at, ranks=dict(group.ranks) or None, basis_total=group.basis_total)
    return used


@exact
def check_manual_liquidation(
    ws: WorkingSet,
    account: Account,
    market: Market,
    size: Decimal | None,
    price: Decimal,
    liquidator: Account | None,
    at: datetime,
) -> tuple[Decimal, Account]:
    """Validate an operator's ``liquidate``; returns (contracts to close, taker)."""
    position = account.position(market.market)
    if position.size == ZERO:
        raise RuleError("no_position", "market", f"account {account.account} has no position in {market.market}")
    market.check_not_settled("its positions are closed")
    if market.price_mark is None:
        raise RuleError("no_mark_price", "market", f"market {market.market} has no mark price yet")
    totals = totals_of(account, ws.markets)
    if not below_maintenance(totals, True):
        raise RuleError(
            "account_healthy",
            "account",
            f"account {account.account} has equity {fmt(totals.equity)}, "
            f"not below its maintenance margin {fmt(totals.maintenance_margin)}",
        )
    ch = ws.clearinghouse()
    if ch is not None and ch.is_paused(LIQUIDATIONS, market.market):
        raise RuleError("liquidations_paused", "market", f"liquidations in {market.market} are paused by the risk officers")
    market.check_price_on_tick(price, "price")
    close = abs(position.size) if size is None else size
    market.check_size_on_step(close, "size")
    if close > abs(position.size):
        raise RuleError("size_exceeds_position", "size", f"size {fmt(close)} is more than the position {fmt(abs(position.size))}")
    params = ws.parameters(market.market)
    taker_name = liquidator.account if liquidator is not None else params.backstop_liquidator
    if taker_name == account.account:
        raise RuleError("self_trade", "liquidator", "an account cannot take its own liquidated position")
    taker = liquidator if liquidator is not None else ws.peek_account(taker_name)
    # a backstop never opened is checked as the empty account it would be, and opened only
    # once the liquidation is accepted (a rejection writes nothing)
    checked = taker if taker is not None else Account(account=taker_name, at=at)
    _check_liquidator_carries(ws, account, market, close, price, checked, params, totals)
    _check_band(ws, account, market, close, price, checked, params, at)  # last: it consumes approvals
    return close, taker if taker is not None else ws.backstop(taker_name, at)


@exact
def _check_band(
    ws: WorkingSet, account: Account, market: Market, close: Decimal, price: Decimal, taker: Account, params: ParameterSet,
    at: datetime,
) -> None:
    """An auction price more than ``manual_liquidation_band`` x mark away from the mark needs
    M-of-N approval of that exact liquidation (``price_out_of_band`` without any).

    Example: mark 95, band 10 %: 86 to 104 stand alone; 40 needs M officers' approval of
    ``liquidate`` (account, market, size, 40, liquidator).
    """
    mark = market.mark
    band = params.manual_liquidation_band
    distance = out_of_band(price, mark, band)
    if distance is None:
        return
    change = manual_liquidation_change(account.account, market.market, close, price, taker.account)
    ch = ws.clearinghouse()
    if ch is None or not ch.approvals.get(change.fingerprint):
        raise RuleError(
            "price_out_of_band",
            "price",
            f"price {fmt(price)} is {fmt(round_up(distance * 100, Decimal('0.01')))} % from the mark {fmt(mark)}, outside "
            f"manual_liquidation_band {fmt(band * 100)} %: it needs approval of this exact liquidation by the risk officers",
        )
    governance = ch.authorize(change, at, "price", bootstrap_allowed=False)
    ch.consume(governance, at)


@exact
def _check_liquidator_carries(
    ws: WorkingSet, account: Account, market: Market, close: Decimal, price: Decimal, taker: Account, params: ParameterSet,
    totals: MarginTotals,
) -> None:
    """The liquidator must meet initial margin after the takeover and stay within
    ``liquidator_position_cap`` (``liquidation_math.can_carry``): ``liquidator_undercapitalized``."""
    size = account.position(market.market).size
    delta = -close if size > ZERO else close
    quote_bankruptcy = bankruptcy_quote_for(size, delta, market, totals)
    capacity = risk_engine.taker_capacity(ws, account, market, taker, delta, price, quote_bankruptcy, params)
    if not capacity.allowed:
        raise RuleError(
            "liquidator_undercapitalized",
            "liquidator",
            f"liquidator {taker.account} would hold equity {fmt(capacity.equity_after)} against initial margin "
            f"{fmt(capacity.initial_margin_after)} and notional {fmt(capacity.notional_after)} "
            f"(cap {fmt(capacity.cap)} x equity) "
            "after the takeover: it cannot carry the position",
        )
