"""An operator's manual liquidation (an auction price): when its price needs approval.

An operator may close part or all of a position below maintenance at an auction price of
their choosing. A price more than ``manual_liquidation_band`` x mark from the mark needs
M-of-N approval of that exact liquidation (account, market, size, price, liquidator),
since it moves money between the account and the liquidator away from the market.
Example: mark 95, band 10 %: 86 to 104 stand alone; 40 is 57.9 % away and needs approval.
"""

from __future__ import annotations

from decimal import Decimal

from clearing.domain.governance import Change
from clearing.money import exact


@exact
def out_of_band(price: Decimal, mark: Decimal, band: Decimal) -> Decimal | None:
    """|price - mark| / mark when it is beyond ``band``; None inside it."""
    distance = abs(price - mark) / mark
    return distance if distance > band else None


def manual_liquidation_change(account: str, market: str, size: Decimal, price: Decimal, liquidator: str) -> Change:
    """The exact liquidation officers approve when its price is outside the band."""
    return Change("liquidate", market, {"account": account, "size": size, "price": price, "liquidator": liquidator})
