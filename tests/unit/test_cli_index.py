"""The command line's index of lazily loaded commands matches the commands themselves."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner
from click.utils import make_default_short_help

from cli.main import INDEX, main


def _modules() -> dict[str, list[click.Command]]:
    return {name: list(importlib.import_module(name).COMMANDS) for name in sorted({module for module, _ in INDEX.values()})}


def test_the_index_names_exactly_the_commands_the_modules_define():
    defined = {command.name: module for module, commands in _modules().items() for command in commands}
    assert defined == {name: module for name, (module, _) in INDEX.items()}
    assert not set(defined) & {"post", "events"}, "the commands of cli.main itself are not indexed"


@pytest.mark.parametrize("limit", [45, 60, 78, 94, 10_000])
def test_each_indexed_help_line_is_the_commands_own(limit):
    for commands in _modules().values():
        for command in commands:
            assert command.name is not None
            assert make_default_short_help(INDEX[command.name][1], limit) == command.get_short_help_str(limit), command.name


def test_every_command_is_reached_through_the_group():
    context = click.Context(main)
    for name in INDEX:
        command = main.get_command(context, name)
        assert command is not None and command.name == name


def test_help_and_version_import_neither_the_application_nor_a_database_driver():
    probe = ("import sys\nsys.argv = ['clearing', '{arg}']\nfrom cli.main import main\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "heavy = ('clearing.application', 'sqlalchemy', 'eventsourcing', 'psycopg', 'pydantic')\n"
             "heavy = [m for m in heavy if m in sys.modules]\n"
             "print('loaded:', heavy, file=sys.stderr)\n")
    for arg in ("--help", "--version"):
        done = subprocess.run([sys.executable, "-c", probe.format(arg=arg)], capture_output=True, text=True, timeout=60)
        assert "loaded: []" in done.stderr, (arg, done.stderr)


def test_the_postgres_recorder_is_named_by_its_topic_and_not_loaded_for_sqlite(tmp_path):
    from eventsourcing.utils import get_topic, resolve_topic

    from clearing.recorders import RECORDER_TOPICS
    from clearing.recorders_postgres import ClearingPostgresRecorder

    assert resolve_topic(RECORDER_TOPICS["eventsourcing.postgres"]) is ClearingPostgresRecorder
    assert RECORDER_TOPICS["eventsourcing.postgres"] == get_topic(ClearingPostgresRecorder)
    probe = (f"import sys\nsys.argv = ['clearing', '--db', {str(tmp_path / 'l.db')!r}, 'open-account', 'alice']\n"
             "from cli.main import main\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
             "print('loaded:', [m for m in ('eventsourcing.postgres', 'psycopg') if m in sys.modules], file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert "applied" in done.stdout and "loaded: []" in done.stderr, (done.stdout, done.stderr)


def test_every_command_is_in_exactly_one_section_of_the_help():
    from cli.main import SECTIONS

    listed = [name for _, _, members in SECTIONS for name in members]
    top_level = set(INDEX) | {"post", "events"}
    assert sorted(listed) == sorted(top_level), "a command missing from the sections, or in two of them"
    shown = CliRunner().invoke(main, ["--help"]).stdout
    for _, heading, members in SECTIONS:
        section = shown.split(f"{heading}:\n", 1)[1].split("\n\n", 1)[0]
        assert [line.split()[0] for line in section.splitlines()] == list(members), heading


@pytest.mark.parametrize(("grouped", "top"), [
    (["query", "account", "show"], ["account", "show"]),
    (["write", "deposit"], ["deposit"]),
    (["admin", "pause"], ["pause"]),
    (["audit", "export"], ["export"]),
    (["audit", "import"], ["import"]),
])
def test_a_grouped_spelling_is_the_top_level_command(grouped, top):
    """``clearing query account show`` runs the very command ``clearing account show`` runs."""
    context = click.Context(main)
    command: click.Command | None = main
    for name in grouped:
        assert isinstance(command, click.Group)
        command = command.get_command(context, name)
    expected: click.Command | None = main
    for name in top:
        assert isinstance(expected, click.Group)
        expected = expected.get_command(context, name)
    assert command is not None and command is expected
    help_grouped = CliRunner().invoke(main, [*grouped, "--help"])
    assert help_grouped.exit_code == 0 and (expected.help or "").split("\n")[0] in help_grouped.stdout


def test_a_section_group_refuses_a_command_of_another_section():
    refused = CliRunner().invoke(main, ["query", "deposit", "alice", "1"])
    assert refused.exit_code == 2 and "No such command 'deposit'" in refused.stderr
