"""Charts of the projections, rendered server-side by matplotlib (SVG or PNG), for the
dashboard of ``clearing serve`` and ``clearing chart`` (ADR 29).

Each chart reads one projection table over a window of business days and draws it:

* ``insurance-fund``: the fund's balance after every movement, and each day's inflows and
  outflows by cause (``fund_movements``);
* ``coverage``: the distribution of margin coverage (equity / maintenance margin) over the
  accounts with open positions at each day's close (``margin_eod_accounts``), and for the
  day still open, as the accounts stand now (``queries.account_list``), labelled ``(open)``;
* ``liquidations``: liquidation fills and bankruptcy deficits per hour (``liquidation_register``,
  ``loss_events``);
* ``losses``: loss allocations per market and policy (``loss_allocations``);
* ``open-interest``: open interest and volume per market at each day's close (``margin_eod_markets``).

Pictures only: the exact figures are the tables and reports; a chart converts Decimals to
floats to place marks on its axes, nothing more. Text is kept as SVG text (``svg.fonttype
none``) so a reader, a browser test or a screen reader finds the series' labels, and the
SVG carries no date and a fixed id salt, so the same store gives the same file.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from clearing.errors import InputError
from projections.read import Views

CHART_NAMES = ("insurance-fund", "coverage", "liquidations", "losses", "open-interest")
FORMATS = ("svg", "png")
MAX_DAYS = 366


@dataclass(frozen=True)
class Window:
    """Business days ``first`` .. ``last`` inclusive (ISO dates)."""

    first: str
    last: str

    @property
    def label(self) -> str:
        return self.first if self.first == self.last else f"{self.first} to {self.last}"


def check_chart_name(name: str) -> str:
    if name not in CHART_NAMES:
        raise InputError("unknown_chart", "name", f"unknown chart {name!r}: choose from {', '.join(CHART_NAMES)}")
    return name


def window(day: str | None, first: str | None, last: str | None) -> Window:
    """The days a chart covers: ``--date D`` or ``--from D --to D`` (at most ``MAX_DAYS``)."""
    if day is not None and (first is not None or last is not None):
        raise InputError("invalid_window", "date", "give --date, or --from and --to, not both")
    if day is not None:
        first = last = day
    if first is None or last is None:
        raise InputError("invalid_window", "date", "give --date D, or --from D and --to D")
    start, end = _day(first, "from"), _day(last, "to")
    if end < start:
        raise InputError("invalid_window", "to", f"--to {last} is before --from {first}")
    if (end - start).days >= MAX_DAYS:
        raise InputError("invalid_window", "to", f"a chart covers at most {MAX_DAYS} days")
    return Window(start.isoformat(), end.isoformat())


def _day(text: str, field: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InputError("invalid_date", field, f"{text!r} is not a date (YYYY-MM-DD)") from None


def render_chart(views: Views, name: str, span: Window, fmt: str = "svg") -> bytes:
    """Chart ``name`` over ``span`` as SVG or PNG bytes."""
    check_chart_name(name)
    if fmt not in FORMATS:
        raise InputError("invalid_output", "output", f"a chart is .svg or .png, not .{fmt}")
    figure = _figure()
    DRAWERS[name](views, span, figure)
    buffer = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {}
    figure.savefig(buffer, format=fmt, metadata=metadata, bbox_inches="tight", dpi=100)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return buffer.getvalue()


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "clearing", "font.size": 9})
    import matplotlib.pyplot as plt

    return plt.figure(figsize=(9, 4.5))


def _rows(views: Views, projection: str, table_name: str, span: Window, *columns: str) -> list[dict[str, Any]]:
    table = views.table(projection, table_name)
    query = select(*(table.c[c] for c in columns)).where(table.c.day >= span.first, table.c.day <= span.last)
    if "position" in table.c:
        query = query.order_by(table.c.position)
    with views.reading() as connection:
        return [dict(r) for r in connection.execute(query).mappings()]


def _f(value: Decimal | None) -> float:
    return 0.0 if value is None else float(value)


def _days(span: Window) -> list[str]:
    start = date.fromisoformat(span.first)
    return [(start + timedelta(days=n)).isoformat() for n in range((date.fromisoformat(span.last) - start).days + 1)]


def _empty(axes: Any, what: str) -> None:
    axes.text(0.5, 0.5, f"no {what} in this window", ha="center", va="center", transform=axes.transAxes)


def insurance_fund(views: Views, span: Window, figure: Any) -> None:
    """Balance after each movement (top) and each day's flows by cause (bottom, out below 0)."""
    rows = _rows(views, "insurance_fund", "fund_movements", span, "at", "day", "direction", "cause", "amount",
                 "balance_after", "position")
    top, bottom = figure.subplots(2, 1, sharex=False, height_ratios=(3, 2))
    top.set_title(f"Insurance fund, {span.label}")
    if not rows:
        _empty(top, "fund movements")
        bottom.axis("off")
        return
    times = [datetime.fromisoformat(r["at"]) for r in rows]
    top.step(times, [_f(r["balance_after"]) for r in rows], where="post", label="balance")
    top.set_ylabel("balance (USDC)")
    top.legend(loc="upper left")
    flows: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in rows:
        sign = 1.0 if r["direction"] == "in" else -1.0
        flows[f"{r['direction']}: {r['cause']}"][r["day"]] += sign * _f(r["amount"])
    days = sorted({r["day"] for r in rows})
    positions = range(len(days))
    above = [0.0] * len(days)
    below = [0.0] * len(days)
    for label in sorted(flows):
        values = [flows[label].get(d, 0.0) for d in days]
        base = [above[i] if v >= 0 else below[i] for i, v in enumerate(values)]
        bottom.bar(positions, values, bottom=base, label=label)
        for i, v in enumerate(values):
            if v >= 0:
                above[i] += v
            else:
                below[i] += v
    bottom.set_xticks(list(positions), days, rotation=30, ha="right")
    bottom.set_ylabel("flows per day (USDC)")
    bottom.axhline(0, color="black", linewidth=0.5)
    bottom.legend(loc="upper left", fontsize=7)


