"""Money and quantities: exact ``Decimal`` everywhere, one constructor, explicit rounding.

Rules (see docs/adr/0002-money-representation.md):

* Every amount, price and size is a ``Decimal`` built by :func:`D` from a string or an
  ``int``. ``D`` refuses floats, NaN, infinities and exponent notation, so nothing
  inexact can enter the ledger.
* Every quantity has an explicit quantum: the collateral asset's quantum for money,
  the market's ``tick_size`` for prices and ``step_size`` for sizes. :func:`check_quantum`
  rejects values with more decimal places than their quantum allows instead of rounding
  them silently.
* Where the ledger must round (margin requirements, realized PnL, liquidation prices)
  the rounding mode is passed explicitly at the call site and always favours the
  clearinghouse: requirements round up, credits to an account round down.

Example::

    >>> D("0.10") + D(3)
    Decimal('3.10')
    >>> round_up(D("12.3400001"), USDC.quantum)
    Decimal('12.340001')
"""

from __future__ import annotations

import decimal
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import ParamSpec, TypeVar

ZERO = Decimal(0)
ONE = Decimal(1)

#: Arithmetic context for all ledger computations. 60 significant digits is far more
#: than any product of a price, a size and a fraction needs, so sums and products of
#: quantized values are exact; division results are rounded explicitly afterwards.
LEDGER_CONTEXT = decimal.Context(
    prec=60,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def exact(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``function`` under :data:`LEDGER_CONTEXT` unless a caller already does.

    Python's default context keeps 28 digits, enough to round a large notional times a
    fraction silently; every public arithmetic entry point is wrapped so it never does.
    The signature is kept (``ParamSpec``), so the type checker sees through the decorator.
    """

    getcontext, precision, localcontext = decimal.getcontext, LEDGER_CONTEXT.prec, decimal.localcontext

    @functools.wraps(function)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        if getcontext().prec >= precision:  # the common case: a caller is already exact (no lookups)
            return function(*args, **kwargs)
        with localcontext(LEDGER_CONTEXT):
            return function(*args, **kwargs)

    return wrapper


_PLAIN_DECIMAL = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$")
_MAX_DIGITS = 40


class MoneyError(ValueError):
    """A value that cannot be a ledger number; ``code`` names the reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def float_refused() -> MoneyError:
    """The error :func:`D` raises for a ``float`` (for checks that meet the float first)."""
    return MoneyError("float_not_allowed", "float values are not accepted, write the number as a string")


def D(value: str | int | Decimal) -> Decimal:
    """The one constructor for ledger numbers.

    Accepts ``int``, ``Decimal`` (finite only) or a plain decimal string such as
    ``"-12.50"``. Refuses ``float`` (and ``bool``), NaN, infinities, exponent
    notation, leading ``+``, whitespace and more than 40 digits.

    >>> D("50000.5")
    Decimal('50000.5')
    >>> D(0.1)
    Traceback (most recent call last):
    ...
    clearing.money.MoneyError: float values are not accepted, write the number as a string
    """
    if isinstance(value, bool):
        raise MoneyError("invalid_number", "booleans are not numbers")
    if isinstance(value, float):
        raise float_refused()
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise MoneyError("invalid_number", f"{value} is not a finite number")
        return value
    elif isinstance(value, str):
        text = value
    else:
        raise MoneyError("invalid_number", f"{value!r:.40} is not a decimal string or integer")
    if not _PLAIN_DECIMAL.match(text):
        raise MoneyError("invalid_number", f"{text[:40]!r} is not a plain decimal number")
    if len(text) > _MAX_DIGITS + 2:
        raise MoneyError("invalid_number", f"more than {_MAX_DIGITS} digits")
    return Decimal(text)


def decimal_places(value: Decimal) -> int:
    """Number of digits after the decimal point, ignoring trailing zeros.

    >>> decimal_places(D("1.2500"))
    2
    """
    exponent = value.normalize(LEDGER_CONTEXT).as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def is_multiple(value: Decimal, quantum: Decimal) -> bool:
    """True when ``value`` is an exact multiple of ``quantum`` (``quantum`` > 0).

    >>> is_multiple(D("50000.5"), D("0.5")), is_multiple(D("50000.25"), D("0.5"))
    (True, False)
    """
    return LEDGER_CONTEXT.remainder(value, quantum) == ZERO


def round_up(value: Decimal, quantum: Decimal) -> Decimal:
    """Round toward +infinity onto the grid of ``quantum`` (requirements, charges).

    >>> round_up(D("1.0000001"), D("0.000001"))
    Decimal('1.000001')
    """
    return _round(value, quantum, ROUND_CEILING)


def round_down(value: Decimal, quantum: Decimal) -> Decimal:
    """Round toward -infinity onto the grid of ``quantum`` (credits to an account).

    >>> round_down(D("-1.0000001"), D("0.000001"))
    Decimal('-1.000001')
    """
    return _round(value, quantum, ROUND_FLOOR)


_POWERS_OF_TEN = frozenset(Decimal(10) ** exponent for exponent in range(-18, 19))


def _round(value: Decimal, quantum: Decimal, rounding: str) -> Decimal:
    if quantum in _POWERS_OF_TEN:  # the common case (0.000001, 0.01, 1): one exact C call
        return value.quantize(quantum, rounding=rounding, context=LEDGER_CONTEXT)
    steps = LEDGER_CONTEXT.divide(value, quantum).to_integral_value(rounding=rounding)
    return LEDGER_CONTEXT.multiply(steps, quantum).quantize(quantum)


def canonical_text(value: Decimal) -> str:
    """A command field's number as its canonical content holds it (idempotency, ADR 4):
    normalized, without exponent, in the current decimal context.

    >>> canonical_text(D("0.50")), canonical_text(D("50000.00"))
    ('0.5', '50000')
    """
    return format(value.normalize(), "f")


def fmt(value: Decimal) -> str:
    """Plain string of a ledger number without exponent or trailing zeros.

    >>> fmt(D("1200.000000")), fmt(D("50000")), fmt(D("-0.50"))
    ('1200', '50000', '-0.5')
    """
    text = str(value)
    if "E" not in text and not ("." in text and text[-1] == "0") and text != "-0":
        return text  # already canonical (most values): no normalize needed
    text = format(value.normalize(LEDGER_CONTEXT), "f")
    return "0" if text == "-0" else text


@dataclass(frozen=True)
class Asset:
    """A collateral asset and its quantum (the smallest amount the ledger records)."""

    symbol: str
    quantum: Decimal


#: The clearinghouse's single collateral asset. Six decimal places, as USDC on-chain
#: (dYdX "quote quantums": 1 USDC = 1,000,000), so that every trade notional of a market
#: whose tick x step x contract size is a multiple of it is exact without rounding.
USDC = Asset(symbol="USDC", quantum=Decimal("0.000001"))
