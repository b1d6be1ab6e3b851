"""Margin arithmetic: pure functions on Decimals, no state, no clock.

Definitions (all on the mark price; dYdX v4 and Binance, see clearing-mechanics.md §1.1, §3.2):

* notional of a position = |size x mark x contract_size|
* requirement of a position in tier k = notional x fraction_k - deduction_k, rounded *up* to
  the collateral quantum (the account never gets the benefit of rounding)
* the tier is the last one whose ``notional_floor`` is <= the notional; the deduction makes
  the requirement continuous at every floor (Binance "maintenance amount" ``cum``):
  ``deduction_k = deduction_(k-1) + floor_k x (fraction_k - fraction_(k-1))``
* equity = collateral + sum of unrealized PnL; free collateral = equity - initial margin;
  margin ratio = equity / maintenance margin (below 1 the account is liquidatable).

Leaf functions (notional, requirements, unrealized PnL) are on every trade's path and assume
the caller runs under ``LEDGER_CONTEXT``; the entry points (``margin_totals``,
``account_margin``, ``liquidation_price``, the trade and withdrawal decisions) enter it.

Example, Binance BTC brackets 0.4% / 0.5% from 50,000 / 1% from 250,000: deductions are
0, 50 and 1,300, so a 264,000 notional needs 264,000 x 1% - 1,300 = 1,340 maintenance.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from clearing.money import ZERO, exact, round_down, round_up


@dataclass(frozen=True)
class MarginTier:
    """One notional bracket of a market, with the deductions decided at listing."""

    notional_floor: Decimal
    initial_margin_fraction: Decimal
    maintenance_margin_fraction: Decimal
    initial_margin_deduction: Decimal
    maintenance_margin_deduction: Decimal


@exact
def build_tiers(brackets: Sequence[tuple[Decimal, Decimal, Decimal]]) -> tuple[MarginTier, ...]:
    """Turn ``(notional_floor, imf, mmf)`` brackets into tiers with continuous deductions.

    The caller has validated the brackets (first floor 0, floors increasing, fractions
    non-decreasing). ``build_tiers([(0, .004, .004), (50000, .005, .005)])`` gives
    deductions 0 and 50 on both sides.
    """
    tiers: list[MarginTier] = []
    for floor, imf, mmf in brackets:
        if tiers:
            previous = tiers[-1]
            im_deduction = previous.initial_margin_deduction + floor * (imf - previous.initial_margin_fraction)
            mm_deduction = previous.maintenance_margin_deduction + floor * (mmf - previous.maintenance_margin_fraction)
        else:
            im_deduction = mm_deduction = ZERO
        tiers.append(MarginTier(floor, imf, mmf, im_deduction, mm_deduction))
    return tuple(tiers)


def tier_for(tiers: Sequence[MarginTier], notional: Decimal) -> MarginTier:
    """The bracket that applies to ``notional`` (the last floor not above it)."""
    chosen = tiers[0]
    for tier in tiers:
        if tier.notional_floor <= notional:
            chosen = tier
        else:
            break
    return chosen


def position_notional(size: Decimal, price: Decimal, contract_size: Decimal) -> Decimal:
    """|size x price x contract_size|, exact."""
    return abs(size * price * contract_size)


def initial_requirement(tiers: Sequence[MarginTier], notional: Decimal, quantum: Decimal) -> Decimal:
    """Initial margin of one position, rounded up to ``quantum``."""
    tier = tiers[0] if len(tiers) == 1 else tier_for(tiers, notional)  # one bracket: no search
    raw = notional * tier.initial_margin_fraction - tier.initial_margin_deduction
    return round_up(max(raw, ZERO), quantum)


def maintenance_requirement(tiers: Sequence[MarginTier], notional: Decimal, quantum: Decimal) -> Decimal:
    """Maintenance margin of one position, rounded up to ``quantum``."""
    tier = tiers[0] if len(tiers) == 1 else tier_for(tiers, notional)  # one bracket: no search
    raw = notional * tier.maintenance_margin_fraction - tier.maintenance_margin_deduction
    return round_up(max(raw, ZERO), quantum)


def unrealized_pnl(size: Decimal, cost: Decimal, mark: Decimal, contract_size: Decimal) -> Decimal:
    """size x mark x contract_size - cost, exact (``cost`` is the signed entry notional).

    Long 2 at 100 (cost 200) marked at 110: 2 x 110 - 200 = 20.
    """
    return size * mark * contract_size - cost


@exact
def margin_ratio(equity: Decimal, maintenance: Decimal) -> Decimal | None:
    """equity / maintenance, rounded down to 4 places; None without requirement.

    Rounded down so the ratio never looks healthier than it is.
    """
    if maintenance <= ZERO:
        return None
    return round_down(equity / maintenance, Decimal("0.0001"))


@dataclass(frozen=True)
class PositionAtMark:
    """A position's inputs for the liquidation-price solve."""

    size: Decimal
    mark: Decimal
    contract_size: Decimal
    tiers: tuple[MarginTier, ...]


@exact
def liquidation_price(
    position: PositionAtMark,
    equity: Decimal,
    maintenance_others: Decimal,
    tick_size: Decimal,
) -> Decimal | None:
    """Mark price at which equity equals maintenance margin, other positions held fixed.

    Solves ``E + s*c*(p - m) = M_o + |s|*c*p*f_k - d_k`` for ``p`` in each tier ``k`` and
    keeps the root that falls inside its own tier (equity minus requirement is monotonic
    in ``p``, so there is at most one). Longs round up to the tick and shorts down, so the
    displayed price is reached no later than the exact one.

    None when no positive mark solves it (nor one tick or more, for a short): either no
    price of this market can make the account liquidatable (a long whose equity stays
    above maintenance even at a mark of 0) or every price does (the other positions alone
    already take equity below maintenance). The account's margin ratio tells which:
    below 1 it is liquidatable now.

    Published example (dYdX docs): equity 1,000, short 3 at mark 3,000, MMF 5%, no other
    positions: p = (1,000 + 9,000) / (0.15 + 3) = 3,174.603... -> 3,174.60.
    """
    size, mark, contract = position.size, position.mark, position.contract_size
    if size == ZERO:
        return None
    base = equity - size * contract * mark - maintenance_others
    for index, tier in enumerate(position.tiers):
        denominator = contract * (abs(size) * tier.maintenance_margin_fraction - size)
        if denominator == ZERO:
            continue
        price = (base + tier.maintenance_margin_deduction) / denominator
        if price <= ZERO:
            continue
        notional = abs(size) * contract * price
        upper = position.tiers[index + 1].notional_floor if index + 1 < len(position.tiers) else None
        if notional >= tier.notional_floor and (upper is None or notional <= upper):
            rounded = round_up(price, tick_size) if size > ZERO else round_down(price, tick_size)
            return rounded if rounded > ZERO else None
    return None


def total(values: Iterable[Decimal]) -> Decimal:
    """Exact sum starting from ZERO (so an empty sum is Decimal('0'))."""
    result = ZERO
    for value in values:
        result += value
    return result
