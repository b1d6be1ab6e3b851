"""Formulas of the risk engine: pure functions on Decimals, each with its published source.

Groundwork for margin calls and liquidation (issue 3); nothing calls these yet. Every
function is checked against the public vectors in ``clearing-mechanics.md`` in
``tests/unit/test_liquidation_math.py``. Amounts are in collateral units (USDC), sizes in
contracts; callers pass the quantum to round to, and each function says which way it rounds.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TypeVar

from clearing.money import ONE, ZERO, exact, round_down, round_up

_Key = TypeVar("_Key", bound=Hashable)


@exact
def bankruptcy_quote(
    size: Decimal,
    delta: Decimal,
    price: Decimal,
    contract_size: Decimal,
    maintenance_before: Decimal,
    maintenance_after: Decimal,
    equity_total: Decimal,
    maintenance_total: Decimal,
    quantum: Decimal,
) -> Decimal:
    """Quote the account receives (+) or pays (-) to close ``delta`` at its bankruptcy price.

    dYdX v4 ``GetBankruptcyPriceInQuoteQuantums``: ``-DNNV - TNC x |DMMR| / TMMR``, where
    DNNV is the change of the position's value at ``price`` and DMMR the change of its
    maintenance requirement. Rounded toward +infinity, so an account closed at this quote
    ends at or above zero and the insurance fund never pays for rounding.

    Example (vector B1): long 0.1 BTC at 50,000, USDC -4,501, MMF 10%: TNC 499, TMMR 500,
    closing all: 5,000 - 499 x 500 / 500 = 4,501.
    """
    if ZERO in (size, delta) or (size > ZERO) == (delta > ZERO) or abs(delta) > abs(size):
        raise ValueError(f"delta {delta} must reduce the position {size} without flipping it")
    if maintenance_after > maintenance_before or maintenance_total <= ZERO:
        raise ValueError("closing must not raise the maintenance requirement, and the total must be positive")
    value_change = delta * price * contract_size
    requirement_change = maintenance_before - maintenance_after
    return round_up(-value_change - equity_total * requirement_change / maintenance_total, quantum)


@exact
def bankruptcy_price(quote: Decimal, delta: Decimal, contract_size: Decimal, tick_size: Decimal) -> Decimal:
    """Per-contract price of ``bankruptcy_quote``: ``-quote / (delta x contract size)``.

    Rounded against the account on the tick: down when it sells (closing a long), up when
    it buys (closing a short). B1: 4,501 for selling 0.1 -> 45,010; a short buying back 1
    with a quote of -50,499.50 at tick 1 -> 50,500. A label only (``price_bankruptcy`` of a
    backstop fill): no money is booked at it, since quote x size at the rounded price is off
    the exact quote by up to tick x size. Deleveraging books the exact quote
    (:func:`split_quote`) and labels it with :func:`quote_price`.
    """
    raw = -quote / (delta * contract_size)
    return round_down(raw, tick_size) if delta < ZERO else round_up(raw, tick_size)


@exact
def quote_price(quote: Decimal, delta: Decimal, contract_size: Decimal, quantum: Decimal) -> Decimal:
    """Per-contract price of an exact quote, ``-quote / (delta x contract size)``, to ``quantum``.

    Half-even to the nearest quantum: a label for the events (``price_fill`` of a
    deleveraging slice), never used to book money. Example: a short buying back 1 with a
    quote of -50,499.50 -> 50,499.5; buying back 3 for -151,350.01 -> 50,450.003333.
    """
    return (-quote / (delta * contract_size)).quantize(quantum, rounding=ROUND_HALF_EVEN)


@exact
def split_quote(quote: Decimal, sizes: Sequence[Decimal], quantum: Decimal) -> list[Decimal]:
    """Split an exact quote over fills of ``sizes``, pro rata, summing to it exactly.

    Largest remainder on the quantum grid (:func:`allocate_largest_remainder` of |quote|,
    ties in the order given), with the quote's sign. The split moves money only between the
    two sides of each fill, so no rounding is left to anyone. Example: -151,350.01 over
    sizes 1, 2 at 0.000001 -> -50,450.003333, -100,900.006667.
    """
    shares = allocate_largest_remainder(abs(quote), list(enumerate(sizes)), quantum)
    sign = -ONE if quote < ZERO else ONE
    return [sign * shares[index] for index in range(len(sizes))]


@exact
def adjusted_bankruptcy_rating(equity: Decimal, maintenance: Decimal) -> Decimal:
    """dYdX v4 ``GetFillablePrice``: ABR = clamp(BA x (1 - TNC / TMMR), 0, 1), BA = 1.

    The liquidation spread is scaled by ABR, so an account a hair below maintenance pays
    almost nothing and one at or below zero equity the whole spread. Example: equity 0.50,
    maintenance 12.015 -> 1 - 0.50 / 12.015 = 0.958385...; equity 499 of 500 -> 0.002;
    equity <= 0 (or no requirement) -> 1.
    """
    if maintenance <= ZERO:
        return ONE
    return min(ONE, max(ZERO, ONE - equity / maintenance))


@exact
def can_carry(equity_after: Decimal, initial_after: Decimal, notional_after: Decimal, cap: Decimal) -> bool:
    """May a liquidator take a position? It must meet initial margin afterwards and hold at
    most ``cap`` x its equity in total position notional (``liquidator_position_cap``).

    Drift rejects a takeover that leaves the liquidator below initial margin; Binance's fund
    holds positions only up to 100 % of its balance. Example: equity after 10,000, IM 2,500,
    notional 12,000, cap 1 -> False (12,000 > 10,000); with cap 2 -> True.
    """
    return equity_after > ZERO and equity_after >= initial_after and notional_after <= cap * equity_after


@exact
def insurance_fund_delta(fill_quote: Decimal, bankruptcy: Decimal, fee_rate_max: Decimal) -> Decimal:
    """What a liquidation fill pays into (+) or takes from (-) the insurance fund.

    dYdX ``GetLiquidationInsuranceFundDelta``: ``fill - bankruptcy``; a loss is the fund's
    in full, a surplus goes to the fund only up to ``fee_rate_max x |fill|`` (the rest stays
    with the account). Example: fill 4,600, bankruptcy 4,501, max 1.5%: min(99, 69) = 69.
    """
    surplus = fill_quote - bankruptcy
    if surplus <= ZERO:
        return surplus
    return min(surplus, fee_rate_max * abs(fill_quote))


@exact
def base_to_cover_shortage(
    shortage: Decimal,
    price: Decimal,
    margin_ratio_buffered: Decimal,
    fee_rate_liquidator: Decimal,
    fee_rate_insurance: Decimal,
    price_quote: Decimal = ONE,
) -> Decimal | None:
    """Size whose closing brings the account back to maintenance plus buffer, or None (all).

    Drift ``calculate_base_asset_amount_to_cover_margin_shortage``:
    ``shortage / (P x Pq x (MR_buf - fee_liq) - P x fee_if)``; None ("close everything")
    when the denominator is not positive. Exact: callers round up to the size step.
    Example: shortage 10, P 100, MR 10%, fees 1% and 1%: 10 / (9 - 1) = 1.25.
    """
    denominator = price * price_quote * (margin_ratio_buffered - fee_rate_liquidator) - price * fee_rate_insurance
    if denominator <= ZERO:
        return None
    return shortage / denominator


@exact
def insurance_fee_rate(
    shortage: Decimal,
    base: Decimal,
    price: Decimal,
    margin_ratio_buffered: Decimal,
    fee_rate_liquidator: Decimal,
    fee_rate_insurance_max: Decimal,
) -> Decimal:
    """Insurance-fund fee rate shrunk so the fee itself cannot bankrupt the account.

    Drift ``calculate_perp_if_fee``: ``min(max, 0.95 x (MR_buf - fee_liq - shortage /
    (base x P)))``, floored at 0, and 0 for no size or price. Example: shortage 20, 10 at
    100, MR 5%, liquidator fee 1%, max 5%: 0.95 x (0.05 - 0.01 - 0.02) = 0.019.
    """
    if base <= ZERO or price <= ZERO:
        return ZERO
    room = margin_ratio_buffered - fee_rate_liquidator - shortage / (base * price)
    return max(ZERO, min(fee_rate_insurance_max, Decimal("0.95") * room))


@exact
def liquidatable_notional(
    position_notional: Decimal,
    notional_min: Decimal,
    portion_max: Decimal,
    notional_remaining: Decimal | None = None,
) -> tuple[Decimal, Decimal]:
    """(min, max) notional one liquidation may close: a slice of big positions, at least a floor.

    dYdX ``GetMaxAndMinPositionNotionalLiquidatable``: ``max = min(max(min_notional, portion
    x |notional|), remaining per-account limit)``, both capped at the position. Example: 1
    BTC at 50,000, portion 50%: max 25,000; 5 of notional with a floor of 10: (5, 5).
    """
    notional = abs(position_notional)
    upper = max(notional_min, portion_max * notional)
    if notional_remaining is not None:
        upper = min(upper, notional_remaining)
    return min(notional_min, notional), min(upper, notional)


@exact
def initial_fraction_scaled_by_open_interest(
    fraction_initial: Decimal, open_interest_notional: Decimal, cap_lower: Decimal, cap_upper: Decimal
) -> Decimal:
    """Initial margin fraction raised with market open interest (dYdX OIMF).

    ``scaling = (OI - lower) / (upper - lower)``; ``IMF + max(scaling, 0) x (1 - IMF)``,
    at most 1; off when ``cap_upper`` is 0. Example: IMF 20%, OI halfway between the caps:
    0.2 + 0.5 x 0.8 = 0.6.
    """
    if cap_upper == ZERO:
        return fraction_initial
    scaling = (open_interest_notional - cap_lower) / (cap_upper - cap_lower)
    return min(fraction_initial + max(scaling, ZERO) * (ONE - fraction_initial), ONE)


@exact
def adl_ranking(value_mark: Decimal, value_entry: Decimal, value_bankrupt: Decimal) -> Decimal:
    """BitMEX auto-deleveraging rank: profitable, highly leveraged positions go first.

    ``PnL% = (mark value - entry value) / |entry value|``; ``leverage = |mark value| /
    (mark value - bankrupt value)``; rank = PnL% x leverage when in profit, PnL% / leverage
    otherwise. Values are signed notionals (size x price x contract size). Example: long
    entry 100, mark 120, bankrupt 80: PnL 20%, leverage 3, rank 0.6.
    """
    pnl_fraction = (value_mark - value_entry) / abs(value_entry)
    leverage = abs(value_mark) / (value_mark - value_bankrupt)
    return pnl_fraction * leverage if pnl_fraction > ZERO else pnl_fraction / leverage


@exact
def allocate_largest_remainder(
    total: Decimal, weights: Sequence[tuple[_Key, Decimal]], quantum: Decimal
) -> dict[_Key, Decimal]:
    """Split ``total`` pro rata to ``weights`` on the quantum grid, summing to it exactly.

    Each share is floored to the quantum; the quanta left over go one each to the largest
    remainders, ties in the order ``weights`` are given (callers sort them by a stable key).
    ``total`` must be on the grid. Example: 1.00 over weights 1, 1, 1 at 0.01: 0.34, 0.33, 0.33.
    """
    if total < ZERO or round_down(total, quantum) != total:
        raise ValueError(f"total {total} must be non-negative and on the quantum {quantum}")
    weight_sum = sum((weight for _, weight in weights), ZERO)
    if any(weight < ZERO for _, weight in weights) or (total > ZERO and weight_sum <= ZERO):
        raise ValueError("weights must be non-negative with a positive sum")
    shares: dict[_Key, Decimal] = {}
    remainders: list[tuple[Decimal, int, _Key]] = []
    for order, (key, weight) in enumerate(weights):
        exact_share = total * weight / weight_sum if weight_sum else ZERO
        shares[key] = round_down(exact_share, quantum)
        remainders.append((exact_share - shares[key], -order, key))
    left = int((total - sum(shares.values(), ZERO)) / quantum)
    for _, _, key in sorted(remainders, reverse=True)[:left]:
        shares[key] += quantum
    return shares


# -- margin calls (CME: a call restores initial margin) -----------------------------------------


@exact
def call_payment(amount_due: Decimal, deposit: Decimal) -> tuple[Decimal, Decimal]:
    """(amount paid, amount still due) when ``deposit`` arrives on a call for ``amount_due``.

    The deposit pays the call up to what is due; any excess is ordinary collateral.
    Example: due 540, deposit 200 -> (200, 340); due 340, deposit 500 -> (340, 0).
    """
    paid = min(max(deposit, ZERO), max(amount_due, ZERO))
    return paid, amount_due - paid


def call_met(
    rule: str, equity: Decimal, initial_margin: Decimal, maintenance_margin: Decimal, amount_due: Decimal
) -> bool:
    """Does an open margin call stand met? (``margin_call_rule``, ADR 7)

    ``cme`` (default, CME Performance Bond FAQ): the call is for initial margin - equity and
    stands until equity reaches initial margin **or** the full called amount has been paid
    (``amount_due`` <= 0); equity back between maintenance and initial does not meet it.
    ``maintenance`` (the rule before issue 8): equity at or above maintenance meets it.

    Example (IM 940, MM 470, call for 540 at equity 400): a deposit of 200 -> equity 600 >=
    MM but < IM and 340 still due, so under ``cme`` the call stands (under ``maintenance``
    it would be met); a further 340 (or the mark recovering to equity 940) meets it.
    """
    if rule == "maintenance":
        return equity >= maintenance_margin
    return equity >= initial_margin or amount_due <= ZERO


def loss_bearer_left(other_sizes: Iterable[Decimal], taker_size: Decimal, delta: Decimal) -> bool:
    """Whether an open position is left to bear a deficit after a takeover.

    ``other_sizes``: the positions in the market of everyone but the liquidated account and
    the taker; ``taker_size`` the taker's before it takes ``-delta`` (``delta`` being the
    liquidated account's change). Why: a cash loss policy charges open positions only, and
    a takeover that makes the last holder flat leaves the deficit with nobody to charge, so
    the engine deleverages against the taker at the bankruptcy price instead. Example: the
    backstop long 0.7 takes a short of 0.7 (delta +0.7), nobody else holds -> False.
    ``other_sizes`` is read only until a non-zero size is found.
    """
    return any(size != ZERO for size in other_sizes) or taker_size - delta != ZERO


def risk_order(candidates: Sequence[tuple[str, Decimal, Decimal, Decimal]]) -> list[str]:
    """Names of (name, equity, maintenance, notional) in liquidation order (issue 8).

    Deepest below maintenance first (lowest equity / maintenance; no requirement ranks
    last), then larger notional, then name. Example: a (equity 400, MM 470, notional
    9,400: ratio 0.851) and b (equity 100, MM 200, notional 4,000: ratio 0.5) -> [b, a].
    """
    def key(item: tuple[str, Decimal, Decimal, Decimal]) -> tuple[int, Decimal, Decimal, str]:
        name, equity, maintenance, notional = item
        if maintenance <= ZERO:
            return (1, ZERO, -notional, name)
        return (0, equity / maintenance, -notional, name)

    return [item[0] for item in sorted(candidates, key=key)]
