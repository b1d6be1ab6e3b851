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
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, ROUND_UP, Decimal, localcontext
from typing import Any

from sqlalchemy import func, select

from clearing.domain.account import Position
from clearing.domain.risk import margin_totals
from clearing.errors import InputError
from clearing.jsonable import jsonable
from clearing.money import LEDGER_CONTEXT, USDC, ZERO, D, MoneyError, exact, fmt
from projections.margin import MarketTerms, end_of_day_rows
from projections.read import Views
from projections.runner import ProjectionError

REPORT_NAMES = ("daily-margin", "positions", "insurance-fund", "liquidations", "loss-allocations", "disclosures",
                "stress")
DEFAULT_SHOCKS = tuple(Decimal(value) for value in ("-0.3", "-0.2", "-0.1", "0.1", "0.2", "0.3"))
MAX_SHOCKS = 50
MAX_SHOCK = Decimal(10)
SHOCK_QUANTUM = Decimal("0.000001")  # a price file's worst move, rounded away from zero
AVERAGE_QUANTUM = USDC.quantum       # averages (PQD 6.6) are rounded half-even to the collateral quantum
PRICE_COLUMNS = ("close", "price", "mark", "close_price", "mark_price")
GROUP_COLUMN = "window"
MARGIN_LIVE = ("margin_accounts", "margin_positions", "margin_markets")
MARGIN_EOD = ("margin_eod_accounts", "margin_eod_positions", "margin_eod_markets")

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# -- the result -------------------------------------------------------------------------


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

    def __post_init__(self) -> None:
        if self.csv_rows is None:
            self.csv_rows = self.rows


# -- input checks (done before the store is touched) -------------------------------------


def check_report_name(name: str) -> str:
    """``name`` when it is one of ``REPORT_NAMES``; else ``unknown_report``."""
    if name not in REPORT_NAMES:
        raise InputError("unknown_report", "report", f"{name[:40]!r} is unknown; choose from {', '.join(REPORT_NAMES)}")
    return name


def parse_date(value: str) -> str:
    """A business day written ``YYYY-MM-DD`` (a UTC date), returned unchanged.

    ``parse_date("2025-03-02")`` -> ``"2025-03-02"``; ``"2025-3-2"`` or ``"2025-02-30"`` -> ``invalid_date``.
    """
    try:
        if not _DATE.match(value):
            raise ValueError
        date.fromisoformat(value)
    except ValueError:
        raise InputError("invalid_date", "date", f"{value[:40]!r} is not a valid day written YYYY-MM-DD") from None
    return value


def parse_shocks(value: str) -> tuple[Decimal, ...]:
    """A comma-separated list of relative mark shocks, -1 < shock <= 10, parsed exactly.

    ``"-0.3,+0.1,0.1"`` -> ``(Decimal("-0.3"), Decimal("0.1"))`` (sorted, duplicates by value
    dropped). A float is never built: each item goes through ``clearing.money.D``, which
    refuses NaN, infinities and exponents; ``"-1"`` (a mark of zero) is refused.
    """
    items = [item.strip() for item in value.split(",")]
    if not value.strip() or any(not item for item in items):
        raise InputError("invalid_shock", "shock", f"{value[:60]!r}: give comma-separated numbers like -0.1,0.2")
    if len(items) > MAX_SHOCKS:
        raise InputError("invalid_shock", "shock", f"at most {MAX_SHOCKS} shocks")
    shocks: set[Decimal] = set()
    for item in items:
        try:
            shock = D(item[1:] if item.startswith("+") else item)
        except MoneyError:
            raise InputError("invalid_shock", "shock", f"{item[:40]!r} is not a plain decimal number") from None
        if not Decimal(-1) < shock <= MAX_SHOCK:
            raise InputError("invalid_shock", "shock", f"{item} is outside -1 < shock <= {MAX_SHOCK}")
        shocks.add(shock)
    return tuple(sorted(shocks))


def load_prices(path: str) -> dict[str, list[Decimal]]:
    """Price series of a CSV file by window (``""`` when the file has no ``window`` column).

    The header must name a price column: the first of ``close``, ``price``, ``mark``,
    ``close_price``, ``mark_price`` (any case). Rows are taken in file order (oldest first);
    every price must be a plain decimal > 0. Example: ``close\\n100\\n90`` -> ``{"": [100, 90]}``.
    """
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            content = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
        raise InputError("unreadable_prices", "prices", f"cannot read {path}: {reason}") from None
    reader = csv.reader(io.StringIO(content))
    header = next(reader, None)
    if not header:
        raise InputError("invalid_prices", "prices", f"{path} is empty (a header row with a close/price column is needed)")
    names = [name.strip().lower() for name in header]
    column = next((names.index(name) for name in PRICE_COLUMNS if name in names), None)
    if column is None:
        raise InputError("invalid_prices", "prices", f"{path}: no close/price column in header {','.join(header)[:80]}")
    group = names.index(GROUP_COLUMN) if GROUP_COLUMN in names else None
    series: dict[str, list[Decimal]] = {}
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) <= column:
            raise InputError("invalid_prices", "prices", f"{path} line {line}: no value in column {header[column]}")
        try:
            price = D(row[column].strip())
        except MoneyError:
            raise InputError("invalid_prices", "prices",
                             f"{path} line {line}: {row[column][:40]!r} is not a plain decimal number") from None
        if price <= ZERO:
            raise InputError("invalid_prices", "prices", f"{path} line {line}: price {row[column]} is not positive")
        key = row[group].strip() if group is not None and len(row) > group else ""
        series.setdefault(key, []).append(price)
    if not any(len(prices) >= 2 for prices in series.values()):
        raise InputError("invalid_prices", "prices", f"{path}: at least two prices are needed")
    return series


