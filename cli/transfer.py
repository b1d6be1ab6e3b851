"""``clearing export`` and ``clearing import``: the event log as a verifiable JSON Lines file.

    clearing --db ledger.db export --output log.jsonl     every event, with its chain hash
    clearing --db postgresql://...  import log.jsonl      verify the whole file, then load it

Export prints the log's digest on standard error (standard output may be the file).
Import prints the store's digest when done; a file whose chain does not verify, or a
store that holds anything but a prefix of the file, is refused with exit status 1 and
nothing written. An interrupted import is continued by running it again.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import click
from eventsourcing.persistence import PersistenceError

from clearing.errors import ClearingError
from clearing.transfer import BATCH, export_log, import_log
from cli.context import PROGRESS_SECONDS, Store, echo_result, fail, json_option, pass_store
from cli.failures import STORE, Failure, first_line


@click.command("export")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (replaced only once the export is complete). [default: standard output]")
@click.option("--format", "file_format", type=click.Choice(["jsonl"]), default="jsonl", show_default=True,
              help="File format: JSON Lines, a header, one line per event with its chain hash, a trailer.")
@json_option("The closing summary (events, digest) as a JSON object, on standard error like the text one.")
@pass_store
def export_command(store: Store, output: Path | None, file_format: str, as_json: bool) -> None:
    """Write the whole event log, verifiably, to --output or standard output.

    The file starts with a header, has one line per event (position, aggregate id and
    version, topic, the stored state, and its sha256-v1 chain hash) and ends with a
    trailer (event count, chain head, last position). The same log always gives the same
    bytes. The digest printed at the end (on standard error) is the one `clearing import`
    prints for a faithful copy.
    """
    app = store.existing_app
    try:
        with _output(output) as out:
            digest = export_log(app.recorder, out, progress=_reporter("exported"))
    except ClearingError as error:
        fail(error)
    except PersistenceError as error:
        raise Failure("store_failed", f"the event store failed: {first_line(error)}", STORE) from None
    echo_result(as_json, {"exported": digest.events, "digest": digest.to_text(), "output": str(output) if output else None},
                f"exported {digest.events} events; digest {digest.to_text()}", err=True)


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=BATCH, show_default=True,
              help="Events written per transaction.")
@json_option("JSON: the store's digest and its parts once the import is done.")
@pass_store
def import_command(store: Store, file: Path, batch_size: int, as_json: bool) -> None:
    """Load an exported event log FILE into the store, after verifying all of it.

    Every line's chain hash is recomputed and the trailer checked before anything is
    written. The store must be empty, or hold exactly the first events of FILE (an
    interrupted import), which is then continued. Prints the store's digest.
    """
    app = store.app
    try:
        digest = import_log(app, file, progress=_stage_reporter(), batch=batch_size)
    except ClearingError as error:
        fail(error)
    except PersistenceError as error:
        raise Failure("store_failed", f"the event store failed: {first_line(error)}; the batches "
                      "already committed stay: run the same import again to continue", STORE) from None
    store.catch_up()  # the imported events are projected (and chained) before the command returns
    echo_result(as_json, {"digest": digest.to_text(), "position": digest.position, "events": digest.events,
                          "head": digest.head}, digest.to_text())


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    """Standard output, or a file written beside ``path`` and renamed over it when complete."""
    if path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("w", encoding="utf-8", newline="\n") as out:
            yield out
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _reporter(verb: str) -> Callable[[int], None] | None:
    """Progress on standard error every few seconds, when it is a terminal."""
    if not sys.stderr.isatty():
        return None
    started = last = time.monotonic()

    def report(count: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= PROGRESS_SECONDS:
            click.echo(f"... {verb} {count} events ({count / (now - started):.0f}/s)", err=True)
            last = now

    return report


def _stage_reporter() -> Callable[[str, int], None] | None:
    """``_reporter`` for import's two passes ("verified", then "imported")."""
    reporters: dict[str, Callable[[int], None] | None] = {}

    def report(stage: str, count: int) -> None:
        reporter = reporters.setdefault(stage, _reporter(stage))
        if reporter is not None:
            reporter(count)

    return report if sys.stderr.isatty() else None


#: The top-level commands and groups this module adds to ``clearing`` (``cli.main``).
COMMANDS = (export_command, import_command)
