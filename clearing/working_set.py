"""The unit of work a batch of commands decides against.

It records what each command touched and read (the read set the insert validates, ADR
12), collects each command's events in decision order (``decision_order``), keeps the
liquidation-price indexes current, and hands the handlers their parts. The aggregates
themselves are kept between batches by ``AggregateCache`` (loaded once, shared ones caught
up each batch, absent ids remembered), and the batch's trading by ``TradingBatch``. A stale
account cannot be *written*, and a market it read cannot have moved: the event store refuses
a stale write with ``IntegrityError``, and our recorders refuse a batch whose read set moved
(ADR 12; a traded market is read, and written only when its holders change, ADR 26); then the
whole cache is dropped. A *rejection* writes nothing, so before
one is reported the aggregates the command read are caught up and the command is decided
again (``catch_up_command_reads``). Marks of *other* markets, read for an account's margin,
are at most one batch old.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from clearing.aggregate_cache import AggregateCache
from clearing.audit.log import read_log
from clearing.domain import ids
from clearing.domain.access import AccessToken
from clearing.domain.account import Account
from clearing.domain.clearinghouse import Clearinghouse
from clearing.domain.decision_order import forget_numbers, in_decision_order
from clearing.domain.insurance import InsuranceFund
from clearing.domain.market import Market
from clearing.domain.parameters import DEFAULTS, ParameterSet, effective
from clearing.errors import InvariantViolation, NotFoundError
from clearing.money import ZERO
from clearing.risk_index import MarketRiskIndex, RiskIndexes
from clearing.trading_batch import TradingBatch

if TYPE_CHECKING:
    from clearing.application import ClearingApplication
    from clearing.composition import Parts
    from clearing.risk_engine import Sequencer

T = TypeVar("T", bound=Aggregate)
MAX_FOREIGN_EVENTS = 200_000  # other processes' events read to forget only what they changed
FOREIGN_PAGE = 10_000


class StaleBatch(Exception):
    """State that earlier commands of the batch were decided on has changed in the store."""


class WorkingSet:
    """Aggregates by id, plus which ones the current command and batch touched."""

    def __init__(self, app: ClearingApplication) -> None:
        self._app = app
        self.cache = AggregateCache(app)
        self._aggregates = self.cache.aggregates  # the hot path reads the cache's dict directly
        self._command_touched: dict[UUID, Aggregate] = {}
        self._markets_by_name: dict[str, Market] = {}
        self.batch_start_versions: dict[UUID, int] = {}
        self.read_versions: dict[UUID, int] = {}  # every aggregate the batch read: version (0 = absent)
        self._command_first_reads: set[UUID] = set()  # ids the current command read first in the batch
        self.trading = TradingBatch()
        self.markets = MarketDirectory(self)
        self.risk = RiskIndexes()
        self.command_id = ""
        self.operator = ""  # who posted the current command (``--as`` / CLEARING_OPERATOR)
        self.sequencer: Sequencer | None = None  # the command's liquidation-id sequencer (risk_engine.sequencer_of)
        self.known_head: int | None = None
        self._command_missed: set[UUID] = set()
        self._parameters: dict[tuple[str, int, int], ParameterSet] = {}

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def parts(self) -> Parts:
        """The application's parts (the risk sweep a handler runs after a mark price)."""
        return self._app.parts

    def begin_batch(self) -> None:
        """Fast-forward the shared aggregates we read without writing."""
        self.batch_start_versions = {}
        self.read_versions = {}
        self.quiet_since: int | None = None  # set by a sweep: see ``require_quiet_store``
        self.trading.clear()
        forget_numbers()  # of events created outside a batch and never collected (a check's scratch account)
        if self.cache.too_large:
            self.discard()
        head = self._app.recorder.max_notification_id() or 0
        if self.known_head is not None and head != self.known_head:
            self._forget_changed(self.known_head, head)  # another process wrote
        self.known_head = head
        for moved in self.cache.catch_up_shared():
            self._reindex(moved)

    def _forget_changed(self, known: int, head: int) -> None:
        """Forget what the events after ``known`` (up to ``head``) changed, and only that.

        Accounts they wrote are dropped from the cache (loaded again when next used) and
        re-indexed; a market or the clearinghouse they wrote is caught up by
        ``catch_up_shared`` and every risk index is rebuilt (its holders or parameters may
        have moved); ids remembered as absent are asked again. An event of an aggregate
        already at its version here is our own commit, or one already applied here by a
        catch-up, which re-indexed what it moved itself (``_reindex``). Far behind, dropping everything is
        cheaper than reading what changed.
        """
        if head < known or head - known > MAX_FOREIGN_EVENTS:
            self.discard()
            return
        for aggregate_id, version in self._changed_since(known + 1, head).items():
            aggregate = self._aggregates.get(aggregate_id)
            if aggregate is None:
                self.cache.absent.discard(aggregate_id)
            elif aggregate.version < version:
                if isinstance(aggregate, Account):
                    self.cache.drop(aggregate_id)  # loaded again when next used
                self._reindex(aggregate)

    def _changed_since(self, start: int, stop: int) -> dict[UUID, int]:
        """Aggregates written at positions ``start``..``stop`` with their highest version: one
        grouped query on our recorders, else read through ``read_log``."""
        recorder = self._app.recorder
        if hasattr(recorder, "changed_since"):
            found: dict[UUID, int] = recorder.changed_since(start, stop)
            return found
        changed: dict[UUID, int] = {}
        for page in read_log(recorder, start=start, stop=stop, page=FOREIGN_PAGE):
            for note in page.notifications:
                aggregate_id = note.originator_id if isinstance(note.originator_id, UUID) else UUID(note.originator_id)
                changed[aggregate_id] = max(changed.get(aggregate_id, 0), note.originator_version)
        return changed

    def catch_up_command_reads(self) -> bool:
        """Bring every aggregate the current command read up to date (after a rejection).

        Only aggregates without pending events are read from the store: one changed by an
        earlier command of this batch is ahead of the store already, and if another process
        wrote it too, the batch's save fails and the whole batch is decided again. A market
        that earlier trades of this batch were decided on must not move under them: then the
        whole batch is stale (``StaleBatch``) and is decided again.
        """
        moved = False
        for aggregate_id in self._command_missed:  # looked up, not found: maybe stored since
            if self.cache.recheck(aggregate_id):
                self._refresh_read(aggregate_id, None)
                moved = True
        for aggregate in self._command_touched.values():
            if aggregate.version == self.batch_start_versions.get(aggregate.id) and self.cache.catch_up(aggregate):
                if isinstance(aggregate, Market) and aggregate.market in self.trading:
                    raise StaleBatch(f"market {aggregate.market} changed under this batch's trades")
                self._refresh_read(aggregate.id, aggregate.version)
                self._reindex(aggregate)
                moved = True
        return moved

    def _reindex(self, aggregate: Aggregate) -> None:
        """Another process's events were applied to ``aggregate`` here: the risk indexes must
        not keep what it was (an account is re-indexed; a market or the clearinghouse
        rebuilds every index, since its holders or parameters may have moved)."""
        if isinstance(aggregate, Account):
            self.risk.mark_dirty(aggregate.account)
        else:
            self.risk.clear()

    def _refresh_read(self, aggregate_id: UUID, version: int | None) -> None:
        """The read set after a catch-up: the command being decided again reads the new
        version; if an earlier command of the batch read the old one, the batch is stale
        (its save would otherwise pass: the aggregate may be written from the new version)."""
        if aggregate_id in self.read_versions and aggregate_id not in self._command_first_reads:
            raise StaleBatch(f"aggregate {aggregate_id} read earlier in this batch changed in the store")
        if version is None:
            self.read_versions.pop(aggregate_id, None)  # looked up again when next read
            self._command_first_reads.discard(aggregate_id)
        else:
            self.read_versions[aggregate_id] = version

    def _note_read(self, aggregate_id: UUID, version: int) -> None:
        """Remember the version the batch first read (0: looked up and absent)."""
        if aggregate_id not in self.read_versions:
            self.read_versions[aggregate_id] = version
            self._command_first_reads.add(aggregate_id)

    def note_position(self, market: Market, account: Account, at: datetime) -> None:
        """Record a position change (liquidation, deleveraging) for the batch's holder changes."""
        self.trading.note_position(market, at, account)
        self._markets_by_name[market.market] = market

    def holders(self, market: str) -> set[str]:
        """Accounts with an open position in ``market`` now (stored holders + this batch)."""
        return self.trading.holders(self._markets_by_name[market] if market in self._markets_by_name else self.market(market))

    def require_quiet_store(self) -> None:
        """This batch valued accounts from memory that it neither writes nor lists in its read
        set: a price sweep checks only the holders its risk index says the new mark can reach.
        Another process's write to any other holder between this batch's start and its commit
        (a withdrawal decided on the old mark, a trade growing a position) would then be missed
        by both: the batch must commit only if no other process wrote since it started
        (``clearing.recorders``, ``QUIET_SINCE_KWARG``); else it is decided again, and after one
        refusal under the writers' exclusive lock (ADR 23), where it cannot be refused.
        Example: B holds a long and is healthy at 50,000; process 2 withdraws from B; process
        1's price of 47,000 was decided without B: its commit is refused and, decided again on
        B's new collateral, it calls B."""
        if self.quiet_since is None:
            self.quiet_since = self.known_head or 0

    def record_trading(self) -> list[Any]:
        """One ``HoldersChanged`` event per market whose holders this batch changed (ADR 26)."""
        return self.trading.record(self._markets_by_name)

    # -- risk engine support ---------------------------------------------------------------

    def clearinghouse(self) -> Clearinghouse | None:
        return self._get(ids.clearinghouse_id(), Clearinghouse)

    def clearinghouse_for_write(self, at: datetime) -> Clearinghouse:
        return self.clearinghouse() or self.add(Clearinghouse(at=at))

    def fund(self, at: datetime) -> InsuranceFund:
        return self.insurance_fund() or self.add(InsuranceFund(at=at))

    def backstop(self, name: str, at: datetime) -> Account:
        """The backstop liquidator's account, opened on first use."""
        found = self._get(ids.account_id(name), Account)
        return found if found is not None else self.add(Account(account=name, at=at))

    def parameters(self, market: str) -> ParameterSet:
        """Effective parameters of ``market``: clearinghouse defaults + market overrides.

        Read without touching the clearinghouse; memoized per pair of parameter versions.
        """
        ch = self._lookup(ids.clearinghouse_id())
        found = self.market_for_reading(market)
        version = ch.parameters_version if isinstance(ch, Clearinghouse) else 0
        key = (market, version, found.parameters_version)
        cached = self._parameters.get(key)
        if cached is None:
            defaults = ch.parameters if isinstance(ch, Clearinghouse) else DEFAULTS
            cached = self._parameters[key] = effective(defaults, found.overrides, version, found.parameters_version)
        return cached

    def peek_account(self, name: str) -> Account | None:
        """An account for reading only (index upkeep): not marked as touched."""
        aggregate = self._lookup(ids.account_id(name))
        return aggregate if isinstance(aggregate, Account) else None

    def risk_index(self, market: Market) -> MarketRiskIndex:
        """The market's liquidation-price index, built on first use and kept current."""
        index = self.risk.built(market)
        if index is None:
            index = MarketRiskIndex(market.market)
            for name in self.holders(market.market):
                account = self.peek_account(name)
                if account is not None:
                    index.update(account, self.markets)
            self.risk.add(index)
        self.refresh_risk()
        return index

    def refresh_risk(self) -> None:
        for name in self.risk.dirty:
            account = self.peek_account(name)
            for index in self.risk.by_market.values():
                if account is None:
                    index.remove(name)
                elif index.holds(name) or account.position(index.market).size != ZERO:
                    index.update(account, self.markets)
        self.risk.dirty.clear()

    def discard(self) -> None:
        """Forget everything (after a failed save the in-memory state is not the stored one)."""
        self.cache.forget()
        self._parameters.clear()
        self._command_touched.clear()
        self._markets_by_name.clear()
        self.batch_start_versions = {}
        self.read_versions = {}
        self.trading.clear()
        self.risk.clear()
        self.known_head = None
        forget_numbers()

    def begin_command(self) -> None:
        self._command_first_reads = set()
        self._command_touched = {}
        self._command_missed = set()
        self.sequencer = None  # liquidation ids start again at L1 for each command

    def command_events(self) -> list[Any]:
        """Pending events of every aggregate the command touched, in the order they were
        decided (``decision_order``), not aggregate by aggregate."""
        events: list[Any] = []
        for aggregate in self._command_touched.values():
            if isinstance(aggregate, Account) and aggregate.pending_events:
                self.risk.mark_dirty(aggregate.account)
            events.extend(aggregate.collect_events())
        return in_decision_order(events)

    def assert_untouched(self) -> None:
        """A rejected command must not have triggered any event (decide, then apply)."""
        for aggregate in self._command_touched.values():
            if aggregate.pending_events:
                raise InvariantViolation(f"rejected command left pending events on {type(aggregate).__name__}")

    # -- access -------------------------------------------------------------------------

    def add(self, aggregate: T) -> T:
        self.cache.remember(aggregate)
        self._touch(aggregate, version_before=0)
        return aggregate

    def account(self, name: str, field: str) -> Account:
        found = self._get(ids.account_id(name), Account)
        if found is None:
            raise NotFoundError("account_not_found", field, f"account {name} does not exist")
        return found

    def market(self, name: str, field: str = "market") -> Market:
        found = self._get(ids.market_id(name), Market)
        if found is None:
            raise NotFoundError("market_not_found", field, f"market {name} does not exist")
        self._markets_by_name[name] = found
        return found

    def market_for_reading(self, name: str) -> Market:
        """A market only read (marks and terms for margin), so not marked as touched."""
        found = self._markets_by_name.get(name)
        if found is None:
            return self.market(name)
        if found.id not in self.read_versions:  # _note_read, inlined on this hot path
            self._note_read(found.id, found.version)
        return found

    def token(self, name: str) -> AccessToken | None:
        return self._get(ids.token_id(name), AccessToken)

    def insurance_fund(self) -> InsuranceFund | None:
        return self._get(ids.insurance_fund_id(), InsuranceFund)

    def exists(self, aggregate_id: UUID) -> bool:
        return self._lookup(aggregate_id) is not None

    def _lookup(self, aggregate_id: UUID) -> Aggregate | None:
        """Cached aggregate, else loaded once; an id not in the store is remembered as absent
        (``discard`` forgets that, and a rejection's catch-up looks again)."""
        aggregate = self._aggregates.get(aggregate_id)
        if aggregate is None and (aggregate_id in self.cache.absent or (aggregate := self.cache.load(aggregate_id)) is None):
            self._command_missed.add(aggregate_id)
            self._note_read(aggregate_id, 0)
            return None
        if aggregate_id not in self.read_versions:  # the common case is a repeat read: no call
            self._note_read(aggregate_id, aggregate.version)
        return aggregate

    def _get(self, aggregate_id: UUID, kind: type[T]) -> T | None:
        aggregate = self._lookup(aggregate_id)
        if aggregate is None or not isinstance(aggregate, kind):
            return None
        self._touch(aggregate, version_before=aggregate.version)
        return aggregate

    def _touch(self, aggregate: Aggregate, version_before: int) -> None:
        self._command_touched.setdefault(aggregate.id, aggregate)
        self.batch_start_versions.setdefault(aggregate.id, version_before)

    def touched_aggregates(self) -> Iterator[tuple[Aggregate, int]]:
        for aggregate_id, version_before in self.batch_start_versions.items():
            aggregate = self._aggregates.get(aggregate_id)
            if aggregate is not None:
                yield aggregate, version_before


class MarketDirectory(Mapping[str, Market]):
    """Markets by symbol, loaded on demand (what margin arithmetic needs for marks)."""

    def __init__(self, working_set: WorkingSet) -> None:
        self._working_set = working_set

    def __getitem__(self, name: str) -> Market:
        return self._working_set.market_for_reading(name)

    def __iter__(self) -> Iterator[str]:
        raise TypeError("markets are looked up by name, not listed")

    def __len__(self) -> int:
        raise TypeError("markets are looked up by name, not counted")
