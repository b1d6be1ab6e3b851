"""Risk-engine formulas against the public vectors in clearing-mechanics.md.

dYdX amounts are in quote quantums (1 USDC = 1,000,000) and base quantums (BTC 1e-8,
ETH 1e-9); here they are converted to USDC and contracts, with a 0.000001 quantum.
"""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearing.domain.liquidation_math import (
    adl_ranking,
    allocate_largest_remainder,
    bankruptcy_price,
    bankruptcy_quote,
    base_to_cover_shortage,
    initial_fraction_scaled_by_open_interest,
    insurance_fee_rate,
    insurance_fund_delta,
    liquidatable_notional,
    quote_price,
    split_quote,
)
from clearing.money import D, round_up

Q = D("0.000001")
PRICES = {"BTC": D(50000), "ETH": D(3000)}
MMF = D("0.1")


def quote_quantums(positions, usdc, market, delta):
    """dYdX's inputs: positions in contracts, USDC balance, closing delta of one market."""
    equity = D(usdc) + sum(D(size) * PRICES[m] for m, size in positions.items())
    maintenance = {m: abs(D(size)) * PRICES[m] * MMF for m, size in positions.items()}
    size, delta = D(positions[market]), D(delta)
    after = abs(size + delta) * PRICES[market] * MMF
    quote = bankruptcy_quote(size, delta, PRICES[market], D(1), maintenance[market], after, equity,
                             sum(maintenance.values()), Q)
    return int(quote / Q)


@pytest.mark.parametrize(("name", "positions", "usdc", "market", "delta", "expected"), [
    ("B1", {"BTC": "0.1"}, "-4501", "BTC", "-0.1", 4_501_000_000),
    ("B2", {"BTC": "-0.1"}, "5499", "BTC", "0.1", -5_499_000_000),
    ("B3", {"BTC": "0.1"}, "-5000", "BTC", "-0.1", 5_000_000_000),
    ("B4", {"BTC": "0.1"}, "-5000", "BTC", "-0.05", 2_500_000_000),
    ("B5", {"BTC": "-0.1"}, "5000", "BTC", "0.05", -2_500_000_000),
    ("B6", {"BTC": "0.1"}, "-5100", "BTC", "-0.1", 5_100_000_000),
    ("B7", {"BTC": "-0.1"}, "4900", "BTC", "0.1", -4_900_000_000),
    ("B8", {"BTC": "0.004", "ETH": "0.1"}, "-490", "ETH", "-0.1", 294_000_000),
    ("B9", {"BTC": "-0.004", "ETH": "-0.1"}, "510", "ETH", "0.1", -306_000_000),
    ("B10", {"BTC": "0.004", "ETH": "-0.1"}, "110", "ETH", "0.1", -306_000_000),
    ("B11", {"BTC": "1"}, "-13", "BTC", "-0.00021347", 2_776),
    ("B12", {"BTC": "-1"}, "13", "BTC", "0.00021347", -2_775),
    ("B13", {"BTC": "1"}, "1", "BTC", "-1", -1_000_000),
])
def test_bankruptcy_quote_matches_dydx_vectors(name, positions, usdc, market, delta, expected):
    assert quote_quantums(positions, usdc, market, delta) == expected


@pytest.mark.parametrize("delta", ["0", "0.1", "-0.2"])
def test_bankruptcy_quote_refuses_deltas_that_do_not_reduce(delta):
    with pytest.raises(ValueError):
        bankruptcy_quote(D("0.1"), D(delta), D(50000), D(1), D(500), D(0), D(499), D(500), Q)


def test_bankruptcy_price_rounds_against_the_account():
    assert bankruptcy_price(D(4501), D("-0.1"), D(1), D("0.1")) == D(45010)
    assert bankruptcy_price(D("-5499"), D("0.1"), D(1), D("0.1")) == D(54990)
    assert bankruptcy_price(D("-50499.5"), D(1), D(1), D(1)) == D(50500)  # up when buying back
    assert bankruptcy_price(D("50499.5"), D(-1), D(1), D(1)) == D(50499)  # down when selling


def test_deleveraging_books_the_exact_quote_split_by_largest_remainder():
    assert quote_price(D("-50499.5"), D(1), D(1), D("0.000001")) == D("50499.5")
    assert quote_price(D("-151350.01"), D(3), D(1), D("0.000001")) == D("50450.003333")
    assert split_quote(D("-151350.01"), [D(1), D(2)], D("0.000001")) == [D("-50450.003333"), D("-100900.006667")]
    assert split_quote(D("1.00"), [D(1), D(1), D(1)], D("0.01")) == [D("0.34"), D("0.33"), D("0.33")]
    assert split_quote(D("-50499.5"), [D(1)], D("0.000001")) == [D("-50499.5")]
    assert bankruptcy_price(D(1000), D(-3), D(1), D(1)) == D(333)  # 333.33 sold: down
    assert bankruptcy_price(D(-1000), D(3), D(1), D(1)) == D(334)  # 333.33 bought: up


def test_insurance_fund_delta_takes_losses_and_caps_penalties():
    assert insurance_fund_delta(D(4400), D(4501), D("0.015")) == D(-101)
    assert insurance_fund_delta(D(4600), D(4501), D("0.015")) == D(69)
    assert insurance_fund_delta(D(4510), D(4501), D("0.015")) == D(9)
    # dYdX docs: long 500 at 1 with 100 equity, filled at 0.77 -> the fund pays 15
    assert insurance_fund_delta(D(500) * D("0.77"), D(400), D("0.015")) == D(-15)


