"""``clearing``: the operator's command line.

    clearing post commands.jsonl          post a JSON Lines stream (or - for stdin)
    clearing deposit alice 1000           one command, built exactly as post builds it
    clearing account show alice --json    margin state of an account
    clearing events --from 100            the event log

The store is chosen by ``--db`` or ``CLEARING_DB``: a file path (SQLite, created on first
use) or a ``postgresql://`` URL. Exit status: the table of ``cli.failures`` (0 done, 1 a
command rejected, 2 usage, 3 store unusable, 4 verification failed, 5 retries exhausted,
70 a bug, 130 interrupted).
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from typing import TextIO

import click
from click.utils import make_default_short_help

from clearing.errors import ClearingError
from clearing.runtime import tune_collector_for_batches
from clearing.settings import DEFAULT_BATCH_SIZE, DEFAULT_DB, ENV_VAR, MAX_BATCH_SIZE, OPERATOR_VAR, resolve_db, resolve_operator
from cli import render
from cli.context import PROGRESS_SECONDS, Store, escape_unencodable_output, pass_store
from cli.failures import DEBUG_VAR, RETRIES_EXHAUSTED, STORE, Failure, failure_of, first_line

#: Every command and group defined outside this module: its module (which lists it in
#: ``COMMANDS``) and its one-line help as ``clearing --help`` shows it. A module is imported
#: only when one of its commands runs or shows its own help, so ``clearing --help``,
#: ``--version`` and a single command load only what they use (ADR 21).
#: ``tests/unit/test_cli_index.py`` keeps this table equal to the commands themselves.
INDEX: dict[str, tuple[str, str]] = {
    "account": ("cli.queries", "Query accounts."),
    "adl": ("cli.adl", "Auto-deleveraging and loss-allocation standings."),
    "approve": ("cli.commands", "Record OFFICER's approval of one exact change; post it as OFFICER (--as OFFICER)."),
    "audit": ("cli.audit", "Auditor's tools: replay as of a point, digest of the log, full verification."),
    "controls": ("cli.controls", "Risk officers' controls: pauses, officers, approvals, the liquidation queue."),
    "chart": ("cli.serve", "Draw chart NAME from the projection tables into an SVG or PNG file."),
    "close-account": ("cli.commands", "Close ACCOUNT (it must be flat and hold no collateral)."),
    "close-market": ("cli.commands", "Stop trading in MARKET (mark prices are still accepted)."),
    "create-market": ("cli.commands", "List a new MARKET (perpetual, or future with --expiry)."),
    "docs": ("cli.docs", "Print reference document NAME (Markdown); without NAME, list them."),
    "demo": ("cli.demo", "Run a demo scenario on its own store and print market, account and fund summaries."),
    "deposit": ("cli.commands", "Deposit AMOUNT of collateral (USDC, up to 6 decimals) into ACCOUNT."),
    "export": ("cli.transfer", "Write the whole event log, verifiably, to --output or standard output."),
    "fund-insurance": ("cli.commands", "Contribute AMOUNT to the insurance fund."),
    "funding": ("cli.commands", "Pay one funding period on perpetual MARKET at RATE (> 0: longs pay shorts)."),
    "import": ("cli.transfer", "Load an exported event log FILE into the store, after verifying all of it."),
    "insurance-fund": ("cli.queries", "Query the insurance fund."),
    "lab": ("cli.lab", "Experiments on scratch stores (the configured --db / CLEARING_DB is never used)."),
    "liquidate": ("cli.commands", "Liquidate ACCOUNT's position in MARKET at an auction --price (account must be "
                                  "below maintenance)."),
    "losses": ("cli.queries", "Socialized-loss allocations and deleveraging fills, in log order."),
    "market": ("cli.queries", "Query markets."),
    "open-account": ("cli.commands", "Open a cross-margin ACCOUNT."),
    "pause": ("cli.commands", "Pause OPERATION; takes effect only once M risk officers approved it."),
    "parameters": ("cli.controls", "Risk parameters in force (defaults and per-market overrides)."),
    "price": ("cli.commands", "Set the mark PRICE of MARKET (on tick, within the price band, time not going back)."),
    "projections": ("cli.audit", "Read models built from the event log (SQL tables beside the event store)."),
    "register-officer": ("cli.commands", "Register risk OFFICER (at most officers_max; once a quorum exists, M "
                                         "officers approve it first)."),
    "report": ("cli.reports", "Build regulator report NAME for business day --date from the projection tables."),
    "resume": ("cli.commands", "Resume OPERATION (with M approvals); queued liquidations are then processed in order."),
    "serve": ("cli.serve", "Serve the read-only HTTP API and the dashboard over the store."),
    "set-parameters": ("cli.commands", "Set risk parameters: clearinghouse defaults, or --market overrides."),
    "settle": ("cli.commands", "Settle expired future MARKET at the final PRICE: close every position, cover losses."),
    "tokens": ("cli.tokens", "Access tokens for `clearing serve`: issued and revoked as events in the log."),
    "trade": ("cli.commands", "Clear a trade in MARKET between --buyer and --seller (both margin-checked)."),
    "withdraw": ("cli.commands", "Withdraw AMOUNT from ACCOUNT if free collateral covers it."),
}


#: The commands by who uses them: (group, heading, names). ``clearing --help`` lists them
#: in these sections; ``write``, ``admin`` and ``query`` are also groups of their own, so
#: ``clearing query account show alice`` is ``clearing account show alice`` (the top-level
#: names stay, as aliases); ``audit`` holds ``export`` and ``import`` too. Every command is
#: in exactly one section (``tests/unit/test_cli_index.py``).
SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("write", "Writes: operators post commands (also `clearing write NAME`)",
     ("post", "open-account", "deposit", "withdraw", "trade", "price", "funding", "liquidate", "fund-insurance",
      "create-market", "close-market", "settle", "close-account")),
    ("admin", "Admin: risk officers govern (also `clearing admin NAME`)",
     ("set-parameters", "register-officer", "pause", "resume", "approve", "tokens")),
    ("query", "Queries: read the projections and the log (also `clearing query NAME`)",
     ("account", "market", "insurance-fund", "losses", "adl", "parameters", "controls", "events")),
    ("audit", "Audit: verify, replay, move the log (`audit export`, `audit import` too)", ("audit", "export", "import")),
    ("report", "Reports: regulators' files, charts and the HTTP API", ("report", "chart", "serve")),
    ("projections", "Projections: the read models' runner", ("projections",)),
    ("other", "Other", ("demo", "docs", "lab")),
)
#: the groups that only gather commands of the top level: name -> (help, members)
SECTION_GROUPS = {name: (heading.split(" (")[0], members) for name, heading, members in SECTIONS
                  if name in ("write", "admin", "query")}


class LazyGroup(click.Group):
    """The ``clearing`` group: commands of other modules are imported when first needed.

    ``clearing --help`` lists every command from ``INDEX`` without importing any of them;
    running a command (or asking for its ``--help``) imports its module, which adds all of
    that module's ``COMMANDS``.
    """

    def invoke(self, ctx: click.Context) -> object:
        """Run the command; any exception it lets out is reported by the one error contract
        (``cli.failures``): a line with a code and the status of its kind, no traceback
        unless ``--debug``."""
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except BaseException as error:  # KeyboardInterrupt included: exit 130
            raise failure_of(error) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *INDEX, *SECTION_GROUPS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in INDEX:
            self.load(INDEX[cmd_name][0])
        if cmd_name not in self.commands and cmd_name in SECTION_GROUPS:
            self.add_command(SectionGroup(cmd_name, self))
        return self.commands.get(cmd_name)

    def one_line_help(self, name: str, limit: int) -> str:
        """The one-line help of command ``name``, from ``INDEX`` unless it is loaded."""
        if name in self.commands:
            return self.commands[name].get_short_help_str(limit)
        if name in SECTION_GROUPS:
            return make_default_short_help(SECTION_GROUPS[name][0] + ".", limit)
        return make_default_short_help(INDEX[name][1], limit)

    def load(self, module_name: str) -> None:
        """Add every command of ``module_name`` (its ``COMMANDS``) to the group."""
        for command in importlib.import_module(module_name).COMMANDS:
            if command.name not in self.commands:
                self.add_command(command)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands in their ``SECTIONS``, each with its one-line help."""
        for _, heading, members in SECTIONS:
            limit = formatter.width - 6 - max(len(name) for name in members)
            with formatter.section(heading):
                formatter.write_dl([(name, self.one_line_help(name, limit)) for name in members])


