"""``clearing tokens create|revoke|list``: access tokens for ``clearing serve`` (ADR 29).

``create`` makes a random secret, posts ``issue_token`` with only its SHA-256, and prints
the secret once: the ledger never holds it, so a lost token is revoked and a new one
issued. ``revoke`` posts ``revoke_token``; ``list`` reads the token events from the log.
"""

from __future__ import annotations

import secrets
import uuid

import click

from clearing.domain.roles import ROLES
from cli.context import Store, echo_result, fail, pass_store
from cli.failures import Failure

PREFIX = "clr_"  # a token is recognisable in a log or a paste (and secret scanners can match it)


@click.group()
def tokens() -> None:
    """Access tokens for `clearing serve`: issued and revoked as events in the log."""


@tokens.command("create")
@click.option("--name", required=True, metavar="NAME", help="Who holds the token (letters, digits, _ . : @ -); never reused.")
@click.option("--role", required=True, type=click.Choice(ROLES),
              help="regulator and auditor read every endpoint; operator, oracle and risk_officer are for the "
                   "write endpoints to come and read nothing yet.")
@click.option("--id", "command_id", metavar="ID", help="Client command id (idempotency key). [default: random]")
@click.option("--at", metavar="TIME", help="ISO-8601 business time with zone. [default: now]")
@click.option("--json", "as_json", is_flag=True, help="Print the token and its log position as JSON.")
@pass_store
def create(store: Store, name: str, role: str, command_id: str | None, at: str | None, as_json: bool) -> None:
    """Issue a token NAME with ROLE and print its secret once.

    Only the secret's SHA-256 is recorded (an AccessToken.Issued event, with who issued it
    and when), so keep the printed secret now; it cannot be shown again. Send it as
    `Authorization: Bearer <token>`, or paste it into the dashboard's login page.

    \b
    Example:
      clearing tokens create --name fca-2026 --role regulator
    """
    from clearing.commands import parse_command
    from clearing.domain.roles import token_digest
    from clearing.errors import ClearingError
    from clearing.posting import post_commands

    secret = PREFIX + secrets.token_urlsafe(32)
    raw: dict[str, object] = {"type": "issue_token", "id": command_id or f"cli-{uuid.uuid4().hex}", "name": name,
                              "role": role, "token_sha256": token_digest(secret)}
    if at is not None:
        raw["at"] = at
    try:
        command = parse_command(raw)
    except ClearingError as error:
        fail(error)
    [outcome] = post_commands(store.app, [command], operator=store.operator)
    if outcome.status != "applied":
        code = outcome.code or "rejected"
        raise Failure(code, outcome.message or outcome.summary, 1, outcome.field)
    store.catch_up()  # read-your-writes, as every command that posts
    document = {"name": name, "role": role, "token": secret, "positions": outcome.positions}
    echo_result(as_json, document, secret)
    if not as_json:
        click.echo(f"issued {role} token {name} at log position {outcome.positions[-1]}; this secret is shown once, "
                   "store it now", err=True)


@tokens.command("revoke")
@click.argument("name")
@click.option("--id", "command_id", metavar="ID", help="Client command id (idempotency key). [default: random]")
@click.option("--at", metavar="TIME", help="ISO-8601 business time with zone. [default: now]")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_store
def revoke(store: Store, name: str, command_id: str | None, at: str | None, as_json: bool) -> None:
    """Revoke token NAME: `clearing serve` refuses it from this event on (a running server
    reads the revocation on the next request)."""
    from cli.commands import submit

    submit(store, "revoke_token", command_id, at, as_json, name=name)


@tokens.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of the tokens.")
@pass_store
def list_tokens(store: Store, as_json: bool) -> None:
    """Every token issued: name, role, who issued it and when, and its revocation (read
    from the log; the secrets are never stored)."""
    from cli import render
    from projections.access import TokenRegistry

    records = [record.document() for record in TokenRegistry(store.existing_app).tokens()]
    if as_json:
        click.echo(render.dumps(records))
        return
    if not records:
        click.echo("no tokens")
        return
    for record in records:
        state = "active" if record["active"] else f"revoked {record['revoked_at']} by {record['revoked_by']}"
        click.echo(f"{record['name']:<24} {record['role']:<13} issued {record['issued_at']} by {record['issued_by']} "
                   f"(position {record['issued_position']}); {state}")


#: The top-level commands and groups this module adds to ``clearing`` (``cli.main``).
COMMANDS = (tokens,)
