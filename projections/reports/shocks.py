"""Mark shocks of the stress scenarios: the defaults, the operator's ``--shock`` list, and how one is written.

A shock is a fraction of every mark (``-0.1`` = a 10 % fall); docs/reports.md, "stress".
"""

from __future__ import annotations

from decimal import Decimal

from clearing.errors import InputError
from clearing.money import ZERO, D, MoneyError, fmt

DEFAULT_SHOCKS = tuple(Decimal(value) for value in ("-0.3", "-0.2", "-0.1", "0.1", "0.2", "0.3"))
MAX_SHOCKS = 50
MAX_SHOCK = Decimal(10)


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


def signed(value: Decimal) -> str:
    """``fmt`` with an explicit sign for positive numbers: 0.1 -> ``+0.1``, -0.3 -> ``-0.3``."""
    text_value = fmt(value)
    return f"+{text_value}" if value > ZERO else text_value
