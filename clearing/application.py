"""The clearing application: commands in, events saved atomically, results out.

``execute`` takes a batch of commands, decides each in order against the in-memory
working set, and saves all the accepted commands' events with **one** ``save()`` (one
database transaction), in command order, so the notification log reads in the order the
operator posted. Results are returned only after that commit. Each command stays atomic:
its events (and its idempotency record) are all in the batch or none are.

When the save fails with the library's ``IntegrityError`` (another writer changed an
aggregate we hold, or a command id was already stored), the working set is dropped,
stored command ids are looked up, and the whole batch is decided again from fresh state;
at most ``MAX_ATTEMPTS`` times, with jittered backoff. See docs/adr/0004 and 0005.
"""

from __future__ import annotations

import decimal
import logging
import random
import time
from collections.abc import Sequence
import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError, InternalError, JSONTranscoder, PersistenceError

from clearing.commands import Command
from clearing.domain import ids
from clearing.domain.account import Account
from clearing.domain.command_record import CommandRecord, accepted, first_difference
from clearing.domain.insurance import InsuranceFund
from clearing.domain.market import Market
from clearing.errors import ClearingError, ConflictError, NotFoundError, RuleError
from clearing.handlers import HANDLERS
from clearing.money import LEDGER_CONTEXT
from clearing.transcodings import MarginTierAsDict, OrjsonEncodingTranscoder, PositionAsDict
from clearing.working_set import StaleBatch, WorkingSet

MAX_ATTEMPTS = 10
BACKOFF_SECONDS = 0.005
SNAPSHOT_INTERVAL = 200
RECORDER_ATTEMPTS = 8

APPLIED = "applied"
ALREADY_APPLIED = "already_applied"
REJECTED = "rejected"


@dataclass(frozen=True)
class Envelope:
    """A validated command, where it came from, and its effective business time."""

    command: Command
    at: datetime
    line: int | None = None


@dataclass
class Outcome:
    """What happened to one command; final once ``execute`` has returned it."""

    command_id: str
    command_type: str
    status: str
    line: int | None = None
    summary: str = ""
    code: str | None = None
    field: str | None = None
    message: str | None = None
    positions: list[int] = dataclasses.field(default_factory=list)

    @classmethod
    def rejected(cls, error: ClearingError, command_id: str, command_type: str, line: int | None) -> Outcome:
        return cls(command_id, command_type, REJECTED, line, code=error.code, field=error.field, message=error.message)


def _backoff(attempt: int) -> float:
    """Exponential backoff with full jitter (capped at 1 s).

    Writers that collided once would collide again if they all waited the same time; the
    jitter only changes *when* a batch is decided again, never what is decided.
    """
    return random.uniform(0, min(1.0, BACKOFF_SECONDS * 2**attempt))  # noqa: S311 - timing, not security


