"""The ``Clearinghouse`` aggregate: default risk parameters, risk officers, emergency controls.

One aggregate with a fixed id, established on first use. It holds

* the clearinghouse-wide parameter defaults and their version (``ParametersSet``);
* the registered risk officers (at most ``officers_max`` = N);
* approvals collected per control action, and the controls in force: liquidations or
  trading paused per market or everywhere (``*``);
* the queue of liquidations that came due while liquidations were paused, processed in
  queue order when they resume.

A ``pause`` or ``resume`` takes effect only when ``approvals_required`` (M) distinct
registered officers have approved that exact action since it last took effect. Example
with M = 2: ``approve`` by alice and bob for ``pause liquidations BTC-PERP``, then
``pause`` takes effect and consumes both approvals; a ``resume`` with only one approval
is rejected as ``quorum_not_met`` and writes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from clearing.domain.ids import clearinghouse_id
from clearing.domain.parameters import DEFAULTS
from clearing.errors import RuleError

EVERYWHERE = "*"
LIQUIDATIONS = "liquidations"
TRADING = "trading"


def control_key(action: str, operation: str, market: str | None) -> str:
    """``pause:liquidations:BTC-PERP`` - what an approval approves."""
    return f"{action}:{operation}:{market or EVERYWHERE}"


class Clearinghouse(Aggregate):
    """Clearinghouse-wide state (fixed id)."""

    class Established(Aggregate.Created):
        at: datetime

    @staticmethod
    def create_id() -> UUID:  # type: ignore[override]
        return clearinghouse_id()

    def __init__(self, at: datetime) -> None:
        self.established_at = at
        self.parameters: dict[str, Any] = dict(DEFAULTS)
        self.parameters_version = 0
        self.officers: list[str] = []
        self.approvals: dict[str, list[str]] = {}
        self.paused: list[str] = []  # "liquidations:BTC-PERP", "trading:*"
        self.queue: list[dict[str, Any]] = []
        self.queue_sequence = 0

    # -- queries --------------------------------------------------------------------------

    def is_paused(self, operation: str, market: str) -> bool:
        return f"{operation}:{market}" in self.paused or f"{operation}:{EVERYWHERE}" in self.paused

    def check_trading_allowed(self, market: str) -> None:
        if self.is_paused(TRADING, market):
            raise RuleError("trading_paused", "market", f"trading in {market} is paused by the risk officers")

    def queued_accounts(self, market: str) -> set[str]:
        return {entry["account"] for entry in self.queue if entry["market"] == market}

    # -- events ---------------------------------------------------------------------------

    class ParametersSet(Aggregate.Event):
        changes: dict[str, Any]
        parameters_after: dict[str, Any]
        parameters_version: int
        at: datetime

        def apply(self, ch: Clearinghouse) -> None:
            ch.parameters = {k: tuple(v) if isinstance(v, list) else v for k, v in self.parameters_after.items()}
            ch.parameters_version = self.parameters_version

    class OfficerRegistered(Aggregate.Event):
        officer: str
        officers_after: list[str]
        at: datetime

        def apply(self, ch: Clearinghouse) -> None:
            ch.officers = list(self.officers_after)

    class ControlApproved(Aggregate.Event):
        key: str
        officer: str
        approvals_after: list[str]
        approvals_required: int
        at: datetime

        def apply(self, ch: Clearinghouse) -> None:
            ch.approvals[self.key] = list(self.approvals_after)

    class ControlApplied(Aggregate.Event):
        """A pause or resume that reached its quorum, with the officers who approved it."""

        key: str
        action: str
        operation: str
        market: str
        approved_by: list[str]
        approvals_required: int
        paused_after: list[str]
        at: datetime

        def apply(self, ch: Clearinghouse) -> None:
            ch.paused = list(self.paused_after)
            ch.approvals.pop(self.key, None)

    class LiquidationQueued(Aggregate.Event):
        """A liquidation that came due while paused; carries the numbers that made it due."""

        sequence: int
        account: str
        market: str
        price_mark: Any
        equity: Any
        maintenance_margin: Any
        at: datetime

        def apply(self, ch: Clearinghouse) -> None:
            ch.queue_sequence = self.sequence
            ch.queue.append({"sequence": self.sequence, "account": self.account, "market": self.market})

    class LiquidationDequeued(Aggregate.Event):
        sequence: int
        account: str
        market: str
        outcome: str  # liquidated / recovered
        at: datetime

        def apply(self, ch: Clearinghouse) -> None:
            ch.queue = [entry for entry in ch.queue if entry["sequence"] != self.sequence]

    # -- commands -------------------------------------------------------------------------

    def set_parameters(self, changes: dict[str, Any], at: datetime) -> None:
        after = dict(self.parameters)
        after.update(changes)
        if after["approvals_required"] > after["officers_max"]:
            raise RuleError(
                "parameter_out_of_range",
                "parameters.approvals_required",
                f"approvals_required {after['approvals_required']} exceeds officers_max {after['officers_max']}",
            )
        if len(self.officers) > after["officers_max"]:
            raise RuleError(
                "parameter_out_of_range",
                "parameters.officers_max",
                f"officers_max {after['officers_max']} is below the {len(self.officers)} registered officers",
            )
        self.trigger_event(
            self.ParametersSet,
            changes=_plain(changes),
            parameters_after=_plain(after),
            parameters_version=self.parameters_version + 1,
            at=at,
        )

    def register_officer(self, officer: str, at: datetime) -> None:
        if officer in self.officers:
            raise RuleError("officer_exists", "officer", f"risk officer {officer} is already registered")
        if len(self.officers) >= self.parameters["officers_max"]:
            raise RuleError(
                "officers_full", "officer", f"officers_max is {self.parameters['officers_max']}; all places are taken"
            )
        self.trigger_event(self.OfficerRegistered, officer=officer, officers_after=[*self.officers, officer], at=at)

    def approve(self, action: str, operation: str, market: str | None, officer: str, at: datetime) -> int:
        """Record one officer's approval; returns the approvals now held for the action."""
        if officer not in self.officers:
            raise RuleError("unknown_officer", "officer", f"{officer} is not a registered risk officer")
        key = control_key(action, operation, market)
        held = self.approvals.get(key, [])
        if officer in held:
            raise RuleError("duplicate_approval", "officer", f"{officer} has already approved {key}")
        self.trigger_event(
            self.ControlApproved,
            key=key,
            officer=officer,
            approvals_after=[*held, officer],
            approvals_required=self.parameters["approvals_required"],
            at=at,
        )
        return len(held) + 1

    def apply_control(self, action: str, operation: str, market: str | None, at: datetime) -> None:
        """Pause or resume once M officers approved; raises ``quorum_not_met`` before that."""
        key = control_key(action, operation, market)
        flag = f"{operation}:{market or EVERYWHERE}"
        if action == "pause" and flag in self.paused:
            raise RuleError("already_paused", "market" if market else "operation", f"{operation} in {market or 'all markets'} is already paused")
        if action == "resume" and flag not in self.paused:
            raise RuleError("not_paused", "market" if market else "operation", f"{operation} in {market or 'all markets'} is not paused")
        approved = [o for o in self.approvals.get(key, []) if o in self.officers]
        required = self.parameters["approvals_required"]
        if len(approved) < required:
            raise RuleError(
                "quorum_not_met",
                "operation",
                f"{key} has {len(approved)} of the {required} officer approvals it needs",
            )
        paused_after = sorted({*self.paused, flag}) if action == "pause" else [p for p in self.paused if p != flag]
        self.trigger_event(
            self.ControlApplied,
            key=key,
            action=action,
            operation=operation,
            market=market or EVERYWHERE,
            approved_by=approved,
            approvals_required=required,
            paused_after=paused_after,
            at=at,
        )

    def enqueue(self, account: str, market: str, price_mark: Any, equity: Any, maintenance: Any, at: datetime) -> None:
        self.trigger_event(
            self.LiquidationQueued,
            sequence=self.queue_sequence + 1,
            account=account,
            market=market,
            price_mark=price_mark,
            equity=equity,
            maintenance_margin=maintenance,
            at=at,
        )

    def dequeue(self, entry: dict[str, Any], outcome: str, at: datetime) -> None:
        self.trigger_event(
            self.LiquidationDequeued,
            sequence=entry["sequence"],
            account=entry["account"],
            market=entry["market"],
            outcome=outcome,
            at=at,
        )


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
