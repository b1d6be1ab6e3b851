"""The clearing application: commands in, events saved atomically, results out.

``execute`` takes a batch of commands, decides each in order against the in-memory
working set, and saves all the accepted commands' events with **one** ``save()`` (one
database transaction), in command order, so the notification log reads in the order the
operator posted. Results are returned only after that commit. Each command stays atomic:
its events (and its idempotency record) are all in the batch or none are.

When the save fails with the library's ``IntegrityError`` (another writer changed an
aggregate we hold, or a command id was already stored), the working set is dropped,
stored command ids are looked up, and the whole batch is decided again from fresh state,
with jittered backoff. After ``OPTIMISTIC_ATTEMPTS`` refusal(s) the batch is decided and
saved holding the writers' lock exclusively (every save holds it shared), so no other
writer can commit under it; ``retries_exhausted`` after ``MAX_ATTEMPTS`` therefore means a
store that refuses every save. See docs/adr/0004, 0005 and 0022.
"""

from __future__ import annotations

import dataclasses
import decimal
import logging
import os
import random
import time
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent, Repository
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, InternalError, JSONTranscoder, PersistenceError, ProgrammingError
from eventsourcing.popo import POPOFactory
from eventsourcing.utils import get_topic

from clearing import store_schema
from clearing.audit.log import read_log
from clearing.business_time import TimeLimits, check_not_backdated
from clearing.command_index import BUILT_TABLE, COMMANDS_KWARG, CommandIndex, ensure_built, index_rows
from clearing.command_index import TABLE as COMMAND_TABLE
from clearing.commands import Command
from clearing.composition import Parts, real_parts
from clearing.domain import ids
from clearing.domain.account import Account
from clearing.domain.command_record import RECORD_TOPICS, CommandRecord, accepted, first_difference, rejected
from clearing.domain.insurance import InsuranceFund
from clearing.domain.market import Market
from clearing.effects import effect_of
from clearing.errors import ClearingError, ConflictError, InputError, NotFoundError, RuleError
from clearing.fill_runs import FillRun
from clearing.handlers import HANDLERS
from clearing.money import LEDGER_CONTEXT
from clearing.recorders import (
    QUIET_SINCE_KWARG,
    READ_SET_KWARG,
    RECORDER_TOPICS,
    SHARED_LOCK_KWARG,
    ClearingPOPORecorder,
    is_postgres_factory,
)
from clearing.transcodings import MarginTierAsDict, OrjsonEncodingTranscoder, PositionAsDict
from clearing.working_set import StaleBatch, WorkingSet
from clearing.writer_lock import writer_lock_of

MAX_ATTEMPTS = 10
OPTIMISTIC_ATTEMPTS = 1  # refusals before the batch is decided and saved under the writers' lock (clearing/writer_lock.py)
MAX_EVENTS_PER_TRANSACTION = 5000  # a batch that decides more commits in several transactions
BACKOFF_SECONDS = 0.005
SNAPSHOT_INTERVAL = 200
RECORDER_ATTEMPTS = 8

APPLIED = "applied"
ALREADY_APPLIED = "already_applied"
REJECTED = "rejected"
ALREADY_REJECTED = "already_rejected"
REJECTIONS = (REJECTED, ALREADY_REJECTED)
_Loaded = TypeVar("_Loaded", bound=Aggregate)
WATERMARK_PAGE = 1000
WATERMARK_RECORDS = 50  # records of the last page whose greatest time is the watermark
TIME_TOPICS = (*RECORD_TOPICS, get_topic(Account.FillsRecorded))  # events that carry the watermark


