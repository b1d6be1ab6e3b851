"""A batch's run of trades, stored as one ``FillsRecorded`` per account (ADR 25).

A *run* is a sequence of consecutive accepted trades of one batch, posted by one operator
on one business day (the UTC date of their ``at``). Each trade is decided exactly as before:
both sides' ``TradeFilled`` events are triggered on the accounts, so every later decision
in the batch sees them applied. When the run ends, the run's ``TradeFilled`` events of each
account become one ``Account.FillsRecorded`` holding them in order, at the version of that
account's first fill in the run, and the account's version is set back to it, so the next
event it records follows on. A run ends before any other command is decided (a price and
the sweep it runs see every earlier fill stored), at a rejection, at a change of operator
or business day (each fill is booked on its own day by the projections), and at the end of
the batch.

Example: alice (version 4) buys from bob (version 9), then from carol (version 2), then a
price arrives: alice's two fills become one event at version 5 (alice is at 5, not 6), bob's
and carol's one fill each at 10 and 3; then the price is decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date
from typing import TYPE_CHECKING, Any
from uuid import UUID

from clearing.domain.account import Account
from clearing.domain.fills import to_wire

if TYPE_CHECKING:
    from clearing.application import Envelope
    from clearing.working_set import WorkingSet


@dataclass
class _AccountFills:
    """One account's part of the run: its name, the version of its first fill, its fills
    (stored form) and the library timestamp of the last."""

    name: str
    version: int
    fills: list[list[Any]]
    timestamp: Any


class FillRun:
    """The trades of the run being decided: per account, its first version and its fills."""

    def __init__(self, working_set: WorkingSet) -> None:
        self._working_set = working_set
        self._accounts: dict[UUID, _AccountFills] = {}
        self._first: str | None = None
        self._operator = ""
        self._day: date | None = None

    def continued_by(self, envelope: Envelope) -> bool:
        """Whether ``envelope`` may join the run (a trade of the same operator and day)."""
        if envelope.command.type != "trade":
            return False
        return self._first is None or (envelope.operator == self._operator and _day(envelope) == self._day)

    def add(self, envelope: Envelope, fills: list[Any]) -> None:
        """The two ``TradeFilled`` events of an accepted trade of the run."""
        if len(fills) != 2 or not all(type(event) is Account.TradeFilled for event in fills):
            raise AssertionError(f"trade {envelope.command.id} decided {fills!r}, not its two fills")
        if self._first is None:
            self._first, self._operator, self._day = envelope.command.id, envelope.operator, _day(envelope)
        posted_at = envelope.command.at is not None
        accounts = self._accounts
        for event in fills:
            entry = accounts.get(event.originator_id)
            if entry is None:
                entry = accounts[event.originator_id] = _AccountFills(event.account, event.originator_version, [], None)
            entry.fills.append(to_wire(event, posted_at))
            entry.timestamp = event.timestamp

    def flush(self, latest_at: Any) -> list[Any]:
        """One ``FillsRecorded`` per account of the run, in the order the run first touched
        them; each account's version set back to that event's. Then the run starts afresh."""
        if self._first is None:
            return []
        events: list[Any] = []
        for aggregate_id, entry in self._accounts.items():
            events.append(Account.FillsRecorded(  # type: ignore[call-arg]  # the library's dataclass fields
                originator_id=aggregate_id, originator_version=entry.version, timestamp=entry.timestamp,
                account=entry.name, run=self._first, operator=self._operator, latest_at=latest_at, fills=entry.fills))
            account = self._working_set.peek_account(entry.name)
            assert account is not None and account.id == aggregate_id, f"account {entry.name} of the run is not held"
            account.version = entry.version
        self._accounts = {}
        self._first, self._operator, self._day = None, "", None
        return events


def _day(envelope: Envelope) -> date:
    return envelope.at.astimezone(UTC).date()
