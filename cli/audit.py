"""``clearing projections status|catch-up|rebuild`` and ``clearing audit replay|digest|verify``."""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from typing import Any

import click

from clearing.errors import ClearingError
from cli import render
from cli.context import CodedChoice, Store, echo_result, fail, json_option, pass_store
from cli.failures import STORE, VERIFY_FAILED, Failure, first_line

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
    rows = [{"name": s.name, "generation": s.generation, "position": s.position, "head": s.head, "lag": s.lag,
             "rows": s.rows, "description": s.description} for s in store.reading_projector.status()]
    if as_json:
        click.echo(render.dumps(rows))
        return
    click.echo(render.table(("name", "generation", "position", "head", "lag", "rows", "description"),
                            [[str(r[c]) for c in ("name", "generation", "position", "head", "lag", "rows", "description")]
                             for r in rows]))


@projections.command("catch-up")
@json_option()
@pass_store
def projections_catch_up(store: Store, as_json: bool) -> None:
    """Apply every event not yet projected, then return (what `projections follow` does continuously)."""
    store.require_existing()
    app = store.app
    head = app.recorder.max_notification_id() or 0
    started = time.perf_counter()
    with Bar("catching up", head) as progress:
        read = store.projector.catch_up(progress=progress)
    seconds = time.perf_counter() - started
    echo_result(as_json, {"applied": read, "position": head, "seconds": round(seconds, 3)},
                f"{read} event(s) applied in {seconds:.1f}s; projections at position {head}")


@projections.command("follow")
@click.option("--interval", type=click.FloatRange(0.01, 60), default=0.2, show_default=True,
              help="Seconds between two looks at the head when there is nothing to apply.")
@click.option("--max-idle", type=click.FloatRange(0, None), default=None,
              help="Stop after this many seconds with nothing new to apply. [default: run until stopped]")
@click.option("--report-every", type=click.FloatRange(0.1, None), default=10.0, show_default=True,
              help="Seconds between two progress lines on stderr.")
@json_option("Progress lines (stderr) and the closing line (stdout) as JSON objects.")
@pass_store
def projections_follow(store: Store, interval: float, max_idle: float | None, report_every: float,
                       as_json: bool) -> None:
    """Keep every projection current: follow the log until stopped (Ctrl-C or SIGTERM).

    Posting returns after its commit and leaves the projections to this runner (or to
    `projections catch-up`, or to `post --sync`). Each page of new events is applied with
    its tracking records in one transaction, so the follower can be killed at any moment
    and restarted: it resumes where the projections are, applying every event exactly
    once. One follower runs per store; a second one is refused (follower_running).
    """
    import signal

    from projections.follow import Follower, Progress, follower_lock

    store.require_existing()
    follower = Follower(store.projector, interval=interval, max_idle=max_idle)

    def report(progress: Progress) -> None:
        echo_result(as_json, {"position": progress.position, "head": progress.head, "lag": progress.lag,
                              "applied": progress.applied, "rate": round(progress.rate, 1)},
                    f"follow: position {progress.position}, head {progress.head}, lag {progress.lag}, "
                    f"{progress.applied} event(s) applied ({progress.rate:.0f}/s)", err=True)

    try:
        with follower_lock(store.projection_store):
            for signal_number in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signal_number, lambda *_: follower.stop())
            start = follower.begin()
            click.echo(f"following {store.db} from position {start} (head {follower.head})", err=True)
            done = follower.run(report, report_every)
    except ClearingError as error:
        fail(error, 3)
    echo_result(as_json, {"stopped": True, "position": done.position, "head": done.head, "lag": done.lag,
                          "applied": done.applied, "seconds": round(done.seconds, 3)},
                f"stopped at position {done.position} (head {done.head}, lag {done.lag}): "
                f"{done.applied} event(s) applied in {done.seconds:.1f}s")


def _read_models() -> tuple[str, ...]:
    from projections.runner import READ_MODELS

    return READ_MODELS


def _check_read_model(name: str) -> object:
    from projections.runner import check_names

    return check_names([name], rebuildable=True)


READ_MODEL = CodedChoice(_read_models, _check_read_model)


def _projections() -> tuple[str, ...]:
    from projections.runner import BY_NAME

    return tuple(BY_NAME)


def _check_projection(name: str) -> object:
    from projections.runner import check_names

    return check_names([name])


