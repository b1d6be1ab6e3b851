"""One liquidation step: which position, how much of it, at what price, and the status after.

* **Which.** The open position with the largest maintenance requirement first, ties by
  market name.
* **How much.** An account with equity <= 0 closes every position in full. A solvent
  one closes the size that brings equity back to MM x (1 + ``liquidation_buffer``) net of
  the spread and penalty (Drift's base-to-cover, ``liquidation_math.base_to_cover_shortage``),
  rounded up to the step, at least one step, capped at ``max_liquidation_fraction`` of the
  position (rounded up to the step); the whole position when its notional is at most
  ``liquidation_min_notional`` or when no size can cover. Example: shortage 10 at mark
  100, MMF 10 %, no buffer, spread or fee -> 1 contract.
* **Price.** The backstop takes it at mark -/+ ``liquidation_spread`` x MMF x mark x ABR,
  on the tick against the account. ABR is dYdX v4's adjusted bankruptcy rating,
  clamp(1 - equity / MM, 0, 1), under ``liquidation_price_rule`` ``dydx``; 1 under
  ``full_spread`` (and in a log older than the rule). Example: long 0.2, mark 47,000, MMF
  5 %, spread 0.5, equity 400 of MM 470: 47,000 - 1,175 x 0.148936... = 46,825.0.
* **Whole on a deficit.** A partial engine step whose fill would be below its bankruptcy
  quote closes the whole position instead (a part left open would carry a loss nobody
  can be asked for twice).
* **Status after.** ``healthy`` when flat or back at maintenance, ``bankrupt`` after a
  fill below its bankruptcy quote, else ``liquidating``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from clearing.domain.account import BANKRUPT, HEALTHY, LIQUIDATING, RiskStatus
from clearing.domain.liquidation_math import adjusted_bankruptcy_rating, base_to_cover_shortage
from clearing.domain.margin import maintenance_requirement, position_notional
from clearing.domain.parameters import PRICE_RULE_FULL_SPREAD, ParameterSet
from clearing.domain.risk.bankruptcy import bankruptcy_quote_for
from clearing.domain.risk.holding import Holding
from clearing.domain.risk.totals import MarginTotals, MarkedTerms
from clearing.money import ONE, ZERO, exact, round_down, round_up


def positions_by_priority(positions: Mapping[str, Holding], markets: Mapping[str, MarkedTerms]) -> list[str]:
    """Open positions to reduce first: largest maintenance requirement, ties by market name."""
    keyed = []
    for name, holding in positions.items():
        if holding.size == ZERO:
            continue
        market = markets[name]
        notional = position_notional(holding.size, market.mark, market.contract_size)
        keyed.append((-maintenance_requirement(market.tiers, notional, market.collateral_quantum), name))
    return [name for _, name in sorted(keyed)]


def maintenance_fraction(size: Decimal, market: MarkedTerms) -> Decimal:
    """The position's maintenance requirement over its notional (the tier's MMF, rounded)."""
    notional = position_notional(size, market.mark, market.contract_size)
    return maintenance_requirement(market.tiers, notional, market.collateral_quantum) / notional


@exact
def size_to_close(size: Decimal, market: MarkedTerms, totals: MarginTotals, params: ParameterSet) -> Decimal:
    """Contracts one step of a solvent account closes (see the module docstring)."""
    whole = abs(size)
    notional = position_notional(size, market.mark, market.contract_size)
    if totals.equity <= ZERO or notional <= params.liquidation_min_notional:
        return whole
    fraction = maintenance_fraction(size, market)
    buffered = fraction * (ONE + params.liquidation_buffer)
    shortage = totals.maintenance_margin * (ONE + params.liquidation_buffer) - totals.equity
    cost_rate = params.liquidation_spread * fraction + params.liquidation_fee_rate
    base = base_to_cover_shortage(shortage, market.mark * market.contract_size, buffered, cost_rate, ZERO)
    if base is None:
        return whole
    step = market.step_size
    cap = max(round_up(params.max_liquidation_fraction * whole, step), step)
    return min(max(round_up(base, step), step), cap, whole)


def close_for(size: Decimal, market: MarkedTerms, totals: MarginTotals, params: ParameterSet, insolvent: bool) -> Decimal:
    """The whole position of an insolvent account, else ``size_to_close``."""
    return abs(size) if insolvent else size_to_close(size, market, totals, params)


def price_rating(totals: MarginTotals, params: ParameterSet) -> Decimal:
    """The share of the spread charged: ABR under ``dydx``, 1 under ``full_spread``."""
    if params.liquidation_price_rule == PRICE_RULE_FULL_SPREAD:
        return ONE
    return adjusted_bankruptcy_rating(totals.equity, totals.maintenance_margin)


@exact
def spread_price(size: Decimal, market: MarkedTerms, params: ParameterSet, totals: MarginTotals) -> Decimal:
    """The backstop's fill price for a position of ``size`` (see the module docstring)."""
    mark = market.mark
    move = mark * params.liquidation_spread * maintenance_fraction(size, market) * price_rating(totals, params)
    if size > ZERO:
        return max(round_down(mark - move, market.tick_size), market.tick_size)
    return round_up(mark + move, market.tick_size)


@dataclass(frozen=True)
class StepPlan:
    """A decided step: the account's size delta, the fill price, the bankruptcy quote of
    that delta, and the shortfall (bankruptcy quote - fill quote; > 0 is a deficit)."""

    delta: Decimal
    price: Decimal
    quote_bankruptcy: Decimal
    shortfall: Decimal


@exact
def plan_step(size: Decimal, close: Decimal, market: MarkedTerms, totals: MarginTotals, params: ParameterSet,
              price: Decimal | None = None) -> StepPlan:
    """Close ``close`` of ``size`` at ``price`` (an operator's) or the spread price.

    An engine step (no ``price``) that would leave a deficit on a part closes the whole
    position. Example: long 1 at mark 100, bankruptcy quote 97 for all of it, spread price
    95 for half: the half leaves a deficit, so the plan closes 1.
    """
    fill_price = price if price is not None else spread_price(size, market, params, totals)
    delta = -close if size > ZERO else close
    quote_bankruptcy = bankruptcy_quote_for(size, delta, market, totals)
    shortfall = quote_bankruptcy + delta * fill_price * market.contract_size
    if shortfall > ZERO and close < abs(size) and price is None:
        delta = -size
        quote_bankruptcy = bankruptcy_quote_for(size, delta, market, totals)
        shortfall = quote_bankruptcy + delta * fill_price * market.contract_size
    return StepPlan(delta, fill_price, quote_bankruptcy, shortfall)


def status_after(after: MarginTotals, flat: bool, bankrupt: bool) -> RiskStatus:
    """The account's risk status after a liquidation fill (see the module docstring)."""
    if bankrupt:
        return BANKRUPT
    if flat or after.equity >= after.maintenance_margin:
        return HEALTHY
    return LIQUIDATING
