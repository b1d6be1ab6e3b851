"""Reports are byte-identical across stores: the scenario of ``tests/unit/test_reports.py``
built into the store under test (an SQLite file, then PostgreSQL) and into a reference SQLite
file gives the same CSV and JSON bytes for every report and day, through the library call
and through ``clearing report``.
"""

from __future__ import annotations

from click.testing import CliRunner

import cli.reports  # noqa: F401 - registers `clearing report`
from cli.main import main
from projections.reports.registry import REPORT_NAMES
from tests.unit.test_reports import DATES, build


def test_every_report_is_byte_identical_on_each_store(store_db, tmp_path):
    reference = build(str(tmp_path / "reference.db"))
    tested = build(store_db)
    assert tested.heads == reference.heads
    for name in REPORT_NAMES:
        for day in DATES:
            for output_format in ("csv", "json"):
                assert tested.text(name, day, output_format) == reference.text(name, day, output_format), (
                    name, day, output_format)
    for output_format in ("csv", "json"):
        shown = CliRunner().invoke(main, ["--db", store_db, "report", "stress", "--date", "2025-03-02",
                                          "--format", output_format, "--shock", "-0.1234,0.05"])
        assert shown.exit_code == 0, shown.output
        expected = reference.text("stress", "2025-03-02", output_format, shock="-0.1234,0.05")
        assert shown.stdout_bytes == expected.encode()