class SectionGroup(click.Group):
    """``clearing write|admin|query NAME ...``: the top-level command NAME of that section.

    Holds no commands of its own: each name is looked up in the top-level group (and so
    imported only when used), so the grouped and the top-level spelling are one command.
    """

    def __init__(self, name: str, top: LazyGroup) -> None:
        help_text, self.members = SECTION_GROUPS[name]
        super().__init__(name, help=f"{help_text}: the commands {', '.join(self.members)}.",
                         context_settings={"help_option_names": ["-h", "--help"]})
        self.top = top

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.members)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self.top.get_command(ctx, cmd_name) if cmd_name in self.members else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(len(name) for name in self.members)
        with formatter.section("Commands"):
            formatter.write_dl([(name, self.top.one_line_help(name, limit)) for name in self.members])


@click.group(cls=LazyGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--db",
    metavar="PATH|URL",
    default=None,
    help=f"Event store: an SQLite file path or a postgresql:// URL. [env {ENV_VAR}; default {DEFAULT_DB}]",
)
@click.option(
    "--as",
    "operator",
    metavar="NAME",
    default=None,
    help=f"Who is posting: recorded on every command, and the only officer an `approve` may name. "
         f"[env {OPERATOR_VAR}; default the login name]",
)
@click.option("--debug", is_flag=True, help=f"Print the traceback of a failure too. [env {DEBUG_VAR}=1]")
@click.option("--version", "show_version", is_flag=True,
              help="Show the versions of clearing-ledger, Python and its libraries, and the schema of the store "
                   "--db names, then exit.")
