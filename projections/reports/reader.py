"""The reader: one read transaction over the projection tables a report needs.

It resolves a business day to its EOD state (closed rows carried over, or live and
provisional; see the package docstring) and checks, with :func:`as_of`, that every
projection the report reads has reached the log position the report reflects.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from clearing.money import ZERO
from projections.margin import end_of_day_rows
from projections.read import Views
from projections.reports.inputs import MARGIN_LIVE, TABLES, DayState
from projections.runner import ProjectionError


class Reader:
    """One read transaction over the projection tables a report needs."""

    def __init__(self, views: Views, connection: Any, projections: Iterable[str]) -> None:
        self.views = views
        self.connection = connection
        self.tables: dict[str, Any] = {}
        for projection in projections:
            for spec_name in TABLES[projection]:
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
