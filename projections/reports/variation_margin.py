"""Variation margin (VM) of a day and VM paid, shared by ``daily-margin`` and ``disclosures`` (PQD 6.6, 6.7)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from clearing.money import ZERO


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
