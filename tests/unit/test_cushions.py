"""The solvency check's shortcut: a re-mark values every holder it can have made insolvent."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from clearing.audit.cushions import Cushions

D = Decimal


def test_the_docstring_example_values_the_account_once_its_share_of_travel_is_used():
    cushions = Cushions()
    assert cushions.remarked("BTC-PERP", D(30000), ["alice"]) == ["alice"]  # the first mark values every holder
    cushions.valued("alice", D(100), [("BTC-PERP", D(2))])
    assert cushions.remarked("BTC-PERP", D(29980), ["alice"]) == []  # travel 20 of the 50 allowed
    assert cushions.remarked("BTC-PERP", D(30010), ["alice"]) == ["alice"]  # travel 50: valued again


def test_an_unchecked_or_zero_equity_account_is_valued_at_every_re_mark_even_an_unchanged_one():
    cushions = Cushions()
    cushions.remarked("ETH-PERP", D(2000), [])
    cushions.unchecked("bob", ["ETH-PERP"])
    cushions.valued("carol", D(0), [("ETH-PERP", D(-1))])
    assert sorted(cushions.remarked("ETH-PERP", D(2000), ["bob", "carol"])) == ["bob", "carol"]


def test_a_cushion_is_split_over_the_markets_held():
    cushions = Cushions()
    for market in ("A", "B"):
        cushions.remarked(market, D(100), [])
    cushions.valued("dan", D(10), [("A", D(1)), ("B", D(1))])  # each market may travel 10 / 2 / 1 = 5
    assert cushions.remarked("A", D(104), ["dan"]) == []
    assert cushions.remarked("B", D(95), ["dan"]) == ["dan"]


MARKETS = ("A", "B", "C")
sizes = st.decimals(min_value=-5, max_value=5, places=2, allow_nan=False, allow_infinity=False)
book = st.lists(st.tuples(st.decimals(min_value=-50, max_value=400, places=2), st.tuples(sizes, sizes, sizes)),
                min_size=1, max_size=12)
moves = st.lists(st.tuples(st.sampled_from(MARKETS), st.decimals(min_value=1, max_value=200, places=1)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(book, moves)
def test_every_account_below_zero_after_a_re_mark_is_among_those_it_values(accounts, marks):
    """The model values accounts from their own numbers (cash + sizes x marks), shares nothing."""
    units = dict.fromkeys(MARKETS, D(100))
    cushions = Cushions()
    for market in MARKETS:
        cushions.remarked(market, units[market], [])

    def equity(cash: Decimal, held: tuple[Decimal, ...]) -> Decimal:
        return cash + sum((size * units[market] for market, size in zip(MARKETS, held, strict=True)), D(0))

    def value(name: str) -> None:
        cash, held = accounts[int(name)]
        pairs = [(market, size) for market, size in zip(MARKETS, held, strict=True) if size]
        found = equity(cash, held)
        if found >= 0:
            cushions.valued(name, found, pairs)
        else:  # below zero: watched at every re-mark, as a held-back account is
            cushions.unchecked(name, [market for market, _ in pairs])

    for index in range(len(accounts)):
        value(str(index))
    for market, unit in marks:
        units[market] = unit
        holders = [str(i) for i, (_, held) in enumerate(accounts) if held[MARKETS.index(market)]]
        valued = set(cushions.remarked(market, unit, holders))
        for name in holders:
            if equity(*accounts[int(name)]) < 0:
                assert name in valued, f"account {name} below zero after {market} -> {unit} was not valued"
        for name in valued:
            value(name)
