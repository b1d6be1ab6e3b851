"""The bankruptcy quote of a liquidation step, and what the fund pays before deleveraging.

The bankruptcy quote is dYdX v4's: what the account would receive (+) or pay (-) to close
``delta`` so that it ends at zero equity, sharing its equity over its positions by their
maintenance requirements: ``-DNNV - TNC x |DMMR| / TMMR`` (``liquidation_math.bankruptcy_quote``,
rounded up so the fund never pays for rounding). Without any maintenance requirement it is
the value change minus the equity. Example (vector B1): long 0.1 at 50,000, equity 499,
maintenance 500, closing all -> 5,000 - 499 = 4,501.

Before a bankrupt position is deleveraged the fund pays what it can of the position's
share of the negative equity (its maintenance requirement over the account's, 1 without
any), rounded up to the quantum. Example: equity -200, one position -> 200.
"""

from __future__ import annotations

from decimal import Decimal

from clearing.domain.liquidation_math import bankruptcy_quote
from clearing.domain.margin import maintenance_requirement, position_notional
from clearing.domain.risk.totals import MarginTotals, MarkedTerms
from clearing.money import ONE, ZERO, exact, round_up


def maintenance_before_after(size: Decimal, delta: Decimal, market: MarkedTerms) -> tuple[Decimal, Decimal]:
    """The position's maintenance requirement before and after closing ``delta`` of ``size``."""
    mark, contract, quantum = market.mark, market.contract_size, market.collateral_quantum
    before = maintenance_requirement(market.tiers, position_notional(size, mark, contract), quantum)
    after = maintenance_requirement(market.tiers, position_notional(size + delta, mark, contract), quantum)
    return before, after


@exact
def bankruptcy_quote_for(size: Decimal, delta: Decimal, market: MarkedTerms, totals: MarginTotals) -> Decimal:
    """dYdX bankruptcy quote for closing ``delta`` of a position of ``size`` in ``market``."""
    if totals.maintenance_margin <= ZERO:
        return -delta * market.mark * market.contract_size - totals.equity
    before, after = maintenance_before_after(size, delta, market)
    return bankruptcy_quote(size, delta, market.mark, market.contract_size, before, after,
                            totals.equity, totals.maintenance_margin, market.collateral_quantum)


@exact
def deleveraging_fund_draw(size: Decimal, market: MarkedTerms, totals: MarginTotals) -> Decimal:
    """What the fund is asked for before the whole position of ``size`` is deleveraged."""
    before, after = maintenance_before_after(size, -size, market)
    share = (before - after) / totals.maintenance_margin if totals.maintenance_margin > ZERO else ONE
    return max(ZERO, round_up(-totals.equity * share, market.collateral_quantum))


def fund_draw(wanted: Decimal, balance: Decimal) -> Decimal:
    """What the fund pays of a deficit: all of it up to its balance, never more (it cannot
    go negative). Example: deficit 300, balance 200 -> 200; the rest goes to the loss policy."""
    return min(wanted, balance)
