"""Projection ``margin``: accounts, positions and markets now, per-day flows, end-of-day state.

Tables (``<table>_g<N>``):

* ``margin_accounts``: collateral, status, risk status, the open margin call (its market,
  times, the amount called, the amount still due after ``MarginCallPaid`` and the rule it
  was issued under), totals;
* ``margin_positions``: size, entry cost and realized PnL per account and market;
* ``margin_markets``: contract terms, tiers, mark, and open interest (sum of long sizes),
  volume and trades summed fill by fill (ADR 26: the market records no totals);
* ``margin_flows``: per account and business day: deposits, withdrawals, realized PnL,
  funding, penalties, liquidator fees, loss shares, calls issued and met, largest call;
* ``margin_eod_accounts`` / ``margin_eod_positions`` / ``margin_eod_markets``: the state at
  the end of each business day, with equity, requirements and liquidation prices computed
  on that day's closing marks;
* ``margin_clock``: the business clock (one row);
* ``margin_cp_accounts`` / ``margin_cp_positions`` / ``margin_cp_markets`` /
  ``margin_cp_flows`` and ``margin_checkpoints``: the state every ``checkpoints.EVERY`` log
  positions, from which ``--as-of`` replays only the tail (``projections.checkpoints``).

Stored are the exact inputs (collateral, size, cost, marks, tiers) that the events carry
as "after" values; equity, requirements and liquidation prices are computed from them
with the domain's own margin functions when read (``projections.queries``), because they
change with every mark and would otherwise be rewritten for every holder on every price.

Business day: the UTC date of the latest business time (``at``) seen in the log so far.
When an event moves it to a later date, the state just before that event is the end of
the previous day (``margin_eod_*``). Example: events at 10-10 23:59 then 10-11 00:01 ->
end-of-day 2025-10-10 is the state after the 23:59 event.
"""

from __future__ import annotations

import decimal
import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, Integer, String, Text, select

from clearing.domain.account import AccountStatus, Position, RiskStatus
from clearing.domain.margin import MarginTier
from clearing.domain.risk.totals import account_margin
from clearing.money import LEDGER_CONTEXT, ZERO, fmt
from projections import checkpoints
from projections.base import Projection, TableSpec, clock_spec
from projections.store import ExactDecimal

N = ExactDecimal


def _money(*names: str) -> list[Column[Any]]:
    return [Column(name, N, nullable=False) for name in names]


FLOW_FIELDS = ("deposits", "withdrawals", "realized_pnl", "funding", "penalties", "liquidator_fees",
               "loss_shares", "loss_covered", "largest_call")
FLOW_COUNTS = ("trades", "calls_issued", "calls_met", "liquidation_fills")
ACCOUNT_TOTALS = ("deposits", "withdrawals", "realized_pnl", "funding", "penalties", "loss_shares")

