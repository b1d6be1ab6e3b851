"""What every command of the ``clearing`` command line shares: the store it opens lazily,
the one-line refusal, and how results and views are printed. The command modules import
this, never ``cli.main``, which only defines the group and registers their commands, so
the package has no import cycle."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from clearing.errors import ClearingError
from clearing.settings import is_postgres, store_env
from cli import render

if TYPE_CHECKING:  # the application (eventsourcing, SQLAlchemy, drivers) is imported on first use
    from clearing.application import ClearingApplication, Outcome

FC = TypeVar("FC", bound=Callable[..., Any])
PROGRESS_SECONDS = 5.0  # how often a long command reports its progress on a terminal


class Store:
    """Opens the application on first use, so ``--help`` never touches the database."""

    def __init__(self, db: str, operator: str = "") -> None:
        self.db = db
        self.operator = operator  # recorded on every command this invocation posts
        self.sync = True  # bring the projections to the command's last position before returning
        self._app: ClearingApplication | None = None
        self._projection_store: Any = None
        self._projector: Any = None

    def close(self) -> None:
        """Give the store's connections back when the command ends (pools included)."""
        if self._projection_store is not None:
            self._projection_store.close()
            self._projection_store = None
        if self._app is not None:
            self._app.close()
            self._app = None
        self._projector = None

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
            fail(error, 3)

    @property
    def views(self) -> Any:
        """Read access to the projections, caught up to the head of the log first."""
        from projections.read import Views

        self.existing_app  # noqa: B018 - a missing store is an error, not a new one
        self.catch_up()
        return Views(self.projection_store)

    @property
    def existing_app(self) -> ClearingApplication:
        """The application for a read: a missing SQLite file is an error, not a new store."""
        if self._app is None and not is_postgres(self.db) and self.db != ":memory:" and not Path(self.db).exists():
            click.echo(f"error: [store_not_found] no event store at {self.db} (use --db or CLEARING_DB)", err=True)
            sys.exit(1)
        return self.app

    @property
    def app(self) -> ClearingApplication:
        if self._app is None:
            from clearing.application import open_application

            try:
                self._app = open_application(store_env(self.db))
            except ClearingError as error:
                raise click.UsageError(str(error)) from None
            except Exception as error:  # driver errors: unreachable server, bad file
                click.echo(f"error: cannot open the event store {self.db!r}: {error}".splitlines()[0], err=True)
                sys.exit(3)
        return self._app


pass_store = click.make_pass_decorator(Store)


def escape_unencodable_output() -> None:
    """Print a lone surrogate (an id or key from a line that was not valid UTF-8) as ``\\udcff``.

    Without this, echoing the result line of such a line raises ``UnicodeEncodeError``.
    """
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def fail(error: ClearingError | str, code: int = 1) -> NoReturn:
    """Report a refusal on one line (``error: [code] message``) and exit."""
    click.echo(f"error: {error}", err=True)
    sys.exit(code)


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
    if any(outcome.is_rejection for outcome in outcomes):
        sys.exit(1)


def echo_view(view: dict[str, Any], as_json: bool, text: Any) -> None:
    click.echo(render.dumps(view) if as_json else text(view))
