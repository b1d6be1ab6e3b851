"""Decision audit: every risk decision in the event log re-checked from the log alone.

An auditor re-derives each recorded decision from (a) the inputs recorded in the decision
event and (b) the state replayed from the log up to that event: collateral, positions
(size and cost), marks, market terms and tiers, the parameters in force (clearinghouse
defaults + market overrides), the insurance-fund balance and each account's risk status
and open call. The replay is this module's own fold of the **recorded** facts; at each
decision event it calls the **same** pure deciders the engine calls
(``clearing.domain.risk``: call, due, step size and price, bankruptcy quote, penalty and
fee split, fund draw, capacity, allocation; ``loss_policies`` for the queue plans) on that
folded state, and compares their answer with the record field by field (ADR 17). It never
uses the risk engine, the working set or an aggregate's command, and restates no rule: a
rule changed in its decider changes here too. What keeps it an independent check is its
input (the log, not the live aggregates) and the property layer
(``clearing.audit.properties``), which states what any correct decision satisfies on the
recorded numbers alone and shares no code with the deciders.

Replay follows the log: each event's recorded "after" values (collateral, position) must
equal what the fold computes from the previous state and the event's inputs (size, price,
amount); the fold then continues from the recorded values, so one wrong number gives one
finding, not a cascade. Findings (``check`` codes):

* ``MarginCallIssued``: ``call_figures_differ`` (equity, initial, maintenance, mark on
  replay), ``call_not_warranted`` (equity >= maintenance, no position, or a call already
  open), ``amount_differs`` (``amount_to_initial`` = initial - equity), ``deadline_differs``
  (``at`` + ``margin_call_grace``), ``parameters_differ`` (the record of the parameters in
  force for the call's market).
  Example: collateral 1,000, long 0.2 at 50,000, mark 47,000, IMF 10 %, MMF 5 %: equity
  400 < MM 470, so the call is warranted with IM 940 and amount 540.
* ``MarginCallMet``: ``call_met_figures_differ``, ``call_met_not_warranted`` (no open call,
  or ``liquidation_math.call_met`` false under the call's ``margin_call_rule``: ``cme``
  needs equity >= initial or nothing still due, ``maintenance`` equity >= maintenance;
  calls recorded before the parameter existed follow ``maintenance``).
* ``MarginCallPaid``: ``call_payment_not_warranted`` (no open cme call),
  ``call_payment_differs`` (deposit, amount_paid = min(deposit, due), amount_due = the rest,
  ``liquidation_math.call_payment``; equity and initial after the deposit).
* ``Liquidated``: ``liquidation_figures_differ`` (mark, figures before, quote_fill =
  -size_delta x price_fill x contract), ``liquidation_not_warranted`` (the due rule of
  ``clearing.domain.liquidation``: below maintenance, under call or liquidating, and the
  deadline passed, equity below ``liquidation_floor`` x MM or equity <= 0 whatever the
  floor; not paused, not deferred by the TWAP rule; no account is exempt, the backstop
  liquidator included (ADR 13); a manual ``liquidate`` needs equity < MM, and a price more
  than ``manual_liquidation_band`` x mark from the mark needs the approvals of that exact
  liquidation consumed in the same command, ``Clearinghouse.ApprovalsConsumed`` joined
  when the command ends), ``reason_differs``, ``liquidation_order_differs`` (largest
  maintenance requirement first, ties by name), ``size_differs`` / ``fill_price_differs``
  (engine steps: Drift size; spread price mark -/+ spread x MMF x mark x ABR, ABR =
  ``liquidation_math.adjusted_bankruptcy_rating`` under ``liquidation_price_rule`` ``dydx``,
  1 under ``full_spread`` or in a parameter set without the rule), ``taker_differs`` (an
  engine step goes to the market's ``backstop_liquidator``), ``bankruptcy_differs`` (dYdX
  bankruptcy quote and price), ``penalty_differs``, ``fee_split_differs``,
  ``parameters_differ``, ``liquidation_after_differs`` (position, collateral, equity,
  maintenance and status after the fill). A deleveraging slice books its share of the
  position's exact bankruptcy quote: ``bankruptcy_differs`` re-derives the quote, its
  per-contract label (``price_fill``) and, when the deleveraging ends, the
  largest-remainder split of the quote over the recorded slice sizes (``split_quote``);
  each slice's ``quote_fill`` must be its share, and the taker's ``quote`` its negation.
  A deleveraging is warranted under a queue policy (``parameters.QUEUE_POLICIES``) when the
  backstop fill would be below the bankruptcy quote, under a cash policy when the backstop's
  takeover would leave no open position to bear the deficit (``liquidation_math.loss_bearer_left``),
  and under **any** policy right after a ``TakeoverRefused`` ``deleveraged`` for that account
  and market.
* ``PositionTaken`` of a takeover (basis ``backstop``: the backstop or an operator's
  liquidator), where the capacity figures are recorded (logs before ADR 13 have none):
  ``capacity_differs`` (``equity_after``, ``initial_margin_after``, ``notional_after``
  re-derived from the taker's replayed holding: collateral + realized PnL + fee, positions
  after, total notional at the marks), ``takeover_not_allowed`` (``liquidation_math.can_carry``
  false at ``liquidator_position_cap``). When a deleveraging ends: ``adl_queue_differs``
  unless the counterparties and contracts are the engine's plan
  (``loss_policies.plan_deleveraging`` under ``parameters.deleveraging_policy``) over the
  counterparties as they were before their slices and the opposite holders the command did
  not change; then ``adl_rank_differs`` unless each slice's ``adl_rank`` is the plan's score
  (the policy's ranking score, or the leverage before under ``waterfill_leverage``).
* ``TakeoverRefused``: the step is re-derived as a fill's (``liquidation_not_warranted``,
  ``liquidation_order_differs``, ``size_differs``, ``fill_price_differs``);
  ``refusal_differs`` (the liquidator is the market's ``backstop_liquidator``, its cap,
  the account's equity and maintenance, the outcome: ``deleveraged`` when equity <= 0 or
  the fill is below the bankruptcy quote, else ``waiting``; and a ``deleveraged`` refusal
  with no deleveraging after it in its command); ``capacity_differs`` (the liquidator's
  figures after the takeover it would have made; the backstop liquidated itself records
  its own figures); ``refusal_not_warranted`` (``can_carry`` true for them). The figures
  are joined when the command ends against the liquidator's holdings in the command
  (before its first change, after each), since its events may come before the refusal in
  the log though they followed it. Example: backstop 15,000 holding long 0.2 (alice's),
  refused erin's long 0.4 at 42,900 (mark 44,000): equity 15,660, notional 26,400 > 1 x
  15,660; its take of frank after the refusal is recorded before it.
* ``InsuranceFund.Drawn``: ``fund_draw_differs`` (min(deficit, balance before));
  ``fund_balance_differs`` for any fund event whose balance_after is not the fold's.
* ``LossCovered``: ``loss_cover_differs`` (deficit = q_b - q_f of its fill, or the
  settlement deficit; fund_paid + allocated = deficit; fund_paid = the draw; allocated =
  the shares allocated under that loss id; the policy named).
* ``LossAllocated`` of a liquidation's deficit: ``loss_share_differs`` unless each payer's
  share, policy and basis are ``risk.allocation.cash_allocation``'s over the payers as they were
  before their first share and the open holders the command did not change.
* Sweep order: ``risk_order_differs`` unless the accounts a command liquidated, nothing
  having moved them earlier in the command, were taken in ``liquidation_math.risk_order``
  of the figures on their first step (the liquidation ids number the steps in order).
* ``LiquidationDeferred``: ``deferral_differs`` / ``deferral_not_warranted``.
* Cross-aggregate, per command: ``taker_differs`` (each fill's ``PositionTaken``),
  ``fee_split_differs`` (penalty - liquidator fee contributed to the fund).
* ``call_missed``: after each price command, no account holding a position in the
  repriced market (the backstop liquidator included) may be ``healthy`` with equity <
  maintenance (likewise funding payers,
  accounts left with positions by a settlement, and accounts that paid a loss share or were
  deleveraged); the finding names the price (or funding / settlement) event.
* ``state_differs``: an "after" value of a non-decision event differs from the fold.

* ``recovery_not_warranted`` (``RecoveredFromBankruptcy`` of an account not bankrupt and
  flat); ``unreadable`` (an event the fold cannot apply, e.g. an unknown account).

Not re-checked: that a queue policy's shortfall exceeded the fund's balance at the moment
of the step (deleveraging directly rather than trying the backstop): the fund's events of a
command may come before or after the step in the log; the risk order of candidates that an
earlier event of the command had moved (a loss share, a deleveraging fill); opposite holders changed by the command and left out of a
deleveraging (see ``adl_queue_differs``).

Grouping: the log holds each command's events after its ``CommandRecord.Accepted``. Logs
written since ADR 18 hold them in the order they were decided; older logs hold them
aggregate by aggregate in the order the command first touched them (so a fund draw may
come before or after the fill it pays for). Both are audited alike: checks that join
events of several aggregates run when the command ends, joining fills, draws and covers by
(account, liquidation id), since one command can reuse an id for two accounts. Batch-level
``Market.HoldersChanged`` events (``Market.TradingRecorded`` in logs before ADR 26) end the
batch's last command. An account's fills of a run of
trades (``Account.FillsRecorded``, ADR 25) are read as a trade command of their own, each fill as
the ``TradeFilled`` it replaces.

Missed calls are found without re-checking every holder on every price. A healthy
account gets a trigger price per market it holds, from its slack: with budget = equity -
MM - one quantum per position and r = budget / sum(|size| x contract x mark), a long is
re-evaluated when its mark falls by r x mark (a short when it rises): a long loses at most
|size| x contract per unit of fall and its requirement only falls with it, so no smaller
move can take it below maintenance. An account's own events re-arm it at the next price
of a market it holds. Example: slack 1,000 on a long 1 at 50,000 -> r = 0.02, trigger
49,000 (longs in several markets share r, each against its own mark).
"""

from __future__ import annotations

import decimal
import heapq
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from clearing.audit.log import CheckFailed, LogPage, log_events
from clearing.domain.account import BANKRUPT, HEALTHY, LIQUIDATING, MARGIN_CALL, Account
from clearing.domain.clearinghouse import Clearinghouse
from clearing.domain.command_record import CommandRecord
from clearing.domain.fills import trade_fills
from clearing.domain.insurance import FundCause, InsuranceFund
from clearing.domain.liquidation_math import (
    bankruptcy_price,
    call_met,
    call_payment,
    can_carry,
    loss_bearer_left,
    quote_price,
    risk_order,
    split_quote,
)
from clearing.domain.loss_policies import Holder, plan_deleveraging
from clearing.domain.margin import MarginTier, unrealized_pnl
from clearing.domain.market import Market
from clearing.domain.parameters import (
    ADL,
    CALL_RULE_CME,
    CALL_RULE_MAINTENANCE,
    DEFAULTS,
    QUEUE_POLICIES,
    SOCIALIZE_PER_CONTRACT,
    ParameterSet,
    deleveraging_policy,
    effective,
)
from clearing.domain.risk.allocation import cash_allocation, settlement_allocation
from clearing.domain.risk.bankruptcy import bankruptcy_quote_for, deleveraging_fund_draw, fund_draw
from clearing.domain.risk.call import below_maintenance, call_terms, call_warranted
from clearing.domain.risk.capacity import capacity_after, capacity_of, total_notional
from clearing.domain.risk.due import deferred_by_twap, liquidation_due, twap_deviation
from clearing.domain.risk.fill import effect_on, fill_effect, fill_quote
from clearing.domain.risk.manual import manual_liquidation_change, out_of_band
from clearing.domain.risk.penalty import decide_penalty
from clearing.domain.risk.step import close_for, plan_step, positions_by_priority, price_rating, status_after
from clearing.domain.risk.totals import MarginTotals, margin_totals
from clearing.money import LEDGER_CONTEXT, ONE, ZERO, fmt, round_down

