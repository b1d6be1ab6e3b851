"""Projections ``insurance_fund``, ``losses`` and ``liquidations``: append-only registers.

* ``insurance_fund`` (``fund_movements``): every inflow and outflow of the insurance fund,
  with its cause, counterparty, reference and the running balance after it.
* ``losses`` (``loss_events``, ``loss_allocations``): each bankruptcy deficit with what the
  fund paid and what was allocated, and each account's share (socialized per contract,
  haircut of gains, or a deleveraging fill) with the basis and policy it was computed on.
* ``liquidations`` (``liquidation_register``): every margin call, call met, liquidation
  fill, backstop or deleveraging fill, fund draw, loss cover, deferral and queue entry,
  with the numbers recorded in its event (``inputs``: the event's fields as canonical JSON).

Rows are keyed by log position, so a row says exactly which event it came from. Their
``day`` is the business day of the log when the event was applied (``Projection.observe``),
the same day the margin projection books the event's flows on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, Integer, String, Text

from clearing.jsonable import jsonable
from projections.base import Projection, TableSpec, clock_spec
from projections.store import ExactDecimal

N = ExactDecimal
_SKIP = {"originator_id", "originator_version", "timestamp", "originator_topic"}


def _common(*extra: Column[Any]) -> list[Column[Any]]:
    return [Column("position", Integer, primary_key=True, autoincrement=False), Column("at", Text, nullable=False),
            Column("day", String(10), nullable=False), *extra]


def canonical_inputs(event: Any) -> str:
    """The event's own fields as sorted-key JSON, decimals as canonical strings."""
    return json.dumps({k: jsonable(v) for k, v in vars(event).items() if k not in _SKIP}, sort_keys=True,
                      separators=(",", ":"))


FUND = TableSpec("fund_movements", _common(
    Column("direction", String(3), nullable=False),
    Column("cause", String(32), nullable=False),
    Column("amount", N, nullable=False),
    Column("counterparty", String(128)),
    Column("market", String(64)),
    Column("reference", String(160)),
    Column("balance_after", N, nullable=False),
), ("position",), kind="append")


class InsuranceFundProjection(Projection):
    NAME = "insurance_fund"
    DESCRIPTION = "every insurance-fund inflow and outflow with cause and running balance"
    SPECS = (FUND, clock_spec("fund_clock"))
    CLOCK = "fund_clock"

    def handlers(self) -> dict[str, Callable[[int, Any, Any], None]]:
        return {"InsuranceFund.Contributed": self._in, "InsuranceFund.Drawn": self._out}

    def _row(self, position: int, event: Any, direction: str, counterparty: str | None, market: str | None,
             reference: str | None) -> None:
        self.append("fund_movements", {
            "position": position, "at": event.at.isoformat(), "day": self.day, "direction": direction,
            "cause": event.cause, "amount": event.amount, "counterparty": counterparty, "market": market,
            "reference": reference, "balance_after": event.balance_after})

    def _in(self, position: int, event: Any, _: Any) -> None:
        self._row(position, event, "in", event.contributor, None, None)

    def _out(self, position: int, event: Any, _: Any) -> None:
        self._row(position, event, "out", event.account, event.market, event.reference)


LOSS_EVENTS = TableSpec("loss_events", _common(
    Column("loss_id", String(160), nullable=False),
    Column("account", String(128), nullable=False),
    Column("market", String(64), nullable=False),
    Column("policy", String(32), nullable=False),
    *[Column(name, N, nullable=False) for name in ("deficit", "fund_paid", "allocated")],
), ("position",), kind="append")

LOSS_ALLOCATIONS = TableSpec("loss_allocations", _common(
    Column("loss_id", String(160), nullable=False),
    Column("market", String(64), nullable=False),
    Column("account", String(128), nullable=False),
    Column("policy", String(32), nullable=False),
    Column("share", N, nullable=False),
    Column("basis", N, nullable=False),
    Column("basis_total", N),
    Column("loss_total", N),
    Column("price_mark", N, nullable=False),
    Column("price", N),
    Column("size_delta", N),
    Column("adl_rank", N),
    Column("liquidated_account", String(128)),
), ("position",), kind="append")


