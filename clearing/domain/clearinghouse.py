"""The ``Clearinghouse`` aggregate: default risk parameters, risk officers, emergency controls.

One aggregate with a fixed id, established on first use. It holds

* the clearinghouse-wide parameter defaults and their version (``ParametersSet``);
* the registered risk officers (at most ``officers_max`` = N);
* approvals collected per change (by fingerprint, with the business time of each), and
  the controls in force: liquidations or trading paused per market or everywhere (``*``);
* the queue of liquidations that came due while liquidations were paused, processed in
  queue order when they resume.

A ``pause``, a ``resume`` and every governed change (``register_officer``, governed
``set_parameters``: see ``parameters.GOVERNED``) take effect only when
``approvals_required`` (M) distinct registered officers have approved that exact change
within ``approval_ttl`` (``governance.decide``). Example with M = 2: ``approve`` by alice
and bob for ``pause liquidations BTC-PERP``, then ``pause`` takes effect and consumes both
approvals; a ``resume`` with only one approval is rejected as ``quorum_not_met``.

Bootstrap: while fewer officers are registered than M (no quorum can exist yet),
``register_officer`` and governed ``set_parameters`` apply without approvals, and their
event records ``rule: bootstrap``. Once a quorum exists it cannot be lost: officers are
never removed and M may not be raised above the registered officers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from clearing.domain.decision_order import InDecisionOrder
from clearing.domain.governance import EVERYWHERE, QUORUM, Change, Rules, Tally, decide, not_governed, still_counts
from clearing.domain.ids import clearinghouse_id
from clearing.domain.parameters import DEFAULTS, TIMELOCKED, governed_names
from clearing.errors import RuleError

LIQUIDATIONS = "liquidations"
TRADING = "trading"


def _consume(ch: Clearinghouse, governance: dict[str, Any] | None) -> None:
    """An executed change's approvals are used up (apply side of every executing event)."""
    if governance is not None and governance["rule"] == QUORUM:
        ch.approvals.pop(governance["fingerprint"], None)


