"""``clearing report NAME --date D``: regulator reports from the projection tables.

Every input is checked before the store is opened; a bad one prints one line
``error: [code] field: message`` on standard error and exits 1 with nothing written.
``--output`` writes a temporary file in the target's directory and renames it over the
target, so a reader never sees half a report.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import click

from clearing.errors import ClearingError, InputError
from cli.context import CodedChoice, Store, fail, pass_store
from projections.reports.registry import REPORT_NAMES, build_report, check_report_name, check_request
from projections.reports.rendering import provenance, render
from projections.reports.shocks import DEFAULT_SHOCKS, signed


def check_output(path: str) -> Path:
    """The output file's path, refusing a directory or a missing parent directory."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise InputError("invalid_output", "output", f"{path} is a directory")
    if not target.resolve().parent.is_dir():
        raise InputError("invalid_output", "output", f"directory {target.resolve().parent} does not exist")
    return target


def file_mode() -> int:
    """The mode a new file gets from this process's umask (0o644 under the usual 022), as
    ``open`` would give it: a temporary file made private by ``mkstemp`` gets it before
    it is renamed into place, so every file the CLI writes honours the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(target: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``target``, fsync it, then rename it over ``target``."""
    try:
        handle, temporary = tempfile.mkstemp(dir=target.resolve().parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as error:
        raise InputError("invalid_output", "output", f"cannot write in {target.resolve().parent}: {error.strerror}") from None
    try:
        os.fchmod(handle, file_mode())
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise InputError("invalid_output", "output", f"cannot write {target}: {error.strerror}") from None
        raise


_SHOCKS = ",".join(signed(shock) for shock in DEFAULT_SHOCKS)


@click.command("report")
@click.argument("name", metavar="NAME", type=CodedChoice(lambda: REPORT_NAMES, check_report_name))
@click.option("--date", "day", required=True, metavar="YYYY-MM-DD",
              help="Business day (UTC date) the report is for. A day not yet closed gives a provisional report.")
@click.option("--format", "output_format", type=click.Choice(["csv", "json"]), default="csv", show_default=True,
              help="csv: a header row of the column names, then rows. json: report, date, as_of_position, "
                   "provisional, columns, rows and totals; every decimal is a string.")
@click.option("--json", "as_json", is_flag=True, help="The same as --format json (the flag every command takes).")
@click.option("--output", metavar="FILE", default=None,
              help="Write the report to FILE (atomically: a temporary file renamed over FILE) instead of stdout.")
@click.option("--prices", metavar="FILE", default=None,
              help="stress/disclosures: add the worst fall and the worst rise of this price history (CSV with a "
                   "close or price column; grouped by a window column when present) as two more scenarios.")
@click.option("--shock", metavar="LIST", default=None,
              help=f"stress/disclosures: comma-separated relative shocks applied to every mark, each -1 < shock <= 10, "
                   f"replacing the default {_SHOCKS}.")
@pass_store
def report(store: Store, name: str, day: str, output_format: str, as_json: bool, output: str | None,
           prices: str | None, shock: str | None) -> None:
    """Build regulator report NAME for business day --date from the projection tables.

    \b
    NAME is one of:
      daily-margin      per account: IM, MM, collateral, equity, VM, cash flows, calls
      positions         end-of-day positions; open interest and volume per market
      insurance-fund    opening and closing balance, every movement of the day
      liquidations      the liquidation register of the day
      loss-allocations  deficits and socialized / deleveraging shares of the day
      disclosures       CPMI-IOSCO PQD items 4.1, 4.4, 6.1, 6.2, 6.6-6.8
      stress            mark shocks: liquidations, losses, fund use, cover-1/cover-2

    Columns, units and regulatory anchors are in `clearing docs reports`. The same event
    log always gives byte-identical output. A day not yet closed is computed live
    and marked provisional; a day outside the log is refused (date_outside_log).
    Provenance (log position, hash-chain head, closed or provisional): inside a JSON
    report; beside an --output file as FILE.meta.json (with the file's sha256); for CSV
    on standard output, a note on standard error. stress works on a copy of the state and writes nothing.
    Bad input prints one line "error: [code] field: message" and exits 1.
    """
    if as_json:
        output_format = "json"
    try:
        request = check_request(name, day, shock, prices)
        target = check_output(output) if output is not None else None
    except ClearingError as error:
        fail(error)
    views = store.views
    try:
        built = build_report(views, request)
        data = render(built, output_format).encode("utf-8")
        meta = provenance(built, output_format, data)
        if target is None:
            click.echo(data, nl=False)
            if output_format == "csv":  # JSON carries its provenance inside
                click.echo(f"provenance: {_provenance_line(meta)}", err=True)
            return
        sidecar = target.with_name(target.name + ".meta.json")
        write_atomic(sidecar, (json.dumps(meta, sort_keys=True, indent=2) + "\n").encode("utf-8"))
        write_atomic(target, data)
    except ClearingError as error:
        fail(error)
    click.echo(f"wrote {name} {day} ({output_format}) to {target}: {_provenance_line(meta)}; provenance in {sidecar.name}",
               err=True)


def _provenance_line(meta: dict[str, object]) -> str:
    """``log position 120, chain head 3fa2..., day closed``: where a report came from."""
    state = "provisional (day not closed)" if meta["provisional"] else "day closed"
    return f"{meta['report']} {meta['date']} from log position {meta['as_of_position']}, chain head {meta['chain_hash']}, {state}"


#: The top-level commands and groups this module adds to ``clearing`` (``cli.main``).
COMMANDS = (report,)
