"""Read commands: ``account show|list``, ``market show``, ``insurance-fund show``, ``losses`` and the event log."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import click

from clearing.errors import ClearingError
from cli import render
from cli.context import Store, echo_view, fail, pass_store
from projections.queries import (
    ACCOUNT_STATUSES,
    LossPolicies,
    account_list,
    account_view,
    insurance_fund_view,
    loss_allocations,
    market_list,
    market_view,
)

_P = ParamSpec("_P")
_T = TypeVar("_T")


def views_as_of(store: Store, as_of: str | None, names: list[str]) -> Any:
    """Live views, or views replayed into memory up to ``as_of``."""
    if as_of is None:
        return store.views
    from cli.audit import Bar
    from projections.replay import replay_views, resolve_until

    try:
        until = resolve_until(store.existing_app, as_of)
        with Bar(f"replaying to {until}", until) as progress:
            return replay_views(store.existing_app, until, names, live=_live_views(store), progress=progress)
    except ClearingError as error:
        fail(error)


def _live_views(store: Store) -> Any:
    """The store's own views, where a replay as of a past point may start from a checkpoint;
    None when its margin tables were never built or were built by an older version (the
    replay then starts at position 1)."""
    from projections.read import Views

    try:
        projector = store.reading_projector
        projector.prepare()
        if "margin" in projector.missing or projector.outdated.get("margin"):
            return None
        return Views(store.reading_store)
    except ClearingError:
        return None


def show(view_function: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """``view_function(*args)``; a refusal (unknown name, bad input) is reported and exits 1."""
    try:
        return view_function(*args, **kwargs)
    except ClearingError as error:
        fail(error)


@click.group()
def account() -> None:
    """Query accounts."""


@account.command("show")
@click.argument("name")
@click.option("--as-of", "as_of", metavar="POSITION|TIME",
              help="State as of a log position, or an ISO-8601 business time (replayed from the log).")
@click.option("--json", "as_json", is_flag=True, help="JSON output; every decimal is a string.")
@pass_store
def account_show(store: Store, name: str, as_of: str | None, as_json: bool) -> None:
    """Margin state of account NAME on current mark prices (or as of --as-of).

    Collateral, equity (collateral + unrealized PnL), initial and maintenance margin,
    free collateral (equity - initial margin), margin ratio (equity / maintenance;
    below 1 the account is liquidatable), an open margin call (amount called, amount
    still due after deposits, its rule and deadline) and each position with its
    liquidation price and its standing under the market's loss policy in force
    (adl_policy): the policy's score (adl: BitMEX PnL% x leverage; the others in
    `clearing adl rank --help`) and its rank among the market's holders on its side
    (1 = reached first). Read from the margin projection; --as-of replays the log up to
    that point into a temporary in-memory projection first.
    """
    views = views_as_of(store, as_of, ["margin"])
    echo_view(show(account_view, views, name, LossPolicies(store.existing_app)), as_json, render.account_text)


@account.command("list")
@click.option("--status", type=click.Choice(ACCOUNT_STATUSES), default=None,
              help="Only accounts in this status (a risk status, or closed).")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON array, one object per account a line (streamed); every decimal is a string.")
@pass_store
def account_list_command(store: Store, status: str | None, as_json: bool) -> None:
    """Every account by name: status, collateral, equity, initial and maintenance
    margin (on current marks) and the number of open positions.

    Status is the risk status (healthy, margin_call, liquidating, bankrupt) or closed.
    Read from the margin projection and streamed, so a large store is never held in
    memory; a store without accounts prints "no accounts" (with --json, []).

    \b
    Example:
      clearing account list --status margin_call
      clearing account list --json | jq -r '.[] | select(.positions > 0) | .account'
    """
    rows = account_list(store.views, status)
    lines = render.json_array_lines(rows) if as_json else render.account_list_lines(rows)
    try:
        shown = False
        for line in lines:
            click.echo(line)
            shown = True
        if not shown:
            click.echo("no accounts")
    except ClearingError as error:
        fail(error)


@click.group()
def market() -> None:
    """Query markets."""


@market.command("show")
@click.argument("name")
@click.option("--as-of", "as_of", metavar="POSITION|TIME", help="State as of a log position or business time.")
@click.option("--json", "as_json", is_flag=True, help="JSON output; every decimal is a string.")
@pass_store
def market_show(store: Store, name: str, as_json: bool, as_of: str | None) -> None:
    """Contract terms, margin tiers, status and mark price of market NAME."""
    views = views_as_of(store, as_of, ["margin"])
    echo_view(show(market_view, views, name), as_json, render.market_text)


@market.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, one object per market; decimals are strings.")
@pass_store
def market_list_command(store: Store, as_json: bool) -> None:
    """Every market by name: kind, status, mark price, open interest, volume, trades and
    expiry, read from the margin projection. `clearing market show NAME` gives one
    market's terms and margin tiers."""
    rows = show(market_list, store.views)
    if as_json:
        for line in render.json_array_lines(rows):
            click.echo(line)
    else:
        click.echo(render.market_list_text(rows))


@click.group("insurance-fund")
def insurance_fund() -> None:
    """Query the insurance fund."""


AS_OF_HELP = ("As of a log position, or an ISO-8601 business time with its zone (the log cut before the first "
              "later event); read from the stored rows at or before it, no replay.")


def position_as_of(store: Store, as_of: str | None) -> int | None:
    """The log position ``--as-of`` names (``projections.replay.resolve_until``), or None."""
    if as_of is None:
        return None
    from projections.replay import resolve_until

    try:
        return resolve_until(store.existing_app, as_of)
    except ClearingError as error:
        fail(error)


@insurance_fund.command("show")
@click.option("--as-of", "as_of", metavar="POSITION|TIME", help=AS_OF_HELP)
@click.option("--json", "as_json", is_flag=True, help="JSON output; every decimal is a string.")
@pass_store
def insurance_fund_show(store: Store, as_of: str | None, as_json: bool) -> None:
    """Balance of the insurance fund and every movement with its cause."""
    echo_view(show(insurance_fund_view, store.views, position_as_of(store, as_of)), as_json, render.fund_text)


@click.command()
@click.option("--market", metavar="MARKET", help="Only allocations in this market.")
@click.option("--as-of", "as_of", metavar="POSITION|TIME", help=AS_OF_HELP)
@click.option("--json", "as_json", is_flag=True, help="JSON Lines output, one allocation per line.")
@pass_store
def losses(store: Store, market: str | None, as_of: str | None, as_json: bool) -> None:
    """Socialized-loss allocations and deleveraging fills, in log order.

    One row per account and loss: the policy (adl, socialize_per_contract,
    haircut_gains), the share it paid, and the basis the share was computed from
    (|size|, unrealized gain, or for adl the size closed; share = cost against the mark).
    """
    rows = show(loss_allocations, store.views, market, position_as_of(store, as_of))
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
    else:
        click.echo(render.losses_text(rows))


#: The top-level commands and groups this module adds to ``clearing`` (``cli.main``).
COMMANDS = (account, market, insurance_fund, losses)