@click.pass_context
def main(ctx: click.Context, db: str | None, operator: str | None, debug: bool, show_version: bool) -> None:
    """Event-sourced clearinghouse ledger for perpetuals and dated futures.

    Every deposit, withdrawal, trade and price is an immutable event. Post commands as
    JSON Lines with `clearing post`, or one at a time with the subcommands below.
    """
    ctx.meta["debug"] = debug
    if show_version:
        _echo_version(resolve_db(db))
        ctx.exit(0)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
        ctx.exit(2)
    escape_unencodable_output()
    tune_collector_for_batches()
    try:
        ctx.obj = Store(resolve_db(db), resolve_operator(operator))
        ctx.obj.db_chosen = db is not None or bool(os.environ.get(ENV_VAR))
    except ClearingError as error:
        raise click.UsageError(str(error)) from None
    ctx.call_on_close(ctx.obj.close)


#: distributions whose versions ``--version`` prints, in this order
VERSIONED = ("eventsourcing", "SQLAlchemy", "pydantic", "click", "psycopg")


def _echo_version(db: str) -> None:
    """``clearing --version``: this package, Python, the libraries, and the store's schema.

    Versions come from the installed distributions' metadata, so nothing heavy is imported;
    the store is only read (``clearing.store_schema.describe``), its password never shown.
    """
    from importlib.metadata import PackageNotFoundError, version

    from clearing.store_schema import STORE_SCHEMA, describe
    from cli.failures import redact

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    click.echo(f"clearing-ledger {installed('clearing-ledger')} (store schema {STORE_SCHEMA})")
    click.echo(f"Python {sys.version.split()[0]}; " + ", ".join(f"{name} {installed(name)}" for name in VERSIONED))
    click.echo(redact(describe(db)))


class _PostCommand(click.Command):
    """``post``, whose help lists every command type from the one list (read when shown)."""

    def get_help(self, ctx: click.Context) -> str:
        from clearing.commands import COMMAND_TYPES

        self.help = (self.help or "").replace("{types}", ", ".join(COMMAND_TYPES))
        return super().get_help(ctx)


@main.command(cls=_PostCommand)
# bytes that are not UTF-8 become lone surrogates, which parse_line rejects line by line (invalid_utf8)
@click.argument("file", type=click.File("r", encoding="utf-8-sig", errors="surrogateescape"))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per result line.")
@click.option(
    "--batch-size",
    type=click.IntRange(1, MAX_BATCH_SIZE),
    default=None,
    help=f"Commands committed per transaction. [default {DEFAULT_BATCH_SIZE}; 1 when reading a terminal]",
)
@click.option("--sync/--no-sync", default=None,
              help="Bring the projections up to the last command before returning; --no-sync returns after the "
                   "commit and leaves them to `projections follow` or `projections catch-up`. "
                   "[default: --sync when reading from or printing to a terminal, else --no-sync]")
