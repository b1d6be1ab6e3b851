"""The ``Market`` aggregate: contract terms, margin tiers, status and the mark price.

Commands check the rules and trigger one event that carries every number they decided;
each event's ``apply`` only assigns, so replay under newer code cannot re-decide history.

Mark price rules (``set_mark_price``): positive, on the tick, business time not before the
previous mark, and within the price band of the previous mark. Example: band 0.10 and
previous mark 50,000 accept 45,000..55,000; 56,000 is rejected as ``price_outside_band``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from clearing.domain.decision_order import InDecisionOrder
from clearing.domain.ids import market_id
from clearing.domain.margin import MarginTier, build_tiers
from clearing.errors import InputError, RuleError
from clearing.money import ZERO, Asset, exact, fmt, is_multiple, round_down

ACTIVE = "active"
CLOSED = "closed"
SETTLED = "settled"
PERPETUAL = "perpetual"
FUTURE = "future"


def _upcast_v1_v2(state: dict[str, Any]) -> None:
    """Snapshots before ADR 26 held open interest and volume, which readers now sum from the fills."""
    state.pop("open_interest", None)
    state.pop("volume_total", None)


class Market(InDecisionOrder):
    """A listed contract. Id: uuid5 of the symbol.

    Version 2 (ADR 26): the aggregate keeps no open interest or volume (the readers sum them
    from the fills); a version-1 snapshot is upcast by dropping them.
    """

    class_version = 2
    upcast_v1_v2 = staticmethod(_upcast_v1_v2)

    class Listed(Aggregate.Created):
        market: str
        kind: str
        expiry: datetime | None
        contract_size: Decimal
        tick_size: Decimal
        step_size: Decimal
        price_band: Decimal
        tiers: list[MarginTier]
        collateral_asset: str
        collateral_quantum: Decimal
        at: datetime

    @staticmethod
    def create_id(market: str) -> UUID:
        return market_id(market)

    def __init__(
        self,
        market: str,
        kind: str,
        expiry: datetime | None,
        contract_size: Decimal,
        tick_size: Decimal,
        step_size: Decimal,
        price_band: Decimal,
        tiers: list[MarginTier],
        collateral_asset: str,
        collateral_quantum: Decimal,
        at: datetime,
    ) -> None:
        self.market = market
        self.kind = kind
        self.expiry = expiry
        self.contract_size = contract_size
        self.tick_size = tick_size
        self.step_size = step_size
        self.price_band = price_band
        self.tiers = tuple(tiers)
        self.collateral_asset = collateral_asset
        self.collateral_quantum = collateral_quantum
        self.listed_at = at
        self.status = ACTIVE
        self.price_mark: Decimal | None = None
        self.price_mark_at: datetime | None = None
        self.closed_at: datetime | None = None
        self.holders: dict[str, bool] = {}  # ordered set (JSON-encodable for snapshots)
        self.overrides: dict[str, Any] = {}
        self.parameters_version = 0
        self.source_prices: dict[str, Decimal] = {}
        self.recent_marks: list[tuple[datetime, Decimal]] = []
        self.price_settlement: Decimal | None = None
        self.price_twap: Decimal | None = None
        self.funding_count = 0

    @property
    def mark(self) -> Decimal:
        """The mark price, for arithmetic: ``price_mark`` (the recorded attribute), which a
        market has from its first price on; ``no_mark_price`` before that.

        Callers that margin a position or decide on a price have already checked (a position
        exists only after a trade, and a trade needs a mark); the raise states it.
        """
        if self.price_mark is None:
            raise RuleError("no_mark_price", "market", f"market {self.market} has no mark price yet")
        return self.price_mark

    # -- events -------------------------------------------------------------------------

    class MarkPriceSet(Aggregate.Event):
        """A new mark: the posted price, or the median of the sources' latest prices.

        Carries the source that reported (if any), every source's latest price after it,
        and the time-weighted average of the marks over ``twap_window`` seconds before
        this one, so the liquidation deferral rule can be re-checked from the event alone.
        ``apply`` appends the mark to the window and drops points older than the window.
        """

        market: str
        price_mark: Decimal
        price_mark_previous: Decimal | None
        price_band: Decimal
        source: str | None
        source_price: Decimal | None
        source_prices_after: dict[str, Decimal]
        price_twap: Decimal
        twap_window: int
        at: datetime

        def apply(self, market: Market) -> None:
            market.price_mark = self.price_mark
            market.price_mark_at = self.at
            market.source_prices = dict(self.source_prices_after)
            market.price_twap = self.price_twap
            market.recent_marks = _window(market.recent_marks, self.at, self.twap_window)
            market.recent_marks.append((self.at, self.price_mark))

    class TradingRecorded(Aggregate.Event):
        """Written by versions before ADR 26, once per batch that traded the market: its
        trades, volume and open interest after, and the holders it added and removed.

        Kept so that old logs replay. Only the holders are applied: open interest and volume
        are summed from the fills by their readers (the projection's fold of every fill equals
        the figures these events carry, which is how the change was checked).
        """

        market: str
        trades: int
        volume: Decimal
        open_interest_after: Decimal
        volume_total_after: Decimal
        price_mark: Decimal | None
        holders_added: list[str]
        holders_removed: list[str]
        at: datetime

        def apply(self, market: Market) -> None:
            _change_holders(market, self.holders_added, self.holders_removed)

    class HoldersChanged(Aggregate.Event):
        """The accounts that became and stopped being holders of the market in one batch.

        Written only by a batch whose fills opened a position from flat or closed one to zero
        (ADR 26): a price sweep values the market's holders, so a trade in another process
        that adds a holder must move the market's version, which the price batch read. A
        batch that changes no holder writes nothing on the market, and its writers do not
        collide on it. Example: A (flat) buys 0.5 from B (short 1): A is added, B stays.
        """

        market: str
        holders_added: list[str]
        holders_removed: list[str]
        at: datetime

        def apply(self, market: Market) -> None:
            _change_holders(market, self.holders_added, self.holders_removed)

    class ParametersSet(Aggregate.Event):
        """Market overrides of the clearinghouse parameter defaults, versioned.

        ``governance``: how the change was authorized (rule, fingerprint, approved_by; ADR 10).
        """

        market: str
        changes: dict[str, Any]
        overrides_after: dict[str, Any]
        parameters_version: int
        at: datetime
        governance: dict[str, Any] | None = None  # absent on events older than governance

        def apply(self, market: Market) -> None:
            market.overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in self.overrides_after.items()}
            market.parameters_version = self.parameters_version

    class FundingApplied(Aggregate.Event):
        """One funding period: rate, the mark it was paid on, and the totals moved."""

        market: str
        rate: Decimal
        price_mark: Decimal
        paid_by_longs: Decimal
        accounts: int
        funding_count: int
        at: datetime

        def apply(self, market: Market) -> None:
            market.funding_count = self.funding_count

    class MarketSettled(Aggregate.Event):
        market: str
        price_settlement: Decimal
        positions_settled: int
        at: datetime

        def apply(self, market: Market) -> None:
            market.status = SETTLED
            market.price_settlement = self.price_settlement
            market.price_mark = self.price_settlement
            market.holders = {}

    class MarketClosed(Aggregate.Event):
        market: str
        at: datetime

        def apply(self, market: Market) -> None:
            market.status = CLOSED
            market.closed_at = self.at

    # -- commands -----------------------------------------------------------------------

    def set_mark_price(
        self, price: Decimal, at: datetime, source: str | None, sources: tuple[str, ...], twap_window: int
    ) -> None:
        """Record a price; with ``sources`` configured, the mark is their median.

        Checks: the market is not settled, the price is on the tick, business time does not
        go backwards, the reporting source is configured, and the new mark is within the
        price band of the previous one.
        """
        self.check_not_settled("it takes no more prices")
        self.check_price_on_tick(price, "price")
        if self.price_mark_at is not None and at < self.price_mark_at:
            raise RuleError(
                "stale_time",
                "at",
                f"{at.isoformat()} is before the last mark time {self.price_mark_at.isoformat()} of {self.market}",
            )
        prices = {name: value for name, value in self.source_prices.items() if name in sources}
        if sources:
            if source is None:
                raise RuleError("source_required", "source",
                                f"{self.market} marks at the median of {', '.join(sources)}; name the source")
            if source not in sources:
                raise RuleError("unknown_source", "source", f"{source} is not a price source of {self.market}")
            prices[source] = price
            mark = median_on_tick(list(prices.values()), self.tick_size)
        elif source is not None:
            raise RuleError("unknown_source", "source", f"{self.market} has no configured price sources")
        else:
            mark = price
        if self.price_mark is not None:
            self.check_within_band(mark, "price", "price_outside_band", "mark")
        self.trigger_event(
            self.MarkPriceSet,
            market=self.market,
            price_mark=mark,
            price_mark_previous=self.price_mark,
            price_band=self.price_band,
            source=source,
            source_price=price if source else None,
            source_prices_after=prices,
            price_twap=self.twap(at, twap_window, mark),
            twap_window=twap_window,
            at=at,
        )

    def twap(self, at: datetime, window_seconds: int, price_now: Decimal) -> Decimal:
        """Time-weighted average mark over ``window_seconds`` before ``at``, on the tick.

        Each mark holds until the next one. Example: 100 for 200 s then 110 for the last
        100 s of a 300 s window: (100 x 200 + 110 x 100) / 300 = 103.33 -> 103.3 (tick
        0.1, rounded down). Without history the TWAP is the price now.
        """
        points = _window(self.recent_marks, at, window_seconds)
        start = at - timedelta(seconds=window_seconds)
        weighted, seconds = ZERO, ZERO
        for index, (when, value) in enumerate(points):
            begin = max(when, start)
            end = points[index + 1][0] if index + 1 < len(points) else at
            duration = Decimal((end - begin).total_seconds()) if end > begin else ZERO
            weighted += value * duration
            seconds += duration
        if seconds == ZERO:
            return price_now
        return round_down(weighted / seconds, self.tick_size)

    def change_holders(self, added: list[str], removed: list[str], at: datetime) -> None:
        """Record a batch's holder changes (``HoldersChanged``); ``added``/``removed`` sorted."""
        self.trigger_event(self.HoldersChanged, market=self.market, holders_added=added, holders_removed=removed, at=at)

    def set_parameters(self, changes: dict[str, Any], at: datetime, governance: dict[str, Any]) -> None:
        """Override defaults; ``governance`` was decided by the clearinghouse (``authorize``)."""
        overrides = {k: list(v) if isinstance(v, tuple) else v for k, v in {**self.overrides, **changes}.items()}
        self.trigger_event(
            self.ParametersSet,
            market=self.market,
            changes={k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()},
            overrides_after=overrides,
            parameters_version=self.parameters_version + 1,
            at=at,
            governance=governance,
        )

    def close(self, at: datetime) -> None:
        """Stop trading in this market; prices are still accepted for marking."""
        if self.status != ACTIVE:
            raise RuleError("market_closed", "market", f"market {self.market} is already {self.status}")
        self.trigger_event(self.MarketClosed, market=self.market, at=at)

    # -- checks used by trading ---------------------------------------------------------

    def check_open_for_trading(self, at: datetime) -> Decimal:
        """Return the mark price if the market accepts trades at ``at``."""
        if self.status != ACTIVE:
            raise RuleError("market_closed", "market", f"market {self.market} is {self.status}")
        if self.expiry is not None and at >= self.expiry:
            raise RuleError("market_expired", "at", f"market {self.market} expired at {self.expiry.isoformat()}")
        return self.mark

    def check_not_settled(self, consequence: str) -> None:
        if self.status == SETTLED:
            raise RuleError("market_settled", "market", f"market {self.market} is settled; {consequence}")

    def check_price_on_tick(self, price: Decimal, field: str) -> None:
        if price <= ZERO:
            raise InputError("not_positive", field, f"{field} must be positive, got {fmt(price)}")
        if not is_multiple(price, self.tick_size):
            raise RuleError("price_off_tick", field, f"{field} {fmt(price)} is not a multiple of tick size {fmt(self.tick_size)}")

    def check_size_on_step(self, size: Decimal, field: str) -> None:
        if size <= ZERO:
            raise InputError("not_positive", field, f"{field} must be positive, got {fmt(size)}")
        if not is_multiple(size, self.step_size):
            raise RuleError("size_off_step", field, f"{field} {fmt(size)} is not a multiple of step size {fmt(self.step_size)}")

    def check_within_band(self, price: Decimal, field: str, code: str, what: str) -> None:
        """Reject ``price`` more than ``price_band`` (a fraction) away from the mark."""
        assert self.price_mark is not None
        limit = self.price_mark * self.price_band
        if abs(price - self.price_mark) > limit:
            low, high = self.price_mark - limit, self.price_mark + limit
            raise RuleError(
                code,
                field,
                f"{field} {fmt(price)} is outside the {what} band {fmt(low)}..{fmt(high)} of {self.market} "
                f"(mark {fmt(self.price_mark)}, band {fmt(self.price_band)})",
            )


