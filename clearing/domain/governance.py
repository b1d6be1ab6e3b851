"""M-of-N governance: what an approval approves, when approvals count, and the timelock.

An approval binds to the *content* of one change, by its fingerprint: sha256 of the
canonical JSON of ``{"action", "scope", "content"}``. Approving ``approvals_required=2``
does not approve ``approvals_required=3``, and ``"0.015"`` and ``"0.0150"`` (the same
typed value) are the same change::

    Change.of_parameters(None, {"approvals_required": 2}).fingerprint
    != Change.of_parameters(None, {"approvals_required": 3}).fingerprint

An approval counts at business time ``at`` when its officer is registered and
``0 <= at - approved_at <= approval_ttl``. The quorum is reached at the time of the M-th
earliest approval that still counts; a timelocked change runs only at or after that time
+ ``governance_timelock``. Example, M = 2, ttl 86,400 s, timelock 3,600 s: olga approves
at 10:00, omar at 10:30; the change is refused (``timelock_pending``) at 11:00 and may run
from 11:30 until olga's approval expires at 10:00 the next day.

Nothing here reads the clock or the state of an aggregate: the clearinghouse passes in
what it holds, and raises the errors named here before any event is triggered.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from clearing.errors import RuleError

EVERYWHERE = "*"
BOOTSTRAP = "bootstrap"  # applied without approvals: no quorum could exist yet
QUORUM = "quorum"  # applied with M approvals of the exact change
NOT_GOVERNED = "not_governed"  # a change that needs no approval (it only tightens risk)


def canonical(value: Any) -> Any:
    """A JSON-ready value with one spelling per meaning: Decimal("1.50") -> "1.5", tuples -> lists."""
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return "0" if text in ("-0", "0") else text
    if isinstance(value, (list, tuple)):
        return [canonical(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): canonical(item) for key, item in value.items()}
    return value


@dataclass(frozen=True)
class Change:
    """One governed change: its action, its scope (a market or ``*``) and its canonical content."""

    action: str
    scope: str
    content: Mapping[str, Any]

    @classmethod
    def of_control(cls, action: str, operation: str, market: str | None) -> Change:
        return cls(action, market or EVERYWHERE, {"operation": operation})

    @classmethod
    def of_parameters(cls, market: str | None, changes: Mapping[str, Any]) -> Change:
        """``changes`` are the typed values from ``parameters.validate``."""
        return cls("set_parameters", market or EVERYWHERE, {"parameters": canonical(changes)})

    @classmethod
    def of_officer(cls, officer: str) -> Change:
        return cls("register_officer", EVERYWHERE, {"officer": officer})

    @property
    def fingerprint(self) -> str:
        document = {"action": self.action, "scope": self.scope, "content": canonical(self.content)}
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    def describe(self) -> str:
        """One line for messages: ``set_parameters approvals_required=2 in the clearinghouse``."""
        where = "all markets" if self.scope == EVERYWHERE else self.scope
        if self.action == "set_parameters":
            where = "the clearinghouse" if self.scope == EVERYWHERE else self.scope
            assignments = " ".join(f"{k}={_short(v)}" for k, v in self.content["parameters"].items())
            return f"set_parameters {assignments} in {where}"
        if self.action == "register_officer":
            return f"register_officer {self.content['officer']}"
        if self.action == "liquidate":
            c = self.content
            return f"liquidate {_short(c['size'])} {where} of {c['account']} at {_short(c['price'])} to {c['liquidator']}"
        return f"{self.action} {self.content['operation']} in {where}"


def _short(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(canonical(value))
    return ",".join(value) if isinstance(value, list) else str(value)


@dataclass(frozen=True)
class Tally:
    """Approvals of one change at one time: those that count (by time, then name) and the expired."""

    counting: list[tuple[datetime, str]]
    expired: list[str]

    @classmethod
    def of(cls, held: Mapping[str, datetime], officers: Sequence[str], at: datetime, ttl: int) -> Tally:
        """``held`` maps officer -> approved_at; officers no longer registered never count."""
        counting: list[tuple[datetime, str]] = []
        expired: list[str] = []
        for officer, approved_at in held.items():
            if officer not in officers or approved_at > at:
                continue
            if at - approved_at <= timedelta(seconds=ttl):
                counting.append((approved_at, officer))
            else:
                expired.append(officer)
        return cls(sorted(counting), sorted(expired))


def still_counts(approved_at: datetime, at: datetime, ttl: int) -> bool:
    """An approval given at ``approved_at`` is still held at ``at`` (a second one is a duplicate)."""
    return at - approved_at <= timedelta(seconds=ttl)


@dataclass(frozen=True)
class Rules:
    """The governance parameters in force when a change is decided."""

    approvals_required: int
    approval_ttl: int
    governance_timelock: int


def decide(
    change: Change,
    held: Mapping[str, datetime],
    officers: Sequence[str],
    rules: Rules,
    at: datetime,
    field: str,
    bootstrap: bool,
    timelocked: bool,
) -> dict[str, Any]:
    """The governance record of an executing event, or raise before anything is written.

    ``bootstrap`` (fewer officers than M, and the action allows it): no approval needed.
    Otherwise M approvals that count are needed (``approval_expired`` when enough were given
    but some are too old, else ``quorum_not_met``), and a ``timelocked`` change also waits
    the timelock after the quorum was reached (``timelock_pending``).
    """
    record = {"rule": BOOTSTRAP, "fingerprint": change.fingerprint, "change": change.describe(),
              "approvals_required": rules.approvals_required, "approved_by": [], "quorum_at": None,
              "approval_ttl": rules.approval_ttl, "governance_timelock": rules.governance_timelock if timelocked else None}
    if bootstrap:
        return record
    tally = Tally.of(held, officers, at, rules.approval_ttl)
    required = rules.approvals_required
    if len(tally.counting) < required:
        _refuse_short(change, tally, required, rules.approval_ttl, field)
    quorum_at = tally.counting[required - 1][0]
    if timelocked:
        runs_at = quorum_at + timedelta(seconds=rules.governance_timelock)
        if at < runs_at:
            raise RuleError(
                "timelock_pending",
                field,
                f"{field}: {change.describe()} reached its quorum at {quorum_at.isoformat()} and may run from "
                f"{runs_at.isoformat()} (governance_timelock {rules.governance_timelock} s)",
            )
    return {**record, "rule": QUORUM, "approved_by": [officer for _, officer in tally.counting], "quorum_at": quorum_at}


def _refuse_short(change: Change, tally: Tally, required: int, ttl: int, field: str) -> None:
    have = len(tally.counting)
    if have + len(tally.expired) >= required:
        raise RuleError(
            "approval_expired",
            field,
            f"{field}: {change.describe()} has {have} of the {required} approvals it needs; the approval(s) of "
            f"{', '.join(tally.expired)} are older than approval_ttl {ttl} s",
        )
    raise RuleError(
        "quorum_not_met",
        field,
        f"{field}: {change.describe()} has {have} of the {required} officer approvals it needs",
    )


def not_governed(change: Change) -> dict[str, Any]:
    """The record of a change that needed no approval (it only tightens risk)."""
    return {"rule": NOT_GOVERNED, "fingerprint": change.fingerprint, "change": change.describe(),
            "approvals_required": 0, "approved_by": [], "quorum_at": None, "approval_ttl": None,
            "governance_timelock": None}
