"""Risk-based deleveraging: drain the most levered opposite positions first (water-filling).

Rule (Campbell, Hey, Moallemi and Nutz, "Risk-Based Auto-Deleveraging", arXiv 2603.15963):
for a single asset under risk-neutral expected loss the unique optimal policy minimises the
maximum leverage of the opposite holders, "leverage-draining". Positions are reduced from
the most levered down until their leverage is equal: find the level L with

    sum_i max(0, |size_i| - L x equity_i / (mark x contract)) = total

and close ``max(0, |size_i| - L x equity_i / (mark x contract))`` of each, which leaves each
reduced holder at leverage exactly L. Holders with equity <= 0 have infinite leverage and are
closed first, in full (pro rata to size among themselves if they alone exceed ``total``).

First-order model: equity is measured before the fills and held constant. Closing at the
mark leaves equity unchanged; closing at the bankrupt account's price moves it by the loss
against the mark, which the paper's continuous model, and this module, ignore.

Properties (paper; tested in tests/unit/test_loss_policies.py): Sybil resistant (splitting an
account into two of the same leverage changes no owner's total), wash-trade resistant (the
entry price, hence ``cost``, does not enter), path-independent.

Example, mark 100, contract 1, closing 9.8 against longs d (8 contracts, equity 80:
leverage 10), b (5, equity 100: 5), c (20, equity 400: 5), a (10, equity 500: 2). With d, b
and c above the level: L = (800 + 500 + 2,000 - 9.8 x 100) / (80 + 100 + 400) = 4 >= 2, so
d closes 8 - 4 x 0.8 = 4.8, b 5 - 4 x 1 = 1, c 20 - 4 x 4 = 4 and a nothing; all three end
at leverage 4.

>>> from clearing.money import D
>>> book = [Holder("a", D(10), D(800), D(500)), Holder("b", D(5), D(400), D(100)),
...         Holder("c", D(20), D(2200), D(400)), Holder("d", D(8), D(400), D(80))]
>>> [(account, str(size)) for account, size, _ in sizes(book, D(100), D(1), D("9.8"), D("0.1"))]
[('d', '4.8'), ('b', '1.0'), ('c', '4.0')]

For the cash what-if (``bear``), :func:`cash_shares` charges the holders with a gain pro rata
to the contracts this rule would close, each at most its gain.

Rounding: the exact sizes are split on the step by largest remainder (``base.allocate_capped``,
ties in closing order), each at most the holder's size, summing to ``total`` exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from clearing.domain.loss_policies.base import (
    Holder,
    LossPolicyError,
    allocate_capped,
    check_market,
    check_on_grid,
    gain_cap,
    ledger_exact,
    leverage,
    notional,
    open_holders,
)
from clearing.money import ZERO


def closing_key(holder: Holder, mark: Decimal, contract_size: Decimal) -> tuple[bool, Decimal, str]:
    """Closing order: equity <= 0 first (infinite leverage), then leverage high to low, then name."""
    held_leverage = leverage(holder, mark, contract_size)
    return (held_leverage is not None, -held_leverage if held_leverage is not None else ZERO, holder.account)


@ledger_exact
def level(solvent: Sequence[Holder], mark: Decimal, contract_size: Decimal, remaining: Decimal) -> Decimal:
    """The leverage L at which the holders with equity > 0 close ``remaining`` contracts.

    With the j most levered above L, sum (notional_i - L x equity_i) = remaining x mark x
    contract, so L = (N_j - remaining x mark x contract) / E_j; the right j is the first whose
    L is at least the next holder's leverage. 0 when ``remaining`` is all they hold.
    """
    ordered = sorted(solvent, key=lambda holder: closing_key(holder, mark, contract_size))
    value_remaining = remaining * mark * contract_size
    notional_sum, equity_sum = ZERO, ZERO
    for index, holder in enumerate(ordered):
        notional_sum += notional(holder, mark, contract_size)
        equity_sum += holder.equity
        candidate = (notional_sum - value_remaining) / equity_sum
        following = ordered[index + 1] if index + 1 < len(ordered) else None
        if following is None or candidate * following.equity >= notional(following, mark, contract_size):
            return max(candidate, ZERO)
    raise LossPolicyError("no holder with equity > 0 to close against")


@ledger_exact
def closed_exact(
    holders: Sequence[Holder], mark: Decimal, contract_size: Decimal, total: Decimal
) -> dict[str, Decimal]:
    """Contracts water-filling closes of each holder, exact (before rounding to the step).

    ``total`` must be at most the holders' whole size; no grid is required here.
    """
    underwater = [holder for holder in holders if holder.equity <= ZERO]
    solvent = [holder for holder in holders if holder.equity > ZERO]
    size_underwater = sum((abs(holder.size) for holder in underwater), ZERO)
    closed = {holder.account: ZERO for holder in holders}
    if total <= size_underwater:
        for holder in underwater:
            closed[holder.account] = total * abs(holder.size) / size_underwater if total > ZERO else ZERO
        return closed
    closed.update({holder.account: abs(holder.size) for holder in underwater})
    drain_level = level(solvent, mark, contract_size, total - size_underwater)
    for holder in solvent:
        excess = notional(holder, mark, contract_size) - drain_level * holder.equity
        closed[holder.account] = max(ZERO, excess / (mark * contract_size))
    return closed


@ledger_exact
def sizes(
    holders: Sequence[Holder], mark: Decimal, contract_size: Decimal, total: Decimal, step: Decimal
) -> list[tuple[str, Decimal, Decimal | None]]:
    """(account, contracts closed, leverage before) closing ``total`` by water-filling.

    Args:
        holders: the opposite positions (one side; the sign of ``size`` is not read).
        mark: mark price; contract_size: the market's contract size.
        total: contracts to close, on ``step``.
        step: the market's size step; every holder's |size| must be on it.

    Returns:
        The holders closed (slice > 0) in closing order, each slice on the step and at most
        the holder's size, the slices summing to ``total``; leverage ``None`` when equity <= 0.

    Raises:
        LossPolicyError: a bad grid or market, or ``total`` above what the holders hold.
    """
    check_market(mark, contract_size)
    check_on_grid("total", total, step)
    book = sorted(open_holders(holders), key=lambda holder: closing_key(holder, mark, contract_size))
    for holder in book:
        check_on_grid(f"size of {holder.account}", abs(holder.size), step)
    available = sum((abs(holder.size) for holder in book), ZERO)
    if total > available:
        raise LossPolicyError(f"cannot close {total} contracts: the opposite holders hold only {available}")
    closed = closed_exact(book, mark, contract_size, total)
    caps = {holder.account: abs(holder.size) for holder in book}
    slices = allocate_capped(total, [(holder.account, closed[holder.account]) for holder in book], caps, step)
    return [
        (holder.account, slices[holder.account], leverage(holder, mark, contract_size))
        for holder in book
        if slices[holder.account] > ZERO
    ]


def _cash_weights(
    pool: Sequence[Holder], mark: Decimal, contract_size: Decimal, remaining: Decimal
) -> list[tuple[str, Decimal]]:
    """(account, contracts closed) water-filling ``remaining`` at the mark over ``pool``, in order."""
    contracts = min(remaining / (mark * contract_size), sum((abs(holder.size) for holder in pool), ZERO))
    closed = closed_exact(pool, mark, contract_size, contracts)
    return [(holder.account, closed[holder.account]) for holder in pool]


@ledger_exact
def cash_shares(
    holders: Sequence[Holder], mark: Decimal, contract_size: Decimal, deficit: Decimal, quantum: Decimal
) -> dict[str, Decimal]:
    """What each holder with a gain would bear of ``deficit`` as cash (the what-if of ``bear``).

    Pro rata to the contracts water-filling would close over the holders with a gain, each at
    most its gain rounded down to ``quantum``. The contracts closed are the deficit's value at
    the mark, deficit / (mark x contract), at most the winners' whole size, so an uncapped
    winner bears the mark value of what it would close. A winner at its gain drops out and the
    rest is water-filled again over the others, until min(deficit, sum of gains) is allocated.
    Example (the book above, mark 100): 300 is 3 contracts, all d's (L = 6.25): d bears 300.
    """
    left = {holder.account: gain_cap(holder, mark, contract_size, quantum) for holder in holders}
    borne = dict.fromkeys(left, ZERO)
    remaining = min(deficit, sum(left.values(), ZERO))
    book = sorted(holders, key=lambda holder: closing_key(holder, mark, contract_size))
    for _ in range(len(book) + 1):  # each round allocates all or caps every winner it weights
        pool = [holder for holder in book if left[holder.account] > ZERO]
        if remaining == ZERO or not pool:
            break
        weights = _cash_weights(pool, mark, contract_size, remaining)
        reachable = sum((left[account] for account, contracts in weights if contracts > ZERO), ZERO)
        for account, amount in allocate_capped(min(remaining, reachable), weights, left, quantum).items():
            borne[account] += amount
            left[account] -= amount
            remaining -= amount
    if remaining != ZERO:
        raise LossPolicyError(f"water-filling left {remaining} unallocated within one round per holder")
    return borne
