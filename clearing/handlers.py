"""One handler per command type: load aggregates, let the domain decide, report.

A handler either raises a :class:`~clearing.errors.ClearingError` before any event is
triggered, or triggers all of its command's events. It returns a one-line summary.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from clearing import commands as c
from clearing import risk_engine, settlement
from clearing.domain import ids
from clearing.domain.access import AccessToken
from clearing.domain.account import Account
from clearing.domain.clearinghouse import Clearinghouse
from clearing.domain.governance import QUORUM, Change, not_governed
from clearing.domain.insurance import InsuranceFund
from clearing.domain.market import list_market
from clearing.domain.parameters import governed_names, validate
from clearing.domain.risk.manual import manual_liquidation_change
from clearing.domain.trading import (
    decide_close_account,
    decide_deposit,
    decide_trade,
    decide_withdrawal,
    record_side,
)
from clearing.errors import InputError, NotFoundError, RuleError
from clearing.money import USDC, ZERO, fmt
from clearing.working_set import WorkingSet


def create_market(ws: WorkingSet, command: c.CreateMarket, at: datetime) -> str:
    if ws.exists(ids.market_id(command.market)):
        raise RuleError("market_exists", "market", f"market {command.market} already exists")
    market = ws.add(
        list_market(
            market=command.market,
            kind=command.kind,
            expiry=command.expiry,
            contract_size=command.contract_size,
            tick_size=command.tick_size,
            step_size=command.step_size,
            brackets=_brackets(command),
            price_band=command.price_band,
            collateral=USDC,
            at=at,
        )
    )
    return f"listed {market.kind} {market.market} ({len(market.tiers)} margin tier(s))"


def _brackets(command: c.CreateMarket) -> list[tuple[Decimal, Decimal, Decimal]]:
    """Tiers as given, or one tier from the two fractions; both must then agree."""
    imf, mmf = command.initial_margin_fraction, command.maintenance_margin_fraction
    if command.tiers is None:
        if imf is None:
            raise InputError("missing_field", "initial_margin_fraction", "give initial_margin_fraction or tiers")
        if mmf is None:
            raise InputError("missing_field", "maintenance_margin_fraction", "give maintenance_margin_fraction or tiers")
        return [(ZERO, imf, mmf)]
    brackets = [(t.notional_floor, t.initial_margin_fraction, t.maintenance_margin_fraction) for t in command.tiers]
    for field, given, tier_value in (
        ("initial_margin_fraction", imf, brackets[0][1]),
        ("maintenance_margin_fraction", mmf, brackets[0][2]),
    ):
        if given is not None and given != tier_value:
            raise RuleError("invalid_tiers", field, f"{field} {fmt(given)} differs from the first tier's {fmt(tier_value)}")
    return brackets


def close_market(ws: WorkingSet, command: c.CloseMarket, at: datetime) -> str:
    ws.market(command.market).close(at)
    return f"closed market {command.market}"


def open_account(ws: WorkingSet, command: c.OpenAccount, at: datetime) -> str:
    if ws.exists(ids.account_id(command.account)):
        raise RuleError("account_exists", "account", f"account {command.account} already exists")
    ws.add(Account(account=command.account, at=at))
    return f"opened account {command.account}"


def close_account(ws: WorkingSet, command: c.CloseAccount, at: datetime) -> str:
    decide_close_account(ws.account(command.account, "account"), at)
    return f"closed account {command.account}"


def deposit(ws: WorkingSet, command: c.Deposit, at: datetime) -> str:
    account = ws.account(command.account, "account")
    decide_deposit(account, command.amount, at)
    risk_engine.after_deposit(ws, account, at, command.amount)
    return f"deposited {fmt(command.amount)} to {command.account}, collateral {fmt(account.collateral)}"


def withdraw(ws: WorkingSet, command: c.Withdraw, at: datetime) -> str:
    account = ws.account(command.account, "account")
    decide_withdrawal(account, command.amount, at, ws.markets)
    return f"withdrew {fmt(command.amount)} from {command.account}, collateral {fmt(account.collateral)}"


def trade(ws: WorkingSet, command: c.Trade, at: datetime) -> str:
    market = ws.market(command.market)
    buyer = ws.account(command.buyer, "buyer")
    seller = ws.account(command.seller, "seller")
    ch = ws.clearinghouse()
    if ch is not None:
        ch.check_trading_allowed(command.market)
    buy, sell = decide_trade(market, buyer, seller, command.size, command.price, at, ws.markets)
    record_side(buy, market, command.id, command.price, at)
    record_side(sell, market, command.id, command.price, at)
    ws.trading.note_position(market, at, buyer, seller)
    return f"{command.buyer} bought {fmt(command.size)} {command.market} from {command.seller} at {fmt(command.price)}"


def price(ws: WorkingSet, command: c.Price, at: datetime) -> str:
    market = ws.market(command.market)
    params = ws.parameters(command.market)
    market.set_mark_price(command.price, at, command.source, params.oracle_sources, params.twap_window)
    checked = ws.parts.sweep(ws, market, at, "price")
    ws.require_quiet_store()  # the sweep valued the other holders from memory
    source = f" (from {command.source})" if command.source else ""
    return f"mark {command.market} {fmt(market.mark)}{source}, {checked} account(s) checked"


def fund_insurance(ws: WorkingSet, command: c.FundInsurance, at: datetime) -> str:
    fund = ws.insurance_fund() or ws.add(InsuranceFund(at=at))
    fund.contribute(command.amount, command.contributor, at)
    return f"insurance fund +{fmt(command.amount)}, balance {fmt(fund.balance)}"


def funding(ws: WorkingSet, command: c.Funding, at: datetime) -> str:
    market = ws.market(command.market)
    paid, accounts = settlement.pay_funding(ws, market, command.rate, at)
    return f"funding {fmt(command.rate)} on {command.market}: {fmt(paid)} paid across {accounts} position(s)"


def settle(ws: WorkingSet, command: c.Settle, at: datetime) -> str:
    market = ws.market(command.market)
    count, losses = settlement.settle_market(ws, market, command.price, at)
    return f"settled {command.market} at {fmt(command.price)}: {count} position(s) closed, {losses} loss(es) covered"


def liquidate(ws: WorkingSet, command: c.Liquidate, at: datetime) -> str:
    account = ws.account(command.account, "account")
    market = ws.market(command.market)
    liquidator = ws.account(command.liquidator, "liquidator") if command.liquidator else None
    close, taker = settlement.check_manual_liquidation(ws, account, market, command.size, command.price, liquidator, at)
    affected = risk_engine.manual_liquidation(ws, account, market, close, command.price, taker, at)
    risk_engine.check_accounts(ws, market, affected, at, "loss_allocation")
    return f"liquidated {fmt(close)} {command.market} of {command.account} at {fmt(command.price)} to {taker.account}"


def _clearinghouse(ws: WorkingSet, at: datetime) -> Clearinghouse:
    """The clearinghouse to decide on: the stored one, or a fresh one not yet in the working
    set, so a rejection leaves nothing pending; ``_keep`` adds it once it is written."""
    return ws.clearinghouse() or Clearinghouse(at=at)


def _keep(ws: WorkingSet, ch: Clearinghouse) -> None:
    if ws.clearinghouse() is None:
        ws.add(ch)


def register_officer(ws: WorkingSet, command: c.RegisterOfficer, at: datetime) -> str:
    """A governed change: M approvals of ``register_officer <officer>`` once a quorum exists."""
    ch = _clearinghouse(ws, at)
    ch.register_officer(command.officer, at)
    _keep(ws, ch)
    return f"registered risk officer {command.officer} ({len(ch.officers)} of {ch.parameter('officers_max')})"


def _checked_scope(ws: WorkingSet, market: str | None) -> None:
    if market is not None:
        ws.market(market)  # market_not_found before anything is recorded


def _approved_change(ws: WorkingSet, command: c.Approve, ch: Clearinghouse) -> Change:
    """The exact change an ``approve`` approves (parameters checked as ``set_parameters`` would)."""
    _checked_scope(ws, command.market)
    if command.action == "set_parameters":
        assert command.parameters is not None  # Approve.check_fields
        return Change.of_parameters(command.market, validate(command.market is not None, command.parameters))
    if command.action == "register_officer":
        assert command.candidate is not None
        if command.candidate in ch.officers:
            raise RuleError("officer_exists", "candidate", f"risk officer {command.candidate} is already registered")
        return Change.of_officer(command.candidate)
    if command.action == "liquidate":
        return _approved_liquidation(ws, command)
    assert command.operation is not None
    return Change.of_control(command.action, command.operation, command.market)


def _approved_liquidation(ws: WorkingSet, command: c.Approve) -> Change:
    """The liquidation approved, with size and liquidator resolved as ``liquidate`` would."""
    assert command.account is not None and command.market is not None and command.price is not None
    account = ws.account(command.account, "account")
    position = account.position(command.market)
    size = command.size if command.size is not None else abs(position.size)
    liquidator = command.liquidator or ws.parameters(command.market).backstop_liquidator
    return manual_liquidation_change(command.account, command.market, size, command.price, liquidator)


def approve(ws: WorkingSet, command: c.Approve, at: datetime) -> str:
    """Record an approval; only the officer named may post it (``--as`` / CLEARING_OPERATOR).

    Example: posted as olga, ``{"officer":"olga","action":"pause",...}`` is recorded; posted
    as mallory it is ``approver_not_operator``.
    """
    if command.officer != ws.operator:
        posted_as = ws.operator or "nobody"
        raise RuleError("approver_not_operator", "officer",
                        f"officer {command.officer} must post their own approval (posted as {posted_as}; use --as)")
    ch = ws.clearinghouse()
    if ch is None:
        raise RuleError("unknown_officer", "officer", f"{command.officer} is not a registered risk officer")
    change = _approved_change(ws, command, ch)
    held = ch.approve(change, command.officer, ws.operator, at)
    return f"{command.officer} approved {change.describe()} ({held} of {ch.parameter('approvals_required')})"


def _control(ws: WorkingSet, command: c.Pause | c.Resume, at: datetime) -> str:
    """Pause or resume (``command.type``) once the quorum has approved it."""
    _checked_scope(ws, command.market)
    ch = _clearinghouse(ws, at)
    ch.apply_control(command.type, command.operation, command.market, at)
    _keep(ws, ch)
    scope = command.market or "all markets"
    if command.type == "resume" and command.operation == "liquidations":
        drained = risk_engine.drain_queue(ws, command.market, at)
        return f"resumed liquidations in {scope}; {drained} queued liquidation(s) processed"
    return f"{command.type}d {command.operation} in {scope}"


def set_parameters(ws: WorkingSet, command: c.SetParameters, at: datetime) -> str:
    """Versioned parameters; a governed change needs M approvals of exactly it (ADR 10)."""
    changes = validate(command.market is not None, command.parameters)
    ch = _clearinghouse(ws, at)
    if command.market is not None:
        return _set_market_parameters(ws, ch, command.market, changes, at)
    rule = ch.set_parameters(changes, at)
    _keep(ws, ch)
    return f"clearinghouse parameters now version {ch.parameters_version} ({rule})"


def _set_market_parameters(ws: WorkingSet, ch: Clearinghouse, name: str, changes: dict[str, Any], at: datetime) -> str:
    """A market override: governed when it relaxes the value in force in that market.

    Example: BTC-PERP in force ``margin_call_grace`` 0; an override of 3600 needs M
    approvals of ``set_parameters margin_call_grace=3600 in BTC-PERP``; one of 0 does not.
    """
    market = ws.market(name)
    change = Change.of_parameters(name, changes)
    governed = governed_names(changes, ws.parameters(name).values)
    governance = ch.authorize(change, at, f"parameters.{governed[0]}") if governed else not_governed(change)
    market.set_parameters(changes, at, governance)
    if governance["rule"] == QUORUM:
        ch.consume(governance, at)
        _keep(ws, ch)
    return f"parameters of {name} now version {market.parameters_version} ({governance['rule']})"


def issue_token(ws: WorkingSet, command: c.IssueToken, at: datetime) -> str:
    """Record a token's name, role and digest (``clearing.domain.access``); a name is issued once."""
    if ws.token(command.name) is not None:
        raise RuleError("token_exists", "name", f"token {command.name} was already issued (names are never reused)")
    ws.add(AccessToken(command.name, command.role, command.token_sha256, ws.operator, at))
    return f"issued {command.role} token {command.name}"


