"""What a command caused beyond itself, for its result line: calls, liquidations, fund draws.

A price, a funding payment, a settlement or a deposit can call, liquidate, bankrupt and
deleverage accounts, draw on the insurance fund and allocate losses. The result line names
these, read from the events the command recorded (never decided again), each with its log
position. Example: a price that calls bob and liquidates alice into bankruptcy, the fund
paying 12.5 of her deficit, answers ``mark BTC-PERP 31800, 2 account(s) checked; called
bob; liquidated alice (bankrupt); fund paid 12.5``.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from clearing.domain.account import Account
from clearing.domain.clearinghouse import Clearinghouse
from clearing.domain.insurance import InsuranceFund
from clearing.money import fmt

BANKRUPT = "bankrupt"
#: the kinds in the order a result line names them
KINDS = ("margin_call", "call_paid", "call_met", "liquidation", "liquidation_queued", "liquidation_deferred",
         "deleveraged", "fund_draw", "loss_allocated", "recovered")


def effect_of(event: Any, position: int) -> dict[str, Any] | None:
    """The effect an event records, as a JSON-ready dict with its log ``position``; None for
    an event that is the command itself (a deposit, a mark) or bookkeeping."""
    found = _effect(event)
    return None if found is None else {**found, "position": position}


def _effect(event: Any) -> dict[str, Any] | None:  # noqa: PLR0911 - one branch per kind
    if isinstance(event, Account.MarginCallIssued):
        return {"kind": "margin_call", "account": event.account, "market": event.market}
    if isinstance(event, Account.MarginCallPaid):
        return {"kind": "call_paid", "account": event.account, "amount": fmt(event.amount_paid)}
    if isinstance(event, Account.MarginCallMet):
        return {"kind": "call_met", "account": event.account}
    if isinstance(event, Account.Liquidated):
        return {"kind": "liquidation", "account": event.account, "market": event.market, "reason": event.reason,
                "size": fmt(-event.size_delta), "price": fmt(event.price_fill), "counterparty": event.counterparty,
                "bankrupt": event.risk_status_after == BANKRUPT}
    if isinstance(event, Clearinghouse.LiquidationQueued):
        return {"kind": "liquidation_queued", "account": event.account, "market": event.market}
    if isinstance(event, Account.LiquidationDeferred):
        return {"kind": "liquidation_deferred", "account": event.account, "market": event.market}
    if isinstance(event, Account.PositionTaken) and event.basis == "adl":
        return {"kind": "deleveraged", "account": event.account, "market": event.market,
                "size": fmt(event.size_delta)}
    if isinstance(event, InsuranceFund.Drawn):
        return {"kind": "fund_draw", "account": event.account, "market": event.market, "amount": fmt(event.amount)}
    if isinstance(event, Account.LossAllocated):
        return {"kind": "loss_allocated", "account": event.account, "market": event.market, "amount": fmt(event.share)}
    if isinstance(event, Account.RecoveredFromBankruptcy):
        return {"kind": "recovered", "account": event.account}
    return None


def describe(effects: Iterable[dict[str, Any]]) -> str:
    """The effects as one clause per kind, accounts named once each (at most five, then a count).

    >>> describe([{"kind": "margin_call", "account": "bob"}, {"kind": "fund_draw", "amount": "2.5"},
    ...           {"kind": "fund_draw", "amount": "10"}])
    'called bob; fund paid 12.5'
    """
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for effect in effects:
        by_kind.setdefault(effect["kind"], []).append(effect)
    clauses = [_clause(kind, by_kind[kind]) for kind in KINDS if kind in by_kind]
    return "; ".join(clauses)


_VERBS = {"margin_call": "called", "call_paid": "call paid by", "call_met": "call met by", "liquidation": "liquidated",
          "liquidation_queued": "liquidation queued (paused) for", "liquidation_deferred": "liquidation deferred (TWAP) for",
          "deleveraged": "deleveraged", "loss_allocated": "loss allocated to", "recovered": "recovered from bankruptcy:"}


def _clause(kind: str, effects: list[dict[str, Any]]) -> str:
    if kind == "fund_draw":
        return f"fund paid {fmt(sum((Decimal(e['amount']) for e in effects), Decimal(0)))}"
    names: dict[str, str] = {}
    for effect in effects:
        label = effect["account"] + (" (bankrupt)" if effect.get("bankrupt") else "")
        if effect.get("bankrupt") or effect["account"] not in names:
            names[effect["account"]] = label
    shown = list(names.values())
    listed = ", ".join(shown[:5]) + (f" and {len(shown) - 5} more" if len(shown) > 5 else "")
    return f"{_VERBS[kind]} {listed}"
