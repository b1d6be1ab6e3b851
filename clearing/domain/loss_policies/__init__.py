"""Loss policies: who bears a bankrupt account's loss, as pure functions over :class:`Holder`.

Two families (Chitra, arXiv 2512.01112, separates "how much" from "who"):

* queue policies close opposite positions at the bankrupt account's price; they differ in
  which positions and how much: ``adl`` (BitMEX PnL% x leverage ranking, ``adl_bitmex``),
  ``adl_hyperliquid`` ((mark / entry) x leverage ranking, ``adl_hyperliquid``), both walked
  by ``queue.queue_sizes``, and ``waterfill_leverage`` (Campbell, Hey, Moallemi and Nutz,
  arXiv 2603.15963: drain the most levered first). :func:`plan_deleveraging` dispatches.
* haircut policies charge cash shares: ``socialize_per_contract`` (pro rata to |size|),
  ``haircut_gains`` (pro rata to gain, at most each gain), ``leverage_weighted_gains``
  (leverage x gain, at most each gain).

:func:`bear` answers, for any policy, "what would each holder bear if this deficit were
allocated now as cash?", for a what-if display and the comparison lab. For the queue
policies that is Chitra's formalisation: the deficit is taken from the holders with a gain,
each at most its gain, greedily in score order (``adl``, ``adl_hyperliquid``), or pro rata
to the contracts water-filling would close (``waterfill_leverage``).

Example, mark 100, contract 1, longs a (10 at entry 80, equity 500), b (5 at 80, equity
100), c (20 at 110, equity 400), d (8 at 50, equity 80); gains 200, 100, -200, 400. A deficit
of 550 under ``adl``: scores d 10, b 1.25, a 0.5 (c is at a loss): d 400, b 100, a 50.

>>> from clearing.money import D
>>> book = [Holder("a", D(10), D(800), D(500)), Holder("b", D(5), D(400), D(100)),
...         Holder("c", D(20), D(2200), D(400)), Holder("d", D(8), D(400), D(80))]
>>> [(account, str(amount)) for account, amount in bear(ADL, book, D(100), D(1), D(550), D(1))]
[('a', '50'), ('b', '100'), ('c', '0'), ('d', '400')]

Policy names are owned by ``clearing.domain.parameters`` (which validates ``loss_policy``
and imports nothing from here); this package maps them to functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from types import MappingProxyType

from clearing.domain.loss_policies import (
    adl_bitmex,
    adl_hyperliquid,
    haircut_gains,
    leverage_weighted_gains,
    socialize_per_contract,
    waterfill_leverage,
)
from clearing.domain.loss_policies.base import (
    Holder,
    LossPolicyError,
    check_market,
    check_on_grid,
    gain_cap,
    ledger_exact,
    leverage,
    open_holders,
    queue_key,
    unrealized_gain,
)
from clearing.domain.loss_policies.queue import queue_sizes
from clearing.domain.parameters import (
    ADL,
    ADL_HYPERLIQUID,
    HAIRCUT_GAINS,
    LEVERAGE_WEIGHTED_GAINS,
    SOCIALIZE_PER_CONTRACT,
    WATERFILL_LEVERAGE,
)
from clearing.money import ZERO

__all__ = [
    "ADL",
    "ADL_HYPERLIQUID",
    "HAIRCUT_GAINS",
    "HAIRCUT_POLICIES",
    "LEVERAGE_WEIGHTED_GAINS",
    "QUEUE_POLICIES",
    "SOCIALIZE_PER_CONTRACT",
    "WATERFILL_LEVERAGE",
    "Holder",
    "LossPolicyError",
    "bear",
    "plan_deleveraging",
    "scores",
]

#: (account, contracts closed, score recorded) in closing order.
Plan = list[tuple[str, Decimal, Decimal | None]]
#: (opposites, mark, contract size, total contracts, step) -> plan.
Planner = Callable[[Sequence[Holder], Decimal, Decimal, Decimal, Decimal], Plan]
Scorer = Callable[[Sequence[Holder], Decimal, Decimal], list[tuple[str, Decimal | None]]]


def _plan_ranked(
    scorer: Scorer, opposites: Sequence[Holder], mark: Decimal, contract_size: Decimal, total: Decimal, step: Decimal
) -> Plan:
    check_market(mark, contract_size)
    check_on_grid("total", total, step)
    book = open_holders(opposites)
    for holder in book:
        check_on_grid(f"size of {holder.account}", abs(holder.size), step)
    sizes = {holder.account: abs(holder.size) for holder in book}
    return queue_sizes(scorer(book, mark, contract_size), sizes, total)


def plan_adl(opposites: Sequence[Holder], mark: Decimal, contract_size: Decimal, total: Decimal, step: Decimal) -> Plan:
    """``adl``: the BitMEX queue (``adl_bitmex.scores`` walked by ``queue.queue_sizes``)."""
    return _plan_ranked(adl_bitmex.scores, opposites, mark, contract_size, total, step)


def plan_adl_hyperliquid(
    opposites: Sequence[Holder], mark: Decimal, contract_size: Decimal, total: Decimal, step: Decimal
) -> Plan:
    """``adl_hyperliquid``: the Hyperliquid queue (``adl_hyperliquid.scores``, ``queue.queue_sizes``)."""
    return _plan_ranked(adl_hyperliquid.scores, opposites, mark, contract_size, total, step)


#: Queue policies by name: each plans which opposite positions close and how much.
QUEUE_POLICIES: Mapping[str, Planner] = MappingProxyType(
    {ADL: plan_adl, ADL_HYPERLIQUID: plan_adl_hyperliquid, WATERFILL_LEVERAGE: waterfill_leverage.sizes}
)
#: Haircut (cash) policies by name: each charges ``LossAllocated`` shares.
HAIRCUT_POLICIES: frozenset[str] = frozenset({HAIRCUT_GAINS, LEVERAGE_WEIGHTED_GAINS, SOCIALIZE_PER_CONTRACT})


def _check_one_side(opposites: Sequence[Holder]) -> None:
    longs = any(holder.size > ZERO for holder in opposites)
    shorts = any(holder.size < ZERO for holder in opposites)
    if longs and shorts:
        raise LossPolicyError("opposite holders must all be on one side (all long or all short)")


@ledger_exact
def plan_deleveraging(
    policy: str, opposites: list[Holder], mark: Decimal, contract_size: Decimal, total: Decimal, step: Decimal
) -> list[tuple[str, Decimal, Decimal | None]]:
    """Which opposite holders a queue policy closes, how many contracts each, and the score.

    Args:
        policy: one of ``QUEUE_POLICIES``.
        opposites: the positions on the other side of the bankrupt one (all one side).
        mark: mark price; contract_size: the market's contract size.
        total: contracts to close (the bankrupt position's |size|), on ``step``.
        step: the market's size step.

    Returns:
        (account, contracts closed, score recorded) in closing order, slices summing to
        ``total``: the ranking score for ``adl``/``adl_hyperliquid``, the leverage before for
        ``waterfill_leverage`` (``None`` when equity <= 0).

    Raises:
        LossPolicyError: an unknown policy, holders on both sides, bad grids, or ``total``
            above what the opposite holders hold.
    """
    planner = QUEUE_POLICIES.get(policy)
    if planner is None:
        raise LossPolicyError(f"{str(policy)!r} is not a queue policy; expected one of {', '.join(sorted(QUEUE_POLICIES))}")
    _check_one_side(opposites)
    return planner(opposites, mark, contract_size, total, step)


# -- what-if: what each holder would bear as cash ---------------------------------------------

Bearer = Callable[[Sequence[Holder], Decimal, Decimal, Decimal, Decimal], dict[str, Decimal]]


def _bear_socialized(
    book: Sequence[Holder], mark: Decimal, contract_size: Decimal, deficit: Decimal, quantum: Decimal
) -> dict[str, Decimal]:
    del mark, contract_size  # per contract: no price enters
    return dict(socialize_per_contract.shares(book, deficit if book else ZERO, quantum))


def _bear_haircut(
    book: Sequence[Holder], mark: Decimal, contract_size: Decimal, deficit: Decimal, quantum: Decimal
) -> dict[str, Decimal]:
    paid, _ = haircut_gains.shares(book, mark, contract_size, deficit, quantum)
    return {account: share for account, share, _ in paid}


def _bear_leverage_weighted(
    book: Sequence[Holder], mark: Decimal, contract_size: Decimal, deficit: Decimal, quantum: Decimal
) -> dict[str, Decimal]:
    paid, _ = leverage_weighted_gains.shares(book, mark, contract_size, deficit, quantum)
    return {account: share for account, share, _ in paid}


def _bear_queue(
    scorer: Scorer, book: Sequence[Holder], mark: Decimal, contract_size: Decimal, deficit: Decimal, quantum: Decimal
) -> dict[str, Decimal]:
    """Greedy in score order over the holders with a gain, each up to its gain (the queue walk in cash)."""
    caps = {holder.account: gain_cap(holder, mark, contract_size, quantum) for holder in book}
    ranked = [(account, score) for account, score in scorer(book, mark, contract_size) if caps[account] > ZERO]
    covered = min(deficit, sum(caps.values(), ZERO))
    return {account: amount for account, amount, _ in queue_sizes(ranked, caps, covered)}


def _bear_adl(
    book: Sequence[Holder], mark: Decimal, contract_size: Decimal, deficit: Decimal, quantum: Decimal
) -> dict[str, Decimal]:
    return _bear_queue(adl_bitmex.scores, book, mark, contract_size, deficit, quantum)


def _bear_adl_hyperliquid(
    book: Sequence[Holder], mark: Decimal, contract_size: Decimal, deficit: Decimal, quantum: Decimal
) -> dict[str, Decimal]:
    return _bear_queue(adl_hyperliquid.scores, book, mark, contract_size, deficit, quantum)


def _bear_waterfill(
    book: Sequence[Holder], mark: Decimal, contract_size: Decimal, deficit: Decimal, quantum: Decimal
) -> dict[str, Decimal]:
    return waterfill_leverage.cash_shares(book, mark, contract_size, deficit, quantum)


_BEARERS: Mapping[str, Bearer] = MappingProxyType({
    ADL: _bear_adl,
    ADL_HYPERLIQUID: _bear_adl_hyperliquid,
    WATERFILL_LEVERAGE: _bear_waterfill,
    SOCIALIZE_PER_CONTRACT: _bear_socialized,
    HAIRCUT_GAINS: _bear_haircut,
    LEVERAGE_WEIGHTED_GAINS: _bear_leverage_weighted,
})


@ledger_exact
def bear(
    policy: str, holders: list[Holder], mark: Decimal, contract_size: Decimal, deficit: Decimal, quantum: Decimal
) -> list[tuple[str, Decimal]]:
    """What each open holder would bear if ``deficit`` were allocated now as cash under ``policy``.

    Args:
        policy: any name of ``QUEUE_POLICIES`` or ``HAIRCUT_POLICIES``.
        holders: the positions that could bear it (the bankrupt account excluded by the
            caller; for a queue policy, the opposite side if only that side should).
        mark: mark price; contract_size: the market's contract size.
        deficit: the amount to allocate, on ``quantum``.
        quantum: the collateral quantum.

    Returns:
        (account, amount) for every open holder, by account name; the amounts are on the
        quantum and sum to min(deficit, what the policy can reach): the deficit itself for
        ``socialize_per_contract`` (when anyone holds a position), else the holders' gains
        rounded down to the quantum, each holder at most its own.
    """
    bearer = _BEARERS.get(policy)
    if bearer is None:
        raise LossPolicyError(f"unknown loss policy {str(policy)!r}; expected one of {', '.join(sorted(_BEARERS))}")
    check_market(mark, contract_size)
    check_on_grid("deficit", deficit, quantum)
    book = sorted(open_holders(holders), key=lambda holder: holder.account)
    borne = bearer(book, mark, contract_size, deficit, quantum)
    return [(holder.account, borne.get(holder.account, ZERO)) for holder in book]


# -- the standing of every holder: one score per policy ----------------------------------------


@ledger_exact
def scores(
    policy: str, holders: list[Holder], mark: Decimal, contract_size: Decimal
) -> list[tuple[str, Decimal | None]]:
    """The open holders in the order ``policy`` reaches them, each with its score.

    The one definition of a holder's *score* under each policy (what ``clearing adl rank``
    and ``account show`` display); first in the list = rank 1:

    * ``adl``: ``adl_bitmex.score`` (PnL% x leverage, PnL% / leverage at a loss); highest
      first, ``None`` (equity <= 0 or no entry value) last.
    * ``adl_hyperliquid``: ``adl_hyperliquid.score`` ((mark / entry) x leverage, the price
      ratio in the position's favour); highest first, ``None`` last.
    * ``waterfill_leverage``: the leverage, notional / equity (``base.leverage``); the order
      water-filling closes in (``waterfill_leverage.closing_key``): ``None`` (equity <= 0,
      infinite leverage) first, then highest leverage.
    * ``haircut_gains``: the unrealized gain (negative at a loss); highest first.
    * ``leverage_weighted_gains``: the weight, leverage x gain
      (``leverage_weighted_gains.weight``; 0 without a gain or with equity <= 0); highest first.
    * ``socialize_per_contract``: |size|; highest first.

    Ties go by account name; flat holders are left out. Queue policies close in this order;
    cash policies charge pro rata to the score, so the first bears the most (before caps).
    What a deficit would actually cost each holder is :func:`bear`.

    Example, mark 100, contract 1 (the book of the module docstring, gains a 200, b 100,
    c -200, d 400; leverage a 2, b 5, c 5, d 10): ``waterfill_leverage`` gives d 10, b 5,
    c 5, a 2 (b before c by name); ``haircut_gains`` gives d 400, a 200, b 100, c -200.

    >>> from clearing.money import D, fmt
    >>> book = [Holder("a", D(10), D(800), D(500)), Holder("b", D(5), D(400), D(100)),
    ...         Holder("c", D(20), D(2200), D(400)), Holder("d", D(8), D(400), D(80))]
    >>> [(account, fmt(score)) for account, score in scores(WATERFILL_LEVERAGE, book, D(100), D(1))]
    [('d', '10'), ('b', '5'), ('c', '5'), ('a', '2')]
    >>> [(account, fmt(score)) for account, score in scores(HAIRCUT_GAINS, book, D(100), D(1))]
    [('d', '400'), ('a', '200'), ('b', '100'), ('c', '-200')]

    Raises:
        LossPolicyError: an unknown policy, a mark or contract size that is not positive, or
            an account named twice.
    """
    rules: dict[str, Callable[[Holder, Decimal, Decimal], Decimal | None]] = {
        ADL: adl_bitmex.score,
        ADL_HYPERLIQUID: adl_hyperliquid.score,
        WATERFILL_LEVERAGE: leverage,
        HAIRCUT_GAINS: unrealized_gain,
        LEVERAGE_WEIGHTED_GAINS: leverage_weighted_gains.weight,
        SOCIALIZE_PER_CONTRACT: lambda holder, _mark, _contract_size: abs(holder.size),
    }
    rule = rules.get(policy)
    if rule is None:
        raise LossPolicyError(f"unknown loss policy {str(policy)!r}; expected one of {', '.join(sorted(rules))}")
    check_market(mark, contract_size)
    book = open_holders(holders)
    if policy == WATERFILL_LEVERAGE:
        ordered = sorted(book, key=lambda holder: waterfill_leverage.closing_key(holder, mark, contract_size))
        return [(holder.account, rule(holder, mark, contract_size)) for holder in ordered]
    scored = [(holder.account, rule(holder, mark, contract_size)) for holder in book]
    return sorted(scored, key=lambda item: queue_key(*item))
