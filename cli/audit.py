"""``clearing projections status|catch-up|rebuild`` and ``clearing audit replay|digest|verify``."""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import click

from clearing.errors import ClearingError, InvariantViolation
from cli import render
from cli.context import Store, fail, pass_store

PROGRESS_MIN_EVENTS = 20_000


class Bar:
    """A progress bar on stderr for long runs (events of the log as its length)."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = total
        self.bar: Any = None
        self.done = 0

    def __enter__(self) -> Callable[[int, int], None]:
        if self.total >= PROGRESS_MIN_EVENTS:
            self.bar = click.progressbar(length=self.total, label=self.label, file=sys.stderr, show_pos=True)
            self.bar.__enter__()
        return self.update

    def update(self, reached: int, head: int) -> None:
        if self.bar is not None:
            self.bar.update(max(0, reached - self.done))
        self.done = reached

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


# -- projections ---------------------------------------------------------------------------


@click.group()
def projections() -> None:
    """Read models built from the event log (SQL tables beside the event store)."""


@projections.command("status")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@pass_store
def projections_status(store: Store, as_json: bool) -> None:
    """Each projection's position against the head of the log (does not catch up)."""
    store.existing_app  # noqa: B018
    rows = [{"name": s.name, "generation": s.generation, "position": s.position, "head": s.head, "lag": s.lag,
             "rows": s.rows, "description": s.description} for s in store.projector.status()]
    if as_json:
        click.echo(render.dumps(rows))
        return
    click.echo(render.table(("name", "generation", "position", "head", "lag", "rows", "description"),
                            [[str(r[c]) for c in ("name", "generation", "position", "head", "lag", "rows", "description")]
                             for r in rows]))


@projections.command("catch-up")
@pass_store
def projections_catch_up(store: Store) -> None:
    """Apply every event not yet projected (commands do this themselves before returning)."""
    app = store.existing_app
    head = app.recorder.max_notification_id() or 0
    started = time.perf_counter()
    with Bar("catching up", head) as progress:
        read = store.projector.catch_up(progress=progress)
    click.echo(f"{read} event(s) applied in {time.perf_counter() - started:.1f}s; projections at position {head}")


@projections.command("rebuild")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--batch", type=click.IntRange(100, 100_000), default=5000, show_default=True,
              help="Events per transaction.")
@pass_store
def projections_rebuild(store: Store, names: tuple[str, ...], batch: int) -> None:
    """Rebuild projections from event 1 into fresh tables, then switch readers over.

    Readers keep the old tables until the new ones have caught up with the head of the
    log; the switch and the drop of the old tables are one transaction. Without NAME,
    every read model (margin, insurance_fund, losses, liquidations) is rebuilt. The hash
    chain is never rebuilt.
    """
    from projections.runner import check_names, rebuild

    app = store.existing_app
    try:
        chosen = check_names(names or None, rebuildable=True)
    except ClearingError as error:
        fail(error)
    head = app.recorder.max_notification_id() or 0
    started = time.perf_counter()
    with Bar(f"rebuilding {', '.join(chosen)}", head) as progress:
        generations = rebuild(app, store.projection_store, chosen, page=batch, progress=progress)
    elapsed = time.perf_counter() - started
    rate = f", {head / elapsed:,.0f} events/s" if elapsed > 0 and head else ""
    click.echo(f"rebuilt to position {head} in {elapsed:.1f}s{rate}: "
               + ", ".join(f"{name} generation {generation}" for name, generation in generations.items()))


# -- audit ---------------------------------------------------------------------------------


@click.group()
def audit() -> None:
    """Auditor's tools: replay as of a point, digest of the log, full verification."""


@audit.command("replay")
@click.option("--until", "until", required=True, metavar="POSITION|TIME",
              help="Last log position, or an ISO-8601 business time (the log is cut before the first later event).")
@click.option("--into", "into", required=True, metavar="PATH|URL",
              help="A new SQLite file or a postgresql:// URL with ?schema= to build the projections into.")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@pass_store