@exact
def worst_fall(prices: list[Decimal]) -> Decimal:
    """Largest relative drop from a peak to a later trough, as a positive fraction.

    ``[100, 120, 90, 95, 130, 110]`` -> peak 120, later trough 90: (120 - 90) / 120 = 0.25.
    """
    peak, worst = prices[0], ZERO
    for price in prices[1:]:
        peak = max(peak, price)
        worst = max(worst, (peak - price) / peak)
    return worst


@exact
def worst_rise(prices: list[Decimal]) -> Decimal:
    """Largest relative rise from a trough to a later peak, as a positive fraction.

    ``[100, 120, 90, 95, 130, 110]`` -> trough 90, later peak 130: (130 - 90) / 90 = 0.4444...
    """
    trough, worst = prices[0], ZERO
    for price in prices[1:]:
        trough = min(trough, price)
        worst = max(worst, (price - trough) / trough)
    return worst


def price_scenarios(series: dict[str, list[Decimal]]) -> list[tuple[str, Decimal]]:
    """The two scenarios of a price file: its worst fall (negative shock) and worst rise.

    Each is the worst over the file's windows (a fall never spans two windows), rounded
    *away from zero* to 0.000001 so the scenario is never milder than history:
    0.4444444... -> ``+0.444445``; 0.25 -> ``-0.25``.
    """
    usable = [prices for _, prices in sorted(series.items()) if len(prices) >= 2]
    fall = max(worst_fall(prices) for prices in usable)
    rise = max(worst_rise(prices) for prices in usable)
    return [("prices:worst_fall", -fall.quantize(SHOCK_QUANTUM, rounding=ROUND_UP, context=LEDGER_CONTEXT)),
            ("prices:worst_rise", rise.quantize(SHOCK_QUANTUM, rounding=ROUND_UP, context=LEDGER_CONTEXT))]


@dataclass(frozen=True)
class Request:
    """A checked report request."""

    name: str
    date: str
    shocks: tuple[Decimal, ...] | None = None
    price_file: str | None = None
    price_series: dict[str, list[Decimal]] | None = None

    def scenarios(self) -> list[tuple[str, Decimal]]:
        """Stress scenarios: one per shock (default shocks unless given) plus the price file's two."""
        listed = [(f"shock:{signed(s)}", s) for s in (self.shocks or DEFAULT_SHOCKS)]
        extra = price_scenarios(self.price_series) if self.price_series is not None else []
        return sorted(listed + extra, key=lambda item: (item[1], item[0]))


def check_request(name: str, day: str, shock: str | None = None, prices: str | None = None) -> Request:
    """Validate everything the operator typed; raises ``InputError`` naming the field."""
    check_report_name(name)
    parse_date(day)
    if name not in ("stress", "disclosures"):
        for option, value in (("shock", shock), ("prices", prices)):
            if value is not None:
                raise InputError("not_applicable", option,
                                 f"--{option} applies to the stress and disclosures reports only")
    shocks = parse_shocks(shock) if shock is not None else None
    series = load_prices(prices) if prices is not None else None
    return Request(name, day, shocks, prices, series)


# -- reading the projections -------------------------------------------------------------


def signed(value: Decimal) -> str:
    """``fmt`` with an explicit sign for positive numbers: 0.1 -> ``+0.1``, -0.3 -> ``-0.3``."""
    text_value = fmt(value)
    return f"+{text_value}" if value > ZERO else text_value


def previous_day(day: str) -> str:
    """The calendar day before: ``2025-03-01`` -> ``2025-02-28``."""
    return (date.fromisoformat(day) - timedelta(days=1)).isoformat()


@dataclass
class DayState:
    """End-of-day state at a business day, shaped as ``margin_eod_*`` rows."""

    day: str
    provisional: bool
    as_of_position: int
    eod_day: str | None
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    positions: list[dict[str, Any]] = field(default_factory=list)
    markets: dict[str, dict[str, Any]] = field(default_factory=dict)