PROJECTION = CodedChoice(_projections, _check_projection)


@projections.command("rebuild")
@click.argument("names", nargs=-1, type=READ_MODEL)
@click.option("--batch", type=click.IntRange(100, 100_000), default=5000, show_default=True,
              help="Events per transaction.")
@json_option()
@pass_store
def projections_rebuild(store: Store, names: tuple[str, ...], batch: int, as_json: bool) -> None:
    """Rebuild projections from event 1 into fresh tables, then switch readers over.

    Readers keep the old tables until the new ones have caught up with the head of the
    log; the switch and the drop of the old tables are one transaction. Without NAME,
    every read model (margin, insurance_fund, losses, liquidations) is rebuilt. The hash
    chain is never rebuilt.
    """
    from projections.runner import check_names, rebuild

    store.require_existing()
    app = store.app
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
    echo_result(as_json, {"position": head, "seconds": round(elapsed, 3), "generations": generations},
                f"rebuilt to position {head} in {elapsed:.1f}s{rate}: "
                + ", ".join(f"{name} generation {generation}" for name, generation in generations.items()))


# -- audit ---------------------------------------------------------------------------------


class _AuditGroup(click.Group):
    """``audit``, which also holds ``export`` and ``import`` (defined in ``cli.transfer``,
    imported only when one of them is used or listed): an auditor's tools in one place."""

    MOVED = ("export", "import")

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.MOVED})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.MOVED and cmd_name not in self.commands:
            from cli.transfer import COMMANDS as TRANSFER

            for command in TRANSFER:
                self.add_command(command)
        return self.commands.get(cmd_name)


@click.group(cls=_AuditGroup)
def audit() -> None:
    """Auditor's tools: replay as of a point, digest of the log, full verification."""


@audit.command("replay")
@click.option("--until", "until", required=True, metavar="POSITION|TIME",
              help="Last log position, or an ISO-8601 business time (the log is cut before the first later event).")
@click.option("--into", "into", required=True, metavar="PATH|URL",
              help="A new SQLite file or a postgresql:// URL with ?schema= to build the projections into.")
@click.argument("names", nargs=-1, type=PROJECTION)
@json_option()
@pass_store
def audit_replay(store: Store, until: str, into: str, names: tuple[str, ...], as_json: bool) -> None:
    """Rebuild projections as of --until into a separate database (the store is not touched).

    The target gets the same tables as the live projections, as they stood at that
    point (query them with any SQL client, or compare two replays); the event store
    is only read. The target appears only when complete: the replay is built in a
    staging file (.NAME.partial-PID beside it) or schema (SCHEMA__partial) and moved
    into place at the end, so a replay killed midway leaves no target and can simply
    be run again. An existing file, or a schema holding tables, is refused.

    NAMES default to every projection, the hash chain included: a report built from
    the target then carries the same provenance (log position and chain hash) as one
    built from the live store.
    """
    from projections.replay import ReplayTarget, replay_to, resolve_until
    from projections.runner import check_names

    app = store.existing_app
    try:
        chosen = check_names(names or None)
        position = resolve_until(app, until)
        target = ReplayTarget(into)
    except ClearingError as error:
        fail(error)
    try:
        with Bar("replaying", position) as progress:
            replay_to(app, target, position, chosen, progress=progress)
    except ClearingError as error:
        fail(error)
    from cli.failures import redact

    echo_result(as_json, {"projections": list(chosen), "position": position, "into": redact(into)},
                f"projections {', '.join(chosen)} as of position {position} written to {redact(into)}")


@audit.command("digest")
@json_option("JSON: the digest and its parts (scheme, position, events, head).")
@pass_store
def audit_digest(store: Store, as_json: bool) -> None:
    """Print the head of the hash chain: keep it, and later `audit verify --digest` it."""
    from clearing.audit.chain import digest

    found = digest(store.existing_app.recorder)
    echo_result(as_json, _digest_document(found), found.to_text())


def _digest_document(found: Any) -> dict[str, Any]:
    return {"digest": found.to_text(), "scheme": found.scheme, "position": found.position, "events": found.events,
            "head": found.head}


