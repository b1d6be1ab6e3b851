"""The aggregates a process keeps in memory between batches, and the ids it knows are absent.

An aggregate is loaded once through the library's repository (its latest snapshot and the
events after it) and kept, so posting a stream never reads an aggregate's events twice.
What the cache holds may fall behind the store when another process writes:

* **shared** aggregates (markets, the insurance fund, the clearinghouse), which every batch
  reads without necessarily writing, are caught up from the store at the start of each
  batch (``catch_up_shared``);
* an account we write is never stale unnoticed: the store refuses a write from an old
  version, and the whole cache is then dropped (``forget``);
* an id looked up and not found is remembered as **absent** (a negative cache), so a batch
  that trades with no clearinghouse yet does not ask the store for it on every trade; a
  rejection's catch-up asks again (``recheck``).

The cache is dropped when it grows past ``MAX_AGGREGATES`` (ids held and absent together).
Example: posting 20,000 trades among 1,000 accounts loads each account once and the market
once, then reads only the market's new events (none, unless another process wrote) at each
batch.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate

from clearing.domain.clearinghouse import Clearinghouse
from clearing.domain.insurance import InsuranceFund
from clearing.domain.market import Market

MAX_AGGREGATES = 1_000_000
SHARED = (Market, InsuranceFund, Clearinghouse)


class AggregateCache:
    """Aggregates by id (loaded, created or absent), over an application's repository."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self.aggregates: dict[UUID, Aggregate] = {}
        self.absent: set[UUID] = set()
        self._shared: dict[UUID, Aggregate] = {}

    def load(self, aggregate_id: UUID) -> Aggregate | None:
        """The aggregate from the store (and keep it), or None (and remember it as absent)."""
        try:
            aggregate: Aggregate = self._app.repository.get(aggregate_id)
        except AggregateNotFoundError:
            self.absent.add(aggregate_id)
            return None
        self.remember(aggregate)
        return aggregate

    def remember(self, aggregate: Aggregate) -> None:
        """Keep an aggregate loaded or created here."""
        self.aggregates[aggregate.id] = aggregate
        self.absent.discard(aggregate.id)
        if isinstance(aggregate, SHARED):
            self._shared[aggregate.id] = aggregate

    def catch_up(self, aggregate: Aggregate) -> bool:
        """Apply events another process stored after our copy; True if there were any."""
        newer = list(self._app.events.get(aggregate.id, gt=aggregate.version))
        for event in newer:
            assert isinstance(event, Aggregate.Event)  # the store returns our aggregates' events
            event.mutate(aggregate)
        return bool(newer)

    def catch_up_shared(self) -> list[Aggregate]:
        """Bring every shared aggregate up to the store (the start of a batch); returns
        those that moved."""
        return [aggregate for aggregate in list(self._shared.values()) if self.catch_up(aggregate)]

    def recheck(self, aggregate_id: UUID) -> bool:
        """Whether an id remembered as absent is in the store now (then it is no longer absent)."""
        if aggregate_id in self._app.repository:
            self.absent.discard(aggregate_id)
            return True
        return False

    def drop(self, aggregate_id: UUID) -> None:
        """Forget one aggregate another process changed (it is loaded again when next used)."""
        self.aggregates.pop(aggregate_id, None)
        self._shared.pop(aggregate_id, None)

    @property
    def too_large(self) -> bool:
        return len(self.aggregates) + len(self.absent) > MAX_AGGREGATES

    def forget(self) -> None:
        """Drop everything (after a failed save, or when another process wrote)."""
        self.aggregates.clear()
        self._shared.clear()
        self.absent.clear()
