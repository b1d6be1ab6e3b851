"""One machine-output convention, and help that tells the truth.

Every command takes ``--json``: a query or a result is one JSON document; ``post``,
``events`` and ``losses`` are JSON Lines streams. ``report --json`` is ``--format json``.
Report and projection names are choices in help, refused with their own codes. The
reference documents are reachable from any install (``clearing docs``), and
``python -m clearing`` is the same command line.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import click
from click.testing import CliRunner

from cli.docs import DOCUMENTS, docs_directory
from cli.main import main
from tests.conftest import REPO
from tests.e2e.test_cli import SCRIPT


def run(db: str, *args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["--db", db, *args], input=stdin, catch_exceptions=False)


def document(db: str, *args: str) -> object:
    result = run(db, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def every_command() -> list[tuple[list[str], click.Command]]:
    ctx = click.Context(main)
    found: list[tuple[list[str], click.Command]] = []

    def walk(command: click.Command, path: list[str]) -> None:
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None
                walk(sub, [*path, name])
        else:
            found.append((path, command))

    walk(main, [])
    return found


def test_every_command_takes_json_but_the_tutorials():
    without = [" ".join(path) for path, command in every_command()
               if "--json" not in {opt for param in command.params for opt in getattr(param, "opts", [])}]
    # narratives and documents for people, and the server (its output is the HTTP API and an access log of JSON lines)
    assert sorted(without) == ["demo", "docs", "lab loss-policies", "serve"]


def test_audit_and_projection_results_are_json_documents(tmp_path):
    db = str(tmp_path / "m.db")
    assert run(db, "post", "--sync", "-", stdin=SCRIPT).exit_code == 0
    digest = document(db, "audit", "digest")
    assert digest["digest"] == f"{digest['scheme']}:{digest['position']}:{digest['events']}:{digest['head']}"
    assert digest["position"] == 15  # 7 commands: records, markets, accounts, fills
    verified = document(db, "audit", "verify", "--skip", "decisions")
    assert verified["verified"] is True and verified["head"] == 15
    assert [check["name"] for check in verified["checks"]] == ["chain", "commands", "snapshots", "projections", "invariants"]
    assert verified["skipped"] == ["decisions"]
    assert document(db, "projections", "catch-up")["applied"] == 0
    rebuilt = document(db, "projections", "rebuild", "losses")
    assert rebuilt["position"] == 15 and set(rebuilt["generations"]) == {"losses"}
    replayed = document(db, "audit", "replay", "--until", "3", "--into", str(tmp_path / "r.db"))
    assert replayed["position"] == 3
    combined = document(db, "audit", "combine", f"a={db}")
    assert combined["partitions"]["a"]["digest"] == digest["digest"]
    assert combined["combined"].startswith("partitions-sha256-v1:1:")
    export = run(db, "export", "--output", str(tmp_path / "log.jsonl"), "--json")
    assert json.loads(export.stderr.strip().splitlines()[-1])["digest"] == digest["digest"]
    imported = document(str(tmp_path / "copy.db"), "import", str(tmp_path / "log.jsonl"))
    assert imported["digest"] == digest["digest"]


def test_a_failed_verification_is_a_json_document_and_exit_4(tmp_path):
    db = str(tmp_path / "t.db")
    assert run(db, "post", "--sync", "-", stdin=SCRIPT).exit_code == 0
    result = run(db, "audit", "verify", "--json", "--digest", "sha256-v1:3:3:" + "0" * 64)  # not this log's
    assert result.exit_code == 4
    verified = json.loads(result.stdout)
    assert verified["verified"] is False and [(c["name"], c["ok"]) for c in verified["checks"]] == [("chain", False)]
    assert "digest" in verified["checks"][-1]["failure"]


def test_report_json_is_format_json_and_names_are_coded_choices(tmp_path):
    db = str(tmp_path / "r.db")
    assert run(db, "post", "--sync", "-", stdin=SCRIPT).exit_code == 0
    as_json = run(db, "report", "positions", "--date", "2025-01-01", "--json")
    as_format = run(db, "report", "positions", "--date", "2025-01-01", "--format", "json")
    assert as_json.exit_code == 0 and as_json.stdout == as_format.stdout and json.loads(as_json.stdout)["rows"]
    unknown = run(db, "report", "margin", "--date", "2025-01-01")
    assert unknown.exit_code == 1 and "[unknown_report] report:" in unknown.stderr
    chain = run(db, "projections", "rebuild", "chain")
    assert chain.exit_code == 1 and "[unknown_projection]" in chain.stderr and "never rebuilt" in chain.stderr
    from projections.reports.registry import REPORT_NAMES
    from projections.runner import BY_NAME, READ_MODELS

    shown = run(db, "report", "--help").stdout
    assert all(re.search(rf"\n +{name} ", shown) for name in REPORT_NAMES), shown  # the help lists each name
    for path, names in ((["projections", "rebuild"], READ_MODELS), (["audit", "replay"], tuple(BY_NAME))):
        usage = "".join(run(db, *path, "--help").stdout.split("\n\n")[0].split())
        assert "[" + "|".join(names) + "]" in usage, usage


def test_decimal_options_say_so_and_post_help_lists_every_command_type():
    from clearing.commands import COMMAND_TYPES

    for path in (["create-market"], ["trade"], ["liquidate"]):
        shown = CliRunner().invoke(main, [*path, "--help"]).stdout
        assert "DECIMAL" in shown and " TEXT " not in shown, shown
    post_help = " ".join(CliRunner().invoke(main, ["post", "--help"]).stdout.split())
    assert all(kind in post_help for kind in COMMAND_TYPES) and len(COMMAND_TYPES) == 19


def test_the_documents_are_shipped_and_printed():
    configured = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    assert sorted(configured["share/clearing-ledger/docs"]) == sorted(f"docs/{file}" for file, _ in DOCUMENTS.values())
    directory = docs_directory()
    assert directory is not None
    printed = CliRunner().invoke(main, ["docs", "errors"])
    assert printed.exit_code == 0 and printed.stdout == (directory / "errors.md").read_text()
    listed = CliRunner().invoke(main, ["docs"]).stdout
    assert all(name in listed for name in DOCUMENTS)


def test_python_dash_m_clearing_is_the_same_command_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "clearing", "--help"], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("Usage: clearing ")
    assert Path(REPO / "clearing" / "__main__.py").is_file()