class Reader:
    """One read transaction over the projection tables a report needs."""

    def __init__(self, views: Views, connection: Any, projections: Iterable[str]) -> None:
        self.views = views
        self.connection = connection
        self.tables: dict[str, Any] = {}
        for projection in projections:
            for spec_name in _TABLES[projection]:
                self.tables[spec_name] = views.table(projection, spec_name)
        self.tracked = {projection: self._tracked(projection) for projection in projections}
        self._states: dict[str, DayState] = {}
        self._clock: dict[str, Any] | bool | None = False

    def _tracked(self, projection: str) -> int:
        """The projection's position in the log (its tracking record)."""
        return self.views.position(projection, self.connection)

    def rows(self, table: str, *order: str, **where: Any) -> list[dict[str, Any]]:
        """Rows of ``table`` matching ``where`` (equality), sorted by ``order`` in Python."""
        found = self.tables[table]
        query = select(found)
        for column, value in where.items():
            query = query.where(found.c[column] == value)
        result = [dict(row) for row in self.connection.execute(query).mappings()]
        result.sort(key=lambda row: tuple(row[name] for name in order))
        return result

    def clock(self) -> dict[str, Any] | None:
        """The margin projection's business clock: current day and last position, or None."""
        if self._clock is False:
            rows = self.rows("margin_clock", "id")
            self._clock = rows[0] if rows else None
        return self._clock  # type: ignore[return-value]

    def is_provisional(self, day: str) -> bool:
        """True when ``day`` is not closed: it is the clock's current day or later (or nothing happened)."""
        clock = self.clock()
        return clock is None or day >= clock["day"]

    def first_day(self) -> str | None:
        """The first business day in the projections (earliest EOD day, else the clock day)."""
        days = [self.connection.execute(select(func.min(self.tables[t].c.day))).scalar()
                for t in ("margin_eod_accounts", "margin_eod_markets")]
        clock = self.clock()
        days += [clock["day"]] if clock else []
        known = [d for d in days if d is not None]
        return min(known) if known else None

    def state(self, day: str) -> DayState:
        """EOD state at ``day`` (closed rows carried over, or live and provisional)."""
        if day not in self._states:
            self._states[day] = self._live(day) if self.is_provisional(day) else self._closed(day)
        return self._states[day]

    def _closed(self, day: str) -> DayState:
        days = [self.connection.execute(select(func.max(self.tables[t].c.day)).where(self.tables[t].c.day <= day)).scalar()
                for t in ("margin_eod_accounts", "margin_eod_markets")]
        known = [d for d in days if d is not None]
        if not known:
            return DayState(day, False, 0, None)
        eod_day = max(known)
        accounts = {r["account"]: r for r in self.rows("margin_eod_accounts", "account", day=eod_day)}
        markets = {r["market"]: r for r in self.rows("margin_eod_markets", "market", day=eod_day)}
        positions = self.rows("margin_eod_positions", "market", "account", day=eod_day)
        position = max(r["as_of_position"] for r in [*accounts.values(), *markets.values()])
        return DayState(day, False, position, eod_day, accounts, positions, markets)

    def _live(self, day: str) -> DayState:
        position = self.tracked["margin"]
        state = DayState(day, True, position, None)
        for table, row in end_of_day_rows(self.connection, {t: self.tables[t] for t in MARGIN_LIVE}, day, position):
            if table == "margin_eod_accounts":
                state.accounts[row["account"]] = row
            elif table == "margin_eod_positions":
                state.positions.append(row)
            else:
                state.markets[row["market"]] = row
        state.positions.sort(key=lambda row: (row["market"], row["account"]))
        return state

    def flows(self, day: str) -> dict[str, dict[str, Any]]:
        """``margin_flows`` rows of ``day`` by account."""
        return {r["account"]: r for r in self.rows("margin_flows", "account", day=day)}

    def fund_balance(self, through: str, inclusive: bool = True) -> Decimal:
        """Fund balance after the last movement dated on or before (or strictly before) ``through``; 0 if none."""
        table = self.tables["fund_movements"]
        condition = table.c.day <= through if inclusive else table.c.day < through
        found = self.connection.execute(
            select(table.c.balance_after).where(condition).order_by(table.c.position.desc()).limit(1)).scalar()
        return ZERO if found is None else found


_TABLES = {
    "margin": (*MARGIN_LIVE, "margin_flows", "margin_clock", *MARGIN_EOD),
    "insurance_fund": ("fund_movements",),
    "losses": ("loss_events", "loss_allocations"),
    "liquidations": ("liquidation_register",),
}


def as_of(reader: Reader, state: DayState, projections: Iterable[str]) -> int:
    """The log position the report reflects; refuses a snapshot where a projection lags.

    Closed day: the EOD rows' ``as_of_position`` (every projection must have reached it).
    Provisional: the margin projection's tracked position (the others must be at the same one).
    """
    position = state.as_of_position
    for projection in projections:
        tracked = reader.tracked[projection]
        if tracked < position or (state.provisional and tracked != position):
            raise ProjectionError("projection_behind", projection,
                                  f"projection {projection} is at log position {tracked}, the report needs {position}; "
                                  "catch the projections up and run the report again")
    return position


# -- the reports ----------------------------------------------------------------------------


def build_report(views: Views, request: Request) -> Report:
    """Build one report from the live projection tables in one read transaction."""
    builder, projections = _BUILDERS[request.name]
    with localcontext(LEDGER_CONTEXT), views.reading() as connection:
        reader = Reader(views, connection, projections)
        return builder(reader, request)