def audit_replay(store: Store, until: str, into: str, names: tuple[str, ...]) -> None:
    """Rebuild projections as of --until into a separate database (the store is not touched).

    The target gets the same tables as the live projections, as they stood at that
    point (query them with any SQL client, or compare two replays); the event store
    is only read. The target appears only when complete: the replay is built in a
    staging file (.NAME.partial-PID beside it) or schema (SCHEMA__partial) and moved
    into place at the end, so a replay killed midway leaves no target and can simply
    be run again. An existing file, or a schema holding tables, is refused.
    """
    from projections.replay import ReplayTarget, replay_to, resolve_until
    from projections.runner import check_names

    app = store.existing_app
    try:
        chosen = check_names(names or None, rebuildable=True)
        position = resolve_until(app, until)
        target = ReplayTarget(into)
    except ClearingError as error:
        fail(error)
    try:
        with Bar("replaying", position) as progress:
            replay_to(app, target, position, chosen, progress=progress)
    except ClearingError as error:
        fail(error)
    click.echo(f"projections {', '.join(chosen)} as of position {position} written to {into}")


@audit.command("digest")
@pass_store
def audit_digest(store: Store) -> None:
    """Print the head of the hash chain: keep it, and later `audit verify --digest` it."""
    from clearing.audit.chain import digest

    click.echo(digest(store.existing_app.recorder).to_text())


@audit.command("verify")
@click.option("--digest", "digest_text", metavar="DIGEST", help="A digest printed earlier by `clearing audit digest`.")
@click.option("--skip", "skip", multiple=True,
              type=click.Choice(["chain", "snapshots", "projections", "invariants", "decisions"]),
              help="Leave out a check (repeatable).")
@pass_store
def audit_verify(store: Store, digest_text: str | None, skip: tuple[str, ...]) -> None:
    """Verify the ledger; exit 1 naming the first failing check and log position.

    \b
    1. chain: every event's hash recomputed from the log equals the recorded chain
       (and extends --digest unchanged);
    2. snapshots: every stored snapshot equals its aggregate rebuilt from the events
       alone up to the snapshot's version (the chain covers events, not snapshots);
    3. projections: every read model rebuilt from scratch equals the stored tables;
    4. invariants: money conserved, insurance fund never negative, flat accounts pay
       no losses, allocations sum to their loss, positions net to zero, and every
       aggregate loaded through its snapshot equals its events-only rebuild;
    5. decisions: every margin call, liquidation, penalty and fund draw re-checked from
       its recorded inputs and the replayed state; no call missed at any price.
    """
    from clearing.audit.chain import Digest

    store.existing_app  # noqa: B018
    try:
        expected = Digest.parse(digest_text) if digest_text else None
    except ClearingError as error:
        fail(error)
    if not run_verify(store, expected, skip):
        sys.exit(1)


CHECKS = ("chain", "snapshots", "projections", "invariants", "decisions")


def run_verify(store: Store, expected: Any = None, skip: tuple[str, ...] = (), workers: int | None = None) -> bool:
    """Run the checks, report them in order, one line each; False at the first failure.

    The checks are independent reads of the log, so on a file or PostgreSQL store they run
    in up to ``workers`` processes (default: one per core, at most 4) and are reported in
    order as they finish; a later check's result is not shown once an earlier one failed.
    """
    chosen = [name for name in CHECKS if name not in skip]
    digest_text = expected.to_text() if expected is not None else None
    workers = min(len(chosen), os.cpu_count() or 1, 4) if workers is None else workers
    if store.db == ":memory:" or workers <= 1 or len(chosen) <= 1:
        results = (_run_check(store, name, expected) for name in chosen)
        return _report(chosen, skip, results)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_check_in_process, store.db, name, digest_text) for name in chosen]
        try:
            return _report(chosen, skip, (future.result() for future in futures))
        finally:
            for future in futures:
                future.cancel()


def _report(chosen: list[str], skip: tuple[str, ...], results: Any) -> bool:
    for name in CHECKS:
        if name in skip:
            click.echo(f"{name:<12} skipped")
    for name, (failure, detail, elapsed) in zip(chosen, results, strict=True):
        if failure is not None:
            click.echo(f"{name:<12} FAILED {failure}")
            return False
        click.echo(f"{name:<12} ok   {detail} ({elapsed:.1f}s)")
    click.echo("verified")
    return True