@dataclass(frozen=True)
class Answer:
    """How an id was answered: its canonical content and, for a rejection, the error."""

    content: dict[str, Any]
    code: str | None = None
    field: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class Envelope:
    """A validated command, where it came from, and its effective business time."""

    command: Command
    at: datetime
    line: int | None = None
    operator: str = ""


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
    effects: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # clearing.effects, with positions

    @property
    def result(self) -> str:
        """The summary, with what the command caused (``clearing.effects.describe``)."""
        if not self.effects:
            return self.summary
        from clearing.effects import describe

        return f"{self.summary}; {describe(self.effects)}"

    @classmethod
    def rejected(cls, error: ClearingError, command_id: str, command_type: str, line: int | None) -> Outcome:
        return cls(command_id, command_type, REJECTED, line, code=error.code, field=error.field, message=error.message)

    @property
    def is_rejection(self) -> bool:
        """Rejected now or earlier (``already_rejected``): the exit status is 1 for both."""
        return self.status in REJECTIONS


def jittered_backoff(attempt: int) -> float:
    """Exponential backoff with full jitter (capped at 1 s).

    Writers that collided once would collide again if they all waited the same time; the
    jitter only changes *when* a batch is decided again, never what is decided.
    """
    return random.uniform(0, min(1.0, BACKOFF_SECONDS * 2**attempt))


def project_events(aggregate: Any, domain_events: Iterable[Any]) -> Any:
    """The library's ``project_aggregate`` without its per-event runtime-protocol assertion.

    ``project_aggregate`` asserts ``isinstance(event, CanMutateProtocol)`` for every event;
    on Python 3.11 a runtime ``Protocol`` check costs about 35 us, more than decoding and
    applying the event, so loading 1,000 accounts of 40 events spent 1.4 s in it. Every
    event the store returns to our repository is one of our aggregates' events or a
    snapshot (both have ``mutate``); a row that is not fails on ``mutate`` all the same.
    """
    for domain_event in domain_events:
        aggregate = domain_event.mutate(aggregate)
    return aggregate


class ClearingRepository(Repository[UUID]):
    """The library's repository, projecting with ``project_events`` by default."""

    def get(self, aggregate_id: UUID, *, version: int | None = None, projector_func: Any = project_events,
            fastforward_skipping: bool = False, deepcopy_from_cache: bool = True) -> Any:
        return super().get(aggregate_id, version=version, projector_func=projector_func,
                           fastforward_skipping=fastforward_skipping, deepcopy_from_cache=deepcopy_from_cache)