PAGE = 5000
INSURANCE_FUND = "insurance_fund"
ALLOWANCE_QUANTUM = Decimal("1e-12")

if TYPE_CHECKING:
    from clearing.application import ClearingApplication


@dataclass(frozen=True)
class Finding:
    """One disagreement between a recorded decision and its re-derivation."""

    position: int
    check: str
    message: str


class _Stop(Exception):
    """Raised to end the audit at the first finding."""


# -- replayed state ---------------------------------------------------------------------------


class _Held:
    """A position as the fold keeps it: signed size and signed entry notional (cost)."""

    __slots__ = ("cost", "size")

    def __init__(self, size: Decimal, cost: Decimal) -> None:
        self.size = size
        self.cost = cost


class _MarketState:
    """Terms, mark, TWAP and overrides of one market (what ``margin_totals`` reads)."""

    __slots__ = (
        "collateral_quantum",
        "contract_size",
        "exposure_unit",
        "favourable_weight",
        "market",
        "overrides",
        "parameters_version",
        "price_mark",
        "price_twap",
        "settled",
        "step_size",
        "tick_size",
        "tiers",
    )

    def __init__(self, event: Any) -> None:
        self.market: str = event.market
        self.contract_size: Decimal = event.contract_size
        self.tick_size: Decimal = event.tick_size
        self.step_size: Decimal = event.step_size
        self.tiers: Sequence[MarginTier] = tuple(event.tiers)
        self.collateral_quantum: Decimal = event.collateral_quantum
        self.price_mark: Decimal | None = None
        self.price_twap: Decimal | None = None
        self.settled = False
        self.overrides: dict[str, Any] = {}
        self.parameters_version = 0
        highest = max(tier.maintenance_margin_fraction for tier in self.tiers)
        # with an MMF above 1 a favourable move can lower equity - MM too (per unit size and price)
        self.favourable_weight = self.contract_size * max(ZERO, highest - ONE)
        self.exposure_unit = self.contract_size + self.favourable_weight

    @property
    def mark(self) -> Decimal:
        """The mark price, for arithmetic: a market the log never marked cannot be margined
        (the event needing it is ``unreadable``)."""
        mark = self.price_mark
        if mark is None:
            raise ValueError(f"market {self.market} has no mark price")
        return mark


class _AccountState:
    """Collateral, open positions (flat ones dropped), risk status and the open call's deadline."""

    __slots__ = (
        "amount_due",
        "call_rule",
        "closed",
        "collateral",
        "deadline",
        "holders",
        "last_deposit",
        "name",
        "positions",
        "status",
    )

    def __init__(self, name: str, holders: dict[str, set[str]] | None = None) -> None:
        self.name = name
        self.holders = holders if holders is not None else defaultdict(set)  # market -> names holding it (shared)
        self.collateral = ZERO
        self.positions: dict[str, _Held] = {}
        self.status = HEALTHY
        self.deadline: datetime | None = None
        self.closed = False
        self.call_rule: str | None = None  # rule of the open call (None: met at maintenance)
        self.amount_due = ZERO
        self.last_deposit = ZERO

    def size(self, market: str) -> Decimal:
        held = self.positions.get(market)
        return held.size if held is not None else ZERO

    def cost(self, market: str) -> Decimal:
        held = self.positions.get(market)
        return held.cost if held is not None else ZERO

    def set_position(self, market: str, size: Decimal, cost: Decimal) -> None:
        if size == ZERO:
            self.positions.pop(market, None)
            self.holders[market].discard(self.name)
        else:
            self.positions[market] = _Held(size, cost)
            self.holders[market].add(self.name)


# a liquidator's (equity, initial margin, total notional), as PositionTaken and TakeoverRefused record them
Figures = tuple[Decimal, Decimal, Decimal]
# a fill as its ``PositionTaken`` records it: (taker, liquidated account, liquidation id, taker's size_delta,
# price, fee received, basis, taker's quote)
TakerKey = tuple[str, str, str, Decimal, Decimal, Decimal, str, Decimal]


# -- per-command context ---------------------------------------------------------------------------


@dataclass
class _Step:
    """One recorded liquidation fill, for the joins at the end of its command."""

    position: int
    account: str
    liquidation_id: str
    market: str
    counterparty: str
    size_delta: Decimal
    price: Decimal
    fee: Decimal
    basis: str
    reason: str
    quote: Decimal = ZERO  # quote_fill: what the liquidated account received (+) or paid (-)


@dataclass
class _AdlPlan:
    """A deleveraging of one position, decided once for all its slices."""

    market: str
    size: Decimal
    wanted: Decimal
    problem: tuple[str, str] | None
    fund_paid: Decimal = ZERO
    price: Decimal | None = None
    quote: Decimal = ZERO  # the exact bankruptcy quote of the whole position
    totals: MarginTotals | None = None
    closed: Decimal = ZERO
    position: int = 0
    slices: list[tuple[int, Decimal, Decimal, str]] | None = None  # (position, |size_delta|, quote_fill, counterparty) per slice
    refused: bool = False  # after a TakeoverRefused ``deleveraged``: warranted under any loss policy


@dataclass
class _Refusal:
    """A ``TakeoverRefused`` whose liquidator figures are checked when its command ends."""

    position: int
    account: str
    market: str
    liquidator: str
    delta: Decimal  # the liquidator's side
    price: Decimal
    fee: Decimal
    recorded: Figures
    cap: Decimal
    name: str


class _Command:
    """What one command's events are joined on when it ends (containers keyed by account/id)."""

    __slots__ = (
        "adl",
        "adl_takes",
        "allocated",
        "candidates",
        "changed",
        "command_id",
        "consumed",
        "covers",
        "deficits",
        "dequeued",
        "draws",
        "ended",
        "first_steps",
        "fund_events",
        "fund_start",
        "history",
        "insolvent",
        "kind",
        "market",
        "moved",
        "out_of_band",
        "payments",
        "penalties_due",
        "penalties_paid",
        "position",
        "ranks",
        "refusals",
        "refused",
        "settle_price",
        "settled",
        "shares",
        "steps",
        "takers",
        "trigger_position",
    )

    def __init__(self, position: int, command_id: str, kind: str, market: str | None, fund_start: Decimal) -> None:
        self.position = position
        self.command_id = command_id
        self.kind = kind
        self.market = market
        self.fund_start = fund_start
        self.trigger_position = 0
        self.fund_events = 0
        self.steps: dict[tuple[str, str], list[_Step]] = {}
        self.deficits: dict[tuple[str, str], Decimal] = {}
        self.draws: dict[tuple[str, str], tuple[Decimal, Decimal, int]] = {}
        self.covers: list[tuple[int, str, str, Decimal]] = []
        self.allocated: dict[str, tuple[Decimal, int]] = {}
        self.shares: dict[str, Decimal] = {}
        self.penalties_due: dict[str, list[Decimal]] = {}
        self.penalties_paid: dict[str, list[tuple[Decimal, int]]] = {}
        self.takers: list[tuple[TakerKey, int]] = []
        self.insolvent: set[str] = set()
        self.adl: dict[tuple[str, str], _AdlPlan] = {}
        self.candidates: dict[str, int] = {}
        self.dequeued: dict[str, set[str]] = {}
        self.ended = False
        self.refusals: list[_Refusal] = []
        self.refused: dict[tuple[str, str], int] = {}  # (account, market) -> position of a TakeoverRefused "deleveraged"
        self.history: dict[str, list[tuple[Decimal, dict[str, _Held]]]] = {}  # a backstop's holdings through the command
        self.consumed: set[str] = set()  # fingerprints of approvals consumed (ApprovalsConsumed)
        self.out_of_band: list[tuple[int, str, str]] = []  # (position, fingerprint, what) of manual fills outside the band
        # (liquidated account, liquidation id) -> (counterparty, score recorded, counterparty before its slice, position)
        self.adl_takes: dict[tuple[str, str], list[tuple[str, Decimal | None, Holder, int]]] = {}
        self.changed: set[str] = set()  # accounts with an event in this command
        # loss id -> (market, first position, {payer: holder before its first share}, [(payer, share, policy, basis)])
        self.payments: dict[str, tuple[str, int, dict[str, Holder], list[tuple[str, Decimal, str, Decimal]]]] = {}
        self.moved: set[str] = set()  # accounts whose money or positions an event of this command changed
        # (liquidation sequence, account, equity, maintenance, notional, position) of the first step of an
        # account nothing had moved before in this command: the sweep's own candidates
        self.first_steps: list[tuple[int, str, Decimal, Decimal, Decimal, int]] = []
        # a settlement: each account's collateral and holdings before its first share or its settlement
        self.settled: dict[str, tuple[Decimal, dict[str, _Held]]] = {}
        self.ranks: dict[tuple[str, str], Decimal | None] = {}  # (loss id, payer) -> LossAllocated.rank
        self.settle_price: Decimal | None = None


# -- the missed-call watch ----------------------------------------------------------------------------


class _Watch:
    """Which healthy accounts a price move may have taken below maintenance.

    An armed account has a price trigger in each market it holds: a long is re-evaluated
    when the mark falls to its lower trigger, a short when it rises to its upper one (both,
    for the odd market with an MMF above 1). Accounts changed by their own events wait in
    ``dirty`` until the next price of a market they hold, and are evaluated (and re-armed)
    then; ``stamp`` tells an account's current triggers from superseded ones.
    """

    def __init__(self) -> None:
        self.below: dict[str, list[tuple[Decimal, int, str]]] = defaultdict(list)  # (-trigger, stamp, name)
        self.above: dict[str, list[tuple[Decimal, int, str]]] = defaultdict(list)  # (trigger, stamp, name)
        self.stamp: dict[str, int] = {}
        self.dirty: set[str] = set()
        self.counter = 0
        self.pushed = 0

    def disarm(self, name: str) -> int:
        """Forget ``name``'s triggers; returns the stamp its new triggers must carry."""
        self.counter += 1
        self.stamp[name] = self.counter
        return self.counter

    def push(self, market: str, lower: Decimal | None, upper: Decimal | None, stamp: int, name: str) -> None:
        if lower is not None:
            heapq.heappush(self.below[market], (-lower, stamp, name))
        if upper is not None:
            heapq.heappush(self.above[market], (upper, stamp, name))
        self.pushed += 1
        if self.pushed > 8 * len(self.stamp) + 100_000:  # superseded entries are dropped in bulk
            self._compact()

    def due(self, market: str, mark: Decimal) -> list[str]:
        """Accounts whose current trigger in ``market`` the mark has reached (entries removed)."""
        found: list[str] = []
        stamps = self.stamp
        below, above = self.below[market], self.above[market]
        while below and -below[0][0] >= mark:
            _, stamp, name = heapq.heappop(below)
            if stamps[name] == stamp:
                found.append(name)
        while above and above[0][0] <= mark:
            _, stamp, name = heapq.heappop(above)
            if stamps[name] == stamp:
                found.append(name)
        return found

    def _compact(self) -> None:
        """Drop superseded entries from every heap."""
        for heaps in (self.below, self.above):
            for market, heap in heaps.items():
                live = [entry for entry in heap if self.stamp[entry[2]] == entry[1]]
                heapq.heapify(live)
                heaps[market] = live
        self.pushed = sum(len(h) for h in self.below.values()) + sum(len(h) for h in self.above.values())