class Clearinghouse(InDecisionOrder):
    """Clearinghouse-wide state (fixed id)."""

    class Established(Aggregate.Created):
        at: datetime

    @staticmethod
    def create_id() -> UUID:
        return clearinghouse_id()

    def __init__(self, at: datetime) -> None:
        self.established_at = at
        self.parameters: dict[str, Any] = dict(DEFAULTS)
        self.parameters_version = 0
        self.officers: list[str] = []
        self.approvals: dict[str, dict[str, datetime]] = {}  # fingerprint -> officer -> approved at
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

    def parameter(self, name: str) -> Any:
        """A clearinghouse parameter; one never set (a log older than it) has its default."""
        return self.parameters.get(name, DEFAULTS[name])

    def in_force(self) -> dict[str, Any]:
        return {**DEFAULTS, **self.parameters}

    def bootstrapping(self) -> bool:
        """Fewer officers than M: no quorum can exist yet (a fresh ledger)."""
        required: int = self.parameter("approvals_required")
        return len(self.officers) < required

    def authorize(self, change: Change, at: datetime, field: str, timelocked: bool = False,
                  bootstrap_allowed: bool = True) -> dict[str, Any]:
        """The governance record for executing ``change`` at ``at``, or raise (see ``governance.decide``)."""
        rules = Rules(self.parameter("approvals_required"), self.parameter("approval_ttl"), self.parameter("governance_timelock"))
        held = self.approvals.get(change.fingerprint, {})
        bootstrap = bootstrap_allowed and self.bootstrapping()
        return decide(change, held, self.officers, rules, at, field, bootstrap, timelocked)

    # -- events ---------------------------------------------------------------------------

    class ParametersSet(Aggregate.Event):
        """``governance``: how the change was authorized (rule, fingerprint, approved_by; ADR 10)."""

        changes: dict[str, Any]
        parameters_after: dict[str, Any]
        parameters_version: int
        at: datetime
        governance: dict[str, Any] | None = None  # absent on events older than governance

        def apply(self, ch: Clearinghouse) -> None:
            ch.parameters = {k: tuple(v) if isinstance(v, list) else v for k, v in self.parameters_after.items()}
            ch.parameters_version = self.parameters_version
            _consume(ch, self.governance)

    class OfficerRegistered(Aggregate.Event):
        officer: str
        officers_after: list[str]
        at: datetime
        governance: dict[str, Any] | None = None

        def apply(self, ch: Clearinghouse) -> None:
            ch.officers = list(self.officers_after)
            _consume(ch, self.governance)

    class ControlApproved(Aggregate.Event):
        """An approval of a pause or resume as recorded before governance (old logs only).

        Its ``key`` (``pause:liquidations:*``) is no fingerprint, so it never counts now.
        """

        key: str
        officer: str
        approvals_after: list[str]
        approvals_required: int
        at: datetime

        def apply(self, ch: Clearinghouse) -> None:
            ch.approvals[self.key] = dict.fromkeys(self.approvals_after, self.at)

    class ChangeApproved(Aggregate.Event):
        """One officer's approval of one exact change, posted by ``operator`` (= the officer)."""

        key: str  # the change's fingerprint
        action: str
        scope: str
        content: dict[str, Any]
        officer: str
        operator: str
        approvals_after: dict[str, datetime]  # officer -> approved at, for this change
        approvals_required: int
        approval_ttl: int
        at: datetime

        def apply(self, ch: Clearinghouse) -> None:
            ch.approvals[self.key] = dict(self.approvals_after)

    class ApprovalsConsumed(Aggregate.Event):
        """The approvals of a change executed on another aggregate (a market's parameters)."""

        governance: dict[str, Any]
        at: datetime

        def apply(self, ch: Clearinghouse) -> None:
            _consume(ch, self.governance)

    class ControlApplied(Aggregate.Event):
        """A pause or resume that reached its quorum, with the officers who approved it."""

        key: str  # the fingerprint of the change (``pause:liquidations:*`` in old logs)
        action: str
        operation: str
        market: str
        approved_by: list[str]
        approvals_required: int
        paused_after: list[str]
        at: datetime
        governance: dict[str, Any] | None = None

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

    def set_parameters(self, changes: dict[str, Any], at: datetime) -> str:
        """Clearinghouse defaults: consistent after the change, then approved if governed;
        returns the rule it was applied under (``quorum``, ``bootstrap``, ``not_governed``).

        Example (M = 2, two officers): ``liquidation_fee_rate=0.02`` needs olga's and omar's
        approvals of exactly that; ``approvals_required=1`` also waits ``governance_timelock``.
        """
        after = {**self.in_force(), **changes}
        self._check_consistent(after, changes)
        governed = governed_names(changes, self.in_force())
        change = Change.of_parameters(None, changes)
        governance = not_governed(change)
        if governed:
            timelocked = [name for name in governed if name in TIMELOCKED]
            field = f"parameters.{(timelocked or governed)[0]}"
            governance = self.authorize(change, at, field, timelocked=bool(timelocked))
        self.trigger_event(
            self.ParametersSet,
            changes=_plain(changes),
            parameters_after=_plain(after),
            parameters_version=self.parameters_version + 1,
            at=at,
            governance=governance,
        )
        return str(governance["rule"])

    def _check_consistent(self, after: dict[str, Any], changes: dict[str, Any]) -> None:
        """M <= N, N >= the officers, ttl > timelock, and (once a quorum exists) M <= the officers."""
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
        if after["approval_ttl"] <= after["governance_timelock"]:
            name = "approval_ttl" if "approval_ttl" in changes else "governance_timelock"
            raise RuleError(
                "parameter_out_of_range",
                f"parameters.{name}",
                f"approval_ttl {after['approval_ttl']} must exceed governance_timelock {after['governance_timelock']} "
                f"(parameters.{name}), or no timelocked change could ever run",
            )
        if not self.bootstrapping() and after["approvals_required"] > len(self.officers):
            raise RuleError(
                "parameter_out_of_range",
                "parameters.approvals_required",
                f"approvals_required {after['approvals_required']} exceeds the {len(self.officers)} registered "
                f"officers: no quorum could approve anything (register officers first)",
            )

    def register_officer(self, officer: str, at: datetime) -> None:
        """Add an officer: a governed change, approved as ``register_officer <officer>``."""
        if officer in self.officers:
            raise RuleError("officer_exists", "officer", f"risk officer {officer} is already registered")
        if len(self.officers) >= self.parameter("officers_max"):
            raise RuleError(
                "officers_full", "officer", f"officers_max is {self.parameter('officers_max')}; all places are taken"
            )
        governance = self.authorize(Change.of_officer(officer), at, "officer")
        self.trigger_event(
            self.OfficerRegistered, officer=officer, officers_after=[*self.officers, officer], at=at, governance=governance
        )

    def approve(self, change: Change, officer: str, operator: str, at: datetime) -> int:
        """Record ``officer``'s approval of ``change``; returns the approvals that count now.

        An officer's earlier approval that has expired may be renewed; one still counting is
        a ``duplicate_approval``.
        """
        if officer not in self.officers:
            raise RuleError("unknown_officer", "officer", f"{officer} is not a registered risk officer")
        key = change.fingerprint
        held = self.approvals.get(key, {})
        ttl = self.parameter("approval_ttl")
        if officer in held and still_counts(held[officer], at, ttl):
            raise RuleError("duplicate_approval", "officer", f"{officer} has already approved {change.describe()}")
        after = {**{o: t for o, t in held.items() if o != officer}, officer: at}
        self.trigger_event(
            self.ChangeApproved,
            key=key,
            action=change.action,
            scope=change.scope,
            content=dict(change.content),
            officer=officer,
            operator=operator,
            approvals_after=after,
            approvals_required=self.parameter("approvals_required"),
            approval_ttl=ttl,
            at=at,
        )
        return len(Tally.of(after, self.officers, at, ttl).counting)

    def consume(self, governance: dict[str, Any], at: datetime) -> None:
        """Use up the approvals of a change executed elsewhere (a market's parameters)."""
        if governance["rule"] == QUORUM:
            self.trigger_event(self.ApprovalsConsumed, governance=governance, at=at)

    def apply_control(self, action: str, operation: str, market: str | None, at: datetime) -> None:
        """Pause or resume once M officers approved; raises ``quorum_not_met`` before that."""
        flag = f"{operation}:{market or EVERYWHERE}"
        field = "market" if market else "operation"
        if action == "pause" and flag in self.paused:
            raise RuleError("already_paused", field, f"{operation} in {market or 'all markets'} is already paused")
        if action == "resume" and flag not in self.paused:
            raise RuleError("not_paused", field, f"{operation} in {market or 'all markets'} is not paused")
        governance = self.authorize(Change.of_control(action, operation, market), at, "operation", bootstrap_allowed=False)
        paused_after = sorted({*self.paused, flag}) if action == "pause" else [p for p in self.paused if p != flag]
        self.trigger_event(
            self.ControlApplied,
            key=governance["fingerprint"],
            action=action,
            operation=operation,
            market=market or EVERYWHERE,
            approved_by=governance["approved_by"],
            approvals_required=governance["approvals_required"],
            paused_after=paused_after,
            at=at,
            governance=governance,
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