def _window(points: list[tuple[datetime, Decimal]], at: datetime, window_seconds: int) -> list[tuple[datetime, Decimal]]:
    """The points still needed for a TWAP at ``at``: those in the window plus the one before."""
    start = at - timedelta(seconds=window_seconds)
    first = 0
    for index, (when, _) in enumerate(points):
        if when <= start:
            first = index
    return points[first:]


@exact
def median_on_tick(prices: list[Decimal], tick: Decimal) -> Decimal:
    """Median of the sources' prices; an even count averages the middle two, rounded down.

    Example: 100.0, 100.2, 250.0 -> 100.2 (one bad source cannot move the mark); 100.0 and
    100.3 -> 100.15 -> 100.1 on a 0.1 tick.
    """
    ordered = sorted(prices)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return round_down((ordered[middle - 1] + ordered[middle]) / 2, tick)


def list_market(
    market: str,
    kind: str,
    expiry: datetime | None,
    contract_size: Decimal,
    tick_size: Decimal,
    step_size: Decimal,
    brackets: list[tuple[Decimal, Decimal, Decimal]],
    price_band: Decimal,
    collateral: Asset,
    at: datetime,
) -> Market:
    """Validate contract terms and list a market (its ``Listed`` event records the tiers).

    ``brackets`` are ``(notional_floor, initial_fraction, maintenance_fraction)``. The
    smallest trade notional, tick x step x contract size, must be a whole number of
    collateral quanta, so every trade settles exactly without rounding: tick 0.1 and step
    0.001 give 0.0001 USDC, a multiple of 0.000001; tick 0.5 and step 0.0000001 do not.
    """
    _check_expiry(kind, expiry, at)
    _check_brackets(brackets)
    smallest_notional = tick_size * step_size * contract_size
    if not is_multiple(smallest_notional, collateral.quantum):
        raise RuleError(
            "incompatible_quanta",
            "tick_size",
            f"tick_size x step_size x contract_size = {fmt(smallest_notional)} is not a multiple of the "
            f"{collateral.symbol} quantum {fmt(collateral.quantum)}",
        )
    return Market(
        market=market,
        kind=kind,
        expiry=expiry,
        contract_size=contract_size,
        tick_size=tick_size,
        step_size=step_size,
        price_band=price_band,
        tiers=list(build_tiers(brackets)),
        collateral_asset=collateral.symbol,
        collateral_quantum=collateral.quantum,
        at=at,
    )