def coverage(views: Views, span: Window, figure: Any) -> None:
    """Equity / maintenance margin of every account with a position at each close (box per day)."""
    rows = _rows(views, "margin", "margin_eod_accounts", span, "day", "margin_ratio", "positions")
    axes = figure.subplots()
    axes.set_title(f"Margin coverage (equity / maintenance) at each close (an open day: now), {span.label}")
    by_day: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r["positions"] and r["margin_ratio"] is not None:
            by_day[r["day"]].append(_f(r["margin_ratio"]))
    labels = {}
    today = log_days(views)
    if today is not None and span.first <= today.last <= span.last and not by_day.get(today.last):
        by_day[today.last] = _live_coverage(views)  # the open day: the accounts as they stand now
        labels[today.last] = f"{today.last} (open)"
    days = [d for d in _days(span) if by_day.get(d)]
    if not days:
        _empty(axes, "accounts with open positions")
        return
    floor = 0.01  # a log axis cannot show equity at or below zero: such accounts are drawn at the floor, and counted
    under = sum(1 for d in days for value in by_day[d] if value <= 0)
    axes.boxplot([[max(value, floor) for value in by_day[d]] for d in days], tick_labels=[labels.get(d, d) for d in days],
                 showfliers=True)
    if under:
        axes.text(0.01, 0.02, f"{under} account-day(s) at or below zero equity, drawn at {floor}", transform=axes.transAxes)
    axes.axhline(1.0, color="red", linewidth=0.8, label="1 = maintenance (liquidation below)")
    axes.set_yscale("log")
    axes.set_ylabel("coverage (log scale)")
    axes.tick_params(axis="x", rotation=30)
    axes.legend(loc="upper right")


def _live_coverage(views: Views) -> list[float]:
    """Equity / maintenance margin of every account holding a position, on current marks
    (``queries.account_list``: the same totals ``account list`` prints)."""
    from projections.queries import account_list

    return [_f(Decimal(r["equity"])) / _f(Decimal(r["maintenance_margin"])) for r in account_list(views)
            if r["positions"] and Decimal(r["maintenance_margin"]) > 0]