class ClearingApplication(Application[UUID]):
    """Event-sourced clearinghouse: markets, accounts, insurance fund, command records."""

    name = "Clearing"
    is_snapshotting_enabled = True

    def __init__(self, env: dict[str, str] | None = None, parts: Parts | None = None) -> None:
        env = _with_recorder(env)
        super().__init__(env)
        self.parts = parts if parts is not None else real_parts()
        self.working_set = WorkingSet(self)
        self.conflicts_retried = 0  # saves refused with IntegrityError and decided again
        self.batches_serialised = 0  # batches decided and saved under the writers' exclusive lock
        self.writer_lock = writer_lock_of(self.factory)
        self.time_limits = TimeLimits.from_env({**os.environ, **(env or {})})
        self._watermark: datetime | None = None  # greatest ``at`` answered, as of _watermark_head
        self._watermark_head: int | None = None
        self._deciding_watermark: datetime | None = None
        self._index_built = False  # checked once, before the first batch (command_index.ensure_built)

    def construct_recorder(self) -> Any:
        """The library's recorder; its table creation is retried (see ``_create_racing``).

        On PostgreSQL no DDL runs when the tables exist: ``CREATE INDEX IF NOT EXISTS``
        waits for the table lock a writer holds while it inserts, so a process starting
        beside a long insert (a reader included) would hang on it.
        """
        if is_postgres_factory(self.factory) and _postgres_tables_exist(self.factory):
            self.factory.env["CREATE_TABLE"] = "n"
        if isinstance(self.factory, POPOFactory):  # the in-memory factory has no recorder setting
            return ClearingPOPORecorder()
        return _create_racing(super().construct_recorder)

    def construct_snapshot_store(self) -> Any:
        """The library's snapshot store; its table creation is retried likewise."""
        return _create_racing(super().construct_snapshot_store)

    def construct_repository(self) -> ClearingRepository:
        """The library's repository with its settings, projecting with ``project_events``."""
        library = super().construct_repository()
        return ClearingRepository(
            event_store=self.events,
            snapshot_store=self.snapshots,
            cache_maxsize=None if library.cache is None else getattr(library.cache, "maxsize", 0),
            fastforward=library.fastforward,
            fastforward_skipping=library.fastforward_skipping,
            deepcopy_from_cache=library.deepcopy_from_cache,
        )

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
        """Decide and commit a batch, in transactions of at most about MAX_EVENTS_PER_TRANSACTION
        events (whole commands only), so no writer holds the store's lock for long."""
        if not self._index_built:  # a store written before the command index gets it first
            ensure_built(self)
            self._index_built = True
        outcomes: list[Outcome] = []
        while len(outcomes) < len(envelopes):
            outcomes.extend(self._execute_part(envelopes[len(outcomes):]))
        return outcomes

    def _execute_part(self, envelopes: Sequence[Envelope]) -> list[Outcome]:
        """Decide a prefix of ``envelopes`` and commit it in one transaction; returns its
        outcomes. Retries on ``IntegrityError`` up to MAX_ATTEMPTS."""
        stored: dict[str, Answer] = {}
        for attempt in range(MAX_ATTEMPTS):
            serialised = attempt >= OPTIMISTIC_ATTEMPTS
            if attempt and not serialised:
                time.sleep(self.parts.backoff(attempt))
            try:
                with self.writer_lock.exclusive() if serialised else nullcontext():
                    if attempt:  # under the lock when serialised: no answer can be stored meanwhile
                        stored = self.parts.stored_answers(self, envelopes)
                    outcomes, events = self._decide_batch(envelopes, stored)
                    with self.writer_lock.shared():  # nothing more for the exclusive holder
                        recordings = self.parts.save_batch(self, events) if events else []
                self.batches_serialised += serialised
            except (IntegrityError, StaleBatch):
                self.working_set.discard()
                self.conflicts_retried += 1
                continue
            except BaseException:
                self.working_set.discard()  # memory may be ahead of the store: forget it
                raise
            self._note_committed(recordings)
            self._watermark, self._watermark_head = self._deciding_watermark, self.working_set.known_head
            self._attach_positions(outcomes, recordings)
            self._snapshot_touched()
            return outcomes
        self.working_set.discard()
        return [self._exhausted(envelope, stored) for envelope in envelopes]

    def _note_committed(self, recordings: Sequence[Any]) -> None:
        """Advance the known head past our commit, unless another process wrote between our
        batch's start and our commit: then the next batch reads what it changed
        (``WorkingSet._forget_changed``) from the head it knew, our own events included."""
        if not recordings:
            return
        ws = self.working_set
        if ws.known_head is None or recordings[0].notification.id == ws.known_head + 1:
            ws.known_head = recordings[-1].notification.id

    def _exhausted(self, envelope: Envelope, stored: dict[str, Answer]) -> Outcome:
        command = envelope.command
        if command.id in stored:
            return self._repeat(command, command.content(), stored[command.id], envelope.line)
        error = ConflictError("retries_exhausted", None, f"the store kept refusing the batch after {MAX_ATTEMPTS} attempts")
        return Outcome.rejected(error, command.id, command.type, envelope.line)

    def _decide_batch(
        self, envelopes: Sequence[Envelope], stored: dict[str, Answer]
    ) -> tuple[list[Outcome], list[Any]]:
        outcomes: list[Outcome] = []
        events: list[Any] = []
        seen = dict(stored)
        self.working_set.begin_batch()
        self._deciding_watermark = self._current_watermark()
        run, decided = FillRun(self.working_set), 0
        with decimal.localcontext(LEDGER_CONTEXT):
            for envelope in envelopes:
                if not run.continued_by(envelope):  # before deciding: the next command sees the run stored
                    events.extend(run.flush(self._deciding_watermark))
                outcome, command_events = self._decide_one(envelope, seen)
                outcomes.append(outcome)
                if outcome.status == APPLIED and envelope.command.type == "trade":
                    run.add(envelope, command_events)  # its two fills; its answer goes to the command index
                elif command_events:
                    events.extend(run.flush(self._deciding_watermark))
                    events.extend(command_events)
                decided += len(command_events)
                if decided >= MAX_EVENTS_PER_TRANSACTION:
                    break  # the rest goes in the next transaction
            events.extend(run.flush(self._deciding_watermark))
            events.extend(self.working_set.record_trading())
        return outcomes, events

    def _decide_one(self, envelope: Envelope, seen: dict[str, Answer]) -> tuple[Outcome, list[Any]]:
        """Answer one command: a repeat from its record, else decide it and record the answer.

        A rule rejection is recorded too (``CommandRecord.Rejected``), so the id is never
        decided again; so is a time before the log's watermark (``time_before_log``), which
        depends on the log, not on the line alone.
        """
        command, line = envelope.command, envelope.line
        content = command.content()
        if command.id in seen:
            return self._repeat(command, content, seen[command.id], line), []
        try:
            check_not_backdated(envelope.at, self._deciding_watermark, self.time_limits)
        except InputError as error:
            stored = self.parts.stored_answers(self, [envelope])  # an old command re-posted keeps its answer
            if stored:
                seen.update(stored)
                return self._repeat(command, content, stored[command.id], line), []
            return self._recorded_rejection(envelope, content, error, seen)
        try:
            summary = self._handle(envelope)
        except ClearingError as error:
            stored = self.parts.stored_answers(self, [envelope])  # a re-post must not be judged on today's state
            if stored:
                seen.update(stored)
                return self._repeat(command, content, stored[command.id], line), []
            self._advance_watermark(envelope.at)
            return self._recorded_rejection(envelope, content, error, seen)
        seen[command.id] = Answer(content)
        watermark = self._advance_watermark(envelope.at)
        events = self.working_set.command_events()
        if command.type != "trade":  # a trade joins a run of fills, answered in the command index (ADR 25)
            events.insert(0, accepted(command.id, command.type, content, envelope.operator, envelope.at,
                                      _if_later(watermark, envelope.at)))
        return Outcome(command.id, command.type, APPLIED, line, summary=summary), events

    def _recorded_rejection(
        self, envelope: Envelope, content: dict[str, Any], error: ClearingError, seen: dict[str, Answer]
    ) -> tuple[Outcome, list[Any]]:
        """The rejection and its record, which makes the answer final."""
        command = envelope.command
        watermark = self._deciding_watermark or envelope.at
        seen[command.id] = Answer(content, error.code, error.field, error.message)
        record = rejected(command.id, command.type, content, error, envelope.operator, envelope.at,
                          _if_later(watermark, envelope.at))
        return Outcome.rejected(error, command.id, command.type, envelope.line), [record]

    def _advance_watermark(self, at: datetime) -> datetime:
        current = self._deciding_watermark
        self._deciding_watermark = at if current is None or at > current else current
        return self._deciding_watermark

    def _current_watermark(self) -> datetime | None:
        """The log's business-time watermark: kept in memory, re-read when another process wrote."""
        head = self.working_set.known_head
        if self._watermark_head is None or head != self._watermark_head:
            self._watermark, self._watermark_head = self._read_watermark(head or 0), head
        return self._watermark

    def _read_watermark(self, head: int) -> datetime | None:
        """``latest_at`` of the last command record or run of fills in the log (pages read backwards)."""
        return self.watermark_at(head)[0]

    def watermark_at(self, position: int) -> tuple[datetime | None, int]:
        """The log's business-time watermark as of ``position``, and the position of the last
        row it was read from (0 when there is none).

        The greatest ``latest_at`` of the last ``WATERMARK_RECORDS`` command records and runs
        of fills at or before ``position`` (concurrent batches commit in any order), read
        backwards a page at a time. Every command answered up to that row had a business
        time at or before the watermark, which is what a replay as of a time relies on
        (``projections.replay.resolve_until``). Example: records at 3 (latest_at 10:00) and
        7 (10:05) -> ``watermark_at(8)`` is (10:05, 7).
        """
        stop = position
        while stop > 0:
            start = max(1, stop - WATERMARK_PAGE + 1)
            found = [note for page in read_log(self.recorder, start=start, stop=stop, page=WATERMARK_PAGE, topics=TIME_TOPICS)
                     for note in page.notifications]
            if found:  # the greatest of the last few: concurrent batches commit in any order
                times = [self._record_time(n) for n in found[-WATERMARK_RECORDS:]]
                known = [t for t in times if t is not None]
                return (max(known) if known else None), found[-1].id
            stop = start - 1
        return None, 0

    def _record_time(self, notification: Any) -> datetime | None:
        event = self.mapper.to_domain_event(notification)
        return getattr(event, "latest_at", None) or getattr(event, "at", None)

    def _handle(self, envelope: Envelope) -> str:
        """Run the command's handler; a rule rejection is decided again on fresh state.

        A rejection writes nothing, so the store's version check never tells us that an
        aggregate held in memory is behind (another process deposited, say). Before a rule
        rejection is reported, the aggregates the command read are brought up to date from
        the store, and if any moved the command is decided once more.
        """
        ws = self.working_set
        ws.command_id = envelope.command.id
        ws.operator = envelope.operator
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

    @staticmethod
    def _repeat(command: Command, content: dict[str, Any], answer: Answer, line: int | None) -> Outcome:
        """The original answer to a re-posted id (same content), or ``id_conflict``."""
        stored = answer.content
        differs = first_difference(stored, content)
        if differs is not None:
            error = ConflictError(
                "id_conflict",
                differs,
                f"command id {command.id} was already used with a different {differs!r} "
                f"(stored {stored.get(differs)!r}, posted {content.get(differs)!r})",
            )
            return Outcome.rejected(error, command.id, command.type, line)
        if answer.code is not None:
            return Outcome(command.id, command.type, ALREADY_REJECTED, line, summary="already rejected, nothing decided again",
                           code=answer.code, field=answer.field, message=answer.message)
        return Outcome(command.id, command.type, ALREADY_APPLIED, line, summary="already applied, nothing written")

    @staticmethod
    def _attach_positions(outcomes: list[Outcome], recordings: Sequence[Any]) -> None:
        """Tell each applied command the log positions of its events (in command order) and
        the effects they record (``clearing.effects``)."""
        by_command: dict[str, list[int]] = {}
        effects: dict[str, list[dict[str, Any]]] = {}
        current: list[int] = []
        caused: list[dict[str, Any]] = []
        for recording in recordings:
            event = recording.domain_event
            if isinstance(event, Account.FillsRecorded):  # an account's fills of a run: each trade's
                for wire in event.fills:
                    by_command.setdefault(wire[0], []).append(recording.notification.id)
                current = []
                continue
            if isinstance(event, CommandRecord.Accepted):
                current = by_command.setdefault(event.command_id, [])
                caused = effects.setdefault(event.command_id, [])
            elif isinstance(event, (Market.HoldersChanged, Market.TradingRecorded, CommandRecord.Rejected)):
                current, caused = [], []  # batch-level, after every command of the batch
            current.append(recording.notification.id)
            effect = effect_of(event, recording.notification.id)
            if effect is not None:
                caused.append(effect)
        for outcome in outcomes:
            if outcome.status == APPLIED:
                outcome.positions = by_command.get(outcome.command_id, [])
                outcome.effects = effects.get(outcome.command_id, [])

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
            fund: Aggregate = self.repository.get(ids.insurance_fund_id())
        except AggregateNotFoundError:
            return None
        assert isinstance(fund, InsuranceFund)
        return fund

    def _load(self, aggregate_id: UUID, kind: type[_Loaded], code: str, field: str, what: str) -> _Loaded:
        try:
            aggregate: Aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFoundError(code, field, f"{what} does not exist") from None
        if not isinstance(aggregate, kind):
            raise NotFoundError(code, field, f"{what} does not exist")
        return aggregate


