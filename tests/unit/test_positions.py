"""Opening, increasing, reducing, closing and flipping a position."""

from clearing.domain.account import FLAT, Position, decide_fill
from clearing.money import D

Q = D("0.000001")


def fill(position, delta, price, contract="1"):
    return decide_fill(position, D(delta), D(price), D(contract), Q)


def test_open_then_increase_keeps_exact_cost():
    first = fill(FLAT, "1", "100").position_after
    second = fill(first, "2", "101").position_after
    assert second == Position(D(3), D(302), D(0))


def test_reduce_realizes_pro_rata_and_keeps_the_rest_open():
    long = Position(D(3), D(302), D(0))  # entry 100.666...
    result = fill(long, "-1", "110")
    # cost removed 302/3 = 100.666666.. rounded up to 100.666667; realized 110 - 100.666667
    assert result.realized_pnl == D("9.333333")
    assert result.position_after == Position(D(2), D("201.333333"), D("9.333333"))
    assert not result.risk_increasing


def test_close_realizes_everything():
    result = fill(Position(D(-2), D(-200), D(0)), "2", "90")
    assert result.realized_pnl == D(20)
    assert result.position_after == Position(D(0), D(0), D(20))


def test_flip_closes_then_opens_at_the_trade_price():
    result = fill(Position(D(2), D(200), D(0)), "-3", "110")
    assert result.realized_pnl == D(20)
    assert result.position_after == Position(D(-1), D(-110), D(20))
    assert result.risk_increasing  # a flip opens new risk


def test_trades_are_zero_sum_in_quote_balance():
    buyer, seller = FLAT, FLAT
    collateral = {"b": D(0), "s": D(0)}
    for delta, price in (("1.5", "100"), ("-0.7", "103.3"), ("2.2", "99.9"), ("-3", "101")):
        b = fill(buyer, delta, price)
        s = fill(seller, str(-D(delta)), price)
        buyer, seller = b.position_after, s.position_after
        collateral["b"] += b.realized_pnl
        collateral["s"] += s.realized_pnl
    assert buyer.size + seller.size == 0
    # quote balance = collateral - cost; the two sum to zero exactly
    assert (collateral["b"] - buyer.cost) + (collateral["s"] - seller.cost) == 0
