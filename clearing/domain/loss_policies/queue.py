"""The ranking queue: close opposite positions in score order until the size is covered.

Rule (BitMEX bitmex.com/app/autoDeleveragingExamples; Hyperliquid auto-deleveraging docs;
Chitra, arXiv 2512.01112, "queue policies ... choose who greedily"): take the opposite
holders highest score first (``None`` last, ties by account name), close each up to its
whole size, the last one possibly in part, until ``total`` contracts are closed. The same
walk as the engine's ``liquidation.deleverage`` over ``liquidation._ranked_opposites``.

Example: scores d 10, b 1.25, a 0.5, c None with sizes 8, 5, 10, 20; closing 20 takes
d 8, b 5 and 7 of a's 10 (8 + 5 + 7 = 20); c is never reached.

>>> from clearing.money import D
>>> queue_sizes([("a", D("0.5")), ("c", None), ("d", D(10)), ("b", D("1.25"))],
...             {"a": D(10), "b": D(5), "c": D(20), "d": D(8)}, D(20))
[('d', Decimal('8'), Decimal('10')), ('b', Decimal('5'), Decimal('1.25')), ('a', Decimal('7'), Decimal('0.5'))]

Rounding: none needed; every slice is a whole position or what is left of ``total``, so
slices are on the step whenever sizes and ``total`` are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from clearing.domain.loss_policies.base import LossPolicyError, ledger_exact, queue_key
from clearing.money import ZERO


@ledger_exact
def queue_sizes(
    ranked: Sequence[tuple[str, Decimal | None]], sizes: Mapping[str, Decimal], total: Decimal
) -> list[tuple[str, Decimal, Decimal | None]]:
    """(account, contracts closed, score) walking ``ranked`` in score order until ``total``.

    Args:
        ranked: (account, score) of each opposite holder, in any order.
        sizes: signed (or absolute) position size of each ranked account, in contracts.
        total: contracts to close, >= 0.

    Returns:
        The accounts closed, in queue order, each with its slice (> 0) and score.

    Raises:
        LossPolicyError: ``total`` is negative, an account is ranked twice or missing from ``sizes``, or
            the ranked holders together hold fewer than ``total`` contracts.
    """
    if total < ZERO:
        raise LossPolicyError(f"total {total} contracts to close must be non-negative")
    if len({account for account, _ in ranked}) != len(ranked):
        raise LossPolicyError("ranked must name each account once")
    missing = sorted(account for account, _ in ranked if account not in sizes)
    if missing:
        raise LossPolicyError(f"no size given for ranked accounts {missing}")
    available = sum((abs(sizes[account]) for account, _ in ranked), ZERO)
    if total > available:
        raise LossPolicyError(f"cannot close {total} contracts: the opposite holders hold only {available}")
    remaining, closed = total, []
    for account, account_score in sorted(ranked, key=lambda item: queue_key(*item)):
        if remaining == ZERO:
            break
        size_closed = min(remaining, abs(sizes[account]))
        if size_closed > ZERO:
            closed.append((account, size_closed, account_score))
            remaining -= size_closed
    return closed
