"""``audit verify`` as a service: every check fed by one read and one decode of the log.

The checks, in the order they are reported:

1. ``chain``: every event's hash recomputed from the stored bytes equals the recorded chain
   (and extends the digest given, unchanged);
2. ``commands``: the command index holds exactly the answers the log gives
   (``clearing.audit.command_check``);
3. ``snapshots``: every stored snapshot equals its aggregate rebuilt from the events alone;
4. ``projections``: every read model rebuilt from event 1 equals the stored tables;
5. ``invariants``: money conserved, fund never negative, every account solvent at the end
   of every command, ... (``clearing.audit.invariants``);
6. ``decisions``: every risk decision re-checked from its recorded inputs.

Each check is a ``clearing.audit.log.Consumer``; ``clearing.audit.log.run`` reads the log
once, up to the head at the start, and feeds every page to every check, so a log of N
events is decoded N times, not once per check. The result is data (``Verification``); the
command line prints it.

This is the one place in ``clearing`` that reads the read side (``projections``): the
projections check audits it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from clearing.audit.chain import ChainCheck, Digest
from clearing.audit.command_check import CommandIndexCheck
from clearing.audit.decisions import DecisionCheck
from clearing.audit.invariants import InvariantCheck
from clearing.audit.log import CheckFailed, Consumer, run
from clearing.audit.snapshots import SnapshotCheck

CHECKS = ("chain", "commands", "snapshots", "projections", "invariants", "decisions")
VERIFY_PAGE = 25_000  # events per page of the one read: the projection rebuild commits once a page
#: How the checks split over two processes on a machine with two cores or more, each
#: process with its own single read of the log. Measured on the 1,043,635-event bench log
#: in one process (seconds, 2026-12-03): the read 31, chain 7, snapshots 1, projections 41,
#: invariants 23, decisions 39; so the projections and the chain (79 with their read) beside
#: the other three (94).
GROUPS = (("snapshots", "invariants", "decisions"), ("chain", "commands", "projections"))


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: ``failure`` is the line after ``FAILED``, else None."""

    name: str
    failure: str | None
    detail: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass
class Verification:
    """Every chosen check's result in report order, the skipped ones, and the read itself."""

    results: list[CheckResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    read: CheckResult | None = None
    head: int = 0

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.results)

    @classmethod
    def merged(cls, parts: list[Verification], skip: tuple[str, ...]) -> Verification:
        """The results of groups run apart (``GROUPS``), in report order; the longest read."""
        by_name = {result.name: result for part in parts for result in part.results}
        reads = [part.read for part in parts if part.read is not None]
        read = max(reads, key=lambda r: r.seconds) if reads else None
        return cls(results=[by_name[name] for name in CHECKS if name in by_name],
                   skipped=[name for name in CHECKS if name in skip], read=read,
                   head=max((part.head for part in parts), default=0))

    def reported(self) -> Iterator[CheckResult]:
        """The results up to and including the first failure (what ``audit verify`` prints)."""
        for result in self.results:
            yield result
            if not result.ok:
                return


def verify(app: Any, projector: Any, *, digest: Digest | None = None, skip: tuple[str, ...] = (),
           page: int = VERIFY_PAGE, progress: Callable[[int], None] | None = None) -> Verification:
    """Run the checks not in ``skip`` over one read of ``app``'s log.

    ``projector`` is the store's live projector (``projections.runner.Projector``): the chain
    check compares the log with its recorded chain, the projections check with its tables.
    """
    chosen = [name for name in CHECKS if name not in skip]
    outcome = Verification(skipped=[name for name in CHECKS if name in skip])
    outcome.head = head = app.recorder.max_notification_id() or 0
    with ExitStack() as stack:
        consumers: list[Consumer] = []
        refused: dict[str, str] = {}
        for name in chosen:
            try:
                consumers.append(_check(name, app, projector, digest, head, stack))
            except CheckFailed as refusal:
                refused[name] = str(refusal)
        results = run(app, consumers, page=page, progress=progress, stop=head)
    for name in chosen:
        if name in refused:
            outcome.results.append(CheckResult(name, refused[name], "", 0.0))
        else:
            outcome.results.append(CheckResult(name, *results[name]))
    outcome.read = CheckResult("read", *results["read"])
    return outcome


def _check(name: str, app: Any, projector: Any, digest: Digest | None, head: int, stack: ExitStack) -> Consumer:
    if name == "chain":
        projector.prepare()  # verify only reads: events not yet chained are reported, not chained
        if "chain" in projector.missing:
            raise CheckFailed("[event_unchained] the hash chain has not been built in this store: run "
                              "`clearing projections catch-up` (verify only reads)")
        connection = stack.enter_context(projector.store.engine.connect())
        return ChainCheck(projector.projections["chain"].stored(connection), digest)
    if name == "commands":
        return CommandIndexCheck(app)
    if name == "snapshots":
        return SnapshotCheck(app)
    if name == "projections":
        from projections.compare import ProjectionCheck  # the check that audits the read side

        return ProjectionCheck(projector, head)
    if name == "invariants":
        return InvariantCheck(app)
    return DecisionCheck()