@audit.command("combine")
@click.argument("partitions", nargs=-1, required=True, metavar="NAME=STORE...")
@click.option("--expect", metavar="DIGEST", help="A combined digest kept earlier: exit 4 unless it is this one.")
@json_option("JSON: each partition's digest and the combined digest.")
def audit_combine(partitions: tuple[str, ...], expect: str | None, as_json: bool) -> None:
    """One digest over the stores of a partitioned ledger (ADR 24).

    Each NAME=STORE is a partition's name and its store (an SQLite file or a PostgreSQL
    URL). Prints each partition's digest and then the combined digest, which commits to
    every partition's chain head: keep it, and verify each partition with
    `clearing --db STORE audit verify --digest ...`.
    """
    from clearing.audit.chain import digest
    from clearing.audit.partitions import combined_digest

    digests = {}
    for item in partitions:
        name, separator, db = item.partition("=")
        if not separator or not db:
            raise click.UsageError(f"{item!r}: give each partition as NAME=STORE")
        if name in digests:
            raise click.UsageError(f"partition {name!r} is named twice")
        store = Store(db)
        try:
            digests[name] = digest(store.existing_app.recorder)
        finally:
            store.close()
    try:
        combined = combined_digest(digests)
    except ClearingError as error:
        fail(error)
    if as_json:
        click.echo(render.dumps({"partitions": {name: _digest_document(digests[name]) for name in sorted(digests)},
                                 "combined": combined}))
    else:
        for name in sorted(digests):
            click.echo(f"{name} {digests[name].to_text()}")
        click.echo(combined)
    if expect is not None and expect.strip() != combined:
        raise Failure("digest_mismatch", f"the combined digest is {combined}, not the one expected", VERIFY_FAILED)


@audit.command("verify")
@click.option("--digest", "digest_text", metavar="DIGEST", help="A digest printed earlier by `clearing audit digest`.")
@click.option("--skip", "skip", multiple=True,
              type=click.Choice(["chain", "commands", "snapshots", "projections", "invariants", "decisions"]),
              help="Leave out a check (repeatable).")
@click.option("--record", is_flag=True,
              help="Record the result (time, head, chain hash, each check) in the store's audit_verifications table, "
                   "which `clearing serve` shows at /api/v1/audit/verification; needs write access to the store.")
@json_option("One JSON document: each check's result (ok, detail, seconds, failure), the skipped ones, verified.")
@pass_store
def audit_verify(store: Store, digest_text: str | None, skip: tuple[str, ...], record: bool, as_json: bool) -> None:
    """Verify the ledger; exit 1 naming the first failing check and log position.

    \b
    1. chain: every event's hash recomputed from the log equals the recorded chain
       (and extends --digest unchanged);
    2. commands: the command index (the answers re-posted ids get) holds exactly what
       the log's trades and command records say, and nothing else;
    3. snapshots: every stored snapshot equals its aggregate rebuilt from the events
       alone up to the snapshot's version (the chain covers events, not snapshots);
    4. projections: every read model rebuilt from scratch equals the stored tables;
    5. invariants: money conserved, insurance fund never negative, flat accounts pay
       no losses, allocations sum to their loss, positions net to zero, and every
       aggregate loaded through its snapshot equals its events-only rebuild;
    6. decisions: every margin call, liquidation, penalty and fund draw re-checked from
       its recorded inputs and the replayed state; no call missed at any price.
    """
    from clearing.audit.chain import Digest

    store.existing_app  # noqa: B018
    try:
        expected = Digest.parse(digest_text) if digest_text else None
    except ClearingError as error:
        fail(error)
    started = datetime.now(UTC)
    recorded: list[Any] = []
    verified = run_verify(store, expected, skip, as_json=as_json, on_outcome=recorded.append if record else None)
    if record:
        _record(store, recorded[0], started)
    if not verified:
        sys.exit(VERIFY_FAILED)


def _record(store: Store, outcome: Any, started: datetime) -> None:
    """Append the verification to ``audit_verifications`` (``projections.verifications``)."""
    from clearing.audit.chain import digest
    from projections.verifications import record

    try:
        found = digest(store.existing_app.recorder)
        chain_hash = found.head if found.position == outcome.head else None
    except ClearingError:
        chain_hash = None
    failed = next((result for result in outcome.results if not result.ok), None)
    checks = _check_rows(outcome)
    try:
        record(store.projection_store.engine, {
            "started_at": started.isoformat(timespec="seconds"), "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "head": outcome.head, "chain_hash": chain_hash, "verified": failed is None and not outcome.skipped,
            "failure": None if failed is None else f"{failed.name}: {failed.failure}", "checks": checks})
    except Exception as error:  # a read-only store: the verification stands, its record could not be written
        raise Failure("store_read_only", f"the verification ran but could not be recorded: {first_line(error)}",
                      STORE) from None
    click.echo(f"recorded the verification of head {outcome.head} in audit_verifications", err=True)