def revoke_token(ws: WorkingSet, command: c.RevokeToken, at: datetime) -> str:
    """Revoke a token: the server refuses it from this event's log position on."""
    token = ws.token(command.name)
    if token is None:
        raise NotFoundError("token_not_found", "name", f"token {command.name} does not exist")
    token.revoke(ws.operator, at)
    return f"revoked token {command.name} ({token.role})"


Handler = Callable[[WorkingSet, c.Command, datetime], str]
_C = TypeVar("_C", bound=c.Command)


def _handles(kind: type[_C], handle: Callable[[WorkingSet, _C, datetime], str]) -> Handler:
    """``handle`` as a handler of any command: ``HANDLERS`` is looked up by the command's
    ``type``, whose model class is ``kind`` (the parser's discriminated union)."""

    def handler(ws: WorkingSet, command: c.Command, at: datetime) -> str:
        assert isinstance(command, kind), f"{type(command).__name__} is not a {kind.__name__}"
        return handle(ws, command, at)

    return handler


HANDLERS: dict[str, Handler] = {
    "create_market": _handles(c.CreateMarket, create_market),
    "close_market": _handles(c.CloseMarket, close_market),
    "open_account": _handles(c.OpenAccount, open_account),
    "close_account": _handles(c.CloseAccount, close_account),
    "deposit": _handles(c.Deposit, deposit),
    "withdraw": _handles(c.Withdraw, withdraw),
    "trade": _handles(c.Trade, trade),
    "price": _handles(c.Price, price),
    "fund_insurance": _handles(c.FundInsurance, fund_insurance),
    "funding": _handles(c.Funding, funding),
    "settle": _handles(c.Settle, settle),
    "liquidate": _handles(c.Liquidate, liquidate),
    "register_officer": _handles(c.RegisterOfficer, register_officer),
    "approve": _handles(c.Approve, approve),
    "pause": _handles(c.Pause, _control),
    "resume": _handles(c.Resume, _control),
    "set_parameters": _handles(c.SetParameters, set_parameters),
    "issue_token": _handles(c.IssueToken, issue_token),
    "revoke_token": _handles(c.RevokeToken, revoke_token),
}
assert set(HANDLERS) == set(c.COMMAND_TYPES)
