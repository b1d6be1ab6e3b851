"""The one conversion of ledger values to what JSON can carry (the CLI, the reports, the lab).

Decimals become their canonical strings (``money.fmt``: ``Decimal("1200.000000")`` ->
``"1200"``), times ISO-8601 strings, UUIDs strings, dataclasses and dicts objects with
string keys, tuples and lists arrays; ints, strings, booleans and None stay as they are.
Why strings for money: a JSON number is a float to most readers, and a float loses cents.
Where a float must never appear (the regulator reports), ``refuse_floats`` turns one into an
error instead of a silently rounded number. Example: ``{"a": (Decimal("1.50"), None)}`` ->
``{"a": ["1.5", None]}``.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from clearing.money import fmt


def jsonable(value: Any, *, refuse_floats: bool = False) -> Any:  # noqa: PLR0911 - one return per kind of value
    """``value`` as JSON-safe values, recursively (see the module docstring).

    >>> jsonable({"a": (Decimal("1.50"), None), 2: datetime(2025, 1, 1)})
    {'a': ['1.5', None], '2': '2025-01-01T00:00:00'}
    """
    if isinstance(value, float) and refuse_floats:
        raise TypeError("a float reached a document that carries only decimals and ints")
    if isinstance(value, Decimal):
        return fmt(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return {key: jsonable(item, refuse_floats=refuse_floats) for key, item in asdict(value).items()}
    if isinstance(value, dict):
        return {str(key): jsonable(item, refuse_floats=refuse_floats) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item, refuse_floats=refuse_floats) for item in value]
    return value
