"""Properties of the recorded liquidation decisions, checked without any decider.

The decision audit (``clearing.audit.decisions``) re-derives each decision by calling the
engine's own deciders (``clearing.domain.risk``) on the state it folded from the log; two
runs of one function share its blind spots. These checks are the independent layer: each
is a property any correct decision has, stated on the recorded numbers alone, sharing no
code with the deciders (no margin, bankruptcy, penalty or allocation formula). They run
per command, inside the invariants fold (``InvariantCheck``, under the ledger's decimal
context), so every test that checks the invariants after a command checks them too, and
``audit verify``'s ``invariants`` check runs them over the whole log:

* ``penalty_within_surplus``: 0 <= liquidator fee <= penalty <= max(0, q_f - q_b): a
  penalty never takes an account below its bankruptcy quote. Example: q_f 4,540, q_b
  4,500 -> a penalty of at most 40.
* ``deficit_covered``: a backstop fill below its bankruptcy quote (q_f < q_b) leaves the
  account ``bankrupt``, and the command covers exactly q_b - q_f for that account and
  liquidation id (``LossCovered.deficit``). Example: q_b 4,501, q_f 4,480 -> 21 covered.
* ``deleveraged_at_bankruptcy``: a deleveraging slice books exactly its share of the
  bankruptcy quote (q_f = q_b) with no penalty, and leaves the account ``bankrupt``.
* ``covers_add_up``: each ``LossCovered`` has fund_paid + allocated = deficit; what the
  fund paid per (account, loss id) in the command equals its draws with that reference;
  what was allocated per loss id equals the ``LossAllocated`` shares of that loss id.
* ``ranks_in_order``: the slices of one deleveraging under a ranked queue (``adl``,
  ``adl_hyperliquid``, or a cash policy, which deleverages by ``adl``) close the
  counterparties from the highest score down, unranked (None) last: the slices in the
  order the bankrupt account recorded them, each with the score its counterparty's
  ``PositionTaken`` recorded. Example: scores 3, 2, 2, None is in order; 2, 3 is not.

Where a property fails the message names it, the account and the log position at which the
command's end was seen, as the solvency invariant does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from decimal import Decimal, localcontext
from itertools import pairwise
from typing import Any

from clearing.audit.log import Handlers
from clearing.domain.account import BANKRUPT, Account
from clearing.domain.command_record import CommandRecord
from clearing.domain.insurance import InsuranceFund
from clearing.domain.parameters import ADL, WATERFILL_LEVERAGE
from clearing.errors import InvariantViolation
from clearing.money import LEDGER_CONTEXT, ZERO

#: A command record starts the next command; so does an account's fills of a run of trades
#: (``Account.FillsRecorded``, ADR 25), which is checked as a command of its own.
COMMAND_ENDS: frozenset[type[Any]] = frozenset({CommandRecord.Accepted, CommandRecord.Rejected, Account.FillsRecorded})
UNRANKED_QUEUE = WATERFILL_LEVERAGE  # records leverage before, drained to equal leverage: no score order


@dataclass
class Decisions:
    """What one command recorded of its liquidation decisions (cleared when it ends)."""

    deficits: dict[tuple[str, str], Decimal] = field(default_factory=dict)  # (account, liquidation id) -> q_b - q_f
    covered: dict[tuple[str, str], Decimal] = field(default_factory=lambda: defaultdict(lambda: ZERO))
    fund_paid: dict[tuple[str, str], Decimal] = field(default_factory=lambda: defaultdict(lambda: ZERO))
    drawn: dict[tuple[str, str], Decimal] = field(default_factory=lambda: defaultdict(lambda: ZERO))
    allocated: dict[str, Decimal] = field(default_factory=lambda: defaultdict(lambda: ZERO))  # loss id -> covers
    shares: dict[str, Decimal] = field(default_factory=lambda: defaultdict(lambda: ZERO))  # loss id -> LossAllocated
    slices: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (account, id) -> counterparties in order
    ranks: dict[tuple[str, str, str], Decimal | None] = field(default_factory=dict)  # (account, id, counterparty) -> rank
    ranked: set[tuple[str, str]] = field(default_factory=set)  # deleveragings under a ranked queue
    seen: bool = False  # anything recorded since the last command end

    def clear(self) -> None:
        """Empty every table (the command ended)."""
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, (dict, set)):
                value.clear()
        self.seen = False


ON: Handlers[Decisions] = Handlers()


@ON.register(Account.Liquidated)
def _liquidated(state: Decisions, event: Account.Liquidated) -> None:
    state.seen = True
    where = f"{event.account} liquidation {event.liquidation_id} in {event.market}"
    surplus = max(ZERO, event.quote_fill - event.quote_bankruptcy)
    if not ZERO <= event.fee_liquidator <= event.penalty <= surplus:
        raise InvariantViolation(f"penalty_within_surplus: {where}: fee {event.fee_liquidator}, penalty {event.penalty}, "
                                 f"surplus above bankruptcy {surplus}")
    if event.reason == ADL:
        if event.quote_fill != event.quote_bankruptcy or event.penalty != ZERO or event.risk_status_after != BANKRUPT:
            raise InvariantViolation(f"deleveraged_at_bankruptcy: {where}: quote_fill {event.quote_fill}, quote_bankruptcy "
                                     f"{event.quote_bankruptcy}, penalty {event.penalty}, status after {event.risk_status_after}")
        key = (event.account, event.liquidation_id)
        state.slices.setdefault(key, []).append(event.counterparty)
        if (event.parameters or {}).get("loss_policy") != UNRANKED_QUEUE:
            state.ranked.add(key)
        return
    deficit = event.quote_bankruptcy - event.quote_fill
    if deficit > ZERO:
        if event.risk_status_after != BANKRUPT:
            raise InvariantViolation(f"deficit_covered: {where} fills {deficit} below its bankruptcy quote and leaves the "
                                     f"account {event.risk_status_after}, not bankrupt")
        key = (event.account, event.liquidation_id)
        state.deficits[key] = state.deficits.get(key, ZERO) + deficit


@ON.register(Account.PositionTaken)
def _taken(state: Decisions, event: Account.PositionTaken) -> None:
    if event.basis == ADL:
        state.seen = True
        state.ranks[(event.liquidated_account, event.liquidation_id, event.account)] = event.adl_rank


@ON.register(Account.LossCovered)
def _covered(state: Decisions, event: Account.LossCovered) -> None:
    state.seen = True
    if event.fund_paid + event.allocated != event.deficit:
        raise InvariantViolation(f"covers_add_up: {event.account} loss {event.loss_id}: fund {event.fund_paid} + allocated "
                                 f"{event.allocated} != deficit {event.deficit}")
    key = (event.account, event.loss_id)
    state.covered[key] += event.deficit
    state.fund_paid[key] += event.fund_paid
    state.allocated[event.loss_id] += event.allocated


@ON.register(Account.LossAllocated)
def _allocated(state: Decisions, event: Account.LossAllocated) -> None:
    state.seen = True
    state.shares[event.loss_id] += event.share


@ON.register(InsuranceFund.Drawn)
def _drawn(state: Decisions, event: InsuranceFund.Drawn) -> None:
    state.seen = True
    state.drawn[(event.account, event.reference)] += event.amount


def end_command(state: Decisions, position: int) -> None:
    """Check the joins of the command that ended before ``position``; then start afresh."""
    if not state.seen:
        return
    where = f"in the command ending before log position {position}"
    for key, deficit in state.deficits.items():
        if state.covered.get(key, ZERO) != deficit:
            raise InvariantViolation(f"deficit_covered: {key[0]} liquidation {key[1]} left a deficit of {deficit}, "
                                     f"{state.covered.get(key, ZERO)} covered {where}")
    for key in state.fund_paid.keys() | state.drawn.keys():
        if state.fund_paid.get(key, ZERO) != state.drawn.get(key, ZERO):
            raise InvariantViolation(f"covers_add_up: {key[0]} loss {key[1]}: the fund paid {state.fund_paid.get(key, ZERO)} "
                                     f"by its covers and {state.drawn.get(key, ZERO)} by its draws {where}")
    for loss_id in state.allocated.keys() | state.shares.keys():
        if state.allocated.get(loss_id, ZERO) != state.shares.get(loss_id, ZERO):
            raise InvariantViolation(f"covers_add_up: loss {loss_id}: {state.allocated.get(loss_id, ZERO)} allocated by its "
                                     f"covers, {state.shares.get(loss_id, ZERO)} charged in shares {where}")
    for key in state.ranked:
        ranks = [state.ranks.get((*key, counterparty)) for counterparty in state.slices[key]]
        if not _in_order(ranks):
            raise InvariantViolation(f"ranks_in_order: {key[0]} deleveraging {key[1]} closed its counterparties with ranks "
                                     f"{[str(rank) for rank in ranks]} {where}: highest first, unranked last")
    state.clear()


def _in_order(ranks: list[Decimal | None]) -> bool:
    """Non-increasing, with every None after every score."""
    for before, after in pairwise(ranks):
        if before is None and after is not None:
            return False
        if before is not None and after is not None and after > before:
            return False
    return True


def check_events(events: Iterable[tuple[int, object]]) -> None:
    """Every property over ``(position, event)`` pairs in log order (``InvariantViolation``)."""
    state = Decisions()
    head = 0
    with localcontext(LEDGER_CONTEXT):
        for position, event in events:
            cls = type(event)
            if cls in COMMAND_ENDS:
                end_command(state, position)
            check = ON.get(cls)
            if check is not None:
                check(state, event)
            head = position
        end_command(state, head + 1)
