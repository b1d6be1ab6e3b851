"""What every command of the ``clearing`` command line shares: the store it opens lazily,
the one-line refusal, and how results and views are printed. The command modules import
this, never ``cli.main``, which only defines the group and registers their commands, so
the package has no import cycle."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from clearing.errors import ClearingError, StoreError
from clearing.settings import is_postgres, store_env
from cli import render
from cli.failures import RETRIES_EXHAUSTED, STORE, Failure, first_line

if TYPE_CHECKING:  # the application (eventsourcing, SQLAlchemy, drivers) is imported on first use
    from clearing.application import ClearingApplication, Outcome

FC = TypeVar("FC", bound=Callable[..., Any])
_T = TypeVar("_T")
PROGRESS_SECONDS = 5.0  # how often a long command reports its progress on a terminal


class Store:
    """Opens the application on first use, so ``--help`` never touches the database.

    Two ways in. A command that writes uses ``app``, ``projection_store`` and ``projector``.
    A command that only reads uses ``existing_app``, ``views`` and ``reading_projector``,
    which open the store read-only and create nothing (``store_env(..., read_only=True)``):
    a read never writes, so it works on a read-only copy or with a role that may only
    ``SELECT``, and queries show the projections where they stand, with their lag.
    """

    def __init__(self, db: str, operator: str = "") -> None:
        self.db = db
        self.operator = operator  # recorded on every command this invocation posts
        self.sync = True  # bring the projections to the command's last position before returning
        self.db_chosen = True  # --db or CLEARING_DB named the store (else it is the default file)
        self._app: ClearingApplication | None = None
        self._reader: ClearingApplication | None = None
        self._projection_store: Any = None
        self._reading_store: Any = None
        self._projector: Any = None
        self._reading_projector: Any = None
        self._probed = False

    def close(self) -> None:
        """Give the store's connections back when the command ends (pools included)."""
        for store in (self._projection_store, self._reading_store):
            if store is not None:
                store.close()
        for app in (self._app, self._reader):
            if app is not None:
                app.close()
        self._projection_store = self._reading_store = self._app = self._reader = None
        self._projector = self._reading_projector = None

    @property
    def projection_store(self) -> Any:
        """The projection tables' database (the event store's database)."""
        if self._projection_store is None:
            from projections.store import ProjectionStore

            self._projection_store = ProjectionStore(self.db)
        return self._projection_store

    @property
    def projector(self) -> Any:
        if self._projector is None:
            from projections.runner import Projector

            self._projector = Projector(self.app, self.projection_store)
        return self._projector

    def catch_up(self) -> None:
        """Bring every projection up to the head of the log (read-your-writes)."""
        try:
            self.projector.catch_up()
        except ClearingError as error:
            fail(error, STORE)

    @property
    def views(self) -> Any:
        """Read access to the projections as they stand (never caught up by a reader);
        a note on standard error says how far they are behind the log."""
        from projections.read import Views
        from projections.runner import READ_MODELS

        app = self.existing_app  # a missing store is an error, not a new one
        projector = self.reading_projector
        try:
            projector.require_built(READ_MODELS)  # never built: projection_missing
            projector.check_schema()  # built by an older version: projection_outdated
        except ClearingError as error:
            fail(error)
        views = Views(self.reading_store)
        note_lag(views, app.recorder.max_notification_id() or 0)
        return views

    @property
    def reading_store(self) -> Any:
        """The projection tables opened for reading only (the writers' store if one is open)."""
        if self._projection_store is not None:
            return self._projection_store
        if self._reading_store is None:
            from projections.store import ProjectionStore

            self.require_existing()
            self._reading_store = self._opened(lambda: ProjectionStore(self.db, read_only=True))
        return self._reading_store

    @property
    def reading_projector(self) -> Any:
        """A projector over the read-only tables: for ``audit verify`` and ``projections status``."""
        if self._projector is not None:
            return self._projector
        if self._reading_projector is None:
            from projections.runner import Projector

            self._reading_projector = Projector(self.existing_app, self.reading_store)
        return self._reading_projector

    def require_existing(self) -> None:
        """A missing SQLite file is an error for a read, not a new store."""
        if not is_postgres(self.db) and self.db != ":memory:" and not Path(self.db).exists():
            raise Failure("store_not_found", f"no event store at {self.db} (use --db or CLEARING_DB)", STORE, "db")

    @property
    def existing_app(self) -> ClearingApplication:
        """The application for a read, opened read-only (the writer's if this command has one)."""
        if self._app is not None:
            return self._app
        if self._reader is None:
            from clearing.application import open_application

            self.require_existing()
            self._reader = self._opened(lambda: open_application(store_env(self.db, read_only=True)))
        return self._reader

    @property
    def app(self) -> ClearingApplication:
        """The application for a command that writes."""
        if self._app is None:
            from clearing.application import open_application

            self._app = self._opened(lambda: open_application(store_env(self.db)))
        return self._app

    def _opened(self, open_it: Callable[[], _T]) -> _T:
        try:
            if is_postgres(self.db) and not self._probed:  # the cause of a refusal, before the pool hides it
                from clearing.pg_probe import probe

                probe(store_env(self.db))
                self._probed = True
            return open_it()
        except StoreError as error:
            fail(error, STORE)
        except ClearingError as error:
            raise click.UsageError(str(error)) from None
        except Exception as error:  # driver errors: unreachable server, bad file
            raise Failure("store_unreachable", f"cannot open the event store {self.db!r}: "
                          f"{first_line(error)}", STORE) from None