def run_verify(store: Store, expected: Any = None, skip: tuple[str, ...] = (), workers: int | None = None,
               as_json: bool = False, on_outcome: Callable[[Any], None] | None = None) -> bool:
    """Run ``clearing.audit.verify`` and print its report, one line a check; False on a failure.

    On a file or PostgreSQL store and a machine with two cores or more, the checks run in the
    two groups of ``GROUPS``, one process each, each process reading the log once; else all
    in this process over one read. Every line up to the first failure is printed, in check
    order; the checks after a failure are not shown.
    """
    from clearing.audit.verify import CHECKS, GROUPS, Verification, verify

    workers = (2 if (os.cpu_count() or 1) >= 2 else 1) if workers is None else workers
    head = store.existing_app.recorder.max_notification_id() or 0
    groups = [tuple(name for name in CHECKS if name not in group or name in skip) for group in GROUPS]
    groups = [others for others in groups if len(others) < len(CHECKS)]  # groups with a check left to run
    if workers > 1 and len(groups) > 1 and store.db != ":memory:":
        digest_text = expected.to_text() if expected is not None else None
        with ProcessPoolExecutor(max_workers=len(groups), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_verify_group, store.db, digest_text, others, index == 0)
                       for index, others in enumerate(groups)]
            outcome = Verification.merged([future.result() for future in futures], skip)
        reads = f"{len(groups)} processes, each reading the log once"
    else:
        with Bar("verifying", head) as progress:
            outcome = verify(store.existing_app, store.reading_projector, digest=expected, skip=skip,
                             progress=lambda done: progress(done, head))
        reads = "read once for every check"
    if on_outcome is not None:
        on_outcome(outcome)
    if as_json:
        return _verify_document(outcome, reads)
    for name in outcome.skipped:
        click.echo(f"{name:<12} skipped")
    for result in outcome.reported():
        if not result.ok:
            click.echo(f"{result.name:<12} FAILED {result.failure}")
            return False
        click.echo(f"{result.name:<12} ok   {result.detail} ({result.seconds:.1f}s)")
    if outcome.read is not None:
        click.echo(f"{'log':<12} {reads}: {outcome.read.detail} ({outcome.read.seconds:.1f}s)")
    click.echo("verified")
    return True


def _verify_document(outcome: Any, reads: str) -> bool:
    """``audit verify --json``: the checks up to the first failure, as one document."""
    checks = _check_rows(outcome)
    verified = all(check["ok"] for check in checks)
    read = outcome.read
    click.echo(render.dumps({"verified": verified, "head": outcome.head, "checks": checks, "skipped": list(outcome.skipped),
                             "log": None if read is None else {"reads": reads, "detail": read.detail,
                                                               "seconds": round(read.seconds, 3)}}))
    return verified


def _check_rows(outcome: Any) -> list[dict[str, Any]]:
    """Each check reported (up to the first failure) as ``--json`` and ``--record`` give it."""
    return [{"name": r.name, "ok": r.ok, "detail": r.detail, "failure": r.failure, "seconds": round(r.seconds, 3)}
            for r in outcome.reported()]


def _verify_group(db: str, digest_text: str | None, skip: tuple[str, ...], show_progress: bool) -> Any:
    """One group of checks in a worker process, with its own connections and its own read."""
    from clearing.audit.chain import Digest
    from clearing.audit.verify import verify
    from clearing.runtime import tune_collector_for_batches

    tune_collector_for_batches()  # a spawned process starts with the defaults again
    store = Store(db)
    expected = Digest.parse(digest_text) if digest_text else None
    head = store.existing_app.recorder.max_notification_id() or 0
    with Bar("verifying", head if show_progress else 0) as progress:
        return verify(store.existing_app, store.reading_projector, digest=expected, skip=skip,
                      progress=lambda done: progress(done, head))


#: The top-level commands and groups this module adds to ``clearing`` (``cli.main``).
COMMANDS = (projections, audit)