def _zero_flows(account: str) -> dict[str, Any]:
    return {"account": account, **dict.fromkeys(DAY_FLOWS, ZERO), **dict.fromkeys(DAY_COUNTS, 0)}


DAY_FLOWS = ("realized_pnl", "funding", "penalties", "liquidator_fees", "deposits", "withdrawals", "loss_shares",
             "loss_covered", "largest_call")
DAY_COUNTS = ("calls_issued", "calls_met")

DAILY_MARGIN_COLUMNS = (
    "account", "status", "risk_status", "collateral", "unrealized_pnl", "equity", "initial_margin",
    "maintenance_margin", "free_collateral", "unrealized_pnl_previous", "realized_pnl", "variation_margin", "funding",
    "penalties", "liquidator_fees", "deposits", "withdrawals", "loss_shares", "loss_covered", "calls_issued",
    "calls_met", "largest_call", "open_call",
)


def variation_margin(unrealized_now: Decimal, unrealized_before: Decimal, realized_today: Decimal) -> Decimal:
    """VM of a day = EOD unrealized PnL - previous EOD unrealized PnL + PnL realized that day.

    Long 0.2 marked 50,000 -> 45,300 with 0.1 closed at 45,400 (realized -460) and the rest
    closed at 45,300 (realized -470): unrealized 0 -> 0, VM = 0 - 0 - 930 = -930 (paid).
    Positive: collected by the account; negative: paid by it.
    """
    return unrealized_now - unrealized_before + realized_today


def vm_paid(values: Iterable[Decimal]) -> Decimal:
    """VM paid by participants = sum of the negative VMs, as a positive number: [-930, 940, -10] -> 940."""
    return sum((-value for value in values if value < ZERO), ZERO)


def daily_margin(reader: Reader, request: Request) -> Report:
    """Per account: EOD requirements and collateral, the day's VM and other cash flows."""
    state, before = reader.state(request.date), reader.state(previous_day(request.date))
    flows = reader.flows(request.date)
    rows = []
    for account in sorted(set(state.accounts) | set(flows)):
        eod = state.accounts.get(account, {})
        day = flows.get(account) or _zero_flows(account)
        previous = before.accounts.get(account, {}).get("unrealized_pnl", ZERO)
        unrealized = eod.get("unrealized_pnl", ZERO)
        rows.append({
            "account": account, "status": eod.get("status"), "risk_status": eod.get("risk_status"),
            **{name: eod.get(name, ZERO) for name in ("collateral", "unrealized_pnl", "equity", "initial_margin",
                                                      "maintenance_margin", "free_collateral")},
            "unrealized_pnl_previous": previous,
            "variation_margin": variation_margin(unrealized, previous, day["realized_pnl"]),
            **{name: day[name] for name in (*DAY_FLOWS, *DAY_COUNTS)},
            "open_call": eod.get("call_amount"),
        })
    summed = ("collateral", "equity", "initial_margin", "maintenance_margin", "variation_margin", "realized_pnl",
              "funding", "penalties", "liquidator_fees", "deposits", "withdrawals", "loss_shares", "loss_covered")
    totals: dict[str, Any] = {name: sum((row[name] for row in rows), ZERO) for name in summed}
    totals.update(accounts=len(rows), calls_issued=sum(row["calls_issued"] for row in rows),
                  calls_met=sum(row["calls_met"] for row in rows),
                  largest_call=max((row["largest_call"] for row in rows), default=ZERO),
                  variation_margin_paid=vm_paid(row["variation_margin"] for row in rows),
                  variation_margin_collected=sum((r["variation_margin"] for r in rows if r["variation_margin"] > ZERO), ZERO))
    return _report(request, state, as_of(reader, state, ["margin"]), DAILY_MARGIN_COLUMNS, rows, totals=totals)


POSITIONS_COLUMNS = (
    "row_kind", "market", "account", "status", "size", "entry_price", "mark", "notional", "unrealized_pnl",
    "initial_margin", "maintenance_margin", "liquidation_price", "long_size", "short_size", "open_interest", "holders",
    "volume_day", "volume_total",
)


def volume_of_day(total_now: Decimal, total_before: Decimal) -> Decimal:
    """Volume of a day = cumulative volume at this EOD - cumulative volume at the previous EOD: 0.6 - 0.3 = 0.3."""
    return total_now - total_before


def positions(reader: Reader, request: Request) -> Report:
    """EOD positions per account and market, and one ``market`` row per market (open interest, volume)."""
    state, before = reader.state(request.date), reader.state(previous_day(request.date))
    rows = []
    for name, market in sorted(state.markets.items()):
        volume_before = before.markets.get(name, {}).get("volume", ZERO)
        rows.append({
            "row_kind": "market", "market": name, "status": market["status"], "mark": market["mark"],
            "long_size": market["long_size"], "short_size": market["short_size"], "open_interest": market["long_size"],
            "holders": market["holders"], "volume_day": volume_of_day(market["volume"], volume_before),
            "volume_total": market["volume"],
        })
        for held in (row for row in state.positions if row["market"] == name):
            rows.append({"row_kind": "position", "market": name, "account": held["account"],
                         **{column: held[column] for column in ("size", "entry_price", "mark", "notional",
                                                                "unrealized_pnl", "initial_margin",
                                                                "maintenance_margin", "liquidation_price")}})
    held_rows = [row for row in rows if row["row_kind"] == "position"]
    totals: dict[str, Any] = {name: sum((row[name] for row in held_rows), ZERO)
                              for name in ("notional", "unrealized_pnl", "initial_margin", "maintenance_margin")}
    totals.update(positions=len(held_rows), markets=len(rows) - len(held_rows))
    return _report(request, state, as_of(reader, state, ["margin"]), POSITIONS_COLUMNS, rows, totals=totals)