def liquidations(views: Views, span: Window, figure: Any) -> None:
    """Liquidation fills per hour (bars) and bankruptcy deficits per hour (line)."""
    fills = _rows(views, "liquidations", "liquidation_register", span, "at", "kind")
    deficits = _rows(views, "losses", "loss_events", span, "at", "deficit")
    axes = figure.subplots()
    axes.set_title(f"Liquidations and deficits per hour, {span.label}")
    count: dict[datetime, int] = defaultdict(int)
    lost: dict[datetime, float] = defaultdict(float)
    for r in fills:
        if r["kind"] == "liquidation_fill":
            count[_hour(r["at"])] += 1
    for r in deficits:
        lost[_hour(r["at"])] += _f(r["deficit"])
    if not count and not lost:
        _empty(axes, "liquidations")
        return
    hours = sorted({*count, *lost})
    axes.bar(hours, [count.get(h, 0) for h in hours], width=1 / 26, label="liquidation fills")
    axes.set_ylabel("liquidation fills per hour")
    other = axes.twinx()
    hit = [h for h in hours if lost.get(h)]  # markers at the hours with a deficit: no line through quiet hours
    other.plot(hit, [lost[h] for h in hit], color="darkred", marker="o", linestyle="none", label="deficits (USDC)")
    other.set_ylim(bottom=0)
    other.set_ylabel("deficits per hour (USDC)")
    handles = axes.get_legend_handles_labels()[0] + other.get_legend_handles_labels()[0]
    axes.legend(handles, ["liquidation fills", "deficits (USDC)"], loc="upper left")
    figure.autofmt_xdate()


def _hour(at: str) -> datetime:
    return datetime.fromisoformat(at).replace(minute=0, second=0, microsecond=0)


def losses(views: Views, span: Window, figure: Any) -> None:
    """Loss allocations per market, stacked by policy (the shares paid, USDC)."""
    rows = _rows(views, "losses", "loss_allocations", span, "market", "policy", "share")
    axes = figure.subplots()
    axes.set_title(f"Loss allocations per market, {span.label}")
    if not rows:
        _empty(axes, "loss allocations")
        return
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in rows:
        totals[r["policy"]][r["market"]] += _f(r["share"])
    market_names = sorted({r["market"] for r in rows})
    base = [0.0] * len(market_names)
    for policy in sorted(totals):
        values = [totals[policy].get(name, 0.0) for name in market_names]
        axes.bar(market_names, values, bottom=base, label=policy)
        base = [b + v for b, v in zip(base, values, strict=True)]
    axes.set_ylabel("shares allocated (USDC)")
    axes.legend(title="policy", loc="upper right")


def open_interest(views: Views, span: Window, figure: Any) -> None:
    """Open interest at each close (lines) and the day's volume (bars), per market."""
    rows = _rows(views, "margin", "margin_eod_markets", span, "day", "market", "open_interest", "volume")
    top, bottom = figure.subplots(2, 1, sharex=True)
    top.set_title(f"Open interest and volume per day, {span.label}")
    if not rows:
        _empty(top, "closed days")
        bottom.axis("off")
        return
    days = sorted({r["day"] for r in rows})
    for name in sorted({r["market"] for r in rows}):
        mine = {r["day"]: r for r in rows if r["market"] == name}
        top.plot(days, [_f(mine[d]["open_interest"]) if d in mine else 0.0 for d in days], marker="o",
                 label=f"{name} open interest")
        bottom.bar(days, [_f(mine[d]["volume"]) if d in mine else 0.0 for d in days], alpha=0.6, label=f"{name} volume")
    top.set_ylabel("open interest (contracts)")
    bottom.set_ylabel("volume (contracts)")
    top.legend(loc="upper left", fontsize=7)
    bottom.legend(loc="upper left", fontsize=7)
    bottom.tick_params(axis="x", rotation=30)


DRAWERS: dict[str, Callable[[Views, Window, Any], None]] = {
    "insurance-fund": insurance_fund, "coverage": coverage, "liquidations": liquidations, "losses": losses,
    "open-interest": open_interest,
}


def log_days(views: Views) -> Window | None:
    """The business days the log covers (the margin projection's first and current day), or None."""
    from projections.reports.reader import Reader

    with views.reading() as connection:
        reader = Reader(views, connection, {"margin": None})
        first, clock = reader.first_day(), reader.clock()
    if first is None or clock is None:
        return None
    return Window(first, clock["day"])
