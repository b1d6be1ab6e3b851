"""The rendering: a report as CSV or JSON text, byte for byte the same for the same log.

Decimals are canonical strings, nothing is a float, JSON keys are sorted (two-space
indent), line endings are ``\\n``; docs/reports.md, "Conventions".
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from typing import Any

from clearing.jsonable import jsonable
from projections.reports.result import Report


def plain(value: Any) -> Any:
    """A value as JSON carries it: decimals as canonical strings, never a float
    (``clearing.jsonable`` with ``refuse_floats``). ``Decimal("1200.000000")`` -> ``"1200"``."""
    return jsonable(value, refuse_floats=True)


def cell(value: Any) -> str:
    """A value as a CSV cell: None -> "", True -> "true", Decimal -> fmt, int -> digits."""
    converted = plain(value)
    if converted is None:
        return ""
    if isinstance(converted, bool):
        return "true" if converted else "false"
    return str(converted)


def to_json(report: Report) -> str:
    """The JSON document: sorted keys, two-space indent, one trailing newline."""
    document: dict[str, Any] = {
        "report": report.name, "date": report.date, "as_of_position": report.as_of_position,
        "chain_hash": report.chain_hash, "provisional": report.provisional, "columns": list(report.columns), "rows": report.rows,
    }
    if report.totals is not None:
        document["totals"] = report.totals
    return json.dumps(plain(document), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def to_csv(report: Report) -> str:
    """Header row of the column names, then one line per CSV row; ``\\n`` line endings."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(report.columns)
    for row in report.csv_rows or []:
        writer.writerow([cell(row[column]) for column in report.columns])
    return buffer.getvalue()


def provenance(report: Report, output_format: str, data: bytes) -> dict[str, Any]:
    """The sidecar ``FILE.meta.json`` of a report file: where it came from and what it holds.

    ``sha256`` is of the report file's bytes, so the sidecar names exactly one file.
    """
    return {"report": report.name, "date": report.date, "format": output_format,
            "as_of_position": report.as_of_position, "chain_hash": report.chain_hash,
            "provisional": report.provisional, "rows": len(report.csv_rows or []),
            "sha256": hashlib.sha256(data).hexdigest()}


def render(report: Report, output_format: str) -> str:
    return to_json(report) if output_format == "json" else to_csv(report)
