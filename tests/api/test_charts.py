"""``clearing chart``: the dashboard's charts as files, and its refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from projections.api.app import http_code

CLEARING = str(Path(sys.executable).parent / "clearing")
LABELS = {"insurance-fund": "balance", "coverage": "maintenance", "liquidations": "liquidation fills",
          "losses": "socialize_per_contract", "open-interest": "BTC-PERP open interest"}


def chart(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLEARING, "--db", db, "chart", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name", sorted(LABELS))
def test_every_chart_is_written_as_svg_with_its_series_labels_and_as_png(sqlite_served_db: str, tmp_path: Path, name: str):
    svg, png = tmp_path / f"{name}.svg", tmp_path / f"{name}.png"
    done = chart(sqlite_served_db, name, "--from", "2025-03-01", "--to", "2025-03-05", "--output", str(svg))
    assert done.returncode == 0, done.stderr
    assert LABELS[name] in svg.read_text() and "wrote chart" in done.stderr
    assert chart(sqlite_served_db, name, "--date", "2025-03-03", "--output", str(png)).returncode == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = tmp_path / "again.svg"
    chart(sqlite_served_db, name, "--from", "2025-03-01", "--to", "2025-03-05", "--output", str(again))
    assert again.read_bytes() == svg.read_bytes()  # no date, fixed ids: the same store gives the same file


@pytest.mark.parametrize(("args", "code"), [
    (("pie", "--date", "2025-03-01"), "unknown_chart"),
    (("losses",), "invalid_window"),
    (("losses", "--date", "2025-03-01", "--from", "2025-03-01"), "invalid_window"),
    (("losses", "--from", "2025-03-05", "--to", "2025-03-01"), "invalid_window"),
    (("losses", "--from", "2024-01-01", "--to", "2025-03-01"), "invalid_window"),
    (("losses", "--date", "2025-02-30"), "invalid_date"),
])
def test_a_bad_chart_request_is_refused_with_its_code_and_writes_nothing(sqlite_served_db: str, tmp_path: Path, args, code):
    target = tmp_path / "out.svg"
    done = chart(sqlite_served_db, *args, "--output", str(target))
    assert done.returncode == 1 and f"[{code}]" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not target.exists()
    wrong = chart(sqlite_served_db, "losses", "--date", "2025-03-01", "--output", str(tmp_path / "out.gif"))
    assert wrong.returncode == 1 and "[invalid_output]" in wrong.stderr


def test_a_refusal_of_the_http_layer_has_a_code():
    assert (http_code(404), http_code(405), http_code(418)) == ("not_found", "method_not_allowed", "http_error")