def _create_racing(construct: Any) -> Any:
    """Call a library constructor that creates tables, retrying when processes race.

    On PostgreSQL, processes that start together race in ``CREATE TABLE IF NOT EXISTS``
    even when the tables exist already (``tuple concurrently updated``, duplicate type
    name, ``relation ... already exists``); once one process has won, constructing again
    succeeds. Any other programming error (a bad schema name, say) is raised at once.
    """
    for attempt in range(RECORDER_ATTEMPTS):
        try:
            return construct()
        except (InternalError, IntegrityError, ProgrammingError) as error:
            lost_race = not isinstance(error, ProgrammingError) or "already exists" in str(error)
            if not lost_race or attempt == RECORDER_ATTEMPTS - 1:
                raise
            time.sleep(jittered_backoff(attempt + 3))
    raise AssertionError("unreachable")


def save_in_order(app: ClearingApplication, events: list[Any]) -> list[Any]:
    """Record a batch's events in one transaction, in the order they were decided.

    ``Application.save`` would do the same, but it checks every object against a runtime
    protocol first, which costs more than the insert itself at this volume; the events
    here are known to be domain events, so they go straight to ``_record``.
    """
    processing_event: ProcessingEvent[UUID] = ProcessingEvent()
    processing_event.events.extend(events)
    processing_event.saved_kwargs[READ_SET_KWARG] = app.working_set.read_versions
    processing_event.saved_kwargs[SHARED_LOCK_KWARG] = app.writer_lock.save_takes_shared()
    processing_event.saved_kwargs[COMMANDS_KWARG] = index_rows(events)
    processing_event.saved_kwargs[QUIET_SINCE_KWARG] = app.working_set.quiet_since
    return app._record(processing_event)


