"""One subcommand per command type, for people at a terminal.

Each builds the same dict a JSON line would hold and sends it through the same
validation and posting path as ``clearing post``. Without ``--id`` a fresh id is made
(``cli-`` + random hex); give your own ``--id`` to be able to retry safely.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any

import click

from clearing.application import Outcome
from clearing.commands import parse_command
from clearing.errors import ClearingError
from clearing.posting import post_commands
from cli.context import Store, finish, pass_store, sync_option


def command_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """--id, --at and --json, shared by every command subcommand."""

    @click.option("--id", "command_id", metavar="ID", help="Client command id (idempotency key). [default: random]")
    @click.option("--at", metavar="TIME", help="ISO-8601 business time with zone. [default: now]")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    @sync_option(True, "Bring the projections up to this command before returning (--no-sync leaves that to "
                       "`projections follow`). [default: --sync]")
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    return wrapper


def submit(store: Store, command_type: str, command_id: str | None, at: str | None, as_json: bool, **fields: Any) -> None:
    raw: dict[str, Any] = {"type": command_type, "id": command_id or f"cli-{uuid.uuid4().hex}"}
    if at is not None:
        raw["at"] = at
    raw.update({key: value for key, value in fields.items() if value is not None})
    try:
        command = parse_command(raw)
    except ClearingError as error:
        finish([Outcome.rejected(error, raw["id"], command_type, None)], as_json)
        return
    finish(post_commands(store.app, [command], operator=store.operator), as_json, store)


@click.command("create-market")
@click.argument("market")
@click.option("--kind", type=click.Choice(["perpetual", "future"]), required=True, help="Contract kind.")
@click.option("--expiry", metavar="TIME", help="Expiry time of a future (ISO-8601 with zone).")
@click.option("--tick-size", metavar="DECIMAL", required=True, help="Price tick, e.g. 0.1.")
@click.option("--step-size", metavar="DECIMAL", required=True, help="Size step, e.g. 0.001.")
@click.option("--contract-size", metavar="DECIMAL", help="Underlying per contract. [default 1]")
@click.option("--initial-margin-fraction", "--imf", "imf", metavar="DECIMAL", help="Initial margin fraction, e.g. 0.05.")
@click.option("--maintenance-margin-fraction", "--mmf", "mmf", metavar="DECIMAL", help="Maintenance margin fraction, e.g. 0.03.")
@click.option(
    "--tier",
    "tiers",
    multiple=True,
    metavar="FLOOR:IMF:MMF",
    help="Margin tier from notional FLOOR (repeat, first FLOOR 0); replaces --imf/--mmf.",
)
@click.option("--price-band", metavar="DECIMAL", help="Largest mark move per update as a fraction. [default 0.1]")
@command_options
@pass_store
def create_market(store: Store, market: str, kind: str, expiry: str | None, tick_size: str, step_size: str,
                  contract_size: str | None, imf: str | None, mmf: str | None, tiers: tuple[str, ...],
                  price_band: str | None, command_id: str | None, at: str | None, as_json: bool) -> None:
    """List a new MARKET (perpetual, or future with --expiry)."""
    parsed_tiers = [_tier(text) for text in tiers] or None
    submit(store, "create_market", command_id, at, as_json, market=market, kind=kind, expiry=expiry,
           tick_size=tick_size, step_size=step_size, contract_size=contract_size, initial_margin_fraction=imf,
           maintenance_margin_fraction=mmf, tiers=parsed_tiers, price_band=price_band)


def _tier(text: str) -> dict[str, str]:
    parts = text.split(":")
    if len(parts) != 3:
        raise click.BadParameter(f"{text!r} is not FLOOR:IMF:MMF", param_hint="--tier")
    return dict(zip(("notional_floor", "initial_margin_fraction", "maintenance_margin_fraction"), parts, strict=True))


@click.command("close-market")
@click.argument("market")
@command_options
@pass_store
def close_market(store: Store, market: str, command_id: str | None, at: str | None, as_json: bool) -> None:
    """Stop trading in MARKET (mark prices are still accepted)."""
    submit(store, "close_market", command_id, at, as_json, market=market)


@click.command("open-account")
@click.argument("account")
@command_options
@pass_store
def open_account(store: Store, account: str, command_id: str | None, at: str | None, as_json: bool) -> None:
    """Open a cross-margin ACCOUNT."""
    submit(store, "open_account", command_id, at, as_json, account=account)


@click.command("close-account")
@click.argument("account")
@command_options
@pass_store
def close_account(store: Store, account: str, command_id: str | None, at: str | None, as_json: bool) -> None:
    """Close ACCOUNT (it must be flat and hold no collateral)."""
    submit(store, "close_account", command_id, at, as_json, account=account)


@click.command()
@click.argument("account")
@click.argument("amount")
@command_options
@pass_store
def deposit(store: Store, account: str, amount: str, command_id: str | None, at: str | None, as_json: bool) -> None:
    """Deposit AMOUNT of collateral (USDC, up to 6 decimals) into ACCOUNT."""
    submit(store, "deposit", command_id, at, as_json, account=account, amount=amount)


@click.command()
@click.argument("account")
@click.argument("amount")
@command_options
@pass_store
def withdraw(store: Store, account: str, amount: str, command_id: str | None, at: str | None, as_json: bool) -> None:
    """Withdraw AMOUNT from ACCOUNT if free collateral covers it."""
    submit(store, "withdraw", command_id, at, as_json, account=account, amount=amount)


@click.command()
@click.argument("market")
@click.option("--buyer", required=True, metavar="ACCOUNT", help="Buying account.")
@click.option("--seller", required=True, metavar="ACCOUNT", help="Selling account.")
@click.option("--size", required=True, metavar="DECIMAL", help="Size in contracts, on the market's step.")
@click.option("--price", required=True, metavar="DECIMAL", help="Trade price, on the market's tick.")
@command_options
@pass_store
def trade(store: Store, market: str, buyer: str, seller: str, size: str, price: str,
          command_id: str | None, at: str | None, as_json: bool) -> None:
    """Clear a trade in MARKET between --buyer and --seller (both margin-checked)."""
    submit(store, "trade", command_id, at, as_json, market=market, buyer=buyer, seller=seller, size=size, price=price)


@click.command()
@click.argument("market")
@click.argument("price")
@command_options
@pass_store
@click.option("--source", metavar="NAME", help="Named price source (when the market marks at the median of its sources).")
def price(store: Store, market: str, price: str, source: str | None, command_id: str | None, at: str | None,
          as_json: bool) -> None:
    """Set the mark PRICE of MARKET (on tick, within the price band, time not going back).

    Runs the risk sweep: accounts the move takes below maintenance margin are called
    and, when due, liquidated.
    """
    submit(store, "price", command_id, at, as_json, market=market, price=price, source=source)


@click.command("fund-insurance")
@click.argument("amount")
@click.option("--contributor", metavar="NAME", help="Who contributed (recorded with the movement).")
@command_options
@pass_store
def fund_insurance(store: Store, amount: str, contributor: str | None, command_id: str | None, at: str | None,
                   as_json: bool) -> None:
    """Contribute AMOUNT to the insurance fund."""
    submit(store, "fund_insurance", command_id, at, as_json, amount=amount, contributor=contributor)


@click.command()
@click.argument("market")
@click.argument("rate")
@command_options
@pass_store
def funding(store: Store, market: str, rate: str, command_id: str | None, at: str | None, as_json: bool) -> None:
    """Pay one funding period on perpetual MARKET at RATE (> 0: longs pay shorts)."""
    submit(store, "funding", command_id, at, as_json, market=market, rate=rate)


@click.command()
@click.argument("market")
@click.argument("price")
@command_options
@pass_store
def settle(store: Store, market: str, price: str, command_id: str | None, at: str | None, as_json: bool) -> None:
    """Settle expired future MARKET at the final PRICE: close every position, cover losses."""
    submit(store, "settle", command_id, at, as_json, market=market, price=price)


@click.command()
@click.argument("account")
@click.argument("market")
@click.option("--price", required=True, metavar="DECIMAL", help="Auction price, on the market's tick.")
@click.option("--size", metavar="DECIMAL", help="Contracts to close. [default: the whole position]")
@click.option("--liquidator", metavar="ACCOUNT", help="Account taking the position. [default: the backstop liquidator]")
@command_options
@pass_store
def liquidate(store: Store, account: str, market: str, price: str, size: str | None, liquidator: str | None,
              command_id: str | None, at: str | None, as_json: bool) -> None:
    """Liquidate ACCOUNT's position in MARKET at an auction --price (account must be below maintenance)."""
    submit(store, "liquidate", command_id, at, as_json, account=account, market=market, price=price, size=size,
           liquidator=liquidator)


