"""An account's margin state on mark prices: equity, requirements, liquidation prices.

Pure functions over an account's positions and the markets they are in. The same code
serves the pre-trade check (``margin_totals``, cheap) and the full view shown to people
(``account_margin``, which adds per-position liquidation prices).

Example: collateral 1,000, short 3 ETH with cost -9,000 (entry 3,000), mark 3,000, MMF 5%:
equity 1,000, maintenance 450, margin ratio 2.2222, liquidation price 3,174.60.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from clearing.domain.account import Position
from clearing.domain.margin import (
    MarginTier,
    PositionAtMark,
    initial_requirement,
    liquidation_price,
    maintenance_requirement,
    margin_ratio,
    position_notional,
    unrealized_pnl,
)
from clearing.domain.risk.holding import Holding
from clearing.money import ZERO, exact


class MarketTerms(Protocol):
    """What margining reads from a market: the ``Market`` aggregate satisfies it, as do the
    projections' and the decision audit's market rows.

    The members are read-only (properties), so an object whose attributes have these types
    or narrower ones fits: ``Market`` keeps its tiers as a ``tuple``.
    """

    @property
    def market(self) -> str: ...
    @property
    def contract_size(self) -> Decimal: ...
    @property
    def tick_size(self) -> Decimal: ...
    @property
    def tiers(self) -> Sequence[MarginTier]: ...
    @property
    def collateral_quantum(self) -> Decimal: ...
    @property
    def price_mark(self) -> Decimal | None: ...


class MarkedTerms(MarketTerms, Protocol):
    """A market that has a mark: what a liquidation decision reads (``Market`` fits; its
    ``mark`` raises ``no_mark_price`` before the first price, so a decider never sees None)."""

    @property
    def mark(self) -> Decimal: ...
    @property
    def step_size(self) -> Decimal: ...


@dataclass(frozen=True)
class MarginTotals:
    equity: Decimal
    initial_margin: Decimal
    maintenance_margin: Decimal

    @property
    def free_collateral(self) -> Decimal:
        return self.equity - self.initial_margin


@dataclass(frozen=True)
class PositionMargin:
    market: str
    size: Decimal
    entry_price: Decimal
    mark_price: Decimal
    notional: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    initial_margin: Decimal
    maintenance_margin: Decimal
    liquidation_price: Decimal | None


@dataclass(frozen=True)
class AccountMargin:
    collateral: Decimal
    equity: Decimal
    initial_margin: Decimal
    maintenance_margin: Decimal
    free_collateral: Decimal
    margin_ratio: Decimal | None
    positions: tuple[PositionMargin, ...]


@exact
def margin_totals(
    collateral: Decimal,
    positions: Mapping[str, Holding],
    markets: Mapping[str, MarketTerms],
    with_maintenance: bool = True,
    with_initial: bool = True,
) -> MarginTotals:
    """Equity and summed requirements on mark prices (positions without size are skipped).

    The pre-trade and withdrawal checks need equity and initial margin only; they pass
    ``with_maintenance=False`` and get a maintenance margin of zero. The decision audit's
    call checks need equity and maintenance only (``with_initial=False``, initial zero).
    """
    equity, initial, maintenance = collateral, ZERO, ZERO
    for name, position in positions.items():
        if position.size == ZERO:
            continue
        market = markets[name]
        mark = market.price_mark
        assert mark is not None, f"position in {name} without a mark price"
        notional = position_notional(position.size, mark, market.contract_size)
        equity += unrealized_pnl(position.size, position.cost, mark, market.contract_size)
        if with_initial:
            initial += initial_requirement(market.tiers, notional, market.collateral_quantum)
        if with_maintenance:
            maintenance += maintenance_requirement(market.tiers, notional, market.collateral_quantum)
    return MarginTotals(equity=equity, initial_margin=initial, maintenance_margin=maintenance)


@exact
def account_margin(
    collateral: Decimal, positions: Mapping[str, Position], markets: Mapping[str, MarketTerms]
) -> AccountMargin:
    """The full margin view, with each open position's liquidation price."""
    totals = margin_totals(collateral, positions, markets)
    rows = [
        _position_margin(name, position, markets[name], totals)
        for name, position in sorted(positions.items())
        if position.size != ZERO
    ]
    return AccountMargin(
        collateral=collateral,
        equity=totals.equity,
        initial_margin=totals.initial_margin,
        maintenance_margin=totals.maintenance_margin,
        free_collateral=totals.free_collateral,
        margin_ratio=margin_ratio(totals.equity, totals.maintenance_margin),
        positions=tuple(rows),
    )


def _position_margin(name: str, position: Position, market: MarketTerms, totals: MarginTotals) -> PositionMargin:
    mark = market.price_mark
    assert mark is not None
    quantum = market.collateral_quantum
    notional = position_notional(position.size, mark, market.contract_size)
    maintenance = maintenance_requirement(market.tiers, notional, quantum)
    at_mark = PositionAtMark(position.size, mark, market.contract_size, tuple(market.tiers))
    return PositionMargin(
        market=name,
        size=position.size,
        entry_price=entry_price(position, market),
        mark_price=mark,
        notional=notional,
        unrealized_pnl=unrealized_pnl(position.size, position.cost, mark, market.contract_size),
        realized_pnl=position.realized_pnl,
        initial_margin=initial_requirement(market.tiers, notional, quantum),
        maintenance_margin=maintenance,
        liquidation_price=liquidation_price(
            at_mark, totals.equity, totals.maintenance_margin - maintenance, market.tick_size
        ),
    )


def entry_price(position: Position, market: MarketTerms) -> Decimal:
    """Average entry price = cost / (size x contract size), six digits finer than the tick."""
    raw = position.cost / (position.size * market.contract_size)
    return raw.quantize(market.tick_size.scaleb(-6)).normalize()