FUND_COLUMNS = ("row_kind", "position", "at", "direction", "cause", "amount", "counterparty", "market", "reference",
                "balance_after")


def insurance_fund(reader: Reader, request: Request) -> Report:
    """Opening balance, every movement of the day, totals by direction and cause, closing balance.

    Opening = balance after the last movement dated before D (0 if none); closing = balance
    after the last movement dated on or before D. Example: 100 in on 03-01, penalties 40 and
    30 on 03-02 -> 03-02 opens at 100, inflows liquidation_penalty 70, closes at 170.
    """
    state = reader.state(request.date)
    opening = reader.fund_balance(request.date, inclusive=False)
    closing = reader.fund_balance(request.date)
    movements = [{"row_kind": "movement", **{c: r[c] for c in FUND_COLUMNS[1:]}}
                 for r in reader.rows("fund_movements", "position", day=request.date)]
    by_cause: dict[tuple[str, str], Decimal] = {}
    for row in movements:
        key = (row["direction"], row["cause"])
        by_cause[key] = by_cause.get(key, ZERO) + row["amount"]
    cause_rows = [{"row_kind": "cause_total", "direction": direction, "cause": cause, "amount": amount}
                  for (direction, cause), amount in sorted(by_cause.items())]
    csv_rows = [{"row_kind": "opening", "amount": opening, "balance_after": opening}, *movements, *cause_rows,
                {"row_kind": "closing", "amount": closing, "balance_after": closing}]
    totals = {
        "opening_balance": opening, "closing_balance": closing,
        "inflows": sum((r["amount"] for r in movements if r["direction"] == "in"), ZERO),
        "outflows": sum((r["amount"] for r in movements if r["direction"] == "out"), ZERO),
        "inflows_by_cause": {c: a for (d, c), a in sorted(by_cause.items()) if d == "in"},
        "outflows_by_cause": {c: a for (d, c), a in sorted(by_cause.items()) if d == "out"},
        "movements": len(movements),
    }
    position = as_of(reader, state, ["margin", "insurance_fund"])
    return _report(request, state, position, FUND_COLUMNS, movements, csv_rows=csv_rows, totals=totals)


LIQUIDATION_COLUMNS = ("position", "at", "kind", "account", "market", "reference", "reason", "size_delta", "price_mark",
                       "price", "price_bankruptcy", "equity", "maintenance_margin", "amount", "penalty",
                       "fee_liquidator", "counterparty")


def liquidations(reader: Reader, request: Request) -> Report:
    """Every ``liquidation_register`` row dated D, in log order (the event's own position)."""
    state = reader.state(request.date)
    rows = [{c: r[c] for c in LIQUIDATION_COLUMNS} for r in reader.rows("liquidation_register", "position",
                                                                         day=request.date)]
    kinds: dict[str, int] = {}
    for row in rows:
        kinds[row["kind"]] = kinds.get(row["kind"], 0) + 1
    fills = [row for row in rows if row["kind"] == "liquidation_fill"]
    totals = {
        "rows": len(rows), "rows_by_kind": dict(sorted(kinds.items())),
        "accounts_liquidated": ";".join(sorted({row["account"] for row in fills})),
        "penalties": sum((row["penalty"] or ZERO for row in fills), ZERO),
        "fund_draws": sum((row["amount"] for row in rows if row["kind"] == "fund_draw"), ZERO),
    }
    position = as_of(reader, state, ["margin", "liquidations"])
    return _report(request, state, position, LIQUIDATION_COLUMNS, rows, totals=totals)


LOSS_COLUMNS = ("row_kind", "position", "at", "loss_id", "market", "account", "policy", "deficit", "fund_paid",
                "allocated", "share", "basis", "basis_total", "loss_total", "price_mark", "price", "size_delta",
                "adl_rank", "liquidated_account")


