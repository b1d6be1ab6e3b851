"""``clearing docs [NAME]``: the reference documents, from the installed package.

The documents are installed with the package (``share/clearing-ledger/docs`` under the
environment's prefix, from ``pyproject.toml``'s data files); a source checkout reads its
own ``docs/``. So ``--help`` can send a user to ``clearing docs commands`` wherever the
package is installed, without a network.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cli.failures import Failure

#: every shipped document: name -> (file, what it holds)
DOCUMENTS = {
    "commands": ("commands.md", "every command type's fields, the CLI commands, exit codes"),
    "errors": ("errors.md", "every error code: where it arises and what it means"),
    "reports": ("reports.md", "regulator reports: columns, units, anchors; provenance; SQL views"),
    "architecture": ("architecture.md", "how the ledger is built: aggregates, events, projections"),
    "loss-policies": ("loss-policies.md", "how a deficit beyond the insurance fund is allocated"),
    "openapi": ("openapi.json", "the HTTP API's OpenAPI schema (as served at /api/v1/openapi.json)"),
    "api": ("api.md", "clearing serve: the HTTP API with curl examples, tokens and roles, the dashboard and charts"),
}


def docs_directory() -> Path | None:
    """The installed documents, else a checkout's ``docs/``; None when neither is there."""
    for candidate in (Path(sys.prefix) / "share" / "clearing-ledger" / "docs", Path(__file__).resolve().parents[1] / "docs"):
        if (candidate / "commands.md").is_file():
            return candidate
    return None


@click.command("docs")
@click.argument("name", required=False, type=click.Choice(sorted(DOCUMENTS)))
@click.option("--path", "show_path", is_flag=True, help="Print the document's file path instead of its text.")
def docs(name: str | None, show_path: bool) -> None:
    """Print reference document NAME (Markdown); without NAME, list them.

    \b
    Example:
      clearing docs errors | grep insufficient
    """
    directory = docs_directory()
    if directory is None:
        raise Failure("io_failed", "the documents are not installed with this package (share/clearing-ledger/docs)", 3)
    if name is None:
        for key in sorted(DOCUMENTS):
            click.echo(f"{key:<14} {DOCUMENTS[key][1]}")
        return
    path = directory / DOCUMENTS[name][0]
    if show_path:
        click.echo(str(path))
        return
    text = path.read_text(encoding="utf-8")
    if sys.stdout.isatty():
        click.echo_via_pager(text)
    else:
        click.echo(text, nl=False)


#: The top-level commands and groups this module adds to ``clearing`` (``cli.main``).
COMMANDS = (docs,)