def stored_answers(app: ClearingApplication, envelopes: Sequence[Envelope]) -> dict[str, Answer]:
    """Answers already stored for the batch's command ids (applied or rejected), from the
    command index in one query. The index holds every answer of the log: a store written
    before it is indexed from its records before its first batch (``command_index.ensure_built``)."""
    posted = list(dict.fromkeys(envelope.command.id for envelope in envelopes))
    return {command_id: Answer(row.content_dict(), row.code, row.field, row.message)
            for command_id, row in cast(CommandIndex, app.recorder).select_commands(posted).items()}


def _if_later(watermark: datetime, at: datetime) -> datetime | None:
    """The watermark to record: None when it is the command's own ``at`` (the usual case)."""
    return None if watermark == at else watermark


def _postgres_tables_exist(factory: Any) -> bool:
    """The library's tables (events, snapshots), the command index and the schema version
    exist in the configured schema (a store written before versions were recorded gets
    its ``clearing_schema`` table from the next writer)."""
    names = [f"{ClearingApplication.name.lower()}_{kind}" for kind in ("events", "snapshots")] + [
        COMMAND_TABLE, BUILT_TABLE, store_schema.SCHEMA_TABLE]
    schema = factory.datastore.schema or "public"
    with factory.datastore.get_connection() as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) AS found FROM information_schema.tables WHERE table_schema = %s AND table_name = ANY(%s)",
            (schema, names),
        )
        row = cursor.fetchone()
    return bool(row) and row["found"] == len(names)


def _with_recorder(env: dict[str, str] | None) -> dict[str, str]:
    """Select our recorder (the library's, plus read-set validation) by the library's own
    ``APPLICATION_RECORDER_TOPIC`` setting, unless the caller chose one."""
    chosen = dict(env or {})
    module = chosen.get("PERSISTENCE_MODULE") or os.environ.get("PERSISTENCE_MODULE", "")
    topic = RECORDER_TOPICS.get(module)
    if topic and "APPLICATION_RECORDER_TOPIC" not in chosen and "APPLICATION_RECORDER_TOPIC" not in os.environ:
        chosen["APPLICATION_RECORDER_TOPIC"] = topic
    return chosen


def open_application(env: dict[str, str]) -> ClearingApplication:
    """Construct the application (its recorder retries racing table creation)."""
    return ClearingApplication(env=env)
