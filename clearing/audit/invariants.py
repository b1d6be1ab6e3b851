"""Ledger invariants, checked by an independent fold over the whole event log.

The fold reads every notification in order and keeps its own totals (deposits,
withdrawals, contributions, each account's collateral and positions, each market's mark),
without using the aggregates' code. It then checks:

* ``money_conserved``: sum over accounts of (collateral + unrealized PnL at the mark) plus
  the insurance fund equals deposits - withdrawals + contributions, exactly;
* ``positions_net_to_zero``: in every market longs equal shorts;
* ``holders_match``: each market's recorded holders (``HoldersChanged``, and ``TradingRecorded``
  in logs before ADR 26) are exactly the accounts the fold finds with an open position;
* ``insurance_fund_not_negative``: after every fund event, not only at the end;
* ``closed_accounts_are_flat``: no closed account holds a position or collateral;
* ``flat_accounts_pay_no_losses``: every loss allocation falls on an account that held a
  position in that market at that moment;
* ``allocations_sum_to_loss``: the shares of each allocation set add up to its loss;
* ``bankrupt_accounts_end_at_zero_or_above``: an account made whole by the fund or by
  allocations ends with equity >= 0 (collateral alone may be below zero while another
  position's gain covers it, in cross margin);
* ``solvency``: at the end of **every** command, **every** account (the backstop
  liquidator and any other liquidator included: no account is exempt) has equity >= 0 at
  the marks. A deficit may exist only inside the command that covers it, or while the
  account's liquidation is held back by a recorded pause (``LiquidationQueued`` until
  ``LiquidationDequeued``) or TWAP deferral (``LiquidationDeferred`` until its next
  liquidation, call met or loss cover). The message names the log position of the end of
  the first command after which it fails. Only accounts whose cash or positions moved in
  that command are re-valued, and the holders of a re-marked market that the move can have
  carried below zero (``clearing.audit.cushions``: each valued account's equity bounds how far
  its marks can travel before it must be valued again), so the check costs the holders a
  move can matter for, not accounts x commands;
* ``replay_equals_live``: every account as its events build it matches the fold (sizes,
  collateral, cash; the aggregates are folded with the events' own ``mutate`` during the
  one read, which is what the repository does for an account without a snapshot), every
  market loaded by the repository its mark and open interest, the insurance fund its
  balance; and every aggregate of every kind (accounts, markets, the fund, the
  clearinghouse, command records) that has a stored snapshot, loaded through the
  repository (latest snapshot + later events, the path decisions use), equals the
  aggregate rebuilt from its events alone, field by field
  (``clearing.audit.snapshots.live_equals_replay``; an aggregate without a snapshot is
  loaded by folding exactly those events, so for it the two paths are one computation).

Liquidation penalties and fund draws move money between accounts and the fund; only
``fund_insurance`` contributions bring money in, so they alone count as contributions.

Tests run ``check_ledger`` after every command; ``InvariantViolation`` is raised rather than
``assert`` (which ``python -O`` would strip).
"""

from __future__ import annotations

import decimal
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from clearing.application import ClearingApplication
from clearing.audit import properties
from clearing.audit.cushions import Cushions
from clearing.audit.log import CheckFailed, Handlers, LogPage, read_log
from clearing.audit.snapshots import live_equals_replay, stored_snapshot_ids
from clearing.domain import ids
from clearing.domain.account import Account
from clearing.domain.clearinghouse import Clearinghouse
from clearing.domain.command_record import CommandRecord
from clearing.domain.fills import trade_fills
from clearing.domain.insurance import FundCause, InsuranceFund
from clearing.domain.market import Market
from clearing.errors import InvariantViolation
from clearing.money import LEDGER_CONTEXT, ZERO, fmt


