"""One funding period of a perpetual: who pays, who receives, how much.

With a positive rate longs pay shorts (a negative rate the reverse). Each payer pays
|size| x mark x contract x |rate|, rounded **up** to the quantum (never less than its exact
amount); the receivers share exactly what the payers paid, pro rata to |size| by largest
remainder at the quantum, so funding moves money between accounts and creates none.
Example: rate 0.0001, mark 50,000: a long 1 pays 5; shorts of 1 and 3 receive 1.25 and
3.75.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from clearing.domain.liquidation_math import allocate_largest_remainder
from clearing.money import ZERO, exact, round_up


@dataclass(frozen=True)
class FundingSplit:
    """Each holder's amount (paid < 0, received > 0; absent: 0), the payers and the total paid."""

    amounts: dict[str, Decimal]
    payers: tuple[str, ...]
    paid: Decimal


@exact
def funding_split(sizes: Sequence[tuple[str, Decimal]], price_mark: Decimal, contract_size: Decimal, rate: Decimal,
                  quantum: Decimal) -> FundingSplit:
    """``sizes``: (account, signed size) of the open positions, in name order."""
    payers = [(name, size) for name, size in sizes if size * rate > ZERO]
    receivers = [(name, abs(size)) for name, size in sizes if size * rate < ZERO]
    amounts = {name: -round_up(abs(size * price_mark * contract_size * rate), quantum) for name, size in payers}
    paid = -sum(amounts.values(), ZERO)
    if receivers:
        amounts.update(allocate_largest_remainder(paid, receivers, quantum))
    return FundingSplit(amounts, tuple(name for name, _ in payers), paid)
