"""Ledger invariants, checked by an independent fold over the whole event log.

The fold reads every notification in order and keeps its own totals (deposits,
withdrawals, contributions, each account's collateral and positions, each market's mark),
without using the aggregates' code. It then checks:

* ``money_conserved``: sum over accounts of (collateral + unrealized PnL at the mark) plus
  the insurance fund equals deposits - withdrawals + contributions, exactly;
* ``positions_net_to_zero``: in every market longs equal shorts;
* ``open_interest_matches``: each market's recorded open interest equals its long sizes;
* ``insurance_fund_not_negative``;
* ``closed_accounts_are_flat``: no closed account holds a position or collateral;
* ``replay_equals_live``: every account rebuilt by the repository matches the fold.

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

from clearing.application import ClearingApplication
from clearing.errors import InvariantViolation
from clearing.money import LEDGER_CONTEXT, ZERO

PAGE = 5000


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
    contract_sizes: dict[str, Decimal] = field(default_factory=dict)
    closed: set[str] = field(default_factory=set)
    account_ids: dict[str, UUID] = field(default_factory=dict)
    open_interest_recorded: dict[str, Decimal] = field(default_factory=dict)


def fold_log(app: ClearingApplication) -> Fold:
    """Read the notification log from the start and fold it into totals."""
    fold = Fold()
    start = 1
    while notifications := app.recorder.select_notifications(start=start, limit=PAGE):
        for notification in notifications:
            _fold_event(fold, notification.topic.rsplit(":", 1)[-1], app.mapper.to_domain_event(notification))
        start = notifications[-1].id + 1
    return fold


def _fold_event(fold: Fold, kind: str, event: Any) -> None:
    if kind == "Account.Opened":
        fold.account_ids[event.account] = event.originator_id
    elif kind == "Account.Deposited":
        fold.deposits += event.amount
        fold.quote[event.account] += event.amount
        fold.collateral[event.account] += event.amount
    elif kind == "Account.Withdrawn":
        fold.withdrawals += event.amount
        fold.quote[event.account] -= event.amount
        fold.collateral[event.account] -= event.amount
    elif kind == "Account.TradeFilled":
        fold.quote[event.account] -= event.size_delta * event.price * fold.contract_sizes[event.market]
        fold.sizes[(event.account, event.market)] += event.size_delta
        fold.collateral[event.account] += event.realized_pnl
    elif kind == "Account.AccountClosed":
        fold.closed.add(event.account)
    elif kind == "Market.Listed":
        fold.contract_sizes[event.market] = event.contract_size
    elif kind == "Market.MarkPriceSet":
        fold.marks[event.market] = event.price_mark
    elif kind == "Market.TradingRecorded":
        fold.open_interest_recorded[event.market] = event.open_interest_after
    elif kind == "InsuranceFund.Contributed":
        fold.contributions += event.amount
        fold.insurance_fund += event.amount


def check_ledger(app: ClearingApplication) -> Fold:
    """Run every invariant; raise ``InvariantViolation`` naming the first that fails."""
    with decimal.localcontext(LEDGER_CONTEXT):
        fold = fold_log(app)
        _money_conserved(fold)
        _positions_net_to_zero(fold)
        _open_interest_matches(fold)
        if fold.insurance_fund < ZERO:
            raise InvariantViolation(f"insurance_fund_not_negative: balance {fold.insurance_fund}")
        _closed_accounts_are_flat(fold)
        _replay_equals_live(app, fold)
    return fold


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


def _open_interest_matches(fold: Fold) -> None:
    longs: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for (_, market), size in fold.sizes.items():
        longs[market] += max(size, ZERO)
    for market, recorded in fold.open_interest_recorded.items():
        if recorded != longs[market]:
            raise InvariantViolation(f"open_interest_matches: {market} records {recorded}, positions hold {longs[market]}")


def _closed_accounts_are_flat(fold: Fold) -> None:
    for account in fold.closed:
        open_markets = [m for (a, m), size in fold.sizes.items() if a == account and size != ZERO]
        if open_markets or fold.collateral[account] != ZERO:
            raise InvariantViolation(f"closed_accounts_are_flat: {account} holds {open_markets}, collateral {fold.collateral[account]}")


def _replay_equals_live(app: ClearingApplication, fold: Fold) -> None:
    """Each account rebuilt from its events agrees with the fold: sizes, collateral, cash."""
    for account, aggregate_id in fold.account_ids.items():
        rebuilt = app.repository.get(aggregate_id)
        costs = ZERO
        for market, position in rebuilt.positions.items():
            costs += position.cost
            if position.size != fold.sizes[(account, market)]:
                raise InvariantViolation(f"replay_equals_live: {account} size in {market} differs from the log")
        if rebuilt.collateral != fold.collateral[account] or rebuilt.collateral - costs != fold.quote[account]:
            raise InvariantViolation(f"replay_equals_live: {account} collateral or cash differs from the log")