def note_lag(views: Any, head: int) -> None:
    """Say on standard error when the projections a query reads are behind the log.

    Example: ``note: the projections are at log position 120 of 150 (30 event(s) not shown
    yet); run `clearing projections catch-up` or keep `clearing projections follow` running``.
    Nothing is printed when they are at the head.
    """
    from projections.runner import READ_MODELS

    with views.reading() as connection:
        position = min(views.position(name, connection) for name in READ_MODELS)
    if position < head:
        click.echo(f"note: the projections are at log position {position} of {head} ({head - position} event(s) not "
                   "shown yet); run `clearing projections catch-up` or keep `clearing projections follow` running",
                   err=True)


pass_store = click.make_pass_decorator(Store)


def escape_unencodable_output() -> None:
    """Print a lone surrogate (an id or key from a line that was not valid UTF-8) as ``\\udcff``.

    Without this, echoing the result line of such a line raises ``UnicodeEncodeError``.
    """
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def fail(error: ClearingError, code: int | None = None) -> NoReturn:
    """Report a refusal on one line (``error: [code] message``) and exit with ``code``, by
    default the status of its kind (``cli.failures``)."""
    raise Failure.of(error, code)


def sync_option(default: bool, help_text: str) -> Callable[[FC], FC]:
    """``--sync/--no-sync``: whether the command brings the projections up to its last
    position before it returns (read-your-writes); sets ``Store.sync``."""

    def remember(ctx: click.Context, _: click.Parameter, value: bool | None) -> None:
        store = ctx.find_object(Store)
        if store is not None and value is not None:
            store.sync = value

    return click.option("--sync/--no-sync", default=default, expose_value=False, callback=remember, help=help_text)


def finish(outcomes: list[Outcome], as_json: bool, store: Store | None = None) -> None:
    """Print the outcomes of a subcommand and exit 1 if any was rejected.

    With ``store`` (and unless ``--no-sync``), the projections are brought up to date first
    (read-your-writes).
    """
    if store is not None and store.sync and any(outcome.status == "applied" for outcome in outcomes):
        store.catch_up()
    for outcome in outcomes:
        render.echo_outcome(outcome, as_json)
    sys.exit(exit_status(outcomes))


def exit_status(outcomes: list[Outcome]) -> int:
    """5 when the store kept refusing a batch (``retries_exhausted``), else 1 when any command
    was rejected (now or before), else 0."""
    if any(outcome.code == "retries_exhausted" for outcome in outcomes):
        return RETRIES_EXHAUSTED
    return 1 if any(outcome.is_rejection for outcome in outcomes) else 0


class CodedChoice(click.Choice):  # type: ignore[type-arg]
    """A ``click.Choice`` whose names are listed in help and shell completion, but whose
    refusal is our own coded error (``check`` raises it: ``unknown_report`` and the like),
    so a wrong name reads like every other bad input. ``names`` is called when first
    needed, so a module defining the option imports nothing heavy."""

    def __init__(self, names: Callable[[], Sequence[str]], check: Callable[[str], object]) -> None:
        self._names, self._check = names, check
        super().__init__([], case_sensitive=True)

    @property
    def choices(self) -> Sequence[str]:
        return tuple(self._names())

    @choices.setter
    def choices(self, _: Sequence[str]) -> None:
        """Choice's constructor assigns the names; ours are read from ``names``."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value not in self.choices:
            try:
                self._check(value)
            except ClearingError as error:
                fail(error)
        return value


def json_option(help_text: str = "Print the result as one JSON document.") -> Callable[[FC], FC]:
    """``--json``: every command has it (one document for a query or a result; JSON Lines
    for the streams ``post``, ``events`` and ``losses``)."""
    return click.option("--json", "as_json", is_flag=True, help=help_text)


def echo_result(as_json: bool, document: dict[str, Any], text: str, err: bool = False) -> None:
    """A command's closing result: ``document`` as JSON with ``--json``, else ``text``."""
    click.echo(render.dumps(document) if as_json else text, err=err)


def echo_view(view: dict[str, Any], as_json: bool, text: Any) -> None:
    click.echo(render.dumps(view) if as_json else text(view))