OPERATION = click.Choice(["liquidations", "trading"])


@click.command()
@click.argument("operation", type=OPERATION)
@click.option("--market", metavar="MARKET", help="Only this market. [default: everywhere]")
@command_options
@pass_store
def pause(store: Store, operation: str, market: str | None, command_id: str | None, at: str | None, as_json: bool) -> None:
    """Pause OPERATION; takes effect only once M risk officers approved it."""
    submit(store, "pause", command_id, at, as_json, operation=operation, market=market)


@click.command()
@click.argument("operation", type=OPERATION)
@click.option("--market", metavar="MARKET", help="Only this market. [default: everywhere]")
@command_options
@pass_store
def resume(store: Store, operation: str, market: str | None, command_id: str | None, at: str | None, as_json: bool) -> None:
    """Resume OPERATION (with M approvals); queued liquidations are then processed in order."""
    submit(store, "resume", command_id, at, as_json, operation=operation, market=market)


APPROVABLE = ["pause", "resume", "set-parameters", "register-officer", "liquidate"]


@click.command()
@click.argument("officer")
@click.argument("action", metavar="|".join(APPROVABLE))
@click.argument("what", nargs=-1, required=True,
                metavar="OPERATION|NAME=VALUE...|CANDIDATE|ACCOUNT price=P [size=S] [liquidator=L]")