def loss_allocations(reader: Reader, request: Request) -> Report:
    """Each deficit of D (``loss``) and each account's share of it (``allocation``), in log order.

    A ``loss`` row is the bankrupt account's deficit with what the fund paid and what was
    allocated; an ``allocation`` row is a socialized share or, policy ``adl``, a deleveraging
    fill whose ``share`` is what closing at the bankruptcy price cost the account against the mark.
    """
    state = reader.state(request.date)
    losses: list[dict[str, Any]] = [{"row_kind": "loss", **{c: r.get(c) for c in LOSS_COLUMNS[1:] if c in r}}
                                    for r in reader.rows("loss_events", "position", day=request.date)]
    shares: list[dict[str, Any]] = [{"row_kind": "allocation", **{c: r.get(c) for c in LOSS_COLUMNS[1:] if c in r}}
                                    for r in reader.rows("loss_allocations", "position", day=request.date)]
    rows = sorted(losses + shares, key=lambda row: row["position"])
    by_account: dict[str, Decimal] = {}
    for row in shares:
        by_account[row["account"]] = by_account.get(row["account"], ZERO) + row["share"]
    totals = {
        "losses": len(losses), "deficit": sum((r["deficit"] for r in losses), ZERO),
        "fund_paid": sum((r["fund_paid"] for r in losses), ZERO),
        "allocated": sum((r["allocated"] for r in losses), ZERO),
        "shares": sum(by_account.values(), ZERO), "shares_by_account": dict(sorted(by_account.items())),
    }
    position = as_of(reader, state, ["margin", "losses"])
    return _report(request, state, position, LOSS_COLUMNS, rows, totals=totals)


# -- stress ---------------------------------------------------------------------------------

STRESS_COLUMNS = ("row_kind", "scenario", "shock", "marks", "accounts_liquidated", "liquidated", "account_losses",
                  "loss_beyond_collateral", "fund_balance", "fund_used", "socialized_loss")


@exact
def shocked_mark(mark: Decimal, shock: Decimal, tick: Decimal) -> Decimal:
    """mark x (1 + shock) on the market's tick, rounded half-even (one mark for both sides).

    45,300 x (1 - 0.1) = 40,770 (on the 0.1 tick); 45,300 x (1 - 0.1234) = 39,709.98 -> 39,710.
    """
    steps = (mark * (1 + shock) / tick).to_integral_value(rounding=ROUND_HALF_EVEN)
    return (steps * tick).normalize() if steps else ZERO


def fund_split(loss: Decimal, fund: Decimal) -> tuple[Decimal, Decimal]:
    """(fund used, socialized): the fund pays first, the rest is socialized. loss 1,039, fund 170 -> (170, 869)."""
    used = min(loss, max(fund, ZERO))
    return used, loss - used


@dataclass
class Scenario:
    name: str
    shock: Decimal
    marks: dict[str, Decimal]
    losses: dict[str, Decimal]        # account -> loss beyond collateral (> 0 only)
    liquidated: list[str]             # equity < maintenance margin at the shocked marks


@exact
def run_scenario(state: DayState, terms: dict[str, dict[str, Any]], name: str, shock: Decimal) -> Scenario:
    """Every account with open positions re-margined at shocked marks (nothing is written).

    Liquidated when equity < maintenance margin; its loss beyond collateral is max(0, -equity).
    Example: collateral 500, long 0.1 with cost 4,700, mark 45,300 shocked -10% -> 40,770:
    equity 500 + 4,077 - 4,700 = -123 < MM 203.85 -> liquidated, loss 123.
    """
    marks: dict[str, Decimal] = {}
    shocked: dict[str, MarketTerms] = {}
    for market, row in sorted(state.markets.items()):
        if row["mark"] is None or market not in terms:
            continue
        marks[market] = shocked_mark(row["mark"], shock, terms[market]["tick_size"])
        shocked[market] = MarketTerms({**terms[market], "mark": marks[market]})
    held: dict[str, dict[str, Position]] = {}
    for row in state.positions:
        held.setdefault(row["account"], {})[row["market"]] = Position(row["size"], row["cost"], row["realized_pnl"])
    losses, liquidated = {}, []
    for account, positions_held in sorted(held.items()):
        margin = margin_totals(state.accounts[account]["collateral"], positions_held, shocked)
        if margin.equity < margin.maintenance_margin:
            liquidated.append(account)
            if margin.equity < ZERO:
                losses[account] = -margin.equity
    return Scenario(name, shock, marks, losses, liquidated)


def covers(scenarios: list[Scenario]) -> list[tuple[str, Decimal, str]]:
    """Each account's worst loss over the scenarios, largest first: (account, loss, scenario).

    Ties between scenarios keep the first in scenario order; ties between accounts sort by name.
    Cover-1 is the first entry, cover-2 the sum of the first two.
    """
    worst: dict[str, tuple[Decimal, str]] = {}
    for scenario in scenarios:
        for account, loss in scenario.losses.items():
            if account not in worst or loss > worst[account][0]:
                worst[account] = (loss, scenario.name)
    return sorted(((a, loss, s) for a, (loss, s) in worst.items()), key=lambda item: (-item[1], item[0]))


def _joined(items: Iterable[str]) -> str:
    return ";".join(items)


def _losses_text(losses: dict[str, Decimal]) -> str:
    return _joined(f"{account}={fmt(loss)}" for account, loss in sorted(losses.items()))


def stress_figures(reader: Reader, request: Request) -> tuple[DayState, Decimal, list[Scenario], list[tuple[str, Decimal, str]]]:
    """State at D, fund balance at D, every scenario, and the per-account worst losses."""
    state = reader.state(request.date)
    fund = reader.fund_balance(request.date)
    terms = {row["market"]: row for row in reader.rows("margin_markets", "market")}
    scenarios = [run_scenario(state, terms, name, shock) for name, shock in request.scenarios()]
    return state, fund, scenarios, covers(scenarios)


