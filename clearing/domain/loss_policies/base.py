"""What every loss policy reads: the holders of one market, and the shared arithmetic.

A :class:`Holder` is one account's position in the market plus the account's whole equity
at the mark (cross margin). From it, with the market's ``mark`` and ``contract_size``:

* notional = |size| x mark x contract (``margin.position_notional``);
* leverage = notional / equity, ``None`` when equity <= 0 (each policy says where such an
  account goes: a ranking puts it last, water-filling closes it first);
* unrealized gain = size x mark x contract - cost (``margin.unrealized_pnl``).

Example: long 10 contracts of size 1 bought for 800 (entry 80), equity 500, mark 100:
notional 1,000, leverage 2, gain 200; the same position with equity -5 has leverage None.

Rounding: every split goes through :func:`allocate_capped`, which is
``liquidation_math.allocate_largest_remainder`` (floors on the grid, the quanta left over
to the largest remainders) with caps, so amounts add up to their total exactly and none
exceeds its cap. Pure functions only: no aggregate, event, clock or database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from clearing.domain import liquidation_math
from clearing.domain.margin import position_notional, unrealized_pnl
from clearing.money import ZERO, exact, round_down

#: :func:`clearing.money.exact` (60-digit ledger context), under this package's name; it
#: keeps the signature (``ParamSpec``), so mypy --strict checks every call.
ledger_exact = exact
adl_ranking = liquidation_math.adl_ranking

#: Bound on the capping rounds of :func:`allocate_capped`: each round but the last caps at
#: least one more holder, so rounds <= holders + 1; this many is a broken invariant.
ROUNDS_MAX_EXTRA = 1


class LossPolicyError(ValueError):
    """Inputs a loss policy cannot allocate: bad grid, unknown policy, not enough to close."""


@dataclass(frozen=True)
class Holder:
    """One account's position in the market being deleveraged or charged."""

    account: str
    size: Decimal  # signed position size in this market (contracts)
    cost: Decimal  # signed entry value: size x entry price x contract size (Position.cost)
    equity: Decimal  # the account's whole equity at the mark (cross margin)


def notional(holder: Holder, mark: Decimal, contract_size: Decimal) -> Decimal:
    """|size| x mark x contract, exact."""
    return position_notional(holder.size, mark, contract_size)


def leverage(holder: Holder, mark: Decimal, contract_size: Decimal) -> Decimal | None:
    """notional / equity; ``None`` when equity <= 0 (no finite leverage)."""
    if holder.equity <= ZERO:
        return None
    return notional(holder, mark, contract_size) / holder.equity


def unrealized_gain(holder: Holder, mark: Decimal, contract_size: Decimal) -> Decimal:
    """size x mark x contract - cost, exact; negative for a position at a loss."""
    return unrealized_pnl(holder.size, holder.cost, mark, contract_size)


def gain_cap(holder: Holder, mark: Decimal, contract_size: Decimal, quantum: Decimal) -> Decimal:
    """The most a haircut may take: the gain rounded down to the quantum, 0 without gain."""
    return max(ZERO, round_down(unrealized_gain(holder, mark, contract_size), quantum))


def queue_key(account: str, score: Decimal | None) -> tuple[bool, Decimal, str]:
    """Sort key of a ranking: highest score first, ``None`` last, ties by account name."""
    return (score is None, -score if score is not None else ZERO, account)


def check_market(mark: Decimal, contract_size: Decimal) -> None:
    """Reject a mark or contract size that is not positive (no notional, no leverage)."""
    if mark <= ZERO or contract_size <= ZERO:
        raise LossPolicyError(f"mark {mark} and contract size {contract_size} must be positive")


def check_on_grid(name: str, amount: Decimal, grid: Decimal) -> None:
    """Reject a negative ``amount`` or one off the ``grid`` (quantum or step), or a grid <= 0."""
    if grid <= ZERO:
        raise LossPolicyError(f"the grid of {name} must be positive, got {grid}")
    if amount < ZERO or round_down(amount, grid) != amount:
        raise LossPolicyError(f"{name} {amount} must be non-negative and a multiple of {grid}")


def check_unique(holders: Sequence[Holder]) -> None:
    """Reject two holders with the same account: each account has one position per market."""
    names = [holder.account for holder in holders]
    if len(set(names)) != len(names):
        raise LossPolicyError(f"holders must name each account once, got {sorted(names)}")


def open_holders(holders: Sequence[Holder]) -> list[Holder]:
    """Holders with a position (size != 0): a flat account never bears a loss."""
    check_unique(holders)
    return [holder for holder in holders if holder.size != ZERO]


def allocate(total: Decimal, weights: Sequence[tuple[str, Decimal]], grid: Decimal) -> dict[str, Decimal]:
    """``liquidation_math.allocate_largest_remainder`` keyed by account."""
    return liquidation_math.allocate_largest_remainder(total, list(weights), grid)


@ledger_exact
def allocate_capped(
    total: Decimal, weights: Sequence[tuple[str, Decimal]], caps: Mapping[str, Decimal], grid: Decimal
) -> dict[str, Decimal]:
    """Split ``total`` pro rata to ``weights``, none above its cap, by largest remainder.

    Water-filling: a share that would pass its cap is fixed at the cap and the excess goes
    pro rata to the others, round after round, until none passes. Ties go in the order the
    weights are given. ``total`` and the caps are on ``grid``; ``total`` must not exceed
    the caps of the positive weights. Example: 100 over weights 1, 1, 2 with caps 50, 50,
    30 at 1: 25, 25, 50 -> 50 > 30, so 30 is fixed and 70 goes 35, 35.

    >>> allocate_capped(Decimal(100), [("a", Decimal(1)), ("b", Decimal(1)), ("c", Decimal(2))],
    ...                 {"a": Decimal(50), "b": Decimal(50), "c": Decimal(30)}, Decimal(1))
    {'c': Decimal('30'), 'a': Decimal('35'), 'b': Decimal('35')}
    """
    check_on_grid("total", total, grid)
    reachable = sum((caps[account] for account, weight in weights if weight > ZERO), ZERO)
    if total > reachable:
        raise LossPolicyError(f"total {total} exceeds the caps {reachable} of the holders with weight")
    fixed: dict[str, Decimal] = {}
    for _ in range(len(weights) + ROUNDS_MAX_EXTRA):
        free = [(account, weight) for account, weight in weights if account not in fixed and weight > ZERO]
        shares = allocate(total - sum(fixed.values(), ZERO), free, grid)
        over = [account for account, share in shares.items() if share > caps[account]]
        if not over:
            zeros = {account: ZERO for account, _ in weights if account not in fixed and account not in shares}
            return {**fixed, **shares, **zeros}
        fixed.update({account: caps[account] for account in over})
    raise LossPolicyError("capped allocation did not settle within one round per holder")