ACCOUNTS = TableSpec("margin_accounts", [
    Column("account", String(128), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("risk_status", String(16), nullable=False),
    *_money("collateral", *ACCOUNT_TOTALS),
    Column("call_market", String(64)),
    Column("call_issued_at", Text),
    Column("call_deadline", Text),
    Column("call_amount", N),
    Column("call_due", N),
    Column("call_rule", String(16)),
    Column("opened_at", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("position", Integer, nullable=False),
], ("account",))

POSITIONS = TableSpec("margin_positions", [
    Column("account", String(128), primary_key=True),
    Column("market", String(64), primary_key=True),
    *_money("size", "cost", "realized_pnl", "funding"),
    Column("position", Integer, nullable=False),
], ("account", "market"))

MARKETS = TableSpec("margin_markets", [
    Column("market", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("expiry", Text),
    *_money("contract_size", "tick_size", "step_size", "price_band", "collateral_quantum", "open_interest", "volume"),
    Column("collateral_asset", String(16), nullable=False),
    Column("tiers", Text, nullable=False),
    Column("mark", N),
    Column("mark_at", Text),
    Column("price_settlement", N),
    Column("listed_at", Text, nullable=False),
    Column("trades", Integer, nullable=False),
    Column("position", Integer, nullable=False),
], ("market",))

FLOWS = TableSpec("margin_flows", [
    Column("day", String(10), primary_key=True),
    Column("account", String(128), primary_key=True),
    *_money(*FLOW_FIELDS),
    *[Column(name, Integer, nullable=False) for name in FLOW_COUNTS],
], ("day", "account"))

CLOCK = clock_spec("margin_clock")

EOD_ACCOUNTS = TableSpec("margin_eod_accounts", [
    Column("day", String(10), primary_key=True),
    Column("account", String(128), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("risk_status", String(16), nullable=False),
    *_money("collateral", "equity", "unrealized_pnl", "initial_margin", "maintenance_margin", "free_collateral"),
    Column("margin_ratio", N),
    Column("positions", Integer, nullable=False),
    Column("call_amount", N),
    Column("as_of_position", Integer, nullable=False),
], ("day", "account"), kind="append")

EOD_POSITIONS = TableSpec("margin_eod_positions", [
    Column("day", String(10), primary_key=True),
    Column("account", String(128), primary_key=True),
    Column("market", String(64), primary_key=True),
    *_money("size", "cost", "entry_price", "mark", "notional", "unrealized_pnl", "realized_pnl",
            "initial_margin", "maintenance_margin"),
    Column("liquidation_price", N),
], ("day", "account", "market"), kind="append")

EOD_MARKETS = TableSpec("margin_eod_markets", [
    Column("day", String(10), primary_key=True),
    Column("market", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("mark", N),
    *_money("open_interest", "volume", "long_size", "short_size"),
    Column("holders", Integer, nullable=False),
    Column("as_of_position", Integer, nullable=False),
], ("day", "market"), kind="append")


class MarketTerms:
    """A ``margin_markets`` row in the shape the domain's margin functions take."""

    __slots__ = ("collateral_quantum", "contract_size", "market", "price_mark", "tick_size", "tiers")

    def __init__(self, row: dict[str, Any]) -> None:
        self.market: str = row["market"]
        self.contract_size: Decimal = row["contract_size"]
        self.tick_size: Decimal = row["tick_size"]
        self.tiers: tuple[MarginTier, ...] = tiers_from_text(row["tiers"])
        self.collateral_quantum: Decimal = row["collateral_quantum"]
        self.price_mark: Decimal | None = row["mark"]


def tiers_to_text(tiers: Any) -> str:
    return json.dumps([[fmt(t.notional_floor), fmt(t.initial_margin_fraction), fmt(t.maintenance_margin_fraction),
                        fmt(t.initial_margin_deduction), fmt(t.maintenance_margin_deduction)] for t in tiers])


def tiers_from_text(text: str) -> tuple[MarginTier, ...]:
    return tuple(MarginTier(*(Decimal(value) for value in tier)) for tier in json.loads(text))


def call_rule(event: Any) -> str:
    """The rule a ``MarginCallIssued`` was issued under; logs before issue 8 met calls at maintenance."""
    rule: str = event.parameters.get("margin_call_rule", "maintenance")
    return rule


def _iso(at: Any) -> str | None:
    return None if at is None else at.isoformat()


class MarginProjection(Projection):
    NAME = "margin"
    DESCRIPTION = "accounts, positions, markets, daily flows and end-of-day margin state"
    SPECS = (ACCOUNTS, POSITIONS, MARKETS, FLOWS, CLOCK, EOD_ACCOUNTS, EOD_POSITIONS, EOD_MARKETS,
             *checkpoints.specs({spec.name: spec for spec in (ACCOUNTS, POSITIONS, MARKETS, FLOWS)}))
    CLOCK = "margin_clock"

    def handlers(self) -> dict[str, Callable[[int, Any, Any], None]]:
        return {
            "Account.Opened": self._opened,
            "Account.Deposited": self._deposited,
            "Account.Withdrawn": self._withdrawn,
            "Account.TradeFilled": self._traded,
            "Account.AccountClosed": self._closed,
            "Account.MarginCallIssued": self._call_issued,
            "Account.MarginCallPaid": self._call_paid,
            "Account.MarginCallMet": self._call_met,
            "Account.Liquidated": self._liquidated,
            "Account.PositionTaken": self._taken,
            "Account.LossCovered": self._loss_covered,
            "Account.LossAllocated": self._loss_allocated,
            "Account.FundingPaid": self._funding,
            "Account.PositionSettled": self._settled,
            "Account.LiquidationDeferred": self._deferred,
            "Account.TakeoverRefused": self._deferred,
            "Account.RecoveredFromBankruptcy": self._recovered,
            "Market.Listed": self._listed,
            "Market.MarkPriceSet": self._marked,
            "Market.HoldersChanged": self._holders_changed,
            "Market.TradingRecorded": self._holders_changed,
            "Market.MarketSettled": self._market_settled,
            "Market.MarketClosed": self._market_closed,
        }

    # -- the business clock ---------------------------------------------------------------

    def on_day_closed(self, day: str, as_of_position: int) -> None:
        """Write the end-of-day rows of ``day`` from the state as it stands now.

        The day's flow rows are then dropped from memory: flows are booked on the current
        business day only, so they are never touched again (memory stays flat over days).
        """
        self.flush(self.session)
        self.state["margin_flows"].cache.clear()
        if not self.end_of_day_rows:
            return
        for table, row in end_of_day_rows(self.session, self.tables, day, as_of_position):
            self.append(table, row)

    #: False for a replay that serves a query as of a point (``projections.replay.replay_views``):
    #: the queries read the state tables only, which end-of-day rows never feed back into
    end_of_day_rows = True

    def at_position(self, position: int) -> None:
        self.checkpoint_due = checkpoints.due_after(position)

    def checkpoint(self, position: int) -> None:
        """Copy the state as of the multiple of ``checkpoints.EVERY`` before ``position``."""
        boundary = checkpoints.label(position)
        self.checkpoint_due = boundary + checkpoints.EVERY
        clock = self.state[self.CLOCK].get(1)
        if boundary == 0 or clock is None:  # nothing applied yet: nothing to copy
            return
        self.flush(self.session)
        checkpoints.write(self.session, self.tables, boundary, clock)

    def _flow(self, position: int, event: Any, account: str) -> dict[str, Any]:
        day = self.day
        key = (day, account)
        rows = self.state["margin_flows"]
        row = rows.touch(key)
        if row is None:
            row = rows.put(key, {"day": day, "account": account, **dict.fromkeys(FLOW_FIELDS, ZERO),
                                 **dict.fromkeys(FLOW_COUNTS, 0)})
        return row

    # -- accounts -----------------------------------------------------------------------

    def _account(self, position: int, event: Any) -> dict[str, Any]:
        row = self.state["margin_accounts"].touch(event.account)
        assert row is not None, f"account {event.account} has no row (position {position})"
        row["version"] = event.originator_version
        row["position"] = position
        return row

    def _position(self, position: int, event: Any, size: Decimal, cost: Decimal, realized: Decimal) -> Decimal:
        """Set the account's position after a fill; returns the open-interest change (longs)."""
        key = (event.account, event.market)
        rows = self.state["margin_positions"]
        row = rows.touch(key)
        if row is None:
            row = rows.put(key, {"account": event.account, "market": event.market, "size": ZERO, "cost": ZERO,
                                 "realized_pnl": ZERO, "funding": ZERO, "position": position})
        change: Decimal = max(size, ZERO) - max(row["size"], ZERO)
        row["size"] = size
        row["cost"] = cost
        row["realized_pnl"] += realized
        row["position"] = position
        return change

    def _opened(self, position: int, event: Any, _: Any) -> None:
        self.state["margin_accounts"].put(event.account, {
            "account": event.account, "status": AccountStatus.OPEN, "risk_status": RiskStatus.HEALTHY,
            "collateral": ZERO, **dict.fromkeys(ACCOUNT_TOTALS, ZERO),
            "call_market": None, "call_issued_at": None, "call_deadline": None, "call_amount": None,
            "call_due": None, "call_rule": None,
            "opened_at": event.at.isoformat(), "version": event.originator_version, "position": position,
        })

    def _move(self, position: int, event: Any, collateral_after: Decimal, **amounts: Any) -> dict[str, Any]:
        """Set the account's collateral and add each amount to its total and the day's flow.

        ``_move(p, e, 1500, deposits=500)``: collateral 1,500, ``deposits`` + 500 on the
        account and in today's ``margin_flows`` row. Amounts the account keeps no total of
        (``trades``, ``liquidator_fees``, ...) go to the flow only.
        """
        row = self._account(position, event)
        row["collateral"] = collateral_after
        flow = self._flow(position, event, event.account)
        for name, amount in amounts.items():
            if name in ACCOUNT_TOTALS:
                row[name] += amount
            flow[name] += amount
        return row

    def _fill(self, position: int, event: Any, size: Decimal, cost: Decimal, volume: Decimal = ZERO,
              **amounts: Any) -> dict[str, Any]:
        """A fill on the account's side: position after it, collateral, realized PnL, flows,
        and the market's open interest, volume and trades.

        ``volume`` is the fill's size, given by one side of each fill only (the buyer of a
        trade, the liquidated account of a liquidation step), so each is counted once.
        Example: A (flat) buys 0.3 from B (flat): A's fill adds 0.3 to open interest and 0.3
        to volume, B's (short 0.3) adds neither.
        """
        row = self._move(position, event, event.collateral_after, **amounts)
        change = self._position(position, event, size, cost, amounts.get("realized_pnl", ZERO))
        if change or volume:
            market = self._market(position, event)
            market["open_interest"] += change
            market["volume"] += volume
            market["trades"] += 1 if volume else 0
        return row

    def _deposited(self, position: int, event: Any, _: Any) -> None:
        self._move(position, event, event.collateral_after, deposits=event.amount)

    def _withdrawn(self, position: int, event: Any, _: Any) -> None:
        self._move(position, event, event.collateral_after, withdrawals=event.amount)

    def _traded(self, position: int, event: Any, _: Any) -> None:
        self._fill(position, event, event.position_size_after, event.position_cost_after,
                   max(event.size_delta, ZERO), realized_pnl=event.realized_pnl, trades=1)

    def _closed(self, position: int, event: Any, _: Any) -> None:
        self._account(position, event)["status"] = "closed"

    def _call_issued(self, position: int, event: Any, _: Any) -> None:
        row = self._account(position, event)
        row.update(risk_status=RiskStatus.MARGIN_CALL, call_market=event.market, call_issued_at=event.at.isoformat(),
                   call_deadline=event.deadline.isoformat(), call_amount=event.amount_to_initial,
                   call_due=event.amount_to_initial, call_rule=call_rule(event))
        flow = self._flow(position, event, event.account)
        flow["calls_issued"] += 1
        flow["largest_call"] = max(flow["largest_call"], event.amount_to_initial)

    def _call_paid(self, position: int, event: Any, _: Any) -> None:
        row = self._account(position, event)
        if row["call_deadline"] is not None:
            row["call_due"] = event.amount_due

    def _clear_call(self, row: dict[str, Any]) -> None:
        row.update(call_market=None, call_issued_at=None, call_deadline=None, call_amount=None, call_due=None,
                   call_rule=None)

    def _call_met(self, position: int, event: Any, _: Any) -> None:
        row = self._account(position, event)
        row["risk_status"] = RiskStatus.HEALTHY
        self._clear_call(row)
        self._flow(position, event, event.account)["calls_met"] += 1

    def _liquidated(self, position: int, event: Any, _: Any) -> None:
        row = self._fill(position, event, event.position_size_after, event.position_cost_after, abs(event.size_delta),
                         realized_pnl=event.realized_pnl, penalties=event.penalty, liquidation_fills=1)
        row["risk_status"] = event.risk_status_after
        if event.risk_status_after in (RiskStatus.HEALTHY, RiskStatus.BANKRUPT):
            self._clear_call(row)

    def _taken(self, position: int, event: Any, _: Any) -> None:
        self._fill(position, event, event.position_size_after, event.position_cost_after,
                   realized_pnl=event.realized_pnl, liquidator_fees=event.fee_received)

    def _loss_covered(self, position: int, event: Any, _: Any) -> None:
        row = self._move(position, event, event.collateral_after, loss_covered=event.fund_paid + event.allocated)
        row["risk_status"] = RiskStatus.BANKRUPT
        self._clear_call(row)

    def _loss_allocated(self, position: int, event: Any, _: Any) -> None:
        self._move(position, event, event.collateral_after, loss_shares=event.share)

    def _funding(self, position: int, event: Any, _: Any) -> None:
        self._move(position, event, event.collateral_after, funding=event.amount)
        position_row = self.state["margin_positions"].touch((event.account, event.market))
        if position_row is not None:
            position_row["funding"] += event.amount

    def _settled(self, position: int, event: Any, _: Any) -> None:
        """A position closed by settlement: the market's open interest is zeroed by ``MarketSettled``."""
        self._move(position, event, event.collateral_after, realized_pnl=event.realized_pnl)
        self._position(position, event, ZERO, ZERO, event.realized_pnl)

    def _deferred(self, position: int, event: Any, _: Any) -> None:
        """``LiquidationDeferred`` or ``TakeoverRefused``: the account is being liquidated."""
        row = self._account(position, event)
        if row["risk_status"] != RiskStatus.BANKRUPT:
            row["risk_status"] = RiskStatus.LIQUIDATING

    def _recovered(self, position: int, event: Any, _: Any) -> None:
        self._account(position, event)["risk_status"] = RiskStatus.HEALTHY

    # -- markets --------------------------------------------------------------------------

    def _market(self, position: int, event: Any) -> dict[str, Any]:
        row = self.state["margin_markets"].touch(event.market)
        assert row is not None, f"market {event.market} has no row (position {position})"
        row["position"] = position
        return row

    def _listed(self, position: int, event: Any, _: Any) -> None:
        self.state["margin_markets"].put(event.market, {
            "market": event.market, "kind": event.kind, "status": "active", "expiry": _iso(event.expiry),
            "contract_size": event.contract_size, "tick_size": event.tick_size, "step_size": event.step_size,
            "price_band": event.price_band, "collateral_quantum": event.collateral_quantum, "open_interest": ZERO, "volume": ZERO,
            "trades": 0, "collateral_asset": event.collateral_asset, "tiers": tiers_to_text(event.tiers), "mark": None,
            "mark_at": None, "price_settlement": None, "listed_at": event.at.isoformat(), "position": position,
        })

    def _marked(self, position: int, event: Any, _: Any) -> None:
        row = self._market(position, event)
        row["mark"] = event.price_mark
        row["mark_at"] = event.at.isoformat()

    def _holders_changed(self, position: int, event: Any, _: Any) -> None:
        """A batch's holder changes (``TradingRecorded`` before ADR 26, whose open interest and
        volume are not read: the fills give both). It moves the market row's position and the
        business clock, as the batch's last event."""
        self._market(position, event)

    def _market_settled(self, position: int, event: Any, _: Any) -> None:
        row = self._market(position, event)
        row.update(status="settled", price_settlement=event.price_settlement, mark=event.price_settlement,
                   open_interest=ZERO)

    def _market_closed(self, position: int, event: Any, _: Any) -> None:
        self._market(position, event)["status"] = "closed"


# -- end of day ----------------------------------------------------------------------------


def iter_table(session: Any, table: Any, *order: str) -> Iterator[dict[str, Any]]:
    """Rows of ``table`` in key order, streamed."""
    result = session.execute(select(table).order_by(*[table.c[name] for name in order]))
    for row in result.mappings():
        yield dict(row)


def end_of_day_rows(session: Any, tables: dict[str, Any], day: str, as_of_position: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """EOD rows for every account and market, computed on the current marks.

    Accounts are streamed; open positions (size != 0) are held in memory by account, so
    memory grows with the number of open positions, not with the length of the log.
    The body runs under ``LEDGER_CONTEXT`` itself (a decorator would leave the generator's
    body at the default 28 digits).
    """
    with decimal.localcontext(LEDGER_CONTEXT):
        yield from _end_of_day_rows(session, tables, day, as_of_position)


def _end_of_day_rows(session: Any, tables: dict[str, Any], day: str, as_of_position: int) -> Iterator[tuple[str, dict[str, Any]]]:
    markets = {row["market"]: row for row in iter_table(session, tables["margin_markets"], "market")}
    terms = {name: MarketTerms(row) for name, row in markets.items()}
    totals: dict[str, dict[str, Decimal | int]] = {
        name: {"long_size": ZERO, "short_size": ZERO, "holders": 0} for name in markets}
    table = tables["margin_positions"]
    held: dict[str, list[dict[str, Any]]] = {}
    for found in session.execute(select(table).where(table.c.size != ZERO).order_by(table.c.market)).mappings():
        row = dict(found)
        held.setdefault(row["account"], []).append(row)
        side = "long_size" if row["size"] > ZERO else "short_size"
        totals[row["market"]][side] += abs(row["size"])
        totals[row["market"]]["holders"] += 1
    for account in iter_table(session, tables["margin_accounts"], "account"):
        yield from _account_eod(day, account, held.get(account["account"], []), terms, as_of_position)
    for name, row in markets.items():
        yield "margin_eod_markets", {"day": day, "market": name, "status": row["status"], "mark": row["mark"],
                                     "open_interest": row["open_interest"], "volume": row["volume"],
                                     **totals[name], "as_of_position": as_of_position}


def _account_eod(day: str, account: dict[str, Any], open_rows: list[dict[str, Any]], terms: dict[str, MarketTerms],
                 as_of_position: int) -> Iterator[tuple[str, dict[str, Any]]]:
    positions = {row["market"]: Position(row["size"], row["cost"], row["realized_pnl"]) for row in open_rows}
    margin = account_margin(account["collateral"], positions, {name: terms[name] for name in positions})
    unrealized = margin.equity - margin.collateral
    yield "margin_eod_accounts", {
        "day": day, "account": account["account"], "status": account["status"], "risk_status": account["risk_status"],
        "collateral": margin.collateral, "equity": margin.equity, "unrealized_pnl": unrealized,
        "initial_margin": margin.initial_margin, "maintenance_margin": margin.maintenance_margin,
        "free_collateral": margin.free_collateral, "margin_ratio": margin.margin_ratio, "positions": len(positions),
        "call_amount": account["call_amount"], "as_of_position": as_of_position,
    }
    for row in margin.positions:
        yield "margin_eod_positions", {
            "day": day, "account": account["account"], "market": row.market, "size": row.size,
            "cost": positions[row.market].cost, "entry_price": row.entry_price, "mark": row.mark_price,
            "notional": row.notional, "unrealized_pnl": row.unrealized_pnl, "realized_pnl": row.realized_pnl,
            "initial_margin": row.initial_margin, "maintenance_margin": row.maintenance_margin,
            "liquidation_price": row.liquidation_price,
        }