def _check_expiry(kind: str, expiry: datetime | None, at: datetime) -> None:
    if kind == FUTURE and expiry is None:
        raise RuleError("expiry_required", "expiry", "a future needs an expiry time")
    if kind == PERPETUAL and expiry is not None:
        raise RuleError("expiry_not_allowed", "expiry", "a perpetual has no expiry")
    if expiry is not None and expiry <= at:
        raise RuleError("expiry_in_past", "expiry", f"expiry {expiry.isoformat()} is not after {at.isoformat()}")


def _check_brackets(brackets: list[tuple[Decimal, Decimal, Decimal]]) -> None:
    """First floor 0, floors increasing, fractions non-decreasing, maintenance <= initial."""
    previous: tuple[Decimal, Decimal, Decimal] | None = None
    for index, (floor, initial, maintenance) in enumerate(brackets):
        if maintenance > initial:
            raise RuleError(
                "invalid_margin_fractions",
                f"tiers.{index}.maintenance_margin_fraction" if len(brackets) > 1 else "maintenance_margin_fraction",
                f"maintenance fraction {fmt(maintenance)} is above initial fraction {fmt(initial)}",
            )
        if previous is None:
            if floor != ZERO:
                raise RuleError("invalid_tiers", f"tiers.{index}.notional_floor", "the first tier must start at 0")
        elif floor <= previous[0] or initial < previous[1] or maintenance < previous[2]:
            raise RuleError(
                "invalid_tiers",
                f"tiers.{index}",
                "tier floors must increase and margin fractions must not decrease from tier to tier",
            )
        previous = (floor, initial, maintenance)


def _change_holders(market: Market, added: list[str], removed: list[str]) -> None:
    for name in removed:
        market.holders.pop(name, None)
    market.holders.update(dict.fromkeys(added, True))
