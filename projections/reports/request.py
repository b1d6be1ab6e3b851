"""A checked report request: the report's name, its business day and the stress scenarios asked for."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from clearing.errors import InputError
from projections.reports.price_history import price_scenarios
from projections.reports.shocks import DEFAULT_SHOCKS, signed

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


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