# -- the audit ----------------------------------------------------------------------------------------


class DecisionAudit:
    """The fold and its checks; ``feed`` one (position, event) at a time, then ``finish``."""

    def __init__(self, stop_at_first: bool = True) -> None:
        self.stop_at_first = stop_at_first
        self.findings: list[Finding] = []
        self.accounts: dict[str, _AccountState] = {}
        self.markets: dict[str, _MarketState] = {}
        self.ch_parameters: dict[str, Any] = dict(DEFAULTS)
        self.ch_version = 0
        self.paused: set[str] = set()
        self.queue: dict[int, tuple[str, str]] = {}
        self.fund = ZERO
        self.watch = _Watch()
        self.command = _Command(0, "", "", None, ZERO)
        self._parameters: dict[tuple[str, int, int], ParameterSet] = {}
        self._records: dict[tuple[str, int, int], dict[str, Any]] = {}
        self.backstops: set[str] = {DEFAULTS["backstop_liquidator"]}  # whose holdings a command keeps (refusals)
        self.holders: dict[str, set[str]] = defaultdict(set)  # market -> accounts holding a position in it

    # -- driving ------------------------------------------------------------------------------

    def feed(self, position: int, event: Any) -> None:
        handler = _HANDLERS.get(type(event))
        if handler is None:
            return
        try:
            handler(self, position, event)
        except _Stop:
            raise
        except (KeyError, ValueError, TypeError, AttributeError, ArithmeticError, AssertionError) as error:
            self.find(position, "unreadable", f"{type(event).__qualname__} could not be replayed: {type(error).__name__} {error}")

    def finish(self) -> list[Finding]:
        self.end_command()
        return self.findings

    def find(self, position: int, check: str, message: str) -> None:
        self.findings.append(Finding(position, check, message))
        if self.stop_at_first:
            raise _Stop

    def differ(self, position: int, check: str, what: str, expected: Any, recorded: Any) -> bool:
        """Record a finding when ``expected != recorded``; True when they differ."""
        if expected == recorded:
            return False
        self.find(position, check, f"{what}: expected {_show(expected)}, recorded {_show(recorded)}")
        return True

    # -- lookups --------------------------------------------------------------------------------

    def params(self, market: str) -> ParameterSet:
        """Parameters in force for ``market``: clearinghouse defaults + the market's overrides."""
        state = self.markets[market]
        key = (market, self.ch_version, state.parameters_version)
        found = self._parameters.get(key)
        if found is None:
            found = self._parameters[key] = effective(self.ch_parameters, state.overrides, self.ch_version, state.parameters_version)
        return found

    def params_record(self, market: str) -> dict[str, Any]:
        state = self.markets[market]
        key = (market, self.ch_version, state.parameters_version)
        found = self._records.get(key)
        if found is None:
            found = self._records[key] = self.params(market).as_record()
        return found

    def totals(self, account: _AccountState) -> MarginTotals:
        return margin_totals(account.collateral, account.positions, self.markets)

    def equity_and_maintenance(self, account: _AccountState) -> tuple[Decimal, Decimal]:
        """Equity and maintenance margin on the marks (``margin_totals`` without initial margin)."""
        totals = margin_totals(account.collateral, account.positions, self.markets, with_initial=False)
        return totals.equity, totals.maintenance_margin

    def paused_in(self, market: str) -> bool:
        return f"liquidations:{market}" in self.paused or "liquidations:*" in self.paused

    def touched(self, name: str) -> None:
        self.watch.dirty.add(name)
        cmd = self.command
        cmd.changed.add(name)
        history = cmd.history.get(name)
        if history is not None:
            account = self.accounts[name]
            history.append((account.collateral, dict(account.positions)))

    def _update_backstops(self) -> None:
        names = {self.ch_parameters.get("backstop_liquidator", DEFAULTS["backstop_liquidator"])}
        names.update(m.overrides["backstop_liquidator"] for m in self.markets.values() if "backstop_liquidator" in m.overrides)
        self.backstops = names

    # -- commands -----------------------------------------------------------------------------

    def on_accepted(self, position: int, event: Any) -> None:
        self.end_command()
        content = event.content if isinstance(event.content, dict) else {}
        market = content.get("market")
        self.command = _Command(position, event.command_id, event.command_type, market if isinstance(market, str) else None, self.fund)

    def on_batch_end(self, position: int, event: Any) -> None:
        """A batch-level event (``HoldersChanged``; ``TradingRecorded`` before ADR 26) ends its last command."""
        self.end_command()

    def on_fills(self, position: int, event: Any) -> None:
        """One account's fills of a run of trades (ADR 25): a trade command of its own."""
        self.end_command()
        self.command = _Command(position, event.run, "trade", None, self.fund)
        for fill in trade_fills(event):
            self.on_trade(position, fill)

    def end_command(self) -> None:
        """Run the joins of the command just ended (once), then forget it."""
        cmd = self.command
        if cmd.ended:
            return
        cmd.ended = True
        if cmd.steps or cmd.draws or cmd.covers or cmd.deficits or cmd.penalties_paid or cmd.takers:
            self._check_draws_and_covers(cmd)
            self._check_penalties(cmd)
            self._check_takers(cmd)
            self._check_adl_complete(cmd)
        if cmd.refusals or cmd.refused:
            self._check_refusals(cmd)
        if len(cmd.first_steps) > 1 and cmd.kind != "resume":  # a resume takes its queue in the order queued
            self._check_risk_order(cmd)
        for position, fingerprint, what in cmd.out_of_band:
            if fingerprint not in cmd.consumed:
                self.find(position, "liquidation_not_warranted", f"{what}: no approvals of this exact liquidation consumed in its command")
        if cmd.kind == "price" or cmd.candidates:
            self._check_missed(cmd)

    # -- markets, clearinghouse, fund -----------------------------------------------------------

    def on_listed(self, position: int, event: Any) -> None:
        self.markets[event.market] = _MarketState(event)

    def on_mark(self, position: int, event: Any) -> None:
        market = self.markets[event.market]
        market.price_mark = event.price_mark
        market.price_twap = event.price_twap
        if self.command.market == event.market:
            self.command.trigger_position = position

    def on_market_parameters(self, position: int, event: Any) -> None:
        market = self.markets[event.market]
        market.overrides = dict(event.overrides_after)
        market.parameters_version = event.parameters_version
        self._update_backstops()

    def on_funding_applied(self, position: int, event: Any) -> None:
        self.command.trigger_position = position

    def on_market_settled(self, position: int, event: Any) -> None:
        market = self.markets[event.market]
        market.price_mark = event.price_settlement
        market.settled = True
        self.command.trigger_position = position
        self.command.settle_price = event.price_settlement

    def on_ch_parameters(self, position: int, event: Any) -> None:
        self.ch_parameters = dict(event.parameters_after)
        self.ch_version = event.parameters_version
        self._update_backstops()

    def on_approvals_consumed(self, position: int, event: Any) -> None:
        fingerprint = (event.governance or {}).get("fingerprint")
        if isinstance(fingerprint, str):  # only a fingerprint (a str) is ever looked up
            self.command.consumed.add(fingerprint)

    def on_control(self, position: int, event: Any) -> None:
        self.paused = set(event.paused_after)

    def on_queued(self, position: int, event: Any) -> None:
        self.queue[event.sequence] = (event.account, event.market)

    def on_dequeued(self, position: int, event: Any) -> None:
        self.queue.pop(event.sequence, None)
        self.command.dequeued.setdefault(event.account, set()).add(event.market)

    def on_contributed(self, position: int, event: Any) -> None:
        self.command.fund_events += 1
        if event.cause == FundCause.LIQUIDATION_PENALTY:
            self.command.penalties_paid.setdefault(event.contributor, []).append((event.amount, position))
        self.differ(position, "fund_balance_differs", "insurance fund balance after a contribution", self.fund + event.amount, event.balance_after)
        self.fund = event.balance_after

    def on_drawn(self, position: int, event: Any) -> None:
        """``amount`` = min(the deficit it covers, the balance before), never above the balance."""
        cmd = self.command
        cmd.fund_events += 1
        key = (event.account, event.reference)
        cmd.draws[key] = (event.amount, self.fund, position)
        if not ZERO < event.amount <= self.fund:
            self.find(position, "fund_draw_differs", f"draw of {fmt(event.amount)} for {event.account} ({event.reference}) with a fund balance of {fmt(self.fund)}")
        elif key in cmd.deficits:
            self._check_draw(key, cmd.deficits[key], event.amount, self.fund, position)
        self.differ(position, "fund_balance_differs", "insurance fund balance after a draw", self.fund - event.amount, event.balance_after)
        self.fund = event.balance_after

    def _check_draw(self, key: tuple[str, str], wanted: Decimal, amount: Decimal, balance: Decimal, position: int) -> None:
        self.differ(position, "fund_draw_differs", f"fund draw for {key[0]} ({key[1]}), min(deficit {fmt(wanted)}, balance {fmt(balance)})",
                    fund_draw(wanted, balance), amount)

    # -- accounts: non-decision events --------------------------------------------------------------

    def account(self, name: str) -> _AccountState:
        account = self.accounts[name]
        if name in self.backstops and name not in self.command.history:  # its holdings before the command's first change
            self.command.history[name] = [(account.collateral, dict(account.positions))]
        return account

    def on_opened(self, position: int, event: Any) -> None:
        self.accounts[event.account] = _AccountState(event.account, self.holders)
        if event.account in self.backstops:
            self.command.history[event.account] = [(ZERO, {})]

    def on_deposited(self, position: int, event: Any) -> None:
        self.account(event.account).last_deposit = event.amount
        self._cash(position, event, event.amount, "deposit")

    def on_withdrawn(self, position: int, event: Any) -> None:
        self._cash(position, event, -event.amount, "withdrawal")

    def on_funding_paid(self, position: int, event: Any) -> None:
        if event.amount < ZERO:
            self.command.candidates.setdefault(event.account, self.command.trigger_position or position)
        self._cash(position, event, event.amount, "funding")

    def on_loss_allocated(self, position: int, event: Any) -> None:
        shares = self.command.shares
        shares[event.loss_id] = shares.get(event.loss_id, ZERO) + event.share
        account = self.account(event.account)
        _, _, before, paid = self.command.payments.setdefault(event.loss_id, (event.market, position, {}, []))
        before.setdefault(event.account, Holder(event.account, account.size(event.market), account.cost(event.market),
                                                self.equity_and_maintenance(account)[0]))
        paid.append((event.account, event.share, event.policy, event.basis))
        self.command.ranks[(event.loss_id, event.account)] = event.rank
        if self.command.kind == "settle":
            self.command.settled.setdefault(event.account, (account.collateral, dict(account.positions)))
        self.command.candidates.setdefault(event.account, position)
        self._cash(position, event, -event.share, "loss share")

    def _cash(self, position: int, event: Any, amount: Decimal, what: str) -> None:
        account = self.account(event.account)
        self.differ(position, "state_differs", f"{event.account} collateral after a {what}", account.collateral + amount, event.collateral_after)
        account.collateral = event.collateral_after
        self.command.moved.add(event.account)
        self.touched(event.account)

    def on_trade(self, position: int, event: Any) -> None:
        self._fill(position, event, event.size_delta, event.price, ZERO, "trade")

    def on_taken(self, position: int, event: Any) -> None:
        contract = self.markets[event.market].contract_size
        quote = event.quote if event.quote is not None else fill_quote(event.size_delta, event.price, contract)
        self.command.takers.append(((event.account, event.liquidated_account, event.liquidation_id, event.size_delta, event.price,
                                     event.fee_received, event.basis, quote), position))
        if event.basis == ADL:
            self.command.candidates.setdefault(event.account, position)
            self._check_adl_rank(position, event)
        elif event.equity_after is not None or event.initial_margin_after is not None or event.notional_after is not None:
            self._check_capacity(position, event)
        self._fill(position, event, event.size_delta, event.price, event.fee_received, "liquidation take",
                   quote if event.basis == ADL else None)

    def _fill(self, position: int, event: Any, delta: Decimal, price: Decimal, credit: Decimal, what: str,
              quote: Decimal | None = None) -> None:
        account, market = self.account(event.account), self.markets[event.market]
        size_after, cost_after, realized = effect_on(account.positions.get(event.market), delta, price, market.contract_size,
                                                     market.collateral_quantum, quote)
        expected = (realized, size_after, cost_after, account.collateral + realized + credit)
        recorded = (event.realized_pnl, event.position_size_after, event.position_cost_after, event.collateral_after)
        self.differ(position, "state_differs", f"{event.account} {event.market} {what}: realized, size, cost, collateral after", expected, recorded)
        account.set_position(event.market, event.position_size_after, event.position_cost_after)
        account.collateral = event.collateral_after
        self.command.moved.add(event.account)
        self.touched(event.account)

    def _check_capacity(self, position: int, event: Any) -> None:
        """A takeover (backstop or operator's liquidator): the figures after it, and ``can_carry``."""
        account = self.account(event.account)
        name = f"{event.account} takes {fmt(event.size_delta)} {event.market} of {event.liquidated_account} ({event.liquidation_id})"
        cap = self.params(event.market).liquidator_position_cap
        capacity = capacity_after(account.collateral, account.positions, self.markets, event.market, event.size_delta,
                                  event.price, event.fee_received, cap)
        expected = capacity.figures
        recorded = (event.equity_after, event.initial_margin_after, event.notional_after)
        if self.differ(position, "capacity_differs", f"{name}: equity, initial margin, notional after the takeover", expected, recorded):
            return
        if not capacity.allowed:
            self.find(position, "takeover_not_allowed", f"{name}: it cannot carry the position: equity {fmt(expected[0])}, initial "
                      f"margin {fmt(expected[1])}, notional {fmt(expected[2])} (cap {fmt(cap)} x equity) after the takeover")

    def _check_adl_rank(self, position: int, event: Any) -> None:
        """A deleveraged counterparty as it was before its slice (its ``adl_rank`` is checked
        against the plan's score at the end of the command, ``_check_adl_queue``)."""
        account = self.account(event.account)
        holder = Holder(event.account, account.size(event.market), account.cost(event.market), self.equity_and_maintenance(account)[0])
        self.command.adl_takes.setdefault((event.liquidated_account, event.liquidation_id), []).append(
            (event.account, event.adl_rank, holder, position))

    def on_settled(self, position: int, event: Any) -> None:
        account, market = self.account(event.account), self.markets[event.market]
        self.command.settled.setdefault(event.account, (account.collateral, dict(account.positions)))
        self.command.settle_price = event.price_settlement
        size, cost = account.size(event.market), account.cost(event.market)
        _, _, realized = fill_effect(size, cost, -size, event.price_settlement, market.contract_size, market.collateral_quantum)
        self.differ(position, "state_differs", f"{event.account} {event.market} settlement: size, realized, collateral after",
                    (size, realized, account.collateral + realized), (event.size, event.realized_pnl, event.collateral_after))
        self.command.moved.add(event.account)
        account.set_position(event.market, ZERO, ZERO)
        account.collateral = event.collateral_after
        if account.positions:
            self.command.candidates.setdefault(event.account, self.command.trigger_position or position)
        self.touched(event.account)

    def on_account_closed(self, position: int, event: Any) -> None:
        self.account(event.account).closed = True

    def on_recovered(self, position: int, event: Any) -> None:
        account = self.account(event.account)
        if account.status != BANKRUPT or account.positions:
            self.find(position, "recovery_not_warranted", f"{event.account} recovered from bankruptcy with status {account.status} and {len(account.positions)} open position(s)")
        account.status = HEALTHY
        self.touched(event.account)

    # -- 1. and 2.: calls --------------------------------------------------------------------------

    def on_call_issued(self, position: int, event: Any) -> None:
        """Figures equal the replay; equity < MM; amount = IM - equity; deadline = at + grace."""
        account, market = self.account(event.account), self.markets[event.market]
        totals = self.totals(account)
        name = f"{event.account} call in {event.market}"
        self.differ(position, "call_figures_differ", f"{name}: mark, equity, initial, maintenance",
                    (market.price_mark, totals.equity, totals.initial_margin, totals.maintenance_margin),
                    (event.price_mark, event.equity, event.initial_margin, event.maintenance_margin))
        if not below_maintenance(totals, bool(account.positions)):
            self.find(position, "call_not_warranted", f"{name}: equity {fmt(totals.equity)} is not below maintenance margin "
                      f"{fmt(totals.maintenance_margin)} with {len(account.positions)} open position(s)")
        elif not call_warranted(totals, bool(account.positions), account.status):
            self.find(position, "call_not_warranted", f"{name}: a call is already open (status {account.status})")
        params = self.params(event.market)
        terms = call_terms(totals, params, event.at)
        self.differ(position, "amount_differs", f"{name}: amount_to_initial = initial - equity",
                    terms.amount_to_initial, event.amount_to_initial)
        self.differ(position, "deadline_differs", f"{name}: deadline = at + {params.margin_call_grace} s",
                    terms.deadline, event.deadline)
        self._check_parameters(position, name, event.market, event.parameters)
        account.status = MARGIN_CALL
        account.deadline = event.deadline
        account.call_rule = (event.parameters or {}).get("margin_call_rule", CALL_RULE_MAINTENANCE)
        account.amount_due = event.amount_to_initial
        self.touched(event.account)

    def on_call_paid(self, position: int, event: Any) -> None:
        """A deposit on an open cme call: paid = min(deposit, due), due after = the rest."""
        account = self.account(event.account)
        totals = self.totals(account)
        name = f"{event.account} call payment"
        if account.status != MARGIN_CALL or account.call_rule != CALL_RULE_CME:
            self.find(position, "call_payment_not_warranted", f"{name}: no open cme call (status {account.status})")
        expected = call_payment(account.amount_due, account.last_deposit)
        self.differ(position, "call_payment_differs", f"{name}: (deposit, paid = min(deposit, due {fmt(account.amount_due)}), due after)",
                    (account.last_deposit, *expected), (event.deposit, event.amount_paid, event.amount_due))
        self.differ(position, "call_payment_differs", f"{name}: equity, initial after the deposit",
                    (totals.equity, totals.initial_margin), (event.equity, event.initial_margin))
        account.amount_due = event.amount_due

    def on_call_met(self, position: int, event: Any) -> None:
        account = self.account(event.account)
        totals = self.totals(account)
        name = f"{event.account} call met ({event.reason})"
        self.differ(position, "call_met_figures_differ", f"{name}: equity, maintenance",
                    (totals.equity, totals.maintenance_margin), (event.equity, event.maintenance_margin))
        rule = account.call_rule or CALL_RULE_MAINTENANCE
        if account.status not in (MARGIN_CALL, LIQUIDATING):
            self.find(position, "call_met_not_warranted", f"{name}: no call was open (status {account.status})")
        elif not call_met(rule, totals.equity, totals.initial_margin, totals.maintenance_margin, account.amount_due):
            self.find(position, "call_met_not_warranted", f"{name}: under the {rule} rule equity {fmt(totals.equity)} (initial "
                      f"{fmt(totals.initial_margin)}, maintenance {fmt(totals.maintenance_margin)}, {fmt(account.amount_due)} still due) does not meet the call")
        account.status = HEALTHY
        account.deadline = None
        account.call_rule = None
        self.touched(event.account)

    def _check_parameters(self, position: int, name: str, market: str, recorded: Any) -> None:
        expected = self.params_record(market)
        if recorded != expected:
            keys = sorted(k for k in set(expected) | set(recorded or {}) if expected.get(k) != (recorded or {}).get(k))
            detail = ", ".join(f"{k} expected {_show(expected.get(k))} recorded {_show((recorded or {}).get(k))}" for k in keys)
            self.find(position, "parameters_differ", f"{name}: parameters in force for {market} differ: {detail}")

    # -- deferral ---------------------------------------------------------------------------------

    def on_deferred(self, position: int, event: Any) -> None:
        """Deferred only when |mark - TWAP| / TWAP > ``twap_max_deviation`` (> 0)."""
        account, market = self.account(event.account), self.markets[event.market]
        totals = self.totals(account)
        params = self.params(event.market)
        twap = market.price_twap
        deviation = twap_deviation(market.price_mark, twap)
        name = f"{event.account} deferral in {event.market}"
        self.differ(position, "deferral_differs", f"{name}: mark, TWAP, deviation, max deviation, equity, maintenance",
                    (market.price_mark, twap, deviation, params.twap_max_deviation, totals.equity, totals.maintenance_margin),
                    (event.price_mark, event.price_twap, event.deviation, event.twap_max_deviation, event.equity, event.maintenance_margin))
        if deferred_by_twap(params, market.price_mark, twap) is None:
            self.find(position, "deferral_not_warranted", f"{name}: deviation {_show(deviation)} not above {fmt(params.twap_max_deviation)}")
        elif totals.equity >= totals.maintenance_margin:
            self.find(position, "deferral_not_warranted", f"{name}: equity {fmt(totals.equity)} not below maintenance {fmt(totals.maintenance_margin)}")
        if account.status != BANKRUPT:
            account.status = LIQUIDATING
        self.touched(event.account)

    # -- 3.: liquidation steps -----------------------------------------------------------------------

    def on_liquidated(self, position: int, event: Any) -> None:
        account, market = self.account(event.account), self.markets[event.market]
        self._note_first_step(position, event, account)
        params = self.params(event.market)
        name = f"{event.account} liquidation {event.liquidation_id} in {event.market}"
        self.differ(position, "liquidation_figures_differ", f"{name}: mark", market.price_mark, event.price_mark)
        if event.reason == ADL:
            self._adl_slice(position, event, account, market, params, name)
        else:
            self._backstop_step(position, event, account, market, params, name)
        self._check_parameters(position, name, event.market, event.parameters)
        step = _Step(position, event.account, event.liquidation_id, event.market, event.counterparty, event.size_delta,
                     event.price_fill, event.fee_liquidator, ADL if event.reason == ADL else "backstop", event.reason, event.quote_fill)
        self.command.steps.setdefault((event.account, event.liquidation_id), []).append(step)
        account.set_position(event.market, event.position_size_after, event.position_cost_after)
        account.collateral = event.collateral_after
        account.status = event.risk_status_after
        if account.status in (HEALTHY, BANKRUPT):
            account.deadline = None
            account.call_rule = None
        self.touched(event.account)

    def _note_first_step(self, position: int, event: Any, account: _AccountState) -> None:
        """The risk-order inputs of an account's first step, when nothing moved it before in the command."""
        cmd = self.command
        if event.account in cmd.moved:
            return
        cmd.moved.add(event.account)
        _, _, sequence = event.liquidation_id.rpartition("/L")
        if not sequence.isdigit():
            return
        notional = total_notional(account.positions, self.markets)
        cmd.first_steps.append((int(sequence), event.account, event.equity_before, event.maintenance_margin_before, notional, position))

    def _check_risk_order(self, cmd: _Command) -> None:
        """The sweep's candidates were liquidated in ``liquidation_math.risk_order``
        (``risk_order_differs``): the liquidation ids number the steps in decision order, and
        an account nothing moved before its first step was liquidated on the figures recorded
        on that step (equity and maintenance before; notional at the marks)."""
        steps = sorted(cmd.first_steps)
        recorded = [name for _, name, _, _, _, _ in steps]
        expected = risk_order([(name, equity, maintenance, notional) for _, name, equity, maintenance, notional, _ in steps])
        if recorded != expected:
            where = next(step[5] for step, name in zip(steps, expected, strict=True) if step[1] != name)
            self.find(where, "risk_order_differs", f"accounts liquidated in the order {recorded}; by risk (deepest below "
                      f"maintenance first, then larger notional) {expected}")

    def _backstop_step(self, position: int, event: Any, account: _AccountState, market: _MarketState, params: ParameterSet, name: str) -> None:
        """One fill to the backstop or an operator's liquidator (see the module docstring)."""
        totals = self.totals(account)
        size = account.size(event.market)
        self.differ(position, "liquidation_figures_differ", f"{name}: equity, initial, maintenance before",
                    (totals.equity, totals.initial_margin, totals.maintenance_margin),
                    (event.equity_before, event.initial_margin_before, event.maintenance_margin_before))
        if event.reason == "manual":
            problem = self._manual_problem(position, account, market, event, totals, name)
            if problem:
                self.find(position, "liquidation_not_warranted", f"{name}: {problem}")
        else:
            self._engine_step(position, event, account, market, params, totals, name)
            self.differ(position, "taker_differs", f"{name}: an engine step is taken by the backstop liquidator",
                        params.backstop_liquidator, event.counterparty)
        quote_fill = fill_quote(event.size_delta, event.price_fill, market.contract_size)
        self.differ(position, "liquidation_figures_differ", f"{name}: quote_fill = -size_delta x price_fill x contract", quote_fill, event.quote_fill)
        quote_bankruptcy = bankruptcy_quote_for(size, event.size_delta, market, totals)
        price_bankruptcy = bankruptcy_price(quote_bankruptcy, event.size_delta, market.contract_size, market.tick_size)
        self.differ(position, "bankruptcy_differs", f"{name}: quote_bankruptcy, price_bankruptcy",
                    (quote_bankruptcy, price_bankruptcy), (event.quote_bankruptcy, event.price_bankruptcy))
        penalty, fee = decide_penalty(quote_fill, quote_bankruptcy, params, market.collateral_quantum)
        self.differ(position, "penalty_differs", f"{name}: penalty = min(surplus {fmt(quote_fill - quote_bankruptcy)}, "
                    f"{fmt(params.liquidation_fee_rate)} x |q_f|)", penalty, event.penalty)
        self.differ(position, "fee_split_differs", f"{name}: fee_liquidator = penalty x {fmt(params.liquidator_fee_share)}", fee, event.fee_liquidator)
        if penalty - fee > ZERO:
            self.command.penalties_due.setdefault(event.account, []).append(penalty - fee)
        deficit = quote_bankruptcy - quote_fill
        if deficit > ZERO:
            self.command.deficits[(event.account, event.liquidation_id)] = deficit
        self._check_after(position, event, account, market, penalty, deficit > ZERO, name)

    def _engine_step(self, position: int, event: Any, account: _AccountState, market: _MarketState, params: ParameterSet,
                     totals: MarginTotals, name: str) -> None:
        """Due, in order, of the engine's size and at its spread price (margin / insolvent)."""
        step = self._engine_step_checked(position, event, account, market, params, totals, name)
        if step is not None:
            insolvent = step[3]
            self.differ(position, "reason_differs", f"{name}: reason", "insolvent" if insolvent else "margin", event.reason)

    def _engine_step_checked(self, position: int, event: Any, account: _AccountState, market: _MarketState,
                             params: ParameterSet, totals: MarginTotals,
                             name: str) -> tuple[Decimal, Decimal, Decimal, bool] | None:
        """What a fill and a refusal share: due, in order, the engine's size and spread price.

        Returns (delta, price, shortfall, insolvent), or None after reporting why the engine
        should not have stepped here."""
        cmd = self.command
        continuing = event.account in cmd.insolvent
        problem = self._engine_problem(account, market, totals, event.at, continuing)
        if problem:
            self.find(position, problem[0], f"{name}: {problem[1]}")
            return None
        insolvent = continuing or totals.equity <= ZERO
        if insolvent:
            cmd.insolvent.add(event.account)
        delta, price, shortfall = self._planned_step(account, market, params, totals, insolvent)
        self.differ(position, "size_differs", f"{name}: size_delta", delta, event.size_delta)
        self.differ(position, "fill_price_differs", f"{name}: backstop price = mark -/+ {fmt(params.liquidation_spread)} x MMF x mark "
                    f"x {_show(price_rating(totals, params))} (ABR)", price, event.price_fill)
        return delta, price, shortfall, insolvent

    def _planned_step(self, account: _AccountState, market: _MarketState, params: ParameterSet, totals: MarginTotals,
                      insolvent: bool) -> tuple[Decimal, Decimal, Decimal]:
        """(delta, spread price, shortfall): a partial fill below bankruptcy closes the whole position."""
        size = account.size(market.market)
        plan = plan_step(size, close_for(size, market, totals, params, insolvent), market, totals, params)
        return plan.delta, plan.price, plan.shortfall

    def _engine_problem(self, account: _AccountState, market: _MarketState, totals: MarginTotals, at: datetime,
                        continuing: bool) -> tuple[str, str] | None:
        """(check, why) the engine should not have liquidated here; None when it should have.

        No account is exempt: the backstop liquidator is due like any other (ADR 13)."""
        if not continuing:
            problem = self._due_problem(account, totals, at)
            if problem:
                return "liquidation_not_warranted", problem
        if self.paused_in(market.market):
            return "liquidation_not_warranted", f"liquidations in {market.market} are paused (the account should have been queued)"
        params = self.params(market.market)
        deviation = deferred_by_twap(params, market.price_mark, market.price_twap)
        if deviation is not None and market.price_twap is not None:
            return ("liquidation_not_warranted",
                    f"mark {fmt(market.mark)} is {_show(deviation)} from its TWAP {fmt(market.price_twap)}: deferred, not liquidated")
        first = positions_by_priority(account.positions, self.markets)[0]
        if first != market.market:
            return "liquidation_order_differs", f"{first} has the largest maintenance requirement and goes first"
        return None

    def _due_problem(self, account: _AccountState, totals: MarginTotals, at: datetime) -> str | None:
        """The due rule: below MM, under call or liquidating, and deadline passed, below the floor
        or at or below zero equity (whatever the floor)."""
        if not account.positions:
            return "no open position"
        if totals.equity >= totals.maintenance_margin:
            return f"equity {fmt(totals.equity)} is not below maintenance margin {fmt(totals.maintenance_margin)}"
        if account.status not in (MARGIN_CALL, LIQUIDATING):
            return f"no margin call open (status {account.status})"
        floors = [self.params(m).liquidation_floor for m in self._trigger_markets(account)]
        if any(liquidation_due(account.status, account.deadline, at, totals, floor) for floor in floors):
            return None
        assert account.deadline is not None  # liquidation_due is true without a deadline
        return (f"call deadline {account.deadline.isoformat()} not passed and equity {fmt(totals.equity)} not below "
                f"{'/'.join(fmt(f) for f in floors)} x maintenance {fmt(totals.maintenance_margin)}")

    def _trigger_markets(self, account: _AccountState) -> list[str]:
        """Markets whose parameters the engine's call check used for ``account`` in this command."""
        cmd = self.command
        if cmd.kind == "resume" and cmd.dequeued.get(account.name):
            return sorted(cmd.dequeued[account.name])
        if cmd.market in account.positions:
            return [cmd.market]
        return [min(account.positions)]

    def _manual_problem(self, position: int, account: _AccountState, market: _MarketState, event: Any,
                        totals: MarginTotals, name: str) -> str | None:
        """An operator's ``liquidate``: the rules of ``settlement.check_manual_liquidation``.

        A price more than ``manual_liquidation_band`` x mark from the mark needs the approvals
        of that exact liquidation consumed in the same command (joined when it ends); the
        liquidator's capacity is checked on its ``PositionTaken`` (``_check_capacity``)."""
        size = account.size(market.market)
        delta = event.size_delta
        if size == ZERO:
            return "no position"
        if market.settled:
            return "market settled"
        if not below_maintenance(totals, True):
            return f"account healthy: equity {fmt(totals.equity)} not below maintenance {fmt(totals.maintenance_margin)}"
        if self.paused_in(market.market):
            return "liquidations paused"
        if event.price_fill <= ZERO or event.price_fill % market.tick_size != ZERO:
            return f"price {fmt(event.price_fill)} not on the tick {fmt(market.tick_size)}"
        if delta == ZERO or delta % market.step_size != ZERO or (delta > ZERO) == (size > ZERO) or abs(delta) > abs(size):
            return f"size_delta {fmt(delta)} does not reduce the position {fmt(size)} on the step"
        if event.counterparty == account.name:
            return "the account took its own position"
        band = self.params(market.market).manual_liquidation_band
        mark = market.mark
        distance = out_of_band(event.price_fill, mark, band)
        if distance is not None:
            change = manual_liquidation_change(account.name, market.market, abs(delta), event.price_fill, event.counterparty)
            self.command.out_of_band.append((position, change.fingerprint, f"{name}: price {fmt(event.price_fill)} is "
                                             f"{_show(distance)} from the mark {fmt(mark)}, outside the band {fmt(band)}"))
        return None

    # -- 5b.: refused takeovers -----------------------------------------------------------------------

    def on_takeover_refused(self, position: int, event: Any) -> None:
        """A due engine step the backstop could not carry (or the backstop itself liquidated).

        The step is re-derived as for a fill (due, order, size, ABR price); the account's
        equity and maintenance, the liquidator (the market's ``backstop_liquidator``), its cap
        and the outcome (``deleveraged`` when equity <= 0 or the fill is below the bankruptcy
        quote, else ``waiting``) here; the liquidator's figures after the takeover it would
        have made, and that ``can_carry`` is false for them, when the command ends (the
        liquidator's events of the command may come later in the log).
        """
        account, market = self.account(event.account), self.markets[event.market]
        params = self.params(event.market)
        totals = self.totals(account)
        name = f"{event.account} takeover refused in {event.market}"
        self._refused_step(position, event, account, market, params, totals, name)
        if account.status != BANKRUPT:
            account.status = LIQUIDATING
        self.touched(event.account)

    def _refused_step(self, position: int, event: Any, account: _AccountState, market: _MarketState,
                      params: ParameterSet, totals: MarginTotals, name: str) -> None:
        cmd = self.command
        step = self._engine_step_checked(position, event, account, market, params, totals, name)
        if step is None:
            return
        delta, price, shortfall, _ = step
        outcome = "deleveraged" if totals.equity <= ZERO or shortfall > ZERO else "waiting"
        cap = params.liquidator_position_cap
        self.differ(position, "refusal_differs", f"{name}: liquidator, its cap, equity, maintenance, outcome",
                    (params.backstop_liquidator, cap, totals.equity, totals.maintenance_margin, outcome),
                    (event.liquidator, event.liquidator_position_cap, event.equity, event.maintenance_margin, event.outcome))
        recorded = (event.liquidator_equity_after, event.liquidator_initial_margin_after, event.liquidator_notional_after)
        if event.liquidator == event.account:  # the backstop itself: its own figures, never a taker of itself
            self.differ(position, "capacity_differs", f"{name}: the liquidator is the account: its own equity, initial margin, notional",
                        capacity_of(account.collateral, account.positions, self.markets, cap).figures, recorded)
        else:
            quote_fill = fill_quote(delta, price, market.contract_size)
            quote_bankruptcy = bankruptcy_quote_for(account.size(event.market), delta, market, totals)
            fee = decide_penalty(quote_fill, quote_bankruptcy, params, market.collateral_quantum).fee_liquidator
            cmd.refusals.append(_Refusal(position, event.account, event.market, event.liquidator, -delta, price, fee, recorded, cap, name))
        if event.outcome == "deleveraged":
            cmd.refused[(event.account, event.market)] = position

    def _check_refusals(self, cmd: _Command) -> None:
        """Each refusal's liquidator figures are those of one of the liquidator's holdings in
        the command (before its first change or after any), and ``can_carry`` is false for
        them; each ``deleveraged`` refusal is followed by its deleveraging."""
        for refusal in cmd.refusals:
            taker = self.accounts.get(refusal.liquidator)
            holdings = cmd.history.get(refusal.liquidator) or [(taker.collateral, taker.positions) if taker else (ZERO, {})]
            derived = [capacity_after(collateral, positions, self.markets, refusal.market, refusal.delta, refusal.price, refusal.fee,
                                      refusal.cap).figures
                       for collateral, positions in holdings]
            if refusal.recorded not in derived:
                self.find(refusal.position, "capacity_differs", f"{refusal.name}: {refusal.liquidator}'s equity, initial margin, notional "
                          f"after taking {fmt(refusal.delta)} at {fmt(refusal.price)} (fee {fmt(refusal.fee)}): expected one of "
                          f"{[_show(d) for d in derived]}, recorded {_show(refusal.recorded)}")
            elif can_carry(*refusal.recorded, refusal.cap):
                self.find(refusal.position, "refusal_not_warranted", f"{refusal.name}: {refusal.liquidator} can carry it: equity "
                          f"{fmt(refusal.recorded[0])} >= initial margin {fmt(refusal.recorded[1])}, notional {fmt(refusal.recorded[2])} "
                          f"<= {fmt(refusal.cap)} x equity")
        for (account, market), position in cmd.refused.items():
            self.find(position, "refusal_differs", f"{account} takeover refused in {market}: outcome deleveraged, but no deleveraging followed")

    def _check_after(self, position: int, event: Any, account: _AccountState, market: _MarketState, penalty: Decimal,
                     bankrupt: bool, name: str, quote: Decimal | None = None) -> None:
        """Position, collateral, equity, maintenance and status after applying the fill (at ``quote`` when given)."""
        size = account.size(event.market)
        size_after, cost_after, realized = fill_effect(size, account.cost(event.market), event.size_delta, event.price_fill,
                                                       market.contract_size, market.collateral_quantum, quote)
        collateral_after = account.collateral + realized - penalty
        positions = dict(account.positions)
        positions[event.market] = _Held(size_after, cost_after)
        after = margin_totals(collateral_after, positions, self.markets)
        status = status_after(after, all(p.size == ZERO for p in positions.values()), bankrupt)
        self.differ(position, "liquidation_after_differs", f"{name}: realized, size, cost, collateral, equity, maintenance, status after",
                    (realized, size_after, cost_after, collateral_after, after.equity, after.maintenance_margin, status),
                    (event.realized_pnl, event.position_size_after, event.position_cost_after, event.collateral_after,
                     event.equity_after, event.maintenance_margin_after, event.risk_status_after))

    # -- ADL --------------------------------------------------------------------------------------

    def _adl_plan(self, position: int, account: _AccountState, market_name: str, at: datetime) -> _AdlPlan:
        """Decide once, before the fund's payment, what the deleveraging of this position must be."""
        market = self.markets[market_name]
        params = self.params(market_name)
        totals = self.totals(account)
        continuing = account.name in self.command.insolvent
        refused = self.command.refused.pop((account.name, market_name), None) is not None
        problem = self._engine_problem(account, market, totals, at, continuing)
        size = account.size(market_name)
        if problem is None:
            insolvent = continuing or totals.equity <= ZERO
            if insolvent:
                self.command.insolvent.add(account.name)
            delta, _, shortfall = self._planned_step(account, market, params, totals, insolvent)
            if refused:  # TakeoverRefused "deleveraged": whatever the loss policy and the fund (ADR 13)
                pass
            elif params.loss_policy not in QUEUE_POLICIES and (shortfall <= ZERO or self._bearer_left(account, market_name, params)):
                problem = "liquidation_not_warranted", (f"loss_policy is {params.loss_policy}, not a queue policy "
                                                        f"({', '.join(QUEUE_POLICIES)}), no takeover was refused, and a "
                                                        "holder is left to bear the deficit")
            elif shortfall <= ZERO:
                problem = "liquidation_not_warranted", f"the backstop fill covers the bankruptcy quote (shortfall {fmt(shortfall)}): no deleveraging"
            if problem is None and delta != -size:
                problem = "size_differs", f"deleveraging closes the whole position {fmt(size)}, the step was {fmt(delta)}"
        wanted = deleveraging_fund_draw(size, market, totals) if size != ZERO else ZERO
        return _AdlPlan(market_name, size, wanted, problem, position=position, refused=refused)

    def _bearer_left(self, account: _AccountState, market: str, params: ParameterSet) -> bool:
        """``liquidation_math.loss_bearer_left`` for the backstop taking the whole position."""
        backstop = params.backstop_liquidator
        others = [self.accounts[name].size(market) for name in self.holders[market] if name not in (account.name, backstop)]
        taker_size = self.accounts[backstop].size(market) if backstop in self.accounts else ZERO
        return loss_bearer_left(others, taker_size, -account.size(market))

    def _adl_slice(self, position: int, event: Any, account: _AccountState, market: _MarketState, params: ParameterSet, name: str) -> None:
        """One slice: its share of the exact bankruptcy quote of the whole position after the fund's payment.

        Per slice: the quote's per-contract label, quote_fill = quote_bankruptcy, within one
        quantum of the pro-rata share and on the quote's side; at the end of the command the
        largest-remainder split over the recorded sizes (``_check_adl_complete``).
        """
        key = (event.account, event.liquidation_id)
        plan = self.command.adl.get(key)
        if plan is None:
            plan = self.command.adl[key] = self._adl_plan(position, account, event.market, event.at)
            self.command.deficits[key] = plan.wanted
        if plan.price is None:
            plan.position = position
            if plan.problem:
                self.find(position, plan.problem[0], f"{name}: {plan.problem[1]}")
            plan.totals = self.totals(account)
            if plan.size == ZERO:
                self.find(position, "liquidation_not_warranted", f"{name}: no position to deleverage")
                return
            plan.quote = bankruptcy_quote_for(plan.size, -plan.size, market, plan.totals)
            plan.price = quote_price(plan.quote, -plan.size, market.contract_size, market.collateral_quantum)
            plan.slices = []
        totals = plan.totals
        assert totals is not None and plan.slices is not None
        self.differ(position, "liquidation_figures_differ", f"{name}: equity, initial, maintenance before deleveraging",
                    (totals.equity, totals.initial_margin, totals.maintenance_margin),
                    (event.equity_before, event.initial_margin_before, event.maintenance_margin_before))
        self.differ(position, "bankruptcy_differs", f"{name}: price_bankruptcy = quote {fmt(plan.quote)} per contract",
                    plan.price, event.price_bankruptcy)
        self.differ(position, "fill_price_differs", f"{name}: deleveraged at the bankruptcy price", plan.price, event.price_fill)
        self.differ(position, "liquidation_figures_differ", f"{name}: quote_fill = quote_bankruptcy (the exact share)",
                    event.quote_bankruptcy, event.quote_fill)
        pro_rata = plan.quote * abs(event.size_delta) / abs(plan.size)
        wrong_side = event.quote_fill != ZERO and (event.quote_fill < ZERO) != (plan.quote < ZERO)
        if wrong_side or abs(event.quote_fill - pro_rata) >= market.collateral_quantum:
            self.find(position, "bankruptcy_differs", f"{name}: quote_fill {fmt(event.quote_fill)} is not a share of the bankruptcy quote "
                      f"{fmt(plan.quote)} for {fmt(abs(event.size_delta))} of {fmt(abs(plan.size))} (pro rata {_show(pro_rata)})")
        plan.slices.append((position, abs(event.size_delta), event.quote_fill, event.counterparty))
        self.differ(position, "penalty_differs", f"{name}: no penalty when deleveraging", ZERO, event.penalty)
        self.differ(position, "fee_split_differs", f"{name}: no liquidator fee when deleveraging", ZERO, event.fee_liquidator)
        size = account.size(event.market)
        if event.size_delta == ZERO or (event.size_delta > ZERO) == (size > ZERO) or abs(event.size_delta) > abs(size):
            self.find(position, "size_differs", f"{name}: slice {fmt(event.size_delta)} does not reduce the position {fmt(size)}")
        plan.closed += abs(event.size_delta)
        self._check_after(position, event, account, market, ZERO, True, name, quote=event.quote_fill)

    def _check_adl_complete(self, cmd: _Command) -> None:
        for (account, liquidation_id), plan in cmd.adl.items():
            if plan.price is None:
                continue
            name = f"{account} deleveraging {liquidation_id} in {plan.market}"
            if plan.closed != abs(plan.size):
                self.find(plan.position, "size_differs", f"{name}: slices close {fmt(plan.closed)} of {fmt(abs(plan.size))}")
                continue
            slices = plan.slices or []
            expected = split_quote(plan.quote, [size for _, size, _, _ in slices], self.markets[plan.market].collateral_quantum)
            for (where, size, recorded, _), share in zip(slices, expected, strict=True):
                self.differ(where, "bankruptcy_differs", f"{name}: slice of {fmt(size)}: its largest-remainder share of the "
                            f"bankruptcy quote {fmt(plan.quote)}", share, recorded)
            self._check_adl_queue(cmd, account, liquidation_id, plan, name)

    def _check_adl_queue(self, cmd: _Command, account: str, liquidation_id: str, plan: _AdlPlan, name: str) -> None:
        """The counterparties and sizes of a deleveraging are ``plan_deleveraging``'s (``adl_queue_differs``).

        The candidates: each counterparty as it was just before its slice (its own events are
        in order), plus every opposite holder with no event in this command (its holding
        then is its holding now); an opposite holder changed by the command and not
        deleveraged is left out, since the log does not say when in the command it changed.
        """
        slices = plan.slices or []
        takes = cmd.adl_takes.get((account, liquidation_id), [])
        candidates = {taker: holder for taker, _, holder, _ in takes}
        long_side = plan.size > ZERO
        market = self.markets[plan.market]
        for name in sorted(self.holders[plan.market]):
            other = self.accounts[name]
            held = other.positions.get(plan.market)
            if other.name in candidates or other.name == account or other.name in cmd.changed or held is None:
                continue
            if (held.size > ZERO) != long_side:
                candidates[other.name] = Holder(other.name, held.size, held.cost, self.equity_and_maintenance(other)[0])
        policy = self.params(plan.market).loss_policy
        expected = plan_deleveraging(deleveraging_policy(policy), list(candidates.values()), market.mark, market.contract_size,
                               abs(plan.size), market.step_size)
        recorded = [(counterparty, size) for _, size, _, counterparty in slices]
        if [(n, q) for n, q, _ in expected] != recorded:
            where = slices[0][0] if slices else plan.position
            self.find(where, "adl_queue_differs", f"{name}: counterparties and contracts under {deleveraging_policy(policy)} expected "
                      f"{[(n, fmt(q)) for n, q, _ in expected]}, recorded {[(n, fmt(q)) for n, q in recorded]}")
            return
        scores = {n: score for n, _, score in expected}
        for taker, recorded_score, _, where in takes:
            self.differ(where, "adl_rank_differs", f"{taker} deleveraged against {account} ({liquidation_id}): "
                        f"{deleveraging_policy(policy)} score", scores.get(taker), recorded_score)

    # -- 4.: deficits ---------------------------------------------------------------------------------

    def on_loss_covered(self, position: int, event: Any) -> None:
        """deficit = fund_paid + allocated, and = the deficit of what it covers (see below)."""
        cmd = self.command
        account = self.account(event.account)
        key = (event.account, event.loss_id)
        name = f"{event.account} loss {event.loss_id} in {event.market}"
        self.differ(position, "loss_cover_differs", f"{name}: deficit = fund_paid + allocated", event.fund_paid + event.allocated, event.deficit)
        if key in cmd.steps:  # after its fill: q_b - q_f
            self.differ(position, "loss_cover_differs", f"{name}: deficit of the fill", cmd.deficits.get(key, ZERO), event.deficit)
            self._check_policy(position, name, event, manual=any(s.reason == "manual" for s in cmd.steps[key]))
        elif cmd.kind == "settle" and account.size(event.market) == ZERO:  # the final price left the account below zero
            self.differ(position, "loss_cover_differs", f"{name}: settlement deficit = -collateral", -account.collateral, event.deficit)
            cmd.deficits[key] = -account.collateral
            policy = self.params(event.market).loss_policy
            policies = {INSURANCE_FUND} if event.allocated == ZERO else {policy, SOCIALIZE_PER_CONTRACT}
            if event.policy not in policies:
                self.find(position, "loss_cover_differs", f"{name}: policy {event.policy}, expected one of {sorted(policies)}")
        else:  # the fund's payment before deleveraging
            plan = cmd.adl.get(key)
            if plan is None:
                plan = cmd.adl[key] = self._adl_plan(position, account, event.market, event.at)
                cmd.deficits[key] = plan.wanted
            plan.fund_paid = event.fund_paid
            self.differ(position, "loss_cover_differs", f"{name}: before deleveraging the fund alone pays (allocated, policy)",
                        (ZERO, INSURANCE_FUND), (event.allocated, event.policy))
        if event.allocated > ZERO:
            total, first = cmd.allocated.get(event.loss_id, (ZERO, position))
            cmd.allocated[event.loss_id] = (total + event.allocated, first)
        cmd.covers.append((position, event.account, event.loss_id, event.fund_paid))
        self.differ(position, "state_differs", f"{name}: collateral after", account.collateral + event.fund_paid + event.allocated, event.collateral_after)
        account.collateral = event.collateral_after
        account.status = BANKRUPT
        account.deadline = None
        account.call_rule = None
        cmd.moved.add(event.account)
        self.touched(event.account)

    def _check_policy(self, position: int, name: str, event: Any, manual: bool) -> None:
        """The fund first; the rest by ``loss_policy`` (``adl``: only a manual fill's rest, per contract)."""
        policy = self.params(event.market).loss_policy
        if event.allocated == ZERO:
            expected = INSURANCE_FUND
        elif policy in QUEUE_POLICIES and not manual:
            self.find(position, "loss_cover_differs", f"{name}: under {policy} a deficit the fund cannot pay is deleveraged, not allocated")
            return
        else:
            expected = SOCIALIZE_PER_CONTRACT if policy in QUEUE_POLICIES else policy
        self.differ(position, "loss_cover_differs", f"{name}: policy", expected, event.policy)

    def _check_draws_and_covers(self, cmd: _Command) -> None:
        """Joins of the command: each draw has its deficit, each cover its draw and shares."""
        for key, (amount, balance, position) in cmd.draws.items():
            if key not in cmd.deficits:
                self.find(position, "fund_draw_differs", f"draw for {key[0]} ({key[1]}) covers no recorded deficit")
            elif ZERO < amount <= balance:
                self._check_draw(key, cmd.deficits[key], amount, balance, position)
        for position, account, loss_id, fund_paid in cmd.covers:
            drawn = cmd.draws.get((account, loss_id), (ZERO, ZERO, 0))[0]
            self.differ(position, "loss_cover_differs", f"{account} loss {loss_id}: fund_paid = the fund's draw", drawn, fund_paid)
        for key, wanted in cmd.deficits.items():
            if wanted > ZERO and key not in cmd.draws and cmd.fund_events == 0 and cmd.fund_start > ZERO:
                steps = cmd.steps.get(key)
                where = steps[0].position if steps else cmd.position
                self.find(where, "fund_draw_differs", f"{key[0]} ({key[1]}): deficit {fmt(wanted)} with a fund of {fmt(cmd.fund_start)} but no draw")
        for loss_id, (allocated, position) in cmd.allocated.items():
            self.differ(position, "loss_cover_differs", f"loss {loss_id}: allocated = the shares charged", allocated, cmd.shares.get(loss_id, ZERO))
            self._check_shares(cmd, loss_id, allocated)
        for key, steps in cmd.steps.items():
            covered = any(c[1] == key[0] and c[2] == key[1] for c in cmd.covers)
            if cmd.deficits.get(key, ZERO) > ZERO and key not in cmd.adl and not covered:
                self.find(steps[0].position, "loss_cover_differs", f"{key[0]} ({key[1]}): deficit {fmt(cmd.deficits[key])} never covered")

    def _check_shares(self, cmd: _Command, loss_id: str, allocated: Decimal) -> None:
        """Each payer's share, policy and basis are ``risk.allocation.cash_allocation``'s (``loss_share_differs``).

        The book: each payer as it was before its first share, plus every open holder of the
        market the command did not change, the bankrupt account left out. When an open holder
        the command changed paid nothing, its weight at the time is unknown, so the split is
        not re-derived (the totals still are). Settlement shares are weighted by the final
        price and are not re-derived here.
        """
        payment = cmd.payments.get(loss_id)
        bankrupt = {account for _, account, covered, _ in cmd.covers if covered == loss_id}
        if payment is None:
            return
        if cmd.kind == "settle":
            self._check_settlement_shares(cmd, loss_id, allocated)
            return
        market_name, where, before, paid = payment
        book = dict(before)
        for name in self.holders[market_name]:
            if name in book or name in bankrupt:
                continue
            if name in cmd.changed:
                return
            held = self.accounts[name].positions[market_name]
            book[name] = Holder(name, held.size, held.cost, self.equity_and_maintenance(self.accounts[name])[0])
        market = self.markets[market_name]
        holders = [book[name] for name in sorted(book)]
        groups = cash_allocation(self.params(market_name).loss_policy, holders, market.mark, market.contract_size, allocated,
                                 market.collateral_quantum)
        expected = sorted((name, share, group.policy, basis) for group in groups for name, share, basis in group.shares if share > ZERO)
        if expected != sorted(paid):
            self.find(where, "loss_share_differs", f"loss {loss_id} in {market_name}: shares (account, share, policy, basis) expected "
                      f"{[(n, fmt(q), p) for n, q, p, _ in expected]}, recorded {[(n, fmt(q), p) for n, q, p, _ in sorted(paid)]}")

    def _check_settlement_shares(self, cmd: _Command, loss_id: str, allocated: Decimal) -> None:
        """A settlement's shares (and ranks) are ``risk.allocation.settlement_allocation``'s
        (``loss_share_differs``): every settled position but the bankrupt ones, as it was before
        the settlement less its shares of earlier losses of the command, valued at the final price."""
        market_name, where, _, paid = cmd.payments[loss_id]
        market = self.markets[market_name]
        bankrupt = {account for _, account, _, _ in cmd.covers}
        covering: list[str | None] = [account for _, account, covered, _ in cmd.covers if covered == loss_id]
        (name,) = covering or [None]
        settle_price = cmd.settle_price
        if name is None or name not in cmd.settled or settle_price is None:
            return
        earlier: dict[str, Decimal] = {}
        for _, first, _, shares in cmd.payments.values():
            if first < where:
                for payer, share, _, _ in shares:
                    earlier[payer] = earlier.get(payer, ZERO) + share
        holders = []
        for other in sorted(cmd.settled):
            collateral, positions = cmd.settled[other]
            held = positions.get(market_name)
            if other in bankrupt or held is None:
                continue
            equity = collateral - earlier.get(other, ZERO) + _pnl(held, market, settle_price)
            equity += sum((_pnl(h, self.markets[m], self.markets[m].mark) for m, h in positions.items() if m != market_name), ZERO)
            holders.append(Holder(other, held.size, held.cost, equity))
        bankrupt_held = cmd.settled[name][1].get(market_name)
        if bankrupt_held is None:
            return
        policy = self.params(market_name).loss_policy
        _, groups = settlement_allocation(policy, bankrupt_held.size, holders, settle_price, market.contract_size, market.step_size,
                                          allocated, market.collateral_quantum)
        expected = sorted((n, share, group.policy, basis) for group in groups for n, share, basis in group.shares if share > ZERO)
        ranks = {n: score for group in groups for n, score in group.ranks}
        recorded_ranks = {n: cmd.ranks.get((loss_id, n)) for n, _, _, _ in paid}
        if expected != sorted(paid) or any(recorded_ranks[n] != ranks.get(n) for n in recorded_ranks):
            self.find(where, "loss_share_differs", f"settlement loss {loss_id} in {market_name} under {policy}: shares (account, share, "
                      f"policy) expected {[(n, fmt(q), p) for n, q, p, _ in expected]}, recorded "
                      f"{[(n, fmt(q), p) for n, q, p, _ in sorted(paid)]} (or their ranks differ)")

    def _check_penalties(self, cmd: _Command) -> None:
        """Each fill's penalty minus the liquidator's fee is contributed to the fund."""
        for account in set(cmd.penalties_due) | set(cmd.penalties_paid):
            due = sorted(cmd.penalties_due.get(account, []))
            paid = cmd.penalties_paid.get(account, [])
            if due != sorted(amount for amount, _ in paid):
                where = paid[0][1] if paid else cmd.position
                self.find(where, "fee_split_differs", f"{account}: penalties to the fund expected {[fmt(a) for a in due]}, "
                          f"recorded {[fmt(a) for a, _ in paid]}")

    def _check_takers(self, cmd: _Command) -> None:
        """Each fill has its ``PositionTaken``: opposite size, same price, the liquidator's fee."""
        expected: Counter[TakerKey] = Counter()
        first: dict[TakerKey, int] = {}
        for steps in cmd.steps.values():
            for s in steps:
                key = (s.counterparty, s.account, s.liquidation_id, -s.size_delta, s.price, s.fee, s.basis, -s.quote)
                expected[key] += 1
                first.setdefault(key, s.position)
        recorded: Counter[TakerKey] = Counter()
        for key, position in cmd.takers:
            recorded[key] += 1
            first.setdefault(key, position)
        for key in sorted(set(expected) | set(recorded), key=lambda k: first[k]):
            if expected[key] != recorded[key]:
                self.find(first[key], "taker_differs", f"{key[1]} ({key[2]}) taken by {key[0]}: {fmt(key[3])} at {fmt(key[4])} "
                          f"(quote {fmt(key[7])}) fee {fmt(key[5])} ({key[6]}): {recorded[key]} PositionTaken event(s) for "
                          f"{expected[key]} fill(s)")

    # -- 5.: nobody missed ------------------------------------------------------------------------------

    def _check_missed(self, cmd: _Command) -> None:
        """After a price (funding, settlement, loss re-check) no one below MM is still healthy."""
        flagged: set[str] = set()
        if cmd.kind == "price" and cmd.market in self.markets:
            for name in self._due_for(cmd.market):
                if name not in flagged and self._evaluate(name, cmd.market):
                    flagged.add(name)
                    self._missed(cmd.trigger_position or cmd.position, name, cmd)
        for name, position in cmd.candidates.items():
            if name not in flagged and self._below_and_healthy(self.accounts[name]):
                flagged.add(name)
                self._missed(position, name, cmd)

    def _due_for(self, market: str) -> list[str]:
        """Changed accounts holding ``market`` (others wait for a market they hold), then
        those whose trigger the new mark reached."""
        watch, names = self.watch, []
        for name in list(watch.dirty):
            account = self.accounts[name]
            if market in account.positions:
                names.append(name)
                watch.dirty.discard(name)
            elif account.status != HEALTHY or not account.positions:
                watch.disarm(name)
                watch.dirty.discard(name)
        mark = self.markets[market].price_mark
        if mark is None:  # a market never marked has no triggers (each is set off a mark)
            return names
        return names + watch.due(market, mark)

    def _missed(self, position: int, name: str, cmd: _Command) -> None:
        account = self.accounts[name]
        totals = self.totals(account)
        self.find(position, "call_missed", f"{name} after {cmd.kind} {cmd.command_id}: equity {fmt(totals.equity)} below maintenance "
                  f"{fmt(totals.maintenance_margin)} in {', '.join(sorted(account.positions))} but still healthy")

    def _below_and_healthy(self, account: _AccountState) -> bool:
        """True for an account that should be under call (or queued) and is healthy."""
        if account.status != HEALTHY or not account.positions or account.closed:
            return False
        equity, maintenance = self.equity_and_maintenance(account)
        if equity >= maintenance:  # the backstop liquidator included: no account is exempt
            return False
        return all(queued != account.name for queued, _ in self.queue.values())

    def _evaluate(self, name: str, repriced: str) -> bool:
        """Re-arm ``name`` in the watch; True when it holds ``repriced`` and was missed.

        Budget: slack = equity - MM less one quantum per position (the requirement's
        rounding). A long loses at most |size| x contract per unit the mark falls (MM only
        falls with it), so every market may move against the account by the same fraction
        r = budget / sum(|size| x contract x mark) before it can reach maintenance.
        Example: slack 1,000 on a long 1 at 50,000 -> r 0.02, lower trigger 49,000.
        """
        account = self.accounts[name]
        stamp = self.watch.disarm(name)
        if account.status != HEALTHY or not account.positions or account.closed:
            return False
        markets = self.markets
        equity, maintenance = self.equity_and_maintenance(account)
        exposure = ZERO
        held_at = []
        for market_name, held in account.positions.items():
            market = markets[market_name]
            mark = market.mark
            notional = abs(held.size * mark * market.contract_size)
            maintenance += market.collateral_quantum
            if market.favourable_weight:
                exposure += abs(held.size) * market.exposure_unit * mark
                held_at.append((market_name, mark, True, True))
            else:
                exposure += notional
                held_at.append((market_name, mark, held.size > ZERO, held.size < ZERO))
        slack = equity - maintenance  # less one quantum per position
        fraction = round_down(slack / exposure, ALLOWANCE_QUANTUM) if slack > ZERO else ZERO
        push = self.watch.push
        for market_name, mark, falls, rises in held_at:
            allowance = mark * fraction
            push(market_name, mark - allowance if falls else None, mark + allowance if rises else None, stamp, name)
        if slack >= ZERO or repriced not in account.positions:
            return False
        return self._below_and_healthy(account)


