"""Export a log from SQLite, import it into an empty store (SQLite file and PostgreSQL).

The imported store has the same chain, digest and stored bytes, and the application on it
loads the same accounts. A file that does not verify, or a store holding anything but a
prefix of the file, is refused naming the line and nothing is written; an interrupted
import is continued by running it again. The CLI's ``export`` and ``import`` too.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import cli.transfer  # noqa: F401 - registers export/import on ``main`` until cli/main.py imports it
from clearing.application import ClearingApplication
from clearing.audit.chain import Digest, digest, iter_chain
from clearing.audit.log import log_events
from clearing.command_index import index_rows
from clearing.errors import InputError
from clearing.settings import store_env
from clearing.transfer import export_log, import_log
from cli.demo import scenario
from cli.main import main
from tests.ledger import Ledger
from tests.margin_state import account_view
from tests.unit.test_chain import ListRecorder

ACCOUNTS = [f"acct-{index:04d}" for index in range(10)]


@dataclasses.dataclass(frozen=True)
class Source:
    db: str
    app: ClearingApplication
    file: Path
    digest: Digest


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    folder = tmp_path_factory.mktemp("export")
    ledger = Ledger(store_env(str(folder / "source.db")))
    ledger.post(list(scenario(len(ACCOUNTS), 6, 21)), auto_id=False)
    file = folder / "log.jsonl"
    with file.open("w", encoding="utf-8", newline="\n") as out:
        exported = export_log(ledger.app.recorder, out)
    return Source(str(folder / "source.db"), ledger.app, file, exported)


def events(app: Any) -> list[tuple[Any, ...]]:
    return [(n.originator_id, n.originator_version, n.topic, n.state) for n in app.recorder.select_notifications(1, 100_000)]


def count(app: Any) -> int:
    return app.recorder.max_notification_id() or 0


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(lines), encoding="utf-8", newline="\n")
    return path


# -- the file ---------------------------------------------------------------------------------


def test_the_export_is_deterministic_compact_ascii_json_lines(source, tmp_path):
    data = source.file.read_bytes()
    again = tmp_path / "again.jsonl"
    with again.open("w", encoding="utf-8", newline="\n") as out:
        assert export_log(source.app.recorder, out, page=7) == source.digest
    assert again.read_bytes() == data and data.isascii() and b"\r" not in data
    lines = data.decode().splitlines(keepends=True)
    assert all(line.endswith("\n") for line in lines)
    objects = [json.loads(line) for line in lines]
    assert all(json.dumps(obj, separators=(",", ":")) + "\n" == line for obj, line in zip(objects, lines, strict=True))
    assert objects[0] == {"format": "clearing-event-log", "version": 1, "scheme": "sha256-v1"}
    chain = list(iter_chain(source.app.recorder))
    assert [(o["position"], o["hash"]) for o in objects[1:-1]] == [(p, link.hex()) for p, link in chain]
    assert list(objects[1]) == ["position", "originator_id", "originator_version", "topic", "state", "hash"]
    assert objects[-1] == {"events": len(chain), "head": chain[-1][1].hex(), "position": chain[-1][0]}
    assert source.digest == digest(source.app.recorder) and source.digest.events > 200


def test_a_state_that_is_not_utf8_cannot_be_exported(source, tmp_path):
    notifications = list(source.app.recorder.select_notifications(1, 5))
    notifications[3] = dataclasses.replace(notifications[3], state=b"\x78\x9c\xff")  # compressed, say
    with pytest.raises(InputError) as refused, (tmp_path / "x.jsonl").open("w") as out:
        export_log(ListRecorder(notifications), out)
    assert refused.value.code == "export_state_not_text" and "position 4" in refused.value.message


def test_any_utf8_state_exports_as_ascii_and_imports_as_the_same_bytes(source, tmp_path):
    notifications = list(source.app.recorder.select_notifications(1, 3))
    odd = '{"note":"zo\u00eb \u20ac \U0001f600 \\" \\n","tab":"\t"}'.encode("utf-8")
    notifications[1] = dataclasses.replace(notifications[1], state=odd)
    file = tmp_path / "odd.jsonl"
    with file.open("w", encoding="utf-8", newline="\n") as out:
        exported = export_log(ListRecorder(notifications), out)
    assert file.read_bytes().isascii()
    target = ClearingApplication(env=store_env(str(tmp_path / "odd.db")))
    assert import_log(target, file) == exported
    assert target.recorder.select_notifications(1, 3)[1].state == odd


# -- import -------------------------------------------------------------------------------------


def test_an_import_into_an_empty_store_is_the_same_log(source, store_db, tmp_path):
    target = ClearingApplication(env=store_env(store_db))
    assert digest(target.recorder).events == 0
    imported = import_log(target, source.file, batch=64)
    assert imported == source.digest == digest(target.recorder)
    assert events(target) == events(source.app)
    for name in ACCOUNTS:
        assert target.get_account(name).collateral == source.app.get_account(name).collateral
        assert account_view(target, name) == account_view(source.app, name)
    again = tmp_path / "again.jsonl"
    with again.open("w", encoding="utf-8", newline="\n") as out:
        export_log(target.recorder, out)
    assert again.read_bytes() == source.file.read_bytes()


def test_an_import_into_a_store_that_holds_it_already_writes_nothing(source, sqlite_db):
    target = ClearingApplication(env=store_env(sqlite_db))
    import_log(target, source.file)
    assert import_log(target, source.file) == source.digest and count(target) == source.digest.events


def _compact(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":")) + "\n"


def tampered_files(lines: list[str]) -> list[tuple[str, list[str], str, int]]:
    """(what, the tampered lines, expected code, expected line number) for a clean export."""
    state_line = 12
    obj = json.loads(lines[state_line - 1])
    index = obj["state"].index(":") + 2  # a character inside the first value
    obj["state"] = obj["state"][:index] + "#" + obj["state"][index + 1:]
    changed_state = [*lines[:state_line - 1], _compact(obj), *lines[state_line:]]
    swapped = list(lines)
    swapped[20], swapped[30] = swapped[30], swapped[20]
    last_event = len(lines) - 1
    trailer = json.loads(lines[-1])
    return [
        ("one character of a state", changed_state, "import_chain_broken", state_line),
        ("a line deleted", lines[:40] + lines[41:], "import_chain_broken", 41),
        ("two lines swapped", swapped, "import_chain_broken", 21),
        ("the last event deleted", lines[:last_event - 1] + lines[last_event:], "import_chain_broken", last_event),
        ("the trailer removed", lines[:-1], "import_chain_broken", len(lines)),
        ("the trailer's head changed", [*lines[:-1], _compact({**trailer, "head": "0" * 64})], "import_chain_broken", len(lines)),
        ("a line added after the trailer", [*lines, "{}\n"], "import_malformed", len(lines) + 1),
        ("a line that is not JSON", [*lines[:5], "{oops\n", *lines[6:]], "import_malformed", 6),
        ("an event with a float version",
         [*lines[:5], lines[5].replace('"originator_version":', '"originator_version":1.0,"x":'), *lines[6:]],
         "import_malformed", 6),
        ("no header", lines[1:], "import_malformed", 1),
        ("another format version", [lines[0].replace('"version":1', '"version":2'), *lines[1:]], "import_unsupported", 1),
        ("an empty file", [], "import_malformed", 1),
    ]


def test_a_tampered_file_is_refused_naming_the_line_and_nothing_is_written(source, sqlite_db, tmp_path):
    lines = source.file.read_text(encoding="utf-8").splitlines(keepends=True)
    target = ClearingApplication(env=store_env(sqlite_db))
    cases = tampered_files(lines)
    for what, tampered, code, line in cases:
        with pytest.raises(InputError, match=r".") as refused:
            import_log(target, write_lines(tmp_path / "bad.jsonl", tampered), batch=10)
            pytest.fail(f"not refused: {what}")
        assert (refused.value.code, refused.value.field) == (code, f"line {line}"), what
        assert refused.value.message.startswith(f"line {line}: ") and "\n" not in refused.value.message, what
        assert count(target) == 0, what
    assert len(cases) == 12


def test_a_tampered_file_is_refused_on_postgres_too(source, postgres_db, tmp_path):
    lines = source.file.read_text(encoding="utf-8").splitlines(keepends=True)
    target = ClearingApplication(env=store_env(postgres_db))
    for what, tampered, code, line in tampered_files(lines)[:3]:
        with pytest.raises(InputError) as refused:
            import_log(target, write_lines(tmp_path / "bad.jsonl", tampered), batch=10)
        assert (refused.value.code, refused.value.field) == (code, f"line {line}"), what
        assert count(target) == 0, what


class Interrupt(Exception):
    pass


def stop_after(batches: int):
    def progress(stage: str, done: int) -> None:
        if stage == "imported" and done >= batches * 40:
            raise Interrupt

    return progress


def test_an_interrupted_import_is_continued(source, store_db):
    target = ClearingApplication(env=store_env(store_db))
    with pytest.raises(Interrupt):
        import_log(target, source.file, batch=40, progress=stop_after(2))
    assert digest(target.recorder).events == 80
    assert import_log(target, source.file, batch=40) == source.digest == digest(target.recorder)
    assert events(target) == events(source.app)


def test_an_import_whose_tail_was_lost_is_continued(source, sqlite_db):
    target = ClearingApplication(env=store_env(sqlite_db))
    import_log(target, source.file)
    with sqlite3.connect(sqlite_db) as connection:  # a lost transaction takes its command index rows with it
        connection.execute("DELETE FROM stored_events WHERE rowid > 57")
        connection.commit()
        kept = [row.command_id for row in index_rows(event for _, event in log_events(target))]
        connection.execute(f"DELETE FROM clearing_commands WHERE command_id NOT IN ({','.join('?' * len(kept))})", kept)
    connection.close()
    assert digest(target.recorder).events == 57
    assert import_log(target, source.file, batch=1000) == source.digest == digest(target.recorder)


def test_a_store_holding_other_events_is_refused_and_left_alone(source, store_db):
    target = Ledger(store_env(store_db))
    target.post_ok('{"type":"open_account","account":"zoe"}')
    before = digest(target.app.recorder)
    with pytest.raises(InputError) as refused:
        import_log(target.app, source.file)
    assert (refused.value.code, refused.value.field) == ("store_not_empty", "db")
    assert digest(target.app.recorder) == before


def test_a_prefix_that_was_altered_is_not_continued(source, sqlite_db):
    target = ClearingApplication(env=store_env(sqlite_db))
    with pytest.raises(Interrupt):
        import_log(target, source.file, batch=40, progress=stop_after(1))
    with sqlite3.connect(sqlite_db) as connection:
        connection.execute("UPDATE stored_events SET state = CAST(REPLACE(CAST(state AS TEXT), '1', '2') AS BLOB) "
                           "WHERE rowid = 7")
    connection.close()
    with pytest.raises(InputError) as refused:
        import_log(target, source.file, batch=40)
    assert refused.value.code == "store_not_empty" and count(target) == 40


def test_a_file_replaced_between_the_two_passes_is_not_written(source, sqlite_db, tmp_path):
    other = Ledger(store_env(str(tmp_path / "other.db")))
    other.post(list(scenario(len(ACCOUNTS), 6, 99)), auto_id=False)  # another valid log
    file = tmp_path / "log.jsonl"
    file.write_bytes(source.file.read_bytes())

    def replace_file(stage: str, done: int) -> None:
        if stage == "verified" and done == source.digest.events:  # the first pass has just finished
            with file.open("w", encoding="utf-8", newline="\n") as out:
                export_log(other.app.recorder, out)

    target = ClearingApplication(env=store_env(sqlite_db))
    with pytest.raises(InputError) as refused:
        import_log(target, file, batch=40, progress=replace_file)
    assert refused.value.code == "import_file_changed" and count(target) == 0


# -- the command line ------------------------------------------------------------------------------


def run(db: str, *args: str):
    return CliRunner().invoke(main, ["--db", db, *args], catch_exceptions=False)


def test_cli_export_then_import(source, tmp_path):
    out = tmp_path / "cli.jsonl"
    exported = run(source.db, "export", "--output", str(out))
    assert exported.exit_code == 0, exported.output
    assert out.read_bytes() == source.file.read_bytes()
    assert source.digest.to_text() in exported.stderr and exported.stdout == ""
    to_stdout = run(source.db, "export", "--format", "jsonl")
    assert to_stdout.exit_code == 0 and to_stdout.stdout == source.file.read_text()
    target = str(tmp_path / "target.db")
    imported = run(target, "import", str(out))
    assert imported.exit_code == 0, imported.output
    assert imported.stdout.strip() == source.digest.to_text()
    assert run(target, "import", str(out)).stdout.strip() == source.digest.to_text()  # already there


def test_cli_import_refuses_a_broken_chain_or_a_non_empty_store(source, tmp_path):
    lines = source.file.read_text(encoding="utf-8").splitlines(keepends=True)
    bad = write_lines(tmp_path / "bad.jsonl", lines[:9] + lines[10:])
    target = str(tmp_path / "target.db")
    refused = run(target, "import", "--batch-size", "10", str(bad))
    assert refused.exit_code == 1 and refused.stdout == ""
    assert refused.stderr.startswith("error: [import_chain_broken] line 10: ") and refused.stderr.count("\n") == 1
    assert digest(ClearingApplication(env=store_env(target)).recorder).events == 0
    occupied = run(source.db, "import", str(source.file))  # the source holds it all already: a no-op
    assert occupied.exit_code == 0
    other = Ledger(store_env(str(tmp_path / "other.db")))
    other.post_ok('{"type":"open_account","account":"zoe"}')
    not_empty = run(str(tmp_path / "other.db"), "import", str(source.file))
    assert not_empty.exit_code == 1 and "[store_not_empty]" in not_empty.stderr


def test_cli_export_usage_errors(source, tmp_path):
    assert run(source.db, "export", "--format", "csv").exit_code == 2
    missing = run(str(tmp_path / "missing.db"), "export")
    assert missing.exit_code == 3 and "store_not_found" in missing.stderr
    assert run(source.db, "import", str(tmp_path / "missing.jsonl")).exit_code == 2