@dataclass
class Fold:
    """Totals kept by the fold. ``quote`` is cash: deposits - withdrawals - trade cash paid."""

    deposits: Decimal = ZERO
    withdrawals: Decimal = ZERO
    contributions: Decimal = ZERO
    insurance_fund: Decimal = ZERO
    quote: dict[str, Decimal] = field(default_factory=lambda: defaultdict(lambda: ZERO))
    collateral: dict[str, Decimal] = field(default_factory=lambda: defaultdict(lambda: ZERO))
    sizes: dict[tuple[str, str], Decimal] = field(default_factory=lambda: defaultdict(lambda: ZERO))
    marks: dict[str, Decimal] = field(default_factory=dict)
    unit_values: dict[str, Decimal] = field(default_factory=dict)  # market -> mark x contract size
    contract_sizes: dict[str, Decimal] = field(default_factory=dict)
    closed: set[str] = field(default_factory=set)
    account_ids: dict[str, UUID] = field(default_factory=dict)
    holders_recorded: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # market -> recorded holders
    allocations: dict[tuple[str, str], list[Decimal]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # events per kind (Account.Deposited)
    fund_established: bool = False
    covered: set[str] = field(default_factory=set)
    loaded_through_snapshots: int = 0  # aggregates whose snapshot + later events equal their events
    holdings: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # account -> markets held
    holders: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # market -> accounts holding
    dirty: set[str] = field(default_factory=set)  # accounts to re-value when the command ends
    cushions: Cushions = field(default_factory=Cushions)  # which holders a re-mark can have made insolvent
    held_back: set[str] = field(default_factory=set)  # liquidation paused (queued) or deferred
    commands_checked: int = 0


def fold_log(app: ClearingApplication, aggregates: dict[UUID, Any] | None = None) -> Fold:
    """Read the notification log from the start and fold it into totals.

    ``aggregates`` (id -> None) asks for those aggregates to be rebuilt from their events on
    the way, with the events' own ``mutate`` (no snapshot): the rebuilds the
    ``replay_equals_live`` check compares with the repository's loads, at no extra decode.
    An aggregate whose events do not fold is left at None (the check then folds it alone
    and reports why).
    """
    check = InvariantCheck(app, aggregates if aggregates is not None else {})
    for page in read_log(app.recorder, app.mapper, stop=app.recorder.max_notification_id() or 0):
        check.fold_page(page)
    return check.fold


class InvariantCheck:
    """The invariants as a consumer of the one read of the log (``audit verify``'s ``invariants``)."""

    name = "invariants"

    def __init__(self, app: ClearingApplication, rebuilt: dict[UUID, Any] | None = None) -> None:
        self.app = app
        self.fold = Fold()
        self.decisions = properties.Decisions()
        self.rebuilt: dict[UUID, Any] = dict.fromkeys(stored_snapshot_ids(app)) if rebuilt is None else rebuilt
        self._broken: set[UUID] = set()
        self.accounts: dict[UUID, Account | None] = {}  # every account, folded by its events' own mutate

    def consume(self, page: LogPage) -> None:
        try:
            self.fold_page(page)
        except InvariantViolation as violation:
            raise CheckFailed(f"[invariant_violated] {violation}") from None

    def finish(self, head: int) -> str:
        try:
            self.check_end(head)
        except InvariantViolation as violation:
            raise CheckFailed(f"[invariant_violated] {violation}") from None
        fold = self.fold
        return (f"money conserved (deposits {fmt(fold.deposits)} - withdrawals {fmt(fold.withdrawals)} + "
                f"contributions {fmt(fold.contributions)}), fund {fmt(fold.insurance_fund)} never negative, "
                f"{fold.loaded_through_snapshots} aggregate(s) loaded through snapshots equal their events")

    def fold_page(self, page: LogPage) -> None:
        """Fold one page; ``InvariantViolation`` when solvency fails at a command's end."""
        fold, rebuild, broken, accounts = self.fold, self.rebuilt, self._broken, self.accounts
        with decimal.localcontext(LEDGER_CONTEXT):
            decisions = self.decisions
            for notification, event in page.decoded():
                cls = type(event)
                fold.counts[cls.__qualname__] += 1
                if cls in COMMAND_ENDS:  # the previous command ended: its accounts and its decisions
                    _solvent(fold, notification.id)
                    properties.end_command(decisions, notification.id)
                handler = ON.get(cls)
                if handler is not None:
                    handler(fold, event)
                check = properties.ON.get(cls)
                if check is not None:
                    check(decisions, event)
                aggregate_id = notification.originator_id  # UUID | str to the library; ours are UUIDs
                if not isinstance(aggregate_id, UUID):
                    continue
                if cls is Account.Opened:
                    accounts[aggregate_id] = None
                if aggregate_id in accounts:
                    accounts[aggregate_id] = _mutated(event, accounts[aggregate_id])
                if rebuild and aggregate_id in rebuild and aggregate_id not in broken:
                    rebuild[aggregate_id] = _mutated(event, rebuild[aggregate_id])
                    if rebuild[aggregate_id] is None:
                        broken.add(aggregate_id)

    def check_end(self, head: int) -> None:
        """The checks of the whole log; ``InvariantViolation`` naming the first that fails."""
        fold = self.fold
        with decimal.localcontext(LEDGER_CONTEXT):
            _solvent(fold, head)
            properties.end_command(self.decisions, head + 1)
            _covered_end_at_zero_or_above(fold)
            _money_conserved(fold)
            _positions_net_to_zero(fold)
            _holders_match(fold)
            if fold.insurance_fund < ZERO:
                raise InvariantViolation(f"insurance_fund_not_negative: balance {fold.insurance_fund}")
            _closed_accounts_are_flat(fold)
            _allocations_sum_to_loss(fold)
            _replay_equals_live(self.app, fold, self.rebuilt, self.accounts)


def _mutated(event: Any, aggregate: Any) -> Any:
    """``aggregate`` after ``event`` by the event's own ``mutate``; None when it does not fold."""
    try:
        assert isinstance(event, Aggregate.Event), f"{type(event).__name__} is not an aggregate event"
        return event.mutate(aggregate)
    except Exception:
        return None


ON: Handlers[Fold] = Handlers()


@ON.register(Account.LiquidationDeferred)
def _deferred(fold: Fold, event: Account.LiquidationDeferred) -> None:
    fold.held_back.add(event.account)


@ON.register(Clearinghouse.LiquidationQueued)
def _queued(fold: Fold, event: Clearinghouse.LiquidationQueued) -> None:
    fold.held_back.add(event.account)


@ON.register(Account.MarginCallMet)
def _call_met(fold: Fold, event: Account.MarginCallMet) -> None:
    fold.held_back.discard(event.account)


@ON.register(Clearinghouse.LiquidationDequeued)
def _dequeued(fold: Fold, event: Clearinghouse.LiquidationDequeued) -> None:
    fold.held_back.discard(event.account)
    fold.dirty.add(event.account)


@ON.register(CommandRecord.Accepted)
def _accepted(fold: Fold, event: CommandRecord.Accepted) -> None:
    _covered_end_at_zero_or_above(fold)


@ON.register(Account.Opened)
def _opened(fold: Fold, event: Account.Opened) -> None:
    fold.account_ids[event.account] = event.originator_id


@ON.register(Account.Deposited)
def _deposited(fold: Fold, event: Account.Deposited) -> None:
    fold.deposits += event.amount
    _cash(fold, event.account, event.amount)


@ON.register(Account.Withdrawn)
def _withdrawn(fold: Fold, event: Account.Withdrawn) -> None:
    fold.withdrawals += event.amount
    _cash(fold, event.account, -event.amount)


@ON.register(Account.TradeFilled)
def _trade_filled(fold: Fold, event: Account.TradeFilled) -> None:
    _fill(fold, event.account, event.market, event.size_delta, event.price, event.realized_pnl)


@ON.register(Account.FillsRecorded)
def _fills_recorded(fold: Fold, event: Account.FillsRecorded) -> None:
    """One account's fills of a run: a command of its own (it ends the one before it), each
    fill folded as the ``TradeFilled`` it replaces and the account valued after it, as at the
    end of each trade (a trade changes its two accounts only, and no mark moves in a run)."""
    _covered_end_at_zero_or_above(fold)
    for fill in trade_fills(event):
        _fill(fold, fill.account, fill.market, fill.size_delta, fill.price, fill.realized_pnl)
        if fill.account not in fold.held_back and _equity(fold, fill.account) < ZERO:  # as at each trade's end
            raise InvariantViolation(f"solvency: {fill.account} ends trade {fill.trade_id} (recorded in the fills at "
                                     f"version {event.originator_version}) with equity {_equity(fold, fill.account)}")


@ON.register(Account.Liquidated)
def _liquidated(fold: Fold, event: Account.Liquidated) -> None:
    fold.held_back.discard(event.account)
    _fill(fold, event.account, event.market, event.size_delta, event.price_fill, event.realized_pnl, event.quote_fill)
    _cash(fold, event.account, -event.penalty)


@ON.register(Account.PositionTaken)
def _position_taken(fold: Fold, event: Account.PositionTaken) -> None:
    _fill(fold, event.account, event.market, event.size_delta, event.price, event.realized_pnl, event.quote)
    _cash(fold, event.account, event.fee_received)


@ON.register(Account.PositionSettled)
def _position_settled(fold: Fold, event: Account.PositionSettled) -> None:
    _fill(fold, event.account, event.market, -event.size, event.price_settlement, event.realized_pnl)


@ON.register(Account.FundingPaid)
def _funding_paid(fold: Fold, event: Account.FundingPaid) -> None:
    _cash(fold, event.account, event.amount)


@ON.register(Account.LossAllocated)
def _loss_allocated(fold: Fold, event: Account.LossAllocated) -> None:
    if fold.sizes[(event.account, event.market)] == ZERO:
        raise InvariantViolation(f"flat_accounts_pay_no_losses: {event.account} paid {event.share} in {event.market} "
                                 "with no position")
    fold.allocations.setdefault((event.loss_id, event.policy), [event.loss_total, ZERO])[1] += event.share
    _cash(fold, event.account, -event.share)


@ON.register(Account.LossCovered)
def _loss_covered(fold: Fold, event: Account.LossCovered) -> None:
    fold.held_back.discard(event.account)
    _cash(fold, event.account, event.fund_paid + event.allocated)
    fold.covered.add(event.account)  # checked when the command ends (after any deleveraging)


@ON.register(Account.AccountClosed)
def _closed(fold: Fold, event: Account.AccountClosed) -> None:
    fold.closed.add(event.account)


@ON.register(Market.Listed)
def _listed(fold: Fold, event: Market.Listed) -> None:
    fold.contract_sizes[event.market] = event.contract_size


@ON.register(Market.MarkPriceSet)
def _marked(fold: Fold, event: Market.MarkPriceSet) -> None:
    fold.marks[event.market] = event.price_mark
    unit = fold.unit_values[event.market] = event.price_mark * fold.contract_sizes[event.market]
    fold.dirty.update(fold.cushions.remarked(event.market, unit, fold.holders[event.market]))


@ON.register(Market.MarketSettled)
def _market_settled(fold: Fold, event: Market.MarketSettled) -> None:
    fold.marks[event.market] = event.price_settlement
    unit = fold.unit_values[event.market] = event.price_settlement * fold.contract_sizes[event.market]
    fold.dirty.update(fold.cushions.remarked(event.market, unit, fold.holders[event.market]))
    fold.holders_recorded[event.market] = set()


@ON.register(Market.HoldersChanged, Market.TradingRecorded)
def _holders_changed(fold: Fold, event: Any) -> None:
    """``HoldersChanged``, or ``TradingRecorded`` in logs before ADR 26 (the same two fields)."""
    recorded = fold.holders_recorded[event.market]
    recorded.difference_update(event.holders_removed)
    recorded.update(event.holders_added)


@ON.register(InsuranceFund.Established)
def _fund_established(fold: Fold, event: InsuranceFund.Established) -> None:
    fold.fund_established = True


@ON.register(InsuranceFund.Contributed)
def _contributed(fold: Fold, event: InsuranceFund.Contributed) -> None:
    if event.cause == FundCause.CONTRIBUTION:
        fold.contributions += event.amount
    fold.insurance_fund += event.amount


@ON.register(InsuranceFund.Drawn)
def _drawn(fold: Fold, event: InsuranceFund.Drawn) -> None:
    fold.insurance_fund -= event.amount
    if fold.insurance_fund < ZERO:
        raise InvariantViolation(f"insurance_fund_not_negative: balance {fold.insurance_fund} after a draw")


COMMAND_ENDS = properties.COMMAND_ENDS


def _solvent(fold: Fold, position: int) -> None:
    """Every account re-valued at the end of a command has equity >= 0 (``solvency``).

    The accounts re-valued are those whose cash or positions moved in the command and the
    holders a re-mark may have carried below zero (``clearing.audit.cushions``).
    """
    fold.commands_checked += 1
    held_back, cushions, holdings, sizes = fold.held_back, fold.cushions, fold.holdings, fold.sizes
    failing = []
    for account in fold.dirty:
        if account in held_back:
            cushions.unchecked(account, holdings[account])
            continue
        equity = _equity(fold, account)
        if equity < ZERO:
            failing.append(account)
        else:
            cushions.valued(account, equity, [(market, sizes[(account, market)]) for market in holdings[account]])
    if failing:
        account = min(failing)  # the first by name, whatever the order of the set
        raise InvariantViolation(f"solvency: {account} ends the command recorded at log position {position} with "
                                 f"equity {_equity(fold, account)}")
    fold.dirty.clear()


def _covered_end_at_zero_or_above(fold: Fold) -> None:
    """Accounts whose deficit the last command covered end it with equity >= 0."""
    for account in sorted(fold.covered):
        equity = _equity(fold, account)
        if equity < ZERO:
            raise InvariantViolation(f"bankrupt_accounts_end_at_zero_or_above: {account} left at equity {equity}")
    fold.covered.clear()


def _equity(fold: Fold, account: str) -> Decimal:
    """Cash plus open positions at the marks: the account's equity in the fold's own terms.

    Cross margin: a bankrupt slice of one position may leave collateral below zero while
    another position's gain keeps equity at or above zero; equity is what must not be
    negative once a deficit is covered.
    """
    equity = fold.quote[account]
    sizes, unit_values = fold.sizes, fold.unit_values
    for market in fold.holdings[account]:
        equity += sizes[(account, market)] * unit_values[market]
    return equity


def _cash(fold: Fold, account: str, amount: Decimal) -> None:
    fold.quote[account] += amount
    fold.collateral[account] += amount
    fold.dirty.add(account)


def _fill(
    fold: Fold, account: str, market: str, size_delta: Decimal, price: Decimal, realized: Decimal, quote: Decimal | None = None
) -> None:
    """Cash of a fill: the recorded ``quote`` when there is one (a deleveraging slice books
    the exact bankruptcy quote, off the tick), else ``-size_delta x price x contract``."""
    fold.quote[account] += -size_delta * price * fold.contract_sizes[market] if quote is None else quote
    size = fold.sizes[(account, market)] = fold.sizes[(account, market)] + size_delta
    fold.collateral[account] += realized
    fold.dirty.add(account)
    if size == ZERO:
        fold.holdings[account].discard(market)
        fold.holders[market].discard(account)
    else:
        fold.holdings[account].add(market)
        fold.holders[market].add(account)


def check_ledger(app: ClearingApplication) -> Fold:
    """Run every invariant; raise ``InvariantViolation`` naming the first that fails."""
    check = InvariantCheck(app)
    head = app.recorder.max_notification_id() or 0
    for page in read_log(app.recorder, app.mapper, stop=head):
        check.fold_page(page)
    check.check_end(head)
    return check.fold


def _money_conserved(fold: Fold) -> None:
    equity = ZERO
    for quote in fold.quote.values():
        equity += quote
    for (_, market), size in fold.sizes.items():
        if size != ZERO:
            equity += size * fold.marks[market] * fold.contract_sizes[market]
    expected = fold.deposits - fold.withdrawals + fold.contributions
    if equity + fold.insurance_fund != expected:
        raise InvariantViolation(
            f"money_conserved: equity {equity} + insurance fund {fold.insurance_fund} != "
            f"deposits {fold.deposits} - withdrawals {fold.withdrawals} + contributions {fold.contributions}"
        )


def _positions_net_to_zero(fold: Fold) -> None:
    net: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for (_, market), size in fold.sizes.items():
        net[market] += size
    for market, total in net.items():
        if total != ZERO:
            raise InvariantViolation(f"positions_net_to_zero: market {market} nets to {total}")


def _holders_match(fold: Fold) -> None:
    """The holders a price sweep values are the accounts with a position: a holder missing
    from the record would be left out of every sweep, so its calls would never be issued."""
    for market in fold.contract_sizes:
        holding = fold.holders[market]  # the fold's own: every account whose size there is not zero
        recorded = fold.holders_recorded[market]
        if recorded != holding:
            raise InvariantViolation(f"holders_match: {market} records holders {_names(recorded - holding)} without "
                                     f"a position and leaves out {_names(holding - recorded)}")


def _names(accounts: set[str]) -> str:
    return ", ".join(sorted(accounts)) or "none"


def _closed_accounts_are_flat(fold: Fold) -> None:
    for account in fold.closed:
        open_markets = [m for (a, m), size in fold.sizes.items() if a == account and size != ZERO]
        if open_markets or fold.collateral[account] != ZERO:
            raise InvariantViolation(f"closed_accounts_are_flat: {account} holds {open_markets}, "
                                     f"collateral {fold.collateral[account]}")


def _allocations_sum_to_loss(fold: Fold) -> None:
    for (loss_id, policy), (loss, shares) in fold.allocations.items():
        if shares != loss:
            raise InvariantViolation(f"allocations_sum_to_loss: {loss_id} ({policy}) shares {shares} != loss {loss}")


def _replay_equals_live(app: ClearingApplication, fold: Fold, aggregates: dict[UUID, Any],
                        accounts: dict[UUID, Account | None]) -> None:
    """The aggregates as the repository loads them agree with their events and with the fold.

    First the full state of every aggregate with a snapshot against its events-only rebuild
    (it names the first differing field), then the fold's own figures against every account
    as its events' own ``mutate`` built it during the read (``accounts``). For an account
    with a snapshot that is the aggregate the repository loads (just compared); for one
    without, the repository's load is that same fold of the same stored events, so it is
    not read and decoded a second time. An account whose events did not fold is loaded
    through the repository, whose error is then the finding.
    """
    for aggregate_id in stored_snapshot_ids(app):  # snapshots written while the log was read
        aggregates.setdefault(aggregate_id, None)
    finding, summary = live_equals_replay(app, aggregates)
    if finding is not None:
        raise InvariantViolation(f"replay_equals_live: {finding}")
    fold.loaded_through_snapshots = summary.aggregates
    for account, aggregate_id in fold.account_ids.items():
        folded = accounts.get(aggregate_id)
        rebuilt: Account = folded if folded is not None else app.repository.get(aggregate_id)
        costs = ZERO
        for market, position in rebuilt.positions.items():
            costs += position.cost
            if position.size != fold.sizes[(account, market)]:
                raise InvariantViolation(f"replay_equals_live: {account} size in {market} differs from the log")
        if rebuilt.collateral != fold.collateral[account] or rebuilt.collateral - costs != fold.quote[account]:
            raise InvariantViolation(f"replay_equals_live: {account} collateral or cash differs from the log")
    for market in fold.contract_sizes:
        loaded: Market = app.repository.get(ids.market_id(market))
        if loaded.price_mark != fold.marks.get(market):
            raise InvariantViolation(f"replay_equals_live: market {market} mark {loaded.price_mark} != "
                                     f"{fold.marks.get(market)} in the log")
        if set(loaded.holders) != fold.holders_recorded[market]:
            raise InvariantViolation(f"replay_equals_live: market {market} holders differ from the log")
    if fold.fund_established:
        fund: InsuranceFund = app.repository.get(ids.insurance_fund_id())
        balance = fund.balance
        if balance != fold.insurance_fund:
            raise InvariantViolation(f"replay_equals_live: insurance fund balance {balance} != {fold.insurance_fund} in the log")
