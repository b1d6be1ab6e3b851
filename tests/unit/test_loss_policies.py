"""Loss policies (clearing/domain/loss_policies): hand-computed tables, edge cases, properties.

The book used by most tables, mark 100, contract size 1 (notional = |size| x 100):

    account  size  cost   entry  equity  notional  leverage  gain
    a         10    800     80     500     1,000      2       200
    b          5    400     80     100       500      5       100
    c         20  2,200    110     400     2,000      5      -200
    d          8    400     50      80       800     10       400

Every number below is derived from that table in the comment next to it.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from types import MappingProxyType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearing.domain import parameters
from clearing.domain.liquidation_math import adl_ranking
from clearing.domain.loss_policies import (
    ADL,
    ADL_HYPERLIQUID,
    HAIRCUT_GAINS,
    HAIRCUT_POLICIES,
    LEVERAGE_WEIGHTED_GAINS,
    QUEUE_POLICIES,
    SOCIALIZE_PER_CONTRACT,
    WATERFILL_LEVERAGE,
    adl_bitmex,
    adl_hyperliquid,
    bear,
    haircut_gains,
    leverage_weighted_gains,
    plan_deleveraging,
    socialize_per_contract,
    waterfill_leverage,
)
from clearing.domain.loss_policies import scores as standing
from clearing.domain.loss_policies.base import (
    Holder,
    LossPolicyError,
    allocate_capped,
    gain_cap,
    leverage,
)
from clearing.domain.loss_policies.queue import queue_sizes
from clearing.money import LEDGER_CONTEXT, ZERO, D, is_multiple

MARK = D(100)
ONE_CONTRACT = D(1)
CENT = D("0.01")
A = Holder("a", D(10), D(800), D(500))
B = Holder("b", D(5), D(400), D(100))
C = Holder("c", D(20), D(2200), D(400))
E = Holder("d", D(8), D(400), D(80))  # account "d" (the name D is the number constructor)
BOOK = [A, B, C, E]
ALL_POLICIES = sorted(set(QUEUE_POLICIES) | HAIRCUT_POLICIES)
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def ledger_context() -> Iterator[None]:
    """The tests' own arithmetic at the ledger's 60 digits, as the policies compute."""
    with decimal.localcontext(LEDGER_CONTEXT):
        yield


def amounts(rows: Sequence[tuple[str, Decimal]] | Sequence[tuple[str, Decimal, object]]) -> dict[str, Decimal]:
    return {row[0]: row[1] for row in rows}


def close(left: Decimal | None, right: Decimal, tolerance: Decimal = Decimal("1e-40")) -> bool:
    return left is not None and abs(left - right) <= tolerance


# -- strategies (no floats: every number is an integer scaled onto its grid) ------------------

STEP = D("0.1")


@st.composite
def holders(draw: st.DrawFn, count_max: int = 6, side: int = 1, even: bool = False) -> list[Holder]:
    """Open positions on one side: size on the 0.1 step, cost and equity on the cent.

    ``even``: every number an even multiple of its grid, so the account splits in two exactly.
    """
    scale = 2 if even else 1
    count = draw(st.integers(min_value=0, max_value=count_max))
    book = []
    for index in range(count):
        size = D(scale * draw(st.integers(min_value=1, max_value=300))) * STEP
        entry = D(draw(st.integers(min_value=1, max_value=200)))
        cost = size * entry + D(scale * draw(st.integers(min_value=-50, max_value=50))) * CENT
        equity = D(scale * draw(st.integers(min_value=-2_000, max_value=200_000))) * CENT
        book.append(Holder(f"h{index}", side * size, side * cost, equity))
    return book


marks = st.integers(min_value=1, max_value=200).map(D)
sides = st.sampled_from([1, -1])


def split(holder: Holder) -> tuple[Holder, Holder]:
    """Two accounts of the same leverage and entry: size, cost and equity halved."""
    half = D("0.5")
    first = Holder(holder.account + "-1", holder.size * half, holder.cost * half, holder.equity * half)
    second = Holder(holder.account + "-2", holder.size * half, holder.cost * half, holder.equity * half)
    return first, second


def engine_adl_order(book: Sequence[Holder], mark: Decimal, contract_size: Decimal) -> list[str]:
    """The order of ``liquidation._ranked_opposites``, rebuilt from ``adl_ranking`` and its key.

    ``adl_rank``: None when equity <= 0 or cost 0, else adl_ranking(mark value, cost, mark
    value - equity); sorted by (-(rank or -1e30), name).
    """
    floor = Decimal("-1e30")
    ranked = []
    for holder in book:
        value_mark = holder.size * mark * contract_size
        no_rank = holder.equity <= ZERO or holder.cost == ZERO
        rank = None if no_rank else adl_ranking(value_mark, holder.cost, value_mark - holder.equity)
        ranked.append((rank, holder.account))
    return [name for _, name in sorted(ranked, key=lambda item: (-(item[0] if item[0] is not None else floor), item[1]))]


# -- 1. BitMEX score ---------------------------------------------------------------------------


class TestBitmexScores:
    def test_scores_of_the_book(self) -> None:
        scores = dict(adl_bitmex.scores(BOOK, MARK, ONE_CONTRACT))
        assert scores["a"] == D("0.5")  # PnL 200 / 800 = 25 %, leverage 1,000 / 500 = 2: 0.25 x 2
        assert scores["b"] == D("1.25")  # 100 / 400 = 25 % x 500 / 100 = 5
        assert scores["d"] == D(10)  # 400 / 400 = 100 % x 800 / 80 = 10
        # c at a loss: PnL -200 / 2,200 = -1/11, divided by leverage 5: -1/55
        assert close(scores["c"], D(-1) / D(55))

    def test_same_numbers_as_adl_ranking_with_bankrupt_value_mark_value_minus_equity(self) -> None:
        for holder in BOOK:
            value_mark = holder.size * MARK
            expected = adl_ranking(value_mark, holder.cost, value_mark - holder.equity)
            assert adl_bitmex.score(holder, MARK, ONE_CONTRACT) == expected

    def test_short_in_profit_and_no_score_without_equity_or_entry(self) -> None:
        short = Holder("s", D(-4), D(-500), D(200))  # entry 125, mark 100: PnL -400 - -500 = 100 / 500 = 20 %, leverage 2
        assert adl_bitmex.score(short, MARK, ONE_CONTRACT) == D("0.4")
        assert adl_bitmex.score(Holder("x", D(4), D(400), D(0)), MARK, ONE_CONTRACT) is None
        assert adl_bitmex.score(Holder("x", D(4), D(400), D(-1)), MARK, ONE_CONTRACT) is None
        assert adl_bitmex.score(Holder("x", D(4), D(0), D(10)), MARK, ONE_CONTRACT) is None

    def test_no_holders_and_bad_market(self) -> None:
        assert adl_bitmex.scores([], MARK, ONE_CONTRACT) == []
        with pytest.raises(ValueError, match="must be positive"):
            adl_bitmex.scores(BOOK, ZERO, ONE_CONTRACT)


# -- 2. Hyperliquid score ----------------------------------------------------------------------


class TestHyperliquidScores:
    def test_scores_of_the_book(self) -> None:
        scores = dict(adl_hyperliquid.scores(BOOK, MARK, ONE_CONTRACT))
        assert scores["a"] == D("2.5")  # (100 / 80) x 2 = 1.25 x 2
        assert scores["b"] == D("6.25")  # (100 / 80) x 5
        assert scores["d"] == D(20)  # (100 / 50) x 10
        assert close(scores["c"], D(500) / D(110))  # (100 / 110) x 5: a levered loser
        # Hyperliquid ranks c (loss, leverage 5) above a (gain, leverage 2); BitMEX does not.
        assert scores["c"] is not None and scores["a"] is not None and scores["c"] > scores["a"]

    def test_long_form_is_the_documented_key_with_entry_from_cost(self) -> None:
        contract_size = D("0.01")
        long = Holder("l", D(300), D("120"), D(60))  # entry 120 / (300 x 0.01) = 40; notional 300 x 100 x 0.01 = 300
        entry = long.cost / (long.size * contract_size)
        documented = (MARK / entry) * (D(300) / long.equity)  # (mark / entry) x (notional / account value) = 2.5 x 5
        assert adl_hyperliquid.score(long, MARK, contract_size) == documented == D("12.5")

    def test_short_reading_is_side_symmetric(self) -> None:
        # a long and a short, each at price ratio 1.25 in its favour and leverage 2, score the same
        long = Holder("l", D(10), D(800), D(500))  # mark / entry = 100 / 80
        short = Holder("s", D(-8), D(-1000), D(400))  # entry 125: entry / mark = 1.25; notional 800 / 400 = 2
        assert adl_hyperliquid.score(long, MARK, ONE_CONTRACT) == adl_hyperliquid.score(short, MARK, ONE_CONTRACT) == D("2.5")
        losing_short = Holder("t", D(-8), D(-640), D(400))  # entry 80, mark 100: 0.8 x 2
        assert adl_hyperliquid.score(losing_short, MARK, ONE_CONTRACT) == D("1.6")

    def test_none_without_equity_or_entry(self) -> None:
        assert adl_hyperliquid.score(Holder("x", D(4), D(400), D(0)), MARK, ONE_CONTRACT) is None
        assert adl_hyperliquid.score(Holder("x", D(4), D(0), D(10)), MARK, ONE_CONTRACT) is None
        assert adl_hyperliquid.scores([], MARK, ONE_CONTRACT) == []


# -- 3. the queue ------------------------------------------------------------------------------


class TestQueue:
    SIZES: Mapping[str, Decimal] = MappingProxyType({"a": D(10), "b": D(5), "c": D(20), "d": D(8)})

    def test_highest_first_last_one_partly(self) -> None:
        ranked = [("a", D("0.5")), ("b", D("1.25")), ("c", None), ("d", D(10))]
        # 20 contracts: d 8 (score 10), b 5 (1.25), then 7 of a's 10 (0.5); c (None) is never reached
        assert queue_sizes(ranked, self.SIZES, D(20)) == [("d", D(8), D(10)), ("b", D(5), D("1.25")), ("a", D(7), D("0.5"))]

    def test_none_last_and_ties_by_name(self) -> None:
        ranked = [("d", D(1)), ("c", None), ("b", D(1)), ("a", D(-3))]
        # b and d tie at 1: b first by name; a's negative score still precedes c's None: 5 + 8 + 10 + 20 = 43
        plan = queue_sizes(ranked, self.SIZES, D(43))
        assert [account for account, _, _ in plan] == ["b", "d", "a", "c"]

    def test_signed_sizes_are_taken_as_absolute(self) -> None:
        assert queue_sizes([("s", D(2))], {"s": D(-6)}, D(4)) == [("s", D(4), D(2))]

    def test_edges(self) -> None:
        assert queue_sizes([], {}, ZERO) == []
        assert queue_sizes([("a", D(1))], self.SIZES, ZERO) == []
        with pytest.raises(ValueError, match="cannot close 44 contracts: the opposite holders hold only 43"):
            queue_sizes([(name, D(1)) for name in self.SIZES], self.SIZES, D(44))
        with pytest.raises(ValueError, match="cannot close 1 contracts"):
            queue_sizes([], {}, D(1))
        with pytest.raises(ValueError, match="non-negative"):
            queue_sizes([], {}, D(-1))
        with pytest.raises(ValueError, match="no size given"):
            queue_sizes([("z", D(1))], self.SIZES, D(1))
        with pytest.raises(LossPolicyError, match="once"):  # a ValueError, as every refusal here
            queue_sizes([("a", D(1)), ("a", D(2))], self.SIZES, D(1))


# -- 4. water-filling on leverage --------------------------------------------------------------


class TestWaterfillLeverage:
    def test_drains_the_most_levered_to_a_common_level(self) -> None:
        # level L with d, b, c above it: (800 + 500 + 2,000 - 9.8 x 100) / (80 + 100 + 400) = 2,320 / 580 = 4
        # (>= a's leverage 2): d 8 - 4 x 80 / 100 = 4.8, b 5 - 4 x 100 / 100 = 1, c 20 - 4 x 400 / 100 = 4
        plan = waterfill_leverage.sizes(BOOK, MARK, ONE_CONTRACT, D("9.8"), STEP)
        assert plan == [("d", D("4.8"), D(10)), ("b", D(1), D(5)), ("c", D(4), D(5))]
        for account, size_closed, _ in plan:
            holder = {h.account: h for h in BOOK}[account]
            after = Holder(account, holder.size - size_closed, holder.cost, holder.equity)
            assert leverage(after, MARK, ONE_CONTRACT) == D(4)  # all three end at leverage 4

    def test_only_the_top_when_the_total_is_small(self) -> None:
        # d alone: L = (800 - 3 x 100) / 80 = 6.25 >= 5 (next): d closes 8 - 6.25 x 0.8 = 3
        assert waterfill_leverage.sizes(BOOK, MARK, ONE_CONTRACT, D(3), D(1)) == [("d", D(3), D(10))]

    def test_rounds_to_the_step_by_largest_remainder(self) -> None:
        # total 5: L = (3,300 - 500) / 580 = 4.8276: exact d 4.1379, b 0.1724, c 0.6897 (sum 5);
        # floors 4, 0, 0 leave 1 step, to the largest remainder (c 0.6897): d 4, c 1
        assert waterfill_leverage.sizes(BOOK, MARK, ONE_CONTRACT, D(5), D(1)) == [("d", D(4), D(10)), ("c", D(1), D(5))]

    def test_everything_at_level_zero(self) -> None:
        plan = waterfill_leverage.sizes(BOOK, MARK, ONE_CONTRACT, D(43), D(1))  # 10 + 5 + 20 + 8
        assert amounts(plan) == {"a": D(10), "b": D(5), "c": D(20), "d": D(8)}

    def test_equity_at_or_below_zero_is_closed_first_in_full(self) -> None:
        broke = Holder("e", D(3), D(300), D(-50))  # infinite leverage
        # 5 contracts: e's 3 first, then 2 more: d alone, L = (800 - 200) / 80 = 7.5 >= 5: d 8 - 6 = 2
        plan = waterfill_leverage.sizes([*BOOK, broke], MARK, ONE_CONTRACT, D(5), D(1))
        assert plan == [("e", D(3), None), ("d", D(2), D(10))]

    def test_all_equity_at_or_below_zero_goes_pro_rata_to_size(self) -> None:
        book = [Holder("p", D(6), D(600), D(-5)), Holder("q", D(2), D(200), ZERO), Holder("r", D(4), D(400), D(-1))]
        # 6 of 12 contracts: half of each: p 3, r 2, q 1 (closing order: all None, by name)
        assert waterfill_leverage.sizes(book, MARK, ONE_CONTRACT, D(6), D(1)) == [
            ("p", D(3), None), ("q", D(1), None), ("r", D(2), None)]

    def test_contract_size_enters_through_the_notional(self) -> None:
        contract_size = D("0.01")  # 100 x 0.01 = 1 per contract
        book = [Holder("x", D(1000), D(900), D(100)), Holder("y", D(400), D(360), D(200))]  # leverage 10 and 2
        # L = (1,000 - 600 x 1) / 100 = 4 >= 2: x closes (1,000 - 400) / 1 = 600
        assert waterfill_leverage.sizes(book, MARK, contract_size, D(600), D(1)) == [("x", D(600), D(10))]

    def test_edges(self) -> None:
        assert waterfill_leverage.sizes([], MARK, ONE_CONTRACT, ZERO, D(1)) == []
        assert waterfill_leverage.sizes(BOOK, MARK, ONE_CONTRACT, ZERO, D(1)) == []
        with pytest.raises(ValueError, match="cannot close 1 contracts: the opposite holders hold only 0"):
            waterfill_leverage.sizes([], MARK, ONE_CONTRACT, D(1), D(1))
        with pytest.raises(ValueError, match="hold only 43"):
            waterfill_leverage.sizes(BOOK, MARK, ONE_CONTRACT, D(44), D(1))
        with pytest.raises(ValueError, match="multiple of 1"):
            waterfill_leverage.sizes(BOOK, MARK, ONE_CONTRACT, D("2.5"), D(1))
        with pytest.raises(ValueError, match="size of x"):
            waterfill_leverage.sizes([Holder("x", D("1.5"), D(150), D(10))], MARK, ONE_CONTRACT, D(1), D(1))
        with pytest.raises(ValueError, match="once"):
            waterfill_leverage.sizes([A, A], MARK, ONE_CONTRACT, D(1), D(1))

    def test_splitting_an_account_changes_no_owner_total(self) -> None:
        # d split into two of 4 contracts, equity 40 each (leverage 10): the same level 4,
        # d-1 and d-2 close 2.4 each = d's 4.8; b 1, c 4 unchanged
        first, second = split(E)
        plan = amounts(waterfill_leverage.sizes([A, B, C, first, second], MARK, ONE_CONTRACT, D("9.8"), STEP))
        assert plan["d-1"] + plan["d-2"] == D("4.8") and plan["b"] == D(1) and plan["c"] == D(4)

    def test_a_wash_trade_that_resets_the_entry_changes_nothing(self) -> None:
        reset = [Holder(h.account, h.size, h.size * MARK, h.equity) for h in BOOK]  # re-entered at the mark
        assert waterfill_leverage.sizes(reset, MARK, ONE_CONTRACT, D("9.8"), STEP) == waterfill_leverage.sizes(
            BOOK, MARK, ONE_CONTRACT, D("9.8"), STEP)

    @PROPERTY_SETTINGS
    @given(holders(), marks, sides, st.integers(min_value=0, max_value=10_000))
    def test_sums_exact_on_the_step_within_each_size(self, book: list[Holder], mark: Decimal, side: int,
                                                     per_ten_thousand: int) -> None:
        book = [Holder(h.account, side * h.size, side * h.cost, h.equity) for h in book]
        available = sum((abs(h.size) for h in book), ZERO)
        total = (available * per_ten_thousand / 10_000).quantize(STEP, rounding="ROUND_FLOOR", context=LEDGER_CONTEXT)
        plan = waterfill_leverage.sizes(book, mark, ONE_CONTRACT, total, STEP)
        sizes = {h.account: abs(h.size) for h in book}
        assert sum((size for _, size, _ in plan), ZERO) == total
        assert all(ZERO < size <= sizes[account] and is_multiple(size, STEP) for account, size, _ in plan)
        assert all(score == leverage(next(h for h in book if h.account == account), mark, ONE_CONTRACT)
                   for account, _, score in plan)

    @PROPERTY_SETTINGS
    @given(holders(), marks, st.integers(min_value=1, max_value=10_000))
    def test_exact_plan_leaves_the_reduced_at_one_level_and_the_rest_below(self, book: list[Holder], mark: Decimal,
                                                                           per_ten_thousand: int) -> None:
        available = sum((abs(h.size) for h in book), ZERO)
        total = available * per_ten_thousand / 10_000
        closed = waterfill_leverage.closed_exact(book, mark, ONE_CONTRACT, total)
        assert close(sum(closed.values(), ZERO), total, Decimal("1e-45"))
        solvent = [h for h in book if h.equity > ZERO]
        if any(h.equity <= ZERO and closed[h.account] < abs(h.size) for h in book):
            assert all(closed[h.account] == ZERO for h in solvent)  # infinite leverage goes first
            return
        after = {h.account: (abs(h.size) - closed[h.account]) * mark / h.equity for h in solvent}
        reduced = [after[h.account] for h in solvent if closed[h.account] > ZERO]
        if reduced:  # the reduced share one leverage, the level; nobody else is above it
            level = max(reduced)
            assert all(close(value, level, Decimal("1e-40")) for value in reduced)
            assert all(value <= level + Decimal("1e-40") for value in after.values())

    @PROPERTY_SETTINGS
    @given(holders(even=True), marks, st.integers(min_value=0, max_value=10_000), st.data())
    def test_splitting_an_account_into_two_of_the_same_leverage(self, book: list[Holder], mark: Decimal, per_ten_thousand: int,
                                                                 data: st.DataObject) -> None:
        if not book:
            return
        chosen = data.draw(st.sampled_from(book))
        available = sum((abs(h.size) for h in book), ZERO)
        total = (available * per_ten_thousand / 10_000).quantize(STEP, rounding="ROUND_FLOOR", context=LEDGER_CONTEXT)
        whole_exact = waterfill_leverage.closed_exact(book, mark, ONE_CONTRACT, total)
        halves = [h for h in book if h is not chosen] + list(split(chosen))
        split_exact = waterfill_leverage.closed_exact(halves, mark, ONE_CONTRACT, total)
        assert close(split_exact[chosen.account + "-1"] + split_exact[chosen.account + "-2"], whole_exact[chosen.account])
        assert all(close(split_exact[h.account], whole_exact[h.account]) for h in book if h is not chosen)
        whole = amounts(waterfill_leverage.sizes(book, mark, ONE_CONTRACT, total, STEP))
        parts = amounts(waterfill_leverage.sizes(halves, mark, ONE_CONTRACT, total, STEP))
        owner = parts.get(chosen.account + "-1", ZERO) + parts.get(chosen.account + "-2", ZERO)
        assert abs(owner - whole.get(chosen.account, ZERO)) <= 2 * STEP  # largest-remainder rounding only

    @PROPERTY_SETTINGS
    @given(holders(), marks, st.integers(min_value=0, max_value=10_000),
           st.lists(st.integers(min_value=1, max_value=400), min_size=6, max_size=6))
    def test_wash_trades_that_reset_entries_change_nothing(self, book: list[Holder], mark: Decimal, per_ten_thousand: int,
                                                           entries: list[int]) -> None:
        available = sum((abs(h.size) for h in book), ZERO)
        total = (available * per_ten_thousand / 10_000).quantize(STEP, rounding="ROUND_FLOOR", context=LEDGER_CONTEXT)
        washed = [Holder(h.account, h.size, h.size * D(entry), h.equity) for h, entry in zip(book, entries, strict=False)]
        assert (waterfill_leverage.sizes(washed, mark, ONE_CONTRACT, total, STEP)
                == waterfill_leverage.sizes(book, mark, ONE_CONTRACT, total, STEP))


# -- 5. leverage-weighted pro rata of gains ----------------------------------------------------


class TestLeverageWeightedGains:
    def test_weights_are_leverage_times_gain_and_losers_pay_nothing(self) -> None:
        paid, uncovered = leverage_weighted_gains.shares(BOOK, MARK, ONE_CONTRACT, D(490), CENT)
        # weights a 2 x 200 = 400, b 5 x 100 = 500, d 10 x 400 = 4,000 (sum 4,900); c has no gain
        assert [(account, weight) for account, _, weight in paid] == [("a", D(400)), ("b", D(500)), ("d", D(4000))]
        # 490 / 4,900 = 0.1 per unit of weight: a 40, b 50, d 400 (exactly d's gain)
        assert amounts(paid) == {"a": D(40), "b": D(50), "d": D(400)} and uncovered == ZERO

    def test_caps_redistribute_the_excess_by_water_filling(self) -> None:
        paid, uncovered = leverage_weighted_gains.shares(BOOK, MARK, ONE_CONTRACT, D(600), CENT)
        # round 1: d 600 x 4,000 / 4,900 = 489.80 > 400 -> d 400; round 2: 200 over a 400, b 500:
        # b 111.11 > 100 -> b 100; round 3: a takes the last 100 (<= 200)
        assert amounts(paid) == {"a": D(100), "b": D(100), "d": D(400)} and uncovered == ZERO

    def test_rounding_by_largest_remainder(self) -> None:
        paid, _ = leverage_weighted_gains.shares(BOOK, MARK, ONE_CONTRACT, D(50), CENT)
        # exact a 50 x 400 / 4,900 = 4.0816, b 5.1020, d 40.8163; floors 4.08 + 5.10 + 40.81 = 49.99;
        # the last cent to the largest remainder, d's 0.0063
        assert amounts(paid) == {"a": D("4.08"), "b": D("5.10"), "d": D("40.82")}

    def test_loss_above_all_gains_leaves_the_rest_uncovered(self) -> None:
        paid, uncovered = leverage_weighted_gains.shares(BOOK, MARK, ONE_CONTRACT, D(800), CENT)
        assert amounts(paid) == {"a": D(200), "b": D(100), "d": D(400)} and uncovered == D(100)  # 800 - 700

    def test_equity_at_or_below_zero_pays_last_pro_rata_to_gain(self) -> None:
        broke = Holder("e", D(2), D(100), D(-10))  # gain 100, no finite leverage: weight 0
        paid, _ = leverage_weighted_gains.shares([A, B, broke], MARK, ONE_CONTRACT, D(200), CENT)
        # weights a 400, b 500: b 200 x 500 / 900 = 111.11 > its gain 100 -> b 100, a the other 100;
        # 200 fits the others' gains (300), so e pays nothing
        assert amounts(paid) == {"a": D(100), "b": D(100), "e": ZERO}
        paid, uncovered = leverage_weighted_gains.shares([A, B, broke], MARK, ONE_CONTRACT, D(350), CENT)
        # 350 > 300: a 200 and b 100 in full, e the last 50 (of its 100)
        assert amounts(paid) == {"a": D(200), "b": D(100), "e": D(50)} and uncovered == ZERO
        paid, uncovered = leverage_weighted_gains.shares([broke, Holder("f", D(2), D(50), ZERO)], MARK, ONE_CONTRACT, D(50), CENT)
        # all at equity <= 0: pro rata to gain, e 100 and f 150: 20 and 30
        assert amounts(paid) == {"e": D(20), "f": D(30)} and uncovered == ZERO

    def test_edges(self) -> None:
        assert leverage_weighted_gains.shares([], MARK, ONE_CONTRACT, D(5), CENT) == ([], D(5))
        assert leverage_weighted_gains.shares([C], MARK, ONE_CONTRACT, D(5), CENT) == ([], D(5))  # only a loser
        paid, _ = leverage_weighted_gains.shares(BOOK, MARK, ONE_CONTRACT, ZERO, CENT)
        assert amounts(paid) == {"a": ZERO, "b": ZERO, "d": ZERO}
        with pytest.raises(ValueError, match=r"multiple of 0\.01"):
            leverage_weighted_gains.shares(BOOK, MARK, ONE_CONTRACT, D("0.001"), CENT)
        with pytest.raises(ValueError, match="non-negative"):
            leverage_weighted_gains.shares(BOOK, MARK, ONE_CONTRACT, D(-1), CENT)

    def test_splitting_an_account_of_the_same_leverage(self) -> None:
        # d split in two (4 contracts, cost 200, equity 40 each): leverage 10, gain 200, weight 2,000 each
        first, second = split(E)
        paid, _ = leverage_weighted_gains.shares([A, B, C, first, second], MARK, ONE_CONTRACT, D(490), CENT)
        assert amounts(paid) == {"a": D(40), "b": D(50), "d-1": D(200), "d-2": D(200)}

    @PROPERTY_SETTINGS
    @given(holders(), marks, st.integers(min_value=0, max_value=10_000_000))
    def test_sums_exact_capped_at_gains(self, book: list[Holder], mark: Decimal, loss_cents: int) -> None:
        loss = D(loss_cents) * CENT
        paid, uncovered = leverage_weighted_gains.shares(book, mark, ONE_CONTRACT, loss, CENT)
        caps = {h.account: gain_cap(h, mark, ONE_CONTRACT, CENT) for h in book}
        feasible = sum(caps.values(), ZERO)
        assert sum((share for _, share, _ in paid), ZERO) == min(loss, feasible) and uncovered == loss - min(loss, feasible)
        assert all(ZERO <= share <= caps[account] and is_multiple(share, CENT) for account, share, _ in paid)
        assert {account for account, _, _ in paid} == {h.account for h in book if h.size * mark - h.cost > ZERO}

    @PROPERTY_SETTINGS
    @given(holders(), marks, st.integers(min_value=0, max_value=10_000_000))
    def test_nobody_pays_more_than_its_weight_beside_one_below_its_cap(self, book: list[Holder], mark: Decimal,
                                                                       loss_cents: int) -> None:
        paid, _ = leverage_weighted_gains.shares(book, mark, ONE_CONTRACT, D(loss_cents) * CENT, CENT)
        caps = {h.account: gain_cap(h, mark, ONE_CONTRACT, CENT) for h in book}
        weighted = [(share, weight, caps[account]) for account, share, weight in paid if weight > ZERO]
        for share_free, weight_free, cap_free in weighted:
            if share_free + CENT > cap_free:
                continue  # at (or within a cent of) its cap: no bound on the others from it
            for share, weight, _ in weighted:  # share / weight <= (share_free + 1 cent) / weight_free, within a cent
                assert share * weight_free <= (share_free + CENT) * weight + CENT * weight_free

    @PROPERTY_SETTINGS
    @given(holders(even=True), marks, st.integers(min_value=0, max_value=10_000_000), st.data())
    def test_splitting_an_account_into_two_of_the_same_leverage(self, book: list[Holder], mark: Decimal, loss_cents: int,
                                                                 data: st.DataObject) -> None:
        if not book:
            return
        chosen = data.draw(st.sampled_from(book))
        loss = D(loss_cents) * CENT
        whole = amounts(leverage_weighted_gains.shares(book, mark, ONE_CONTRACT, loss, CENT)[0])
        halves = [h for h in book if h is not chosen] + list(split(chosen))
        parts = amounts(leverage_weighted_gains.shares(halves, mark, ONE_CONTRACT, loss, CENT)[0])
        owner = parts.get(chosen.account + "-1", ZERO) + parts.get(chosen.account + "-2", ZERO)
        assert abs(owner - whole.get(chosen.account, ZERO)) <= 2 * CENT


# -- the existing cash policies, as pure functions ---------------------------------------------


class TestHaircutGainsAndSocialized:
    def test_haircut_gains_pro_rata_to_gain(self) -> None:
        paid, uncovered = haircut_gains.shares(BOOK, MARK, ONE_CONTRACT, D(490), D(1))
        # 490 of gains 200 + 100 + 400 = 700 is 70 %: a 140, b 70, d 280
        assert amounts(paid) == {"a": D(140), "b": D(70), "d": D(280)} and uncovered == ZERO
        paid, uncovered = haircut_gains.shares(BOOK, MARK, ONE_CONTRACT, D(701), D(1))
        assert amounts(paid) == {"a": D(200), "b": D(100), "d": D(400)} and uncovered == D(1)

    def test_socialized_per_contract_over_both_sides(self) -> None:
        short = Holder("c", D(-20), D(-2200), D(400))
        # 430 over 10 + 5 + 20 + 8 = 43 contracts: 10 per contract
        assert socialize_per_contract.shares([A, B, short, E], D(430), D(1)) == [
            ("a", D(100)), ("b", D(50)), ("c", D(200)), ("d", D(80))]
        # 1.00 over 1, 1, 1 at the cent: 0.34, 0.33, 0.33 (ties by name)
        three = [Holder(name, D(1), D(100), D(10)) for name in "xyz"]
        assert socialize_per_contract.shares(three, D(1), CENT) == [("x", D("0.34")), ("y", D("0.33")), ("z", D("0.33"))]
        with pytest.raises(ValueError, match="no open position"):
            socialize_per_contract.shares([Holder("flat", ZERO, ZERO, D(5))], D(1), CENT)


# -- 6. the registry and the dispatchers -------------------------------------------------------


class TestRegistry:
    def test_names(self) -> None:
        assert set(QUEUE_POLICIES) == {"adl", "adl_hyperliquid", "waterfill_leverage"}
        assert {"haircut_gains", "leverage_weighted_gains", "socialize_per_contract"} == HAIRCUT_POLICIES
        assert (ADL, SOCIALIZE_PER_CONTRACT, HAIRCUT_GAINS) == (
            parameters.ADL, parameters.SOCIALIZE_PER_CONTRACT, parameters.HAIRCUT_GAINS)
        assert (ADL_HYPERLIQUID, WATERFILL_LEVERAGE, LEVERAGE_WEIGHTED_GAINS) == (
            "adl_hyperliquid", "waterfill_leverage", "leverage_weighted_gains")
        assert set(parameters.LOSS_POLICIES) <= set(QUEUE_POLICIES) | HAIRCUT_POLICIES

    def test_plan_adl_in_the_engine_order(self) -> None:
        # BitMEX: d 10, b 1.25, a 0.5, c -1/55: all 43 contracts in that order
        plan = plan_deleveraging(ADL, BOOK, MARK, ONE_CONTRACT, D(43), D(1))
        assert [account for account, _, _ in plan] == engine_adl_order(BOOK, MARK, ONE_CONTRACT) == ["d", "b", "a", "c"]
        assert plan_deleveraging(ADL, BOOK, MARK, ONE_CONTRACT, D(20), D(1)) == [
            ("d", D(8), D(10)), ("b", D(5), D("1.25")), ("a", D(7), D("0.5"))]

    def test_plan_adl_hyperliquid(self) -> None:
        # d 20, b 6.25, c 4.545, a 2.5: 20 contracts close d 8, b 5, c 7
        plan = plan_deleveraging(ADL_HYPERLIQUID, BOOK, MARK, ONE_CONTRACT, D(20), D(1))
        assert [(account, size) for account, size, _ in plan] == [("d", D(8)), ("b", D(5)), ("c", D(7))]

    def test_plan_waterfill(self) -> None:
        assert plan_deleveraging(WATERFILL_LEVERAGE, BOOK, MARK, ONE_CONTRACT, D("9.8"), STEP) == waterfill_leverage.sizes(
            BOOK, MARK, ONE_CONTRACT, D("9.8"), STEP)

    def test_plan_edges(self) -> None:
        with pytest.raises(ValueError, match="'haircut_gains' is not a queue policy"):
            plan_deleveraging(HAIRCUT_GAINS, BOOK, MARK, ONE_CONTRACT, D(1), D(1))
        with pytest.raises(ValueError, match="one side"):
            plan_deleveraging(ADL, [A, Holder("s", D(-1), D(-100), D(10))], MARK, ONE_CONTRACT, D(1), D(1))
        for policy in QUEUE_POLICIES:
            assert plan_deleveraging(policy, [], MARK, ONE_CONTRACT, ZERO, D(1)) == []
            with pytest.raises(ValueError, match="hold only 43"):
                plan_deleveraging(policy, BOOK, MARK, ONE_CONTRACT, D(44), D(1))
            with pytest.raises(ValueError, match="multiple of 1"):
                plan_deleveraging(policy, BOOK, MARK, ONE_CONTRACT, D("0.5"), D(1))
        broke = [Holder("p", D(2), D(200), D(-1)), Holder("q", D(3), D(300), ZERO)]
        # all equity <= 0: the queues take them by name (all None), water-filling pro rata to size
        assert plan_deleveraging(ADL, broke, MARK, ONE_CONTRACT, D(3), D(1)) == [("p", D(2), None), ("q", D(1), None)]
        assert plan_deleveraging(WATERFILL_LEVERAGE, broke, MARK, ONE_CONTRACT, D(5), D(1)) == [
            ("p", D(2), None), ("q", D(3), None)]

    @PROPERTY_SETTINGS
    @given(holders(), marks, sides)
    def test_plan_adl_follows_the_engine_ranking(self, book: list[Holder], mark: Decimal, side: int) -> None:
        book = [Holder(h.account, side * h.size, side * h.cost, h.equity) for h in book]
        total = sum((abs(h.size) for h in book), ZERO)
        plan = plan_deleveraging(ADL, book, mark, ONE_CONTRACT, total, STEP)
        assert [account for account, _, _ in plan] == engine_adl_order(book, mark, ONE_CONTRACT)


class TestBear:
    def test_each_policy_on_the_book(self) -> None:
        expected = {
            SOCIALIZE_PER_CONTRACT: (D(430), {"a": D(100), "b": D(50), "c": D(200), "d": D(80)}),  # 10 per contract
            HAIRCUT_GAINS: (D(490), {"a": D(140), "b": D(70), "c": ZERO, "d": D(280)}),  # 70 % of each gain
            # see TestLeverageWeightedGains
            LEVERAGE_WEIGHTED_GAINS: (D(600), {"a": D(100), "b": D(100), "c": ZERO, "d": D(400)}),
            # greedy by BitMEX score over the winners, each up to its gain: d 400, b 100, then 50 of a
            ADL: (D(550), {"a": D(50), "b": D(100), "c": ZERO, "d": D(400)}),
            # Hyperliquid order d, b, (c has no gain), a: the same amounts here
            ADL_HYPERLIQUID: (D(550), {"a": D(50), "b": D(100), "c": ZERO, "d": D(400)}),
            # 600 at the mark is 6 contracts over the winners d, b, a: L = (1,300 - 600) / 180 = 3.89 >= 2,
            # d 4.89, b 1.11 contracts: d 407 > its gain 400 -> d 400, b 100 (its gain); the last 100 is
            # water-filled over a alone: a 100
            WATERFILL_LEVERAGE: (D(600), {"a": D(100), "b": D(100), "c": ZERO, "d": D(400)}),
        }
        for policy, (deficit, borne) in expected.items():
            assert dict(bear(policy, BOOK, MARK, ONE_CONTRACT, deficit, CENT)) == borne, policy

    def test_waterfill_without_capping_bears_the_mark_value_of_what_it_closes(self) -> None:
        # 300 at the mark is 3 contracts: d alone, L = (800 - 300) / 80 = 6.25 >= 5: d closes 3, bears 300
        assert dict(bear(WATERFILL_LEVERAGE, BOOK, MARK, ONE_CONTRACT, D(300), CENT))["d"] == D(300)

    def test_the_two_queues_can_disagree(self) -> None:
        p = Holder("p", D(10), D(500), D(1000))  # entry 50, gain 500, leverage 1: BitMEX 100 % x 1 = 1; HL 2 x 1 = 2
        q = Holder("q", D(10), D(900), D(250))  # entry 90, gain 100, leverage 4: BitMEX 11.1 % x 4 = 0.44; HL 1.11 x 4 = 4.44
        assert dict(bear(ADL, [p, q], MARK, ONE_CONTRACT, D(100), CENT)) == {"p": D(100), "q": ZERO}
        assert dict(bear(ADL_HYPERLIQUID, [p, q], MARK, ONE_CONTRACT, D(100), CENT)) == {"p": ZERO, "q": D(100)}

    def test_edges(self) -> None:
        for policy in ALL_POLICIES:
            assert bear(policy, [], MARK, ONE_CONTRACT, D(100), CENT) == []
            assert bear(policy, [Holder("flat", ZERO, ZERO, D(5))], MARK, ONE_CONTRACT, D(100), CENT) == []
            with pytest.raises(ValueError, match=r"multiple of 0\.01"):
                bear(policy, BOOK, MARK, ONE_CONTRACT, D("0.001"), CENT)
        broke = [Holder("p", D(2), D(100), D(-1)), Holder("q", D(3), D(150), ZERO)]  # gains 100 and 150, equity <= 0
        for policy in ALL_POLICIES:  # every policy still reaches them: 50 of the 250
            assert sum((amount for _, amount in bear(policy, broke, MARK, ONE_CONTRACT, D(50), CENT)), ZERO) == D(50)
        with pytest.raises(ValueError, match="unknown loss policy 'nope'"):
            bear("nope", BOOK, MARK, ONE_CONTRACT, D(1), CENT)

    @PROPERTY_SETTINGS
    @given(st.sampled_from(ALL_POLICIES), holders(), marks, sides, st.integers(min_value=0, max_value=10_000_000))
    def test_sums_exact_nothing_negative_caps_respected(self, policy: str, book: list[Holder], mark: Decimal, side: int,
                                                        deficit_cents: int) -> None:
        book = [Holder(h.account, side * h.size, side * h.cost, h.equity) for h in book]
        deficit = D(deficit_cents) * CENT
        borne = bear(policy, book, mark, ONE_CONTRACT, deficit, CENT)
        caps = {h.account: gain_cap(h, mark, ONE_CONTRACT, CENT) for h in book}
        feasible = (deficit if book else ZERO) if policy == SOCIALIZE_PER_CONTRACT else sum(caps.values(), ZERO)
        assert [account for account, _ in borne] == sorted(h.account for h in book)
        assert sum((amount for _, amount in borne), ZERO) == min(deficit, feasible)
        assert all(amount >= ZERO and is_multiple(amount, CENT) for _, amount in borne)
        if policy != SOCIALIZE_PER_CONTRACT:
            assert all(amount <= caps[account] for account, amount in borne)

    @PROPERTY_SETTINGS
    @given(st.sampled_from([SOCIALIZE_PER_CONTRACT, HAIRCUT_GAINS, LEVERAGE_WEIGHTED_GAINS, WATERFILL_LEVERAGE]),
           holders(even=True), marks, st.integers(min_value=0, max_value=10_000_000), st.data())
    def test_pro_rata_policies_are_split_invariant(self, policy: str, book: list[Holder], mark: Decimal, deficit_cents: int,
                                                   data: st.DataObject) -> None:
        if not book:
            return
        chosen = data.draw(st.sampled_from(book))
        deficit = D(deficit_cents) * CENT
        whole = dict(bear(policy, book, mark, ONE_CONTRACT, deficit, CENT))
        halves = [h for h in book if h is not chosen] + list(split(chosen))
        parts = dict(bear(policy, halves, mark, ONE_CONTRACT, deficit, CENT))
        owner = parts[chosen.account + "-1"] + parts[chosen.account + "-2"]
        assert abs(owner - whole[chosen.account]) <= 2 * CENT, (owner, whole[chosen.account])


def test_allocate_capped_water_fills_and_refuses_an_unreachable_total() -> None:
    caps = {"a": D(50), "b": D(50), "c": D(30)}
    # 100 over weights 1, 1, 2: c's 50 passes its cap 30; the other 70 goes 35, 35
    assert allocate_capped(D(100), [("a", D(1)), ("b", D(1)), ("c", D(2))], caps, D(1)) == {"a": D(35), "b": D(35), "c": D(30)}
    with pytest.raises(ValueError, match="exceeds the caps 100"):
        allocate_capped(D(101), [("a", D(1)), ("b", D(1)), ("c", ZERO)], caps, D(1))


# -- the standing of every holder: loss_policies.scores -----------------------------------------

# The book plus e: long 2 at entry 50 (cost 100) with equity -5: notional 200, gain 100, no leverage.
UNDERWATER = Holder("e", D(2), D(100), D(-5))
STANDING_BOOK = [*BOOK, UNDERWATER]


def standing_table() -> Mapping[str, list[tuple[str, Decimal | None]]]:
    """Order (rank 1 first) and score of each holder of STANDING_BOOK at mark 100, per policy.

    Built inside a test, so the divisions run at the ledger's 60 digits as the policies' do.
    """
    return MappingProxyType({
        # PnL% x leverage: d 100 % x 10, b 25 % x 5, a 25 % x 2; c at a loss -200 / 2,200 / 5; e equity <= 0 last
        ADL: [("d", D(10)), ("b", D("1.25")), ("a", D("0.5")), ("c", D(-200) / D(2200) / D(5)), ("e", None)],
        # (mark / entry) x leverage: d 2 x 10, b 1.25 x 5, c (100 / 110) x 5 = 4.545..., a 1.25 x 2; e last
        ADL_HYPERLIQUID: [("d", D(20)), ("b", D("6.25")), ("c", D(100) / D(110) * D(5)), ("a", D("2.5")), ("e", None)],
        # leverage, equity <= 0 (infinite) first: e, d 800 / 80, b 500 / 100 and c 2,000 / 400 (tie: by name), a 2
        WATERFILL_LEVERAGE: [("e", None), ("d", D(10)), ("b", D(5)), ("c", D(5)), ("a", D(2))],
        # gain: d 400, a 200, b 100 and e 100 (tie: by name), c -200
        HAIRCUT_GAINS: [("d", D(400)), ("a", D(200)), ("b", D(100)), ("e", D(100)), ("c", D(-200))],
        # leverage x gain: d 10 x 400, b 5 x 100, a 2 x 200; c (no gain) and e (no leverage) 0, by name
        LEVERAGE_WEIGHTED_GAINS: [("d", D(4000)), ("b", D(500)), ("a", D(400)), ("c", ZERO), ("e", ZERO)],
        # |size|: c 20, a 10, d 8, b 5, e 2
        SOCIALIZE_PER_CONTRACT: [("c", D(20)), ("a", D(10)), ("d", D(8)), ("b", D(5)), ("e", D(2))],
    })


class TestScores:
    def test_the_hand_computed_table_of_every_policy(self) -> None:
        assert set(standing_table()) == set(parameters.LOSS_POLICIES)
        for policy, expected in standing_table().items():
            assert standing(policy, STANDING_BOOK, MARK, ONE_CONTRACT) == expected, policy

    def test_the_order_of_the_holders_given_does_not_matter(self) -> None:
        for policy, expected in standing_table().items():
            assert standing(policy, list(reversed(STANDING_BOOK)), MARK, ONE_CONTRACT) == expected, policy

    def test_each_score_is_the_policy_modules_own(self) -> None:
        by_name = {holder.account: holder for holder in STANDING_BOOK}
        rules = {ADL: adl_bitmex.score, ADL_HYPERLIQUID: adl_hyperliquid.score, WATERFILL_LEVERAGE: leverage,
                 LEVERAGE_WEIGHTED_GAINS: leverage_weighted_gains.weight}
        for policy, rule in rules.items():
            for account, score in standing(policy, STANDING_BOOK, MARK, ONE_CONTRACT):
                assert score == rule(by_name[account], MARK, ONE_CONTRACT), (policy, account)

    def test_edges(self) -> None:
        flat = Holder("flat", ZERO, ZERO, D(5))
        for policy in parameters.LOSS_POLICIES:
            assert standing(policy, [], MARK, ONE_CONTRACT) == []
            assert [account for account, _ in standing(policy, [*BOOK, flat], MARK, ONE_CONTRACT)] == [
                account for account, _ in standing_table()[policy] if account != "e"]  # the flat holder is left out
            with pytest.raises(LossPolicyError, match="must be positive"):
                standing(policy, BOOK, ZERO, ONE_CONTRACT)
            with pytest.raises(LossPolicyError, match="each account once"):
                standing(policy, [A, A], MARK, ONE_CONTRACT)
        with pytest.raises(LossPolicyError, match="unknown loss policy 'nope'"):
            standing("nope", BOOK, MARK, ONE_CONTRACT)

    @PROPERTY_SETTINGS
    @given(st.sampled_from(sorted(QUEUE_POLICIES)), holders(), marks, sides)
    def test_a_queue_policy_closes_in_this_order(self, policy: str, book: list[Holder], mark: Decimal, side: int) -> None:
        """Closing every contract, the engine's plan visits the holders in rank order."""
        book = [Holder(h.account, side * h.size, side * h.cost, h.equity) for h in book]
        total = sum((abs(h.size) for h in book), ZERO)
        plan = plan_deleveraging(policy, book, mark, ONE_CONTRACT, total, STEP)
        assert [account for account, _, _ in plan] == [account for account, _ in standing(policy, book, mark, ONE_CONTRACT)]

    @PROPERTY_SETTINGS
    @given(holders(), marks, sides)
    def test_adl_is_the_engine_ranking(self, book: list[Holder], mark: Decimal, side: int) -> None:
        book = [Holder(h.account, side * h.size, side * h.cost, h.equity) for h in book]
        assert [account for account, _ in standing(ADL, book, mark, ONE_CONTRACT)] == engine_adl_order(book, mark, ONE_CONTRACT)