def stress(reader: Reader, request: Request) -> Report:
    """One row per scenario; CSV adds ``cover_1`` and ``cover_2`` rows (JSON: in totals)."""
    state, fund, scenarios, worst = stress_figures(reader, request)
    rows = []
    for scenario in scenarios:
        loss = sum(scenario.losses.values(), ZERO)
        used, socialized = fund_split(loss, fund)
        rows.append({
            "row_kind": "scenario", "scenario": scenario.name, "shock": scenario.shock,
            "marks": _joined(f"{m}={fmt(p)}" for m, p in scenario.marks.items()),
            "accounts_liquidated": len(scenario.liquidated), "liquidated": _joined(scenario.liquidated),
            "account_losses": _losses_text(scenario.losses), "loss_beyond_collateral": loss,
            "fund_balance": fund, "fund_used": used, "socialized_loss": socialized,
        })
    cover_rows = [_cover_row(kind, worst[:count], fund, scenarios) for kind, count in (("cover_1", 1), ("cover_2", 2))]
    totals = {"fund_balance": fund, "scenarios": len(rows)}
    for row in cover_rows:
        totals.update({row["row_kind"]: row["loss_beyond_collateral"], f"{row['row_kind']}_accounts": row["liquidated"],
                       f"{row['row_kind']}_scenarios": row["scenario"]})
    position = as_of(reader, state, ["margin", "insurance_fund"])
    return _report(request, state, position, STRESS_COLUMNS, rows, csv_rows=rows + cover_rows, totals=totals)


def _cover_row(kind: str, worst: list[tuple[str, Decimal, str]], fund: Decimal, scenarios: list[Scenario]) -> dict[str, Any]:
    """A cover row: the accounts, their own worst scenarios and shocks, and the loss against the fund."""
    shocks = {scenario.name: scenario.shock for scenario in scenarios}
    loss = sum((item[1] for item in worst), ZERO)
    used, socialized = fund_split(loss, fund)
    return {"row_kind": kind, "scenario": _joined(item[2] for item in worst),
            "shock": _joined(fmt(shocks[item[2]]) for item in worst), "accounts_liquidated": len(worst),
            "liquidated": _joined(item[0] for item in worst),
            "account_losses": _joined(f"{item[0]}={fmt(item[1])}" for item in worst), "loss_beyond_collateral": loss,
            "fund_balance": fund, "fund_used": used, "socialized_loss": socialized}


# -- disclosures ---------------------------------------------------------------------------

DISCLOSURE_COLUMNS = ("item", "description", "value")


def daily_vm_paid(reader: Reader, until: str) -> list[tuple[str, Decimal]]:
    """(day, VM paid) for every business day with EOD state up to ``until``, oldest first.

    Closed days come from ``margin_eod_accounts`` (unrealized PnL) and ``margin_flows``
    (realized PnL); the open day, when ``until`` reaches it, from the live state. Days
    without events have no rows and paid nothing.
    """
    eod = reader.tables["margin_eod_accounts"]
    flows = reader.tables["margin_flows"]
    realized = {(r.day, r.account): r.realized_pnl for r in reader.connection.execute(
        select(flows.c.day, flows.c.account, flows.c.realized_pnl).where(flows.c.day <= until))}
    unrealized: dict[str, dict[str, Decimal]] = {}
    for r in reader.connection.execute(select(eod.c.day, eod.c.account, eod.c.unrealized_pnl).where(eod.c.day <= until)):
        unrealized.setdefault(r.day, {})[r.account] = r.unrealized_pnl
    clock = reader.clock()
    if clock is not None and until >= clock["day"]:
        unrealized[clock["day"]] = {a: row["unrealized_pnl"] for a, row in reader.state(clock["day"]).accounts.items()}
    result: list[tuple[str, Decimal]] = []
    previous: dict[str, Decimal] = {}
    for day in sorted(unrealized):
        now = unrealized[day]
        accounts = set(now) | {a for (d, a) in realized if d == day}
        result.append((day, vm_paid(variation_margin(now.get(a, ZERO), previous.get(a, ZERO), realized.get((day, a), ZERO))
                                    for a in sorted(accounts))))
        previous = {**previous, **now}
    return result


def calls_by_day(reader: Reader, until: str) -> tuple[dict[str, Decimal], Decimal, str]:
    """Sum of margin calls issued per day, and the largest single call with its account.

    From the register's ``margin_call`` rows (``amount`` = initial margin - equity).
    """
    table = reader.tables["liquidation_register"]
    by_day: dict[str, Decimal] = {}
    largest, who = ZERO, ""
    query = select(table.c.day, table.c.account, table.c.amount, table.c.position).where(
        table.c.kind == "margin_call", table.c.day <= until)
    for r in sorted(reader.connection.execute(query), key=lambda r: r.position):
        by_day[r.day] = by_day.get(r.day, ZERO) + r.amount
        if r.amount > largest:
            largest, who = r.amount, r.account
    return by_day, largest, who