@click.option("--market", metavar="MARKET", help="Only this market. [default: everywhere / the clearinghouse defaults]")
@command_options
@pass_store
def approve(store: Store, officer: str, action: str, what: tuple[str, ...], market: str | None, command_id: str | None,
            at: str | None, as_json: bool) -> None:
    """Record OFFICER's approval of one exact change; post it as OFFICER (--as OFFICER).

    \b
    clearing --as olga approve olga pause liquidations --market BTC-PERP
    clearing --as olga approve olga set-parameters approvals_required=2 officers_max=3
    clearing --as olga approve olga register-officer otto
    clearing --as olga approve olga liquidate bob price=40 size=1 --market BTC-PERP

    A liquidation is approved when its auction price lies outside manual_liquidation_band;
    size defaults to the whole position and liquidator to the backstop. The change must later
    be posted with exactly the same content (same NAME=VALUE set and --market); see
    `clearing docs commands`.
    """
    if action.replace("_", "-") not in APPROVABLE:
        raise click.BadParameter(f"{action!r} is not one of {', '.join(APPROVABLE)}", param_hint="ACTION")
    action = action.replace("-", "_")
    submit(store, "approve", command_id, at, as_json, officer=officer, action=action, market=market,
           **_approved_fields(action, what))


def _approved_fields(action: str, what: tuple[str, ...]) -> dict[str, Any]:
    """The approve command's fields for ACTION from the positional arguments."""
    if action == "set_parameters":
        return {"parameters": dict(_assignment(text) for text in what)}
    if action == "liquidate":
        terms = dict(_assignment(text) for text in what[1:])
        unknown = sorted(set(terms) - {"price", "size", "liquidator"})
        if unknown:
            raise click.BadParameter(f"{unknown[0]!r} is not one of price, size, liquidator", param_hint="WHAT")
        return {"account": what[0], **terms}
    if len(what) != 1:
        raise click.BadParameter(f"{action} takes exactly one argument, got {len(what)}", param_hint="WHAT")
    if action == "register_officer":
        return {"candidate": what[0]}
    if what[0] not in OPERATION.choices:
        raise click.BadParameter(f"{what[0]!r} is not one of {', '.join(OPERATION.choices)}", param_hint="OPERATION")
    return {"operation": what[0]}


@click.command("register-officer")
@click.argument("officer")
@command_options
@pass_store
def register_officer(store: Store, officer: str, command_id: str | None, at: str | None, as_json: bool) -> None:
    """Register risk OFFICER (at most officers_max; once a quorum exists, M officers approve it first)."""
    submit(store, "register_officer", command_id, at, as_json, officer=officer)


@click.command("set-parameters")
@click.argument("assignments", nargs=-1, required=True, metavar="NAME=VALUE...")
@click.option("--market", metavar="MARKET", help="Override for this market. [default: clearinghouse defaults]")
@command_options
@pass_store
def set_parameters(store: Store, assignments: tuple[str, ...], market: str | None, command_id: str | None,
                   at: str | None, as_json: bool) -> None:
    """Set risk parameters: clearinghouse defaults, or --market overrides.

    Example: clearing set-parameters liquidation_fee_rate=0.015 margin_call_grace=3600.

    Whole numbers (margin_call_grace, twap_window, approvals_required, officers_max,
    approval_ttl, governance_timelock) are given as digits; oracle_sources as a
    comma-separated list. Governed changes need M officers' approvals of exactly this
    change first (clearing approve OFFICER set-parameters ...). See `clearing docs commands`.
    """
    submit(store, "set_parameters", command_id, at, as_json, market=market,
           parameters=dict(_assignment(text) for text in assignments))


_WHOLE = {"margin_call_grace", "twap_window", "approvals_required", "officers_max", "approval_ttl", "governance_timelock"}


def _assignment(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise click.BadParameter(f"{text!r} is not NAME=VALUE", param_hint="NAME=VALUE")
    if name == "oracle_sources":
        return name, [part for part in value.split(",") if part]
    if name in _WHOLE and value.isdigit():
        return name, int(value)
    return name, value


#: The top-level commands and groups this module adds to ``clearing`` (``cli.main``).
COMMANDS = (
    create_market, close_market, open_account, close_account, deposit, withdraw, trade, price, fund_insurance, funding,
    settle, liquidate, pause, resume, approve, register_officer, set_parameters,
)
