"""How a deficit the fund cannot pay is shared: each cash loss policy's allocation.

A loss left after the insurance fund is charged to the open positions of the market (never
to a flat account), by the market's ``loss_policy``; every group of shares adds up to its
loss exactly (largest remainder at the quantum). ``cash_allocation`` splits a
liquidation's deficit, ``settlement_allocation`` a settlement's; the engine books their
groups as ``LossAllocated`` and the decision audit recomputes them from the recorded
holders. Example: 1.00 per contract over sizes 1, 1, 1 -> 0.34, 0.33, 0.33.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from clearing.domain.liquidation_math import allocate_largest_remainder
from clearing.domain.loss_policies import Holder, leverage_weighted_gains, plan_deleveraging
from clearing.domain.margin import unrealized_pnl
from clearing.domain.parameters import HAIRCUT_GAINS, LEVERAGE_WEIGHTED_GAINS, QUEUE_POLICIES, SOCIALIZE_PER_CONTRACT
from clearing.money import ZERO, exact, round_down


@dataclass(frozen=True)
class ShareGroup:
    """One set of ``LossAllocated`` of a loss: the policy, its total, the basis and the shares."""

    policy: str
    loss: Decimal
    basis_total: Decimal
    shares: tuple[tuple[str, Decimal, Decimal], ...]  # (account, share, basis), shares may be 0
    ranks: tuple[tuple[str, Decimal | None], ...] = ()  # (account, score) of a queue plan at settlement


@exact
def cash_allocation(policy: str, holders: Sequence[Holder], mark: Decimal, contract_size: Decimal, loss: Decimal,
                    quantum: Decimal) -> list[ShareGroup]:
    """How a cash ``policy`` splits ``loss`` over ``holders`` (the open positions of the market
    but the bankrupt one's, in name order): the one rule the engine books and the audit checks.

    ``socialize_per_contract``: pro rata to |size| over longs + shorts (Drift / Mango).
    ``haircut_gains``: pro rata to unrealized gains at the mark rounded down to the quantum,
    at most each gain (a gain below one quantum bears nothing). ``leverage_weighted_gains``:
    ``loss_policies.leverage_weighted_gains.shares`` (weights leverage x gain, each at most
    its gain; the basis is the weight). What gains cannot cover goes per contract, in a
    second group. Largest remainder at the quantum, so each group adds up exactly.
    Example: 1.00 per contract over sizes 1, 1, 1 -> 0.34, 0.33, 0.33.
    """
    groups: list[ShareGroup] = []
    if policy == HAIRCUT_GAINS:
        gains = [(h.account, round_down(max(ZERO, unrealized_pnl(h.size, h.cost, mark, contract_size)), quantum))
                 for h in holders]
        gains = [(name, gain) for name, gain in gains if gain > ZERO]
        haircut = min(loss, sum((gain for _, gain in gains), ZERO))
        if haircut > ZERO:
            groups.append(_pro_rata(HAIRCUT_GAINS, haircut, gains, quantum))
        loss -= haircut
    elif policy == LEVERAGE_WEIGHTED_GAINS:
        paid, uncovered = leverage_weighted_gains.shares(holders, mark, contract_size, loss, quantum)
        if loss > uncovered:
            groups.append(ShareGroup(LEVERAGE_WEIGHTED_GAINS, loss - uncovered, sum((w for _, _, w in paid), ZERO), tuple(paid)))
        loss = uncovered
    if loss > ZERO:
        groups.append(_pro_rata(SOCIALIZE_PER_CONTRACT, loss, [(h.account, abs(h.size)) for h in holders], quantum))
    return groups


def _pro_rata(policy: str, loss: Decimal, weights: Sequence[tuple[str, Decimal]], quantum: Decimal) -> ShareGroup:
    shares = allocate_largest_remainder(loss, list(weights), quantum)
    return ShareGroup(policy, loss, sum((w for _, w in weights), ZERO), tuple((name, shares[name], w) for name, w in weights))


@exact
def settlement_allocation(policy: str, bankrupt_size: Decimal, others: Sequence[Holder], price: Decimal,
                          contract_size: Decimal, step: Decimal, loss: Decimal, quantum: Decimal) -> tuple[str, list[ShareGroup]]:
    """How a settlement deficit left after the fund is charged: (policy used, share groups).

    ``others``: every settled position but the bankrupt ones, valued at the final ``price``
    (equity with this market at ``price``), in name order. Queue policies: as any
    deleveraging, the bankrupt position (``bankrupt_size``) is closed against the
    opposite-side winners by the policy's plan (``loss_policies.plan_deleveraging`` at
    ``price``) at its bankruptcy price, so each planned winner bears ``loss`` x its contracts
    / the position's size; with too few winners, per contract. ``leverage_weighted_gains``:
    its shares, what gains cannot cover per contract. ``haircut_gains``: pro rata to
    settlement gains. ``socialize_per_contract``, or nobody with a gain: per contract.
    Example: bankrupt long 3, 150 left after the fund; shorts ranked c (size 2), a (size 5):
    c bears 100, a 50 - not pro rata to gains.
    """
    gains = {h.account: unrealized_pnl(h.size, h.cost, price, contract_size) for h in others}
    if policy in QUEUE_POLICIES:
        opposite = [h for h in others if (h.size > ZERO) != (bankrupt_size > ZERO) and gains[h.account] > ZERO]
        if sum((abs(h.size) for h in opposite), ZERO) >= abs(bankrupt_size):
            plan = plan_deleveraging(policy, opposite, price, contract_size, abs(bankrupt_size), step)
            group = _pro_rata(policy, loss, [(name, take) for name, take, _ in plan], quantum)
            scores = tuple((name, score) for name, _, score in plan)
            return policy, [ShareGroup(policy, loss, abs(bankrupt_size), group.shares, scores)]
        policy = SOCIALIZE_PER_CONTRACT
    groups: list[ShareGroup] = []
    if policy == LEVERAGE_WEIGHTED_GAINS:
        paid, uncovered = leverage_weighted_gains.shares(others, price, contract_size, loss, quantum)
        if loss > uncovered:
            groups.append(ShareGroup(LEVERAGE_WEIGHTED_GAINS, loss - uncovered, sum((w for _, _, w in paid), ZERO), tuple(paid)))
        if uncovered == ZERO:
            return policy, groups
        loss, policy = uncovered, SOCIALIZE_PER_CONTRACT
    winners = [(h.account, gains[h.account]) for h in others if gains[h.account] > ZERO]
    if policy == HAIRCUT_GAINS and winners:
        return policy, [*groups, _pro_rata(HAIRCUT_GAINS, loss, winners, quantum)]
    sizes = [(h.account, abs(h.size)) for h in others]
    return SOCIALIZE_PER_CONTRACT, [*groups, _pro_rata(SOCIALIZE_PER_CONTRACT, loss, sizes, quantum)]