def average(total: Decimal, count: int) -> Decimal:
    """total / count rounded half-even to the collateral quantum (0 when count is 0): 7,160 / 3 -> 2,386.666667."""
    if count == 0:
        return ZERO
    return (total / count).quantize(AVERAGE_QUANTUM, rounding=ROUND_HALF_EVEN, context=LEDGER_CONTEXT)


def _largest(by_day: Iterable[tuple[str, Decimal]]) -> tuple[Decimal, str]:
    """The largest value and the first day it occurs on ("" when every value is 0)."""
    value, day = ZERO, ""
    for found_day, found in by_day:
        if found > value:
            value, day = found, found_day
    return value, day


def disclosures(reader: Reader, request: Request) -> Report:
    """PQD-style items for the period from the first business day to D (rows: item, description, value)."""
    day = request.date
    state, fund, scenarios, worst = stress_figures(reader, request)
    first = reader.first_day()
    days = (date.fromisoformat(day) - date.fromisoformat(first)).days + 1 if first and first <= day else 0
    vm = daily_vm_paid(reader, day)
    vm_total = sum((paid for _, paid in vm), ZERO)
    vm_max, vm_day = _largest(vm)
    calls, largest_call, largest_caller = calls_by_day(reader, day)
    call_max, call_day = _largest(sorted(calls.items()))
    cover_1 = worst[:1]
    cover_2 = worst[:2]
    cover_2_loss = sum((item[1] for item in cover_2), ZERO)
    items = [
        ("period.start", "First business day in the projections (UTC date)", first or ""),
        ("period.end", "Report date D (UTC date)", day),
        ("period.days", "Calendar days in the period, D included (every UTC day is a business day)", days),
        ("4.1", "Insurance fund balance at the end of D (USDC)", fund),
        ("4.4.cover_1", "Largest single-account loss beyond collateral under its worst stress scenario (USDC)",
         cover_1[0][1] if cover_1 else ZERO),
        ("4.4.cover_1.accounts", "Account of cover-1", _joined(item[0] for item in cover_1)),
        ("4.4.cover_2", "Sum of the two largest single-account losses beyond collateral (USDC)", cover_2_loss),
        ("4.4.cover_2.accounts", "Accounts of cover-2", _joined(item[0] for item in cover_2)),
        ("4.4.cover_2.excess_over_fund", "Cover-2 minus the insurance fund at D, if positive (USDC)",
         max(cover_2_loss - fund, ZERO)),
        ("4.4.scenarios", "Stress scenarios: uniform relative shocks of every mark",
         _joined(signed(scenario.shock) for scenario in scenarios)),
        ("6.1", "Total initial margin required at the end of D (USDC)",
         sum((a["initial_margin"] for a in state.accounts.values()), ZERO)),
        ("6.2", "Total initial margin held at the end of D: collateral on deposit, negative balances as 0 (USDC)",
         sum((max(a["collateral"], ZERO) for a in state.accounts.values()), ZERO)),
        ("6.6", "Average total variation margin paid per business day over the period (USDC)", average(vm_total, days)),
        ("6.7", "Maximum total variation margin paid on one business day in the period (USDC)", vm_max),
        ("6.7.day", "Day of 6.7", vm_day),
        ("6.8", "Maximum aggregate margin call issued on one business day in the period (USDC)", call_max),
        ("6.8.day", "Day of 6.8", call_day),
        ("6.8.largest_single", "Largest single margin call in the period (USDC)", largest_call),
        ("6.8.largest_single.account", "Account of the largest single margin call", largest_caller),
    ]
    rows = [{"item": item, "description": description, "value": value} for item, description, value in items]
    position = as_of(reader, state, ["margin", "insurance_fund", "liquidations"])
    return _report(request, state, position, DISCLOSURE_COLUMNS, rows)


def _report(request: Request, state: DayState, position: int, columns: tuple[str, ...], rows: list[dict[str, Any]],
            csv_rows: list[dict[str, Any]] | None = None, totals: dict[str, Any] | None = None) -> Report:
    full = [{column: row.get(column) for column in columns} for row in rows]
    full_csv = None if csv_rows is None else [{column: row.get(column) for column in columns} for row in csv_rows]
    return Report(request.name, request.date, position, state.provisional, columns, full, full_csv, totals)


_BUILDERS: dict[str, tuple[Callable[[Reader, Request], Report], tuple[str, ...]]] = {
    "daily-margin": (daily_margin, ("margin",)),
    "positions": (positions, ("margin",)),
    "insurance-fund": (insurance_fund, ("margin", "insurance_fund")),
    "liquidations": (liquidations, ("margin", "liquidations")),
    "loss-allocations": (loss_allocations, ("margin", "losses")),
    "disclosures": (disclosures, ("margin", "insurance_fund", "liquidations")),
    "stress": (stress, ("margin", "insurance_fund")),
}


# -- rendering ------------------------------------------------------------------------------


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
        "provisional": report.provisional, "columns": list(report.columns), "rows": report.rows,
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


def render(report: Report, output_format: str) -> str:
    return to_json(report) if output_format == "json" else to_csv(report)
