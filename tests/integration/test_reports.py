"""Reports are byte-identical across stores: the scenario of ``tests/unit/test_reports.py``
built into a reference SQLite file, exported and imported into the store under test (an
SQLite file, then PostgreSQL), gives the same CSV and JSON bytes for every report and day,
provenance included, through ``clearing report``. Built separately from the same input, the
two logs differ only in their recording times, so every report is the same but for the
hash chain's head it names.
"""

from __future__ import annotations

import json

from click.testing import CliRunner

import cli.reports  # noqa: F401 - registers `clearing report`
from cli.main import main
from projections.reports.registry import REPORT_NAMES
from tests.unit.test_reports import DATES, build


def test_every_report_is_byte_identical_on_each_store(store_db, tmp_path):
    reference = build(str(tmp_path / "reference.db"))
    log = tmp_path / "log.jsonl"
    assert CliRunner().invoke(main, ["--db", reference.db, "export", "--output", str(log)]).exit_code == 0
    imported = CliRunner().invoke(main, ["--db", store_db, "import", str(log)])
    assert imported.exit_code == 0, imported.output
    for name in REPORT_NAMES:
        for day in DATES:
            for output_format in ("csv", "json"):
                shown = CliRunner().invoke(main, ["--db", store_db, "report", name, "--date", day, "--format", output_format])
                assert shown.exit_code == 0, shown.output
                assert shown.stdout == reference.text(name, day, output_format), (name, day, output_format)


def test_the_same_input_built_on_each_store_gives_the_same_reports_but_the_chain_head(store_db, tmp_path):
    reference = build(str(tmp_path / "reference.db"))
    tested = build(store_db)
    assert tested.heads == reference.heads
    for name in REPORT_NAMES:
        for day in DATES:
            assert tested.text(name, day, "csv") == reference.text(name, day, "csv"), (name, day)
            ours, theirs = (json.loads(built.text(name, day, "json")) for built in (tested, reference))
            assert ours.pop("chain_hash") != theirs.pop("chain_hash")  # two histories, recorded at other times
            assert ours == theirs, (name, day)
    for output_format in ("csv", "json"):
        shown = CliRunner().invoke(main, ["--db", store_db, "report", "stress", "--date", "2025-03-02",
                                          "--format", output_format, "--shock", "-0.1234,0.05"])
        assert shown.exit_code == 0, shown.output
        expected = reference.text("stress", "2025-03-02", output_format, shock="-0.1234,0.05")
        if output_format == "csv":
            assert shown.stdout == expected
        else:
            ours, theirs = json.loads(shown.stdout), json.loads(expected)
            assert ours.pop("chain_hash") != theirs.pop("chain_hash") and ours == theirs