def _pnl(held: _Held, market: _MarketState, price: Decimal) -> Decimal:
    """Unrealized PnL of a replayed holding at ``price`` (``margin.unrealized_pnl``)."""
    return unrealized_pnl(held.size, held.cost, price, market.contract_size)


def _show(value: Any) -> str:
    if isinstance(value, Decimal):
        return fmt(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return "(" + ", ".join(_show(v) for v in value) + ")"
    return repr(value)


_HANDLERS: dict[type, Callable[[DecisionAudit, int, Any], None]] = {
    CommandRecord.Accepted: DecisionAudit.on_accepted,
    Market.Listed: DecisionAudit.on_listed,
    Market.MarkPriceSet: DecisionAudit.on_mark,
    Market.TradingRecorded: DecisionAudit.on_batch_end,
    Market.HoldersChanged: DecisionAudit.on_batch_end,
    Market.ParametersSet: DecisionAudit.on_market_parameters,
    Market.FundingApplied: DecisionAudit.on_funding_applied,
    Market.MarketSettled: DecisionAudit.on_market_settled,
    Clearinghouse.ParametersSet: DecisionAudit.on_ch_parameters,
    Clearinghouse.ControlApplied: DecisionAudit.on_control,
    Clearinghouse.LiquidationQueued: DecisionAudit.on_queued,
    Clearinghouse.LiquidationDequeued: DecisionAudit.on_dequeued,
    InsuranceFund.Contributed: DecisionAudit.on_contributed,
    InsuranceFund.Drawn: DecisionAudit.on_drawn,
    Account.Opened: DecisionAudit.on_opened,
    Account.Deposited: DecisionAudit.on_deposited,
    Account.Withdrawn: DecisionAudit.on_withdrawn,
    Account.TradeFilled: DecisionAudit.on_trade,
    Account.FillsRecorded: DecisionAudit.on_fills,
    Account.AccountClosed: DecisionAudit.on_account_closed,
    Account.MarginCallIssued: DecisionAudit.on_call_issued,
    Account.MarginCallMet: DecisionAudit.on_call_met,
    Account.MarginCallPaid: DecisionAudit.on_call_paid,
    Account.Liquidated: DecisionAudit.on_liquidated,
    Account.PositionTaken: DecisionAudit.on_taken,
    Account.LossCovered: DecisionAudit.on_loss_covered,
    Account.LossAllocated: DecisionAudit.on_loss_allocated,
    Account.FundingPaid: DecisionAudit.on_funding_paid,
    Account.PositionSettled: DecisionAudit.on_settled,
    Account.LiquidationDeferred: DecisionAudit.on_deferred,
    Account.TakeoverRefused: DecisionAudit.on_takeover_refused,
    Clearinghouse.ApprovalsConsumed: DecisionAudit.on_approvals_consumed,
    Account.RecoveredFromBankruptcy: DecisionAudit.on_recovered,
}


def audit_decisions(events: Iterable[tuple[int, Any]], *, stop_at_first: bool = True) -> list[Finding]:
    """Re-check every risk decision in ``events`` ((position, domain event) in log order)."""
    audit = DecisionAudit(stop_at_first)
    with decimal.localcontext(LEDGER_CONTEXT):
        try:
            for position, event in events:
                audit.feed(position, event)
            audit.finish()
        except _Stop:
            pass
    return audit.findings


def audit_log(app: ClearingApplication, *, stop_at_first: bool = True, progress: Callable[[int], None] | None = None) -> list[Finding]:
    """Audit the application's whole event log (``audit_decisions`` over ``log_events``)."""
    return audit_decisions(log_events(app, progress=progress), stop_at_first=stop_at_first)


class DecisionCheck:
    """The decision re-checks as a consumer of the one read of the log (``audit verify``'s ``decisions``)."""

    name = "decisions"

    def __init__(self) -> None:
        self.audit = DecisionAudit(stop_at_first=True)

    def consume(self, page: LogPage) -> None:
        audit = self.audit
        with decimal.localcontext(LEDGER_CONTEXT):
            try:
                for notification, event in page.decoded():
                    audit.feed(notification.id, event)
            except _Stop:
                self._failed()

    def finish(self, head: int) -> str:
        with decimal.localcontext(LEDGER_CONTEXT):
            try:
                self.audit.finish()
            except _Stop:
                self._failed()
        return "every margin call, liquidation, penalty and fund draw re-checked"

    def _failed(self) -> None:
        first = self.audit.findings[0]
        raise CheckFailed(f"[{first.check}] at position {first.position}: {first.message}") from None