class LossesProjection(Projection):
    NAME = "losses"
    DESCRIPTION = "bankruptcy deficits and socialized-loss / deleveraging allocations per account"
    SPECS = (LOSS_EVENTS, LOSS_ALLOCATIONS, clock_spec("losses_clock"))
    CLOCK = "losses_clock"

    def handlers(self) -> dict[str, Callable[[int, Any, Any], None]]:
        return {"Account.LossCovered": self._covered, "Account.LossAllocated": self._allocated,
                "Account.PositionTaken": self._taken}

    def _covered(self, position: int, event: Any, _: Any) -> None:
        self.append("loss_events", {
            "position": position, "at": event.at.isoformat(), "day": self.day, "loss_id": event.loss_id,
            "account": event.account, "market": event.market, "policy": event.policy, "deficit": event.deficit,
            "fund_paid": event.fund_paid, "allocated": event.allocated})

    def _allocated(self, position: int, event: Any, _: Any) -> None:
        self.append("loss_allocations", {
            "position": position, "at": event.at.isoformat(), "day": self.day, "loss_id": event.loss_id,
            "market": event.market, "account": event.account, "policy": event.policy, "share": event.share,
            "basis": event.basis, "basis_total": event.basis_total, "loss_total": event.loss_total,
            "price_mark": event.price_mark, "price": None, "size_delta": None, "adl_rank": None,
            "liquidated_account": None})

    def _taken(self, position: int, event: Any, _: Any) -> None:
        if event.basis != "adl":
            return  # a backstop fill, not a loss allocation
        self.append("loss_allocations", {
            "position": position, "at": event.at.isoformat(), "day": self.day,
            "loss_id": event.liquidation_id, "market": event.market, "account": event.account, "policy": "adl",
            "share": event.loss_vs_mark, "basis": abs(event.size_delta), "basis_total": None, "loss_total": None,
            "price_mark": event.price_mark, "price": event.price, "size_delta": event.size_delta,
            "adl_rank": event.adl_rank, "liquidated_account": event.liquidated_account})


REGISTER = TableSpec("liquidation_register", _common(
    Column("kind", String(24), nullable=False),
    Column("account", String(128)),
    Column("market", String(64)),
    Column("reference", String(160)),
    Column("reason", String(32)),
    Column("size_delta", N),
    Column("price_mark", N),
    Column("price", N),
    Column("price_bankruptcy", N),
    Column("equity", N),
    Column("maintenance_margin", N),
    Column("amount", N),
    Column("penalty", N),
    Column("fee_liquidator", N),
    Column("counterparty", String(128)),
    Column("inputs", Text, nullable=False),
), ("position",), kind="append")

_REGISTER_KINDS = {
    "Account.MarginCallIssued": "margin_call",
    "Account.MarginCallMet": "margin_call_met",
    "Account.Liquidated": "liquidation_fill",
    "Account.PositionTaken": "counterparty_fill",
    "Account.LossCovered": "loss_covered",
    "Account.LiquidationDeferred": "liquidation_deferred",
    "InsuranceFund.Drawn": "fund_draw",
    "Clearinghouse.LiquidationQueued": "liquidation_queued",
    "Clearinghouse.LiquidationDequeued": "liquidation_dequeued",
}


class LiquidationRegisterProjection(Projection):
    NAME = "liquidations"
    DESCRIPTION = "register of margin calls, liquidation fills, deleveraging, fund draws and loss cover"
    SPECS = (REGISTER, clock_spec("register_clock"))
    CLOCK = "register_clock"

    def handlers(self) -> dict[str, Callable[[int, Any, Any], None]]:
        return dict.fromkeys(_REGISTER_KINDS, self._register)

    def _register(self, position: int, event: Any, notification: Any) -> None:
        values = vars(event)

        def get(*names: str) -> Any:
            return next((values[name] for name in names if values.get(name) is not None), None)

        register_kind = _REGISTER_KINDS[notification.topic.rsplit(":", 1)[-1]]
        if register_kind == "counterparty_fill":
            register_kind = "deleveraging_fill" if event.basis == "adl" else "backstop_fill"
        self.append("liquidation_register", {
            "position": position, "at": event.at.isoformat(), "day": self.day, "kind": register_kind,
            "account": get("account"), "market": get("market"),
            "reference": get("liquidation_id", "loss_id", "reference"),
            "reason": get("reason", "outcome"), "size_delta": get("size_delta"),
            "price_mark": get("price_mark"), "price": get("price_fill", "price"),
            "price_bankruptcy": get("price_bankruptcy"), "equity": get("equity_before", "equity"),
            "maintenance_margin": get("maintenance_margin_before", "maintenance_margin"),
            "amount": _amount(register_kind, event), "penalty": get("penalty"),
            "fee_liquidator": get("fee_liquidator", "fee_received"),
            "counterparty": get("counterparty", "liquidated_account"),
            "inputs": canonical_inputs(event)})


def _amount(kind: str, event: Any) -> Decimal | None:
    """The headline amount of a register row: call size, draw, deficit, or fill quote."""
    amount: Decimal | None = None
    if kind == "margin_call":
        amount = event.amount_to_initial
    elif kind == "fund_draw":
        amount = event.amount
    elif kind == "loss_covered":
        amount = event.deficit
    elif kind == "liquidation_fill":
        amount = event.quote_fill
    elif kind == "deleveraging_fill":
        amount = event.loss_vs_mark
    return amount
