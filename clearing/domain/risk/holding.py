"""What a decision reads of a position, and a plain one for positions a decision imagines."""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple, Protocol


class Holding(Protocol):
    """What a decision reads of a position: signed size and signed entry notional (cost).

    ``account.Position`` fits, as does the decision audit's replayed holding: the deciders
    in this package take a ``Holding`` so the engine and the audit call the same rule.
    """

    @property
    def size(self) -> Decimal: ...
    @property
    def cost(self) -> Decimal: ...


class Held(NamedTuple):
    """A plain holding (size and cost), for positions a decision imagines after a fill."""

    size: Decimal
    cost: Decimal
