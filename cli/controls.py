"""Read back what operators and officers set: ``parameters show`` and ``controls show``.

Both read the log (the few event kinds that set parameters and controls, never a trade),
so they need no projection and are exact at any log position (``--as-of``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from clearing.errors import ClearingError
from cli import render
from cli.context import Store, echo_view, fail, pass_store

if TYPE_CHECKING:
    from projections.controls import ControlState

AS_OF_HELP = "As of a log position, or an ISO-8601 business time with zone. [default: the head of the log]"


def _state(store: Store, as_of: str | None) -> ControlState:
    from projections.controls import read_controls
    from projections.replay import resolve_until

    app = store.existing_app
    try:
        position = resolve_until(app, as_of) if as_of is not None else app.recorder.max_notification_id() or 0
    except ClearingError as error:
        fail(error)
    return read_controls(app, position)


@click.group()
def parameters() -> None:
    """Risk parameters in force (defaults and per-market overrides)."""


@parameters.command("show")
@click.option("--market", metavar="MARKET", help="The parameters in force in MARKET (defaults with its overrides). "
                                                  "[default: the clearinghouse defaults, governance included]")
@click.option("--as-of", "as_of", metavar="POSITION|TIME", help=AS_OF_HELP)
@click.option("--json", "as_json", is_flag=True, help="One JSON document; decimals are strings.")
@pass_store
def parameters_show(store: Store, market: str | None, as_of: str | None, as_json: bool) -> None:
    """Every risk parameter in force, where its value came from and its governance rule.

    Source is `built-in` (never set), `set` (a clearinghouse default set by the command at
    that log position) or `market` (the market's own override). Governed: `always` (every
    change needs M officers' approvals), `up`/`down` (only a change that way does).

    \b
    Example:
      clearing parameters show --market BTC-PERP --as-of 2025-10-10T21:00:00Z
    """
    from projections.controls import parameters_view

    state = _state(store, as_of)
    try:
        view = parameters_view(state, market)
    except ClearingError as error:
        fail(error)
    echo_view(view, as_json, render.parameters_text)


@click.group()
def controls() -> None:
    """Risk officers' controls: pauses, officers, approvals, the liquidation queue."""


@controls.command("show")
@click.option("--as-of", "as_of", metavar="POSITION|TIME", help=AS_OF_HELP)
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@pass_store
def controls_show(store: Store, as_of: str | None, as_json: bool) -> None:
    """Pauses in force, registered officers and the governance parameters, every pending
    approval with the exact change it approves (and when each approval stops counting),
    and the liquidations queued while liquidations are paused, in the order they will run.
    """
    from projections.controls import controls_view

    echo_view(controls_view(_state(store, as_of)), as_json, render.controls_text)


#: The top-level commands and groups this module adds to ``clearing`` (``cli.main``).
COMMANDS = (parameters, controls)
