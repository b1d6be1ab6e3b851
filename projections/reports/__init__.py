"""Regulator reports built only from the projection tables (never from the event log).

Reports (columns, units and regulatory anchors in docs/reports.md):

* ``daily-margin``: per account, end-of-day margin and the day's cash flows (CFTC 39.19(c)(1)(A)-(C));
* ``positions``: end-of-day positions and per-market open interest and volume (39.19(c)(1)(D));
* ``insurance-fund``: opening and closing balance, every movement of the day, totals by cause;
* ``liquidations``: the liquidation register of the day;
* ``loss-allocations``: bankruptcy deficits and socialized-loss / deleveraging shares of the day;
* ``disclosures``: CPMI-IOSCO PQD-style quantitative items 4.1, 4.4, 6.1, 6.2, 6.6-6.8;
* ``stress``: a what-if on an in-memory copy of the state (writes nothing).

Business day (see ``projections.margin``): day D is *closed* when the business clock has
moved past it; its end-of-day (EOD) state is the ``margin_eod_*`` rows of the greatest
closed day <= D (a day without events carries the previous state over). When D is the
clock's current day or later, nothing is closed yet: the same figures are computed live
from ``margin_accounts`` / ``margin_positions`` / ``margin_markets`` with
``projections.margin.end_of_day_rows`` and the report is ``provisional``.
Example: events on 03-01 and 03-03, clock day 03-03: D = 03-02 -> EOD rows of 03-01
(closed, carried over); D = 03-03 -> live rows, provisional.

Output is deterministic: rows sorted by stable keys, decimals as canonical strings
(``clearing.money.fmt``), no floats, no wall-clock time, JSON with sorted keys, ``\\n``
line endings; the same log gives byte-identical files on SQLite and PostgreSQL.

Layout (one module per idea; this package re-exports the names callers use):

* ``registry``: ``REPORT_NAMES``, each report's builder and projections, ``check_request``
  and ``build_report`` (the entry functions);
* ``request``: the checked ``Request`` and ``parse_date``; ``shocks``: the default and the
  operator's mark shocks; ``price_history``: a price file's worst fall and rise;
* ``inputs``: each projection's tables and the EOD ``DayState``; ``reader``: the one read
  transaction (``Reader``) and ``as_of``;
* one module per report: ``daily_margin``, ``positions``, ``insurance_fund``,
  ``liquidations``, ``loss_allocations``, ``stress`` (over ``scenarios``, the shocked
  copies of the state), ``disclosures``; ``variation_margin``: the VM rule both
  daily-margin and disclosures use;
* ``result``: the ``Report`` and how its rows are cut to its columns; ``rendering``: CSV
  and JSON text.
"""

from __future__ import annotations

from projections.reports.inputs import DayState
from projections.reports.price_history import load_prices, price_scenarios, worst_fall, worst_rise
from projections.reports.reader import Reader, as_of
from projections.reports.registry import REPORT_NAMES, build_report, check_request
from projections.reports.rendering import render
from projections.reports.request import Request, parse_date
from projections.reports.result import Report
from projections.reports.scenarios import Scenario, covers, shocked_mark
from projections.reports.shocks import DEFAULT_SHOCKS, parse_shocks, signed

__all__ = [
    "DEFAULT_SHOCKS",
    "REPORT_NAMES",
    "DayState",
    "Reader",
    "Report",
    "Request",
    "Scenario",
    "as_of",
    "build_report",
    "check_request",
    "covers",
    "load_prices",
    "parse_date",
    "parse_shocks",
    "price_scenarios",
    "render",
    "shocked_mark",
    "signed",
    "worst_fall",
    "worst_rise",
]