class ClearingApplication(Application):
    """Event-sourced clearinghouse: markets, accounts, insurance fund, command records."""

    name = "Clearing"
    is_snapshotting_enabled = True

    def __init__(self, env: dict[str, str] | None = None) -> None:
        super().__init__(env)
        self.working_set = WorkingSet(self)
        self.conflicts_retried = 0  # saves refused with IntegrityError and decided again

    def construct_recorder(self) -> Any:
        """The library's recorder; its table creation is retried (see ``_create_racing``)."""
        return _create_racing(super().construct_recorder)

    def construct_snapshot_store(self) -> Any:
        """The library's snapshot store; its table creation is retried likewise."""
        return _create_racing(super().construct_snapshot_store)

    def construct_transcoder(self) -> OrjsonEncodingTranscoder:
        transcoder = OrjsonEncodingTranscoder()
        self.register_transcodings(transcoder)
        return transcoder

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(MarginTierAsDict())
        transcoder.register(PositionAsDict())

    # -- commands -----------------------------------------------------------------------

    def execute(self, envelopes: Sequence[Envelope]) -> list[Outcome]:
        """Decide and commit a batch; retries on ``IntegrityError`` up to MAX_ATTEMPTS."""
        stored: dict[str, dict[str, Any]] = {}
        for attempt in range(MAX_ATTEMPTS):
            if attempt:
                time.sleep(_backoff(attempt))
                stored = self._stored_contents(envelopes)
            try:
                outcomes, events = self._decide_batch(envelopes, stored)
                recordings = self._save_in_order(events) if events else []
            except (IntegrityError, StaleBatch):
                self.working_set.discard()
                self.conflicts_retried += 1
                continue
            except BaseException:
                self.working_set.discard()  # memory may be ahead of the store: forget it
                raise
            if recordings:
                self.working_set.known_head = recordings[-1].notification.id
            self._attach_positions(outcomes, recordings)
            self._snapshot_touched()
            return outcomes
        self.working_set.discard()
        return [self._exhausted(envelope, stored) for envelope in envelopes]

    def _exhausted(self, envelope: Envelope, stored: dict[str, dict[str, Any]]) -> Outcome:
        command = envelope.command
        if command.id in stored:
            return self._repeat(command, command.content(), stored[command.id], envelope.line)
        error = ConflictError("retries_exhausted", None, f"the store kept refusing the batch after {MAX_ATTEMPTS} attempts")
        return Outcome.rejected(error, command.id, command.type, envelope.line)

    def _decide_batch(
        self, envelopes: Sequence[Envelope], stored: dict[str, dict[str, Any]]
    ) -> tuple[list[Outcome], list[Any]]:
        outcomes: list[Outcome] = []
        events: list[Any] = []
        seen = dict(stored)
        self.working_set.begin_batch()
        with decimal.localcontext(LEDGER_CONTEXT):
            for envelope in envelopes:
                outcome, command_events = self._decide_one(envelope, seen)
                outcomes.append(outcome)
                events.extend(command_events)
            events.extend(self.working_set.record_trading())
        return outcomes, events

    def _decide_one(self, envelope: Envelope, seen: dict[str, dict[str, Any]]) -> tuple[Outcome, list[Any]]:
        command, line = envelope.command, envelope.line
        content = command.content()
        if command.id in seen:
            return self._repeat(command, content, seen[command.id], line), []
        try:
            summary = self._handle(envelope)
        except ClearingError as error:
            stored = self._stored_contents([envelope])  # a re-post must not be judged on today's state
            if stored:
                seen.update(stored)
                return self._repeat(command, content, stored[command.id], line), []
            return Outcome.rejected(error, command.id, command.type, line), []
        seen[command.id] = content
        events = [accepted(command.id, command.type, content), *self.working_set.command_events()]
        return Outcome(command.id, command.type, APPLIED, line, summary=summary), events

    def _handle(self, envelope: Envelope) -> str:
        """Run the command's handler; a rule rejection is decided again on fresh state.

        A rejection writes nothing, so the store's version check never tells us that an
        aggregate held in memory is behind (another process deposited, say). Before a rule
        rejection is reported, the aggregates the command read are brought up to date from
        the store, and if any moved the command is decided once more.
        """
        ws = self.working_set
        ws.command_id = envelope.command.id
        for attempt in range(2):
            ws.begin_command()
            try:
                return HANDLERS[envelope.command.type](ws, envelope.command, envelope.at)
            except RuleError:
                ws.assert_untouched()
                if attempt or not ws.catch_up_command_reads():
                    raise
            except ClearingError:
                ws.assert_untouched()
                raise
        raise AssertionError("unreachable")

    def _save_in_order(self, events: list[Any]) -> list[Any]:
        """Record the batch's events in one transaction, in the order they were decided.

        ``Application.save`` would do the same, but it checks every object against a runtime
        protocol first, which costs more than the insert itself at this volume; the events
        here are known to be domain events, so they go straight to ``_record``.
        """
        processing_event: ProcessingEvent[UUID] = ProcessingEvent()
        processing_event.events.extend(events)
        return self._record(processing_event)

    @staticmethod
    def _repeat(command: Command, content: dict[str, Any], stored: dict[str, Any], line: int | None) -> Outcome:
        differs = first_difference(stored, content)
        if differs is None:
            return Outcome(command.id, command.type, ALREADY_APPLIED, line, summary="already applied, nothing written")
        error = ConflictError(
            "id_conflict",
            differs,
            f"command id {command.id} was already used with a different {differs!r} "
            f"(stored {stored.get(differs)!r}, posted {content.get(differs)!r})",
        )
        return Outcome.rejected(error, command.id, command.type, line)

    def _stored_contents(self, envelopes: Sequence[Envelope]) -> dict[str, dict[str, Any]]:
        """Contents of the batch's command ids that are already in the store."""
        stored: dict[str, dict[str, Any]] = {}
        for envelope in envelopes:
            command_id = envelope.command.id
            if command_id in stored:
                continue
            try:
                record = self.repository.get(ids.command_id(command_id))
            except AggregateNotFoundError:
                continue
            assert isinstance(record, CommandRecord)
            stored[command_id] = record.content  # canonical content, "type" included
        return stored

    @staticmethod
    def _attach_positions(outcomes: list[Outcome], recordings: Sequence[Any]) -> None:
        """Tell each applied command the log positions of its events (in command order)."""
        by_command: dict[str, list[int]] = {}
        current: list[int] = []
        for recording in recordings:
            event = recording.domain_event
            if isinstance(event, CommandRecord.Accepted):
                current = by_command.setdefault(event.command_id, [])
            elif isinstance(event, Market.TradingRecorded):
                current = []  # batch-level, after every command of the batch
            current.append(recording.notification.id)
        for outcome in outcomes:
            if outcome.status == APPLIED:
                outcome.positions = by_command.get(outcome.command_id, [])

    def _snapshot_touched(self) -> None:
        """Snapshot aggregates whose version crossed a multiple of SNAPSHOT_INTERVAL."""
        snapshots = []
        for aggregate, version_before in self.working_set.touched_aggregates():
            if aggregate.version // SNAPSHOT_INTERVAL > version_before // SNAPSHOT_INTERVAL:
                snapshots.append(type(aggregate).Snapshot.take(aggregate))
        if snapshots and self.snapshots is not None:
            try:
                self.snapshots.put(snapshots)
            except PersistenceError as error:  # the batch is committed; snapshots only speed up loads
                logging.getLogger(__name__).warning("snapshots not written: %s", error)

    # -- queries ------------------------------------------------------------------------

    def get_account(self, name: str) -> Account:
        return self._load(ids.account_id(name), Account, "account_not_found", "account", f"account {name}")

    def get_market(self, name: str) -> Market:
        return self._load(ids.market_id(name), Market, "market_not_found", "market", f"market {name}")

    def get_insurance_fund(self) -> InsuranceFund | None:
        try:
            fund = self.repository.get(ids.insurance_fund_id())
        except AggregateNotFoundError:
            return None
        assert isinstance(fund, InsuranceFund)
        return fund

    def _load(self, aggregate_id: Any, kind: type, code: str, field: str, what: str) -> Any:
        try:
            aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFoundError(code, field, f"{what} does not exist") from None
        if not isinstance(aggregate, kind):
            raise NotFoundError(code, field, f"{what} does not exist")
        return aggregate


def _create_racing(construct: Any) -> Any:
    """Call a library constructor that creates tables, retrying when processes race.

    On PostgreSQL, processes that start together race in ``CREATE TABLE IF NOT EXISTS``
    even when the tables exist already (``tuple concurrently updated``, duplicate type
    name); once one process has won, constructing again succeeds.
    """
    for attempt in range(RECORDER_ATTEMPTS):
        try:
            return construct()
        except (InternalError, IntegrityError):
            if attempt == RECORDER_ATTEMPTS - 1:
                raise
            time.sleep(_backoff(attempt + 3))
    raise AssertionError("unreachable")


def open_application(env: dict[str, str]) -> ClearingApplication:
    """Construct the application (its recorder retries racing table creation)."""
    return ClearingApplication(env=env)