@pass_store
def post(store: Store, file: TextIO, as_json: bool, batch_size: int | None, sync: bool | None) -> None:
    """Post a stream of JSON Lines commands from FILE (or - for standard input).

    Each line is one command object with "type" and a client-chosen "id", and an
    optional ISO-8601 "at" business time (stamped with the current time when absent).
    Types: {types}. Numbers are JSON strings or integers; `clearing docs commands`
    gives each type's fields and `clearing docs errors` every error code.

    Every command is atomic, and one result line is printed per command once it is
    committed. Every answer is final: re-posting a command with the same id and content
    reports its original answer ("already applied", or "already rejected" with the
    original code) and decides nothing again, so an interrupted post can simply be run
    again. Exit status 1 if any command was rejected (now or before).

    Queries never write: they read the projections as they stand and say on standard
    error how far behind the log they are. Keep them current with `--sync`, with
    `clearing projections catch-up`, or with a follower (`clearing projections follow`).
    """
    from eventsourcing.persistence import PersistenceError

    from clearing.posting import post_lines

    interactive = file.isatty()
    size = batch_size or (1 if interactive else DEFAULT_BATCH_SIZE)
    counts = {"applied": 0, "already_applied": 0, "rejected": 0, "already_rejected": 0}
    exhausted = 0
    started = last_report = time.monotonic()
    app = store.app
    try:
        for outcome in post_lines(app, file, batch_size=size, operator=store.operator):
            render.echo_outcome(outcome, as_json)
            counts[outcome.status] += 1
            exhausted += outcome.code == "retries_exhausted"
            now = time.monotonic()
            if now - last_report >= PROGRESS_SECONDS and sys.stderr.isatty():
                done = sum(counts.values())
                click.echo(f"... {done} commands ({done / (now - started):.0f}/s)", err=True)
                last_report = now
    except PersistenceError as error:
        done = sum(counts.values())
        raise Failure("store_failed", f"the event store failed after {done} reported command(s): "
                      f"{first_line(error)}; results of the failed batch were not reported: run "
                      "the same post again (commands already stored are reported 'already applied')", STORE) from None
    watched = interactive or sys.stdout.isatty()  # a person reads the results: read-your-writes
    if (watched if sync is None else sync) and counts["applied"]:
        store.catch_up()
    _summary(counts, exhausted)




def _summary(counts: dict[str, int], exhausted: int) -> None:
    total = sum(counts.values())
    click.echo(
        f"{total} command(s): {counts['applied']} applied, {counts['already_applied']} already applied, "
        f"{counts['rejected']} rejected, {counts['already_rejected']} already rejected",
        err=True,
    )
    if exhausted:
        sys.exit(RETRIES_EXHAUSTED)
    sys.exit(1 if counts["rejected"] or counts["already_rejected"] else 0)


@main.command()
@click.option("--from", "start", type=click.IntRange(1), default=1, show_default=True, help="First log position.")
@click.option("--limit", type=click.IntRange(1), default=None,
              help="Stop after this many events (log positions; a run's fills are one event).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event (per fill of a run's fills).")
@pass_store
def events(store: Store, start: int, limit: int | None, as_json: bool) -> None:
    """List the event log in order, from position --from.

    An account's fills of a run of trades (Account.FillsRecorded, one stored event) are
    listed one line per fill, each with the trade's fields and its place in the event
    (fill N of M), under the event's log position.
    """
    from clearing.audit.log import Unreadable
    from projections.event_records import iter_events

    try:
        for record in iter_events(store.existing_app, start, limit):
            if as_json:
                click.echo(render.dumps(record))
            else:
                key = record["data"].get("account") or record["data"].get("market") or record["data"].get("command_id") or ""
                fields = " ".join(f"{k}={render.text_value(v)}" for k, v in record["data"].items()
                                  if k not in ("account", "market", "command_id"))
                click.echo(f"{record['position']:>8}  {record['type']:<28} {key:<16} {fields}")
    except Unreadable as unreadable:  # an edited row: say where, as audit verify would
        raise Failure("unreadable_event", str(unreadable), STORE) from None

