"""Margin formulas against the public worked examples in clearing-mechanics.md."""


import pytest

from clearing.domain.account import Position
from clearing.domain.margin import (
    PositionAtMark,
    build_tiers,
    liquidation_price,
    maintenance_requirement,
    margin_ratio,
    tier_for,
)
from clearing.domain.risk.totals import account_margin
from clearing.money import D

Q = D("0.000001")


def one_tier(imf: str, mmf: str):
    return build_tiers([(D(0), D(imf), D(mmf))])


class FakeMarket:
    def __init__(self, name, mark, tiers, tick="0.01", contract="1"):
        self.market = name
        self.price_mark = D(mark)
        self.tiers = tiers
        self.tick_size = D(tick)
        self.contract_size = D(contract)
        self.collateral_quantum = Q


class TestLiquidationPrice:
    def test_isolated_short_matches_dydx_docs_example(self):
        # e = 1,000, short 3 ETH at 3,000, MMF 5% -> 10,000 / 3.15 = 3,174.603...
        position = PositionAtMark(D(-3), D(3000), D(1), one_tier("0.1", "0.05"))
        price = liquidation_price(position, equity=D(1000), maintenance_others=D(0), tick_size=D("0.01"))
        assert price == D("3174.60")

    def test_cross_short_with_second_position_matches_dydx_docs_example(self):
        # short 1.5 ETH at 3,000 (MMF 5%) and long 1,000 STRK at 1.75 (MMF 10%): MMR_o = 175
        position = PositionAtMark(D("-1.5"), D(3000), D(1), one_tier("0.1", "0.05"))
        price = liquidation_price(position, equity=D(1000), maintenance_others=D(175), tick_size=D("0.01"))
        assert price == D("3380.95")

    def test_cross_example_through_the_account_view(self):
        markets = {
            "ETH": FakeMarket("ETH", "3000", one_tier("0.1", "0.05")),
            "STRK": FakeMarket("STRK", "1.75", one_tier("0.2", "0.1")),
        }
        positions = {"ETH": Position(D("-1.5"), D("-4500"), D(0)), "STRK": Position(D(1000), D(1750), D(0))}
        view = account_margin(D(1000), positions, markets)
        by_market = {row.market: row for row in view.positions}
        assert view.equity == D(1000)
        assert by_market["STRK"].maintenance_margin == D(175)
        assert by_market["ETH"].liquidation_price == D("3380.95")

    def test_long_liquidation_price_rounds_up_and_equity_meets_maintenance_there(self):
        # long 1 BTC at 50,000 with 2,000 collateral, MMF 0.5%: 2,000 + (p - 50,000) = 0.005 p
        position = PositionAtMark(D(1), D(50000), D(1), one_tier("0.01", "0.005"))
        price = liquidation_price(position, equity=D(2000), maintenance_others=D(0), tick_size=D("0.01"))
        assert price == D("48241.21")  # 48,000 / 0.995 = 48,241.2060... rounded up
        equity_at = D(2000) + (price - D(50000))
        assert equity_at >= D("0.005") * price > equity_at - D("0.01")

    def test_long_that_cannot_be_liquidated_by_price_has_none(self):
        position = PositionAtMark(D(1), D(100), D(1), one_tier("0.1", "0.05"))
        assert liquidation_price(position, equity=D(1000), maintenance_others=D(0), tick_size=D("0.01")) is None

    def test_tiered_root_lands_in_its_own_tier(self):
        tiers = build_tiers([(D(0), D("0.01"), D("0.005")), (D(100000), D("0.02"), D("0.01"))])
        position = PositionAtMark(D(-5), D(30000), D(1), tiers)  # notional 150,000: second tier
        price = liquidation_price(position, equity=D(10000), maintenance_others=D(0), tick_size=D("0.1"))
        notional = D(5) * price
        tier = tier_for(tiers, notional)
        maintenance = notional * tier.maintenance_margin_fraction - tier.maintenance_margin_deduction
        equity = D(10000) - D(5) * (price - D(30000))
        assert abs(equity - maintenance) < D(1)  # within one tick x size of the exact root
        assert price < D("32000")


class TestTiers:
    def test_binance_maintenance_amount_example(self):
        # Level 5: 250,000 x (1% - 0.5%) + 50 = 1,300 USDT; a 264,000 position uses 1%
        tiers = build_tiers([(D(0), D("0.008"), D("0.004")), (D(50000), D("0.01"), D("0.005")),
                             (D(250000), D("0.02"), D("0.01"))])
        assert [t.maintenance_margin_deduction for t in tiers] == [D(0), D(50), D(1300)]
        assert tier_for(tiers, D(264000)).maintenance_margin_fraction == D("0.01")
        assert maintenance_requirement(tiers, D(264000), Q) == D(1340)

    @pytest.mark.parametrize("notional", ["49999.99", "50000", "50000.01", "249999", "250000", "250001"])
    def test_requirement_is_continuous_at_every_floor(self, notional):
        tiers = build_tiers([(D(0), D("0.008"), D("0.004")), (D(50000), D("0.01"), D("0.005")),
                             (D(250000), D("0.02"), D("0.01"))])
        value = D(notional)
        below = maintenance_requirement(tiers, value - D("0.01"), Q)
        here = maintenance_requirement(tiers, value, Q)
        assert D(0) <= here - below <= D("0.0001")

    def test_requirement_rounds_up_to_the_quantum(self):
        # IMF 10% of 1 quantum is 0.1 quantum -> 1 quantum (dYdX rounding vector)
        assert maintenance_requirement(one_tier("0.2", "0.1"), D("0.000001"), Q) == D("0.000001")


def test_margin_ratio_rounds_down_and_is_none_without_requirement():
    assert margin_ratio(D(2), D(3)) == D("0.6666")
    assert margin_ratio(D(-2), D(3)) == D("-0.6667")
    assert margin_ratio(D(5), D(0)) is None


def test_no_liquidation_price_when_other_positions_alone_breach_maintenance():
    # collateral 100, short 1 ETH (cost -3,000) at 3,000, long 1,000 STRK (cost 5,000) at 1.75
    markets = {"ETH": FakeMarket("ETH", "3000", one_tier("0.1", "0.05")),
               "STRK": FakeMarket("STRK", "1.75", one_tier("0.2", "0.1"))}
    positions = {"ETH": Position(D(-1), D(-3000), D(0)), "STRK": Position(D(1000), D(5000), D(0))}
    view = account_margin(D(100), positions, markets)
    eth = next(row for row in view.positions if row.market == "ETH")
    assert view.equity == D(-3150) and eth.liquidation_price is None
    assert view.margin_ratio < 1  # liquidatable at every ETH price, and the ratio says so


def test_a_short_root_below_one_tick_is_reported_as_none_not_zero():
    position = PositionAtMark(D(-1), D(100), D(1), one_tier("0.1", "0.05"))
    # equity -99.6: (E + s*m) / (|s| f - s) = 0.4 / 1.05 -> 0.38, below the tick of 1
    assert liquidation_price(position, equity=D("-99.6"), maintenance_others=D(0), tick_size=D(1)) is None