def _check_in_process(db: str, name: str, digest_text: str | None) -> tuple[str | None, str, float]:
    """One check in a worker process, with its own connections to the store."""
    from clearing.audit.chain import Digest

    expected = Digest.parse(digest_text) if digest_text else None
    return _run_check(Store(db), name, expected)


def _run_check(store: Store, name: str, expected: Any) -> tuple[str | None, str, float]:
    """(failure or None, detail, seconds); a check that crashes on bad data is a failure."""
    started = time.perf_counter()
    try:
        if name == "chain":
            failure, detail = _verify_chain(store, expected)
        elif name == "snapshots":
            failure, detail = _verify_snapshots(store.app)
        elif name == "projections":
            failure, detail = _verify_projections(store)
        elif name == "invariants":
            failure, detail = _verify_invariants(store.app)
        else:
            failure, detail = _verify_decisions(store.app)
    except Exception as error:
        failure, detail = f"[check_failed] {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}", ""
    return failure, detail, time.perf_counter() - started


def _verify_chain(store: Store, expected: Any) -> tuple[str | None, str]:
    from clearing.audit.chain import verify_chain

    app = store.app
    projector = store.projector  # verify only reads: events not yet chained are reported, not chained
    projector.prepare()
    chain = projector.projections["chain"]
    with store.projection_store.engine.connect() as connection:
        broken = verify_chain(app.recorder, stored=chain.stored(connection), digest=expected)
        if broken is not None:
            return f"[{broken.code}] at position {broken.position}: {broken.message}", ""
        events, position, head = chain.head(connection)  # verified equal to the log: no second read
    return None, f"{events} events, head {head[:16]}... at position {position}"


def _verify_snapshots(app: Any) -> tuple[str | None, str]:
    from clearing.audit.snapshots import check_snapshots

    finding, summary = check_snapshots(app)
    if finding is not None:
        return str(finding), ""
    if not summary.snapshots:
        return None, "no stored snapshots (every load folds the events)"
    return None, f"{summary.describe()} equal their aggregates rebuilt from {summary.events} event(s)"


def _verify_projections(store: Store) -> tuple[str | None, str]:
    from projections.compare import first_difference
    from projections.runner import READ_MODELS, Projector
    from projections.store import ProjectionStore

    live = store.projector
    positions = {s.name: s.position for s in live.status() if s.name in READ_MODELS}
    head = store.app.recorder.max_notification_id() or 0
    if set(positions.values()) != {head}:
        behind = ", ".join(f"{name} at {position}" for name, position in positions.items() if position != head)
        return (f"[projections_behind] head is {head} but {behind}; run `clearing projections catch-up` "
                "(verify only reads)"), ""
    scratch = Projector(store.app, ProjectionStore(":memory:"), READ_MODELS)
    with Bar("rebuilding to compare", head) as progress:
        scratch.catch_up(until=head, progress=progress)
    for name in READ_MODELS:
        difference = first_difference(live, scratch, name)
        if difference is not None:
            return f"[projection_differs] {name}: {difference}", ""
    return None, f"{len(READ_MODELS)} projections rebuilt to position {head} equal the stored tables"


def _verify_invariants(app: Any) -> tuple[str | None, str]:
    from clearing.audit.invariants import check_ledger

    try:
        fold = check_ledger(app)
    except InvariantViolation as violation:
        return f"[invariant_violated] {violation}", ""
    from clearing.money import fmt

    return None, (f"money conserved (deposits {fmt(fold.deposits)} - withdrawals {fmt(fold.withdrawals)} + "
                  f"contributions {fmt(fold.contributions)}), fund {fmt(fold.insurance_fund)} never negative, "
                  f"{fold.loaded_through_snapshots} aggregate(s) loaded through snapshots equal their events")


def _verify_decisions(app: Any) -> tuple[str | None, str]:
    from clearing.audit.decisions import audit_log

    findings = audit_log(app)
    if findings:
        first = findings[0]
        return f"[{first.check}] at position {first.position}: {first.message}", ""
    return None, "every margin call, liquidation, penalty and fund draw re-checked"


#: The top-level commands and groups this module adds to ``clearing`` (``cli.main``).
COMMANDS = (projections, audit)