@pytest.mark.parametrize(("fee_liquidator", "fee_insurance", "quote_price", "expected"), [
    ("0", "0", "1", D(1)),
    ("0", "0", "0.99", D(10) / D("9.9")),
    ("0", "0", "1.01", D(10) / D("10.1")),
    ("0.01", "0", "1", D(10) / D(9)),
    ("0.01", "0.01", "1", D("1.25")),
])
def test_base_to_cover_matches_drift_vectors(fee_liquidator, fee_insurance, quote_price, expected):
    got = base_to_cover_shortage(D(10), D(100), D("0.1"), D(fee_liquidator), D(fee_insurance), D(quote_price))
    assert abs(got - expected) < Decimal("1e-25")
    # Drift's own fixed-point results, floored to 1e-9: 1,010,101,010 and 990,099,009
    if quote_price != "1":
        assert int(got * 10**9) == {"0.99": 1_010_101_010, "1.01": 990_099_009}[quote_price]


def test_base_to_cover_is_everything_when_fees_eat_the_buffer():
    assert base_to_cover_shortage(D(10), D(100), D("0.01"), D("0.01"), D(0)) is None


@pytest.mark.parametrize(("shortage", "fee_liquidator", "price", "base", "expected"), [
    ("20", "0.01", "100", "10", D("0.019")),
    ("1", "0.01", "100", "10", D("0.03705")),
    ("1000", "0.01", "100", "10", D(0)),
    ("20", "0.1", "100", "10", D(0)),
    ("20", "0.01", "0", "10", D(0)),
    ("20", "0.01", "100", "0", D(0)),
])
def test_insurance_fee_rate_matches_drift_vectors(shortage, fee_liquidator, price, base, expected):
    got = insurance_fee_rate(D(shortage), D(base), D(price), D("0.05"), D(fee_liquidator), D("0.05"))
    assert got == expected


def test_liquidatable_notional_matches_dydx_vectors():
    assert liquidatable_notional(D(50000), D("0.0001"), D(1)) == (D("0.0001"), D(50000))
    assert liquidatable_notional(D(50000), D("0.0001"), D("0.5")) == (D("0.0001"), D(25000))
    assert liquidatable_notional(D(5), D(10), D(1)) == (D(5), D(5))
    assert liquidatable_notional(D(50000), D(1000), D("0.1"), notional_remaining=D(3000)) == (D(1000), D(3000))


@pytest.mark.parametrize(("open_interest", "lower", "upper", "expected_quantums"), [
    ("1500000000000", "1000000000000", "2000000000000", 300_000),
    ("80000000000000", "25000000000000", "50000000000000", 500_000),
    ("25000000000000", "25000000000000", "50000000000000", 100_000),
    ("28123456789123", "25000000000000", "60000000000000", 135_697),
])
def test_open_interest_scaled_initial_margin_matches_dydx_vectors(open_interest, lower, upper, expected_quantums):
    fraction = initial_fraction_scaled_by_open_interest(D("0.2"), D(open_interest), D(lower), D(upper))
    assert round_up(D("0.5") * fraction, Q) == expected_quantums * Q  # position notional 500,000 quantums


def test_open_interest_scaling_is_off_without_an_upper_cap():
    assert initial_fraction_scaled_by_open_interest(D("0.2"), D(10**15), D(0), D(0)) == D("0.2")


def test_dydx_initial_margin_rounding_vectors():
    assert round_up(Q * D("0.1"), Q) == Q
    assert round_up(D("0.123456") * D("0.567243"), Q) == D("0.070030")


def test_adl_ranking_prefers_profit_times_leverage():
    assert adl_ranking(D(120), D(100), D(80)) == D("0.6")  # long: PnL 20%, leverage 120/40 = 3
    assert adl_ranking(D(-80), D(-100), D(-120)) == D("0.4")  # short in profit: 20% x 80/40
    losing = adl_ranking(D(90), D(100), D(60))  # PnL -10%, leverage 3: -0.1 / 3
    assert abs(losing - Decimal("-0.1") / 3) < Decimal("1e-25") and losing < adl_ranking(D(101), D(100), D(50))


def test_largest_remainder_sums_exactly_and_breaks_ties_in_order():
    assert allocate_largest_remainder(D(1), [("a", D(1)), ("b", D(1)), ("c", D(1))], D("0.01")) == {
        "a": D("0.34"), "b": D("0.33"), "c": D("0.33")}
    assert allocate_largest_remainder(D("0.05"), [("flat", D(0)), ("x", D(3)), ("y", D(1))], D("0.01")) == {
        "flat": D(0), "x": D("0.04"), "y": D("0.01")}


@given(st.decimals(min_value=0, max_value=10**9, places=6),
       st.lists(st.decimals(min_value=0, max_value=10**6, places=3), min_size=1, max_size=30))
def test_largest_remainder_is_exact_fair_and_spares_zero_weights(total, weights):
    if sum(weights) == 0:
        weights = [*weights, Decimal(1)]
    keyed = list(enumerate(weights))
    shares = allocate_largest_remainder(total, keyed, Q)
    assert sum(shares.values()) == total
    weight_sum = sum(weights)
    for key, weight in keyed:
        exact = total * weight / weight_sum
        assert exact - Q < shares[key] < exact + Q
        if weight == 0:
            assert shares[key] == 0
