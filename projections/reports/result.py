"""The result of a report: its rows, the rows CSV carries and JSON's totals, cut to its columns."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from projections.reports.inputs import DayState
from projections.reports.request import Request


@dataclass
class Report:
    """One report: the rows JSON carries, the rows CSV carries, and JSON's totals.

    ``csv_rows`` are ``rows`` plus, for reports whose summary cannot be recomputed from the
    rows (insurance-fund balances, stress covers), summary rows told apart by ``row_kind``.
    """

    name: str
    date: str
    as_of_position: int
    provisional: bool
    columns: tuple[str, ...]
    rows: list[dict[str, Any]]
    csv_rows: list[dict[str, Any]] | None = None
    totals: dict[str, Any] | None = None
    chain_hash: str = ""  # the hash chain's head at as_of_position (provenance; set by build_report)

    def __post_init__(self) -> None:
        if self.csv_rows is None:
            self.csv_rows = self.rows


def report_from(request: Request, state: DayState, position: int, columns: tuple[str, ...], rows: list[dict[str, Any]],
                csv_rows: list[dict[str, Any]] | None = None, totals: dict[str, Any] | None = None) -> Report:
    """The report of ``request`` at ``position``: every row (and CSV row) cut to ``columns``, a missing cell None."""
    full = [{column: row.get(column) for column in columns} for row in rows]
    full_csv = None if csv_rows is None else [{column: row.get(column) for column in columns} for row in csv_rows]
    return Report(request.name, request.date, position, state.provisional, columns, full, full_csv, totals)


def joined(items: Iterable[str]) -> str:
    """A list inside one cell, ``;``-separated: ``["alice", "bob"]`` -> ``"alice;bob"``."""
    return ";".join(items)
