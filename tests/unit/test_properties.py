"""Property test: random deposits, withdrawals, trades and prices keep the ledger exact.

After every command: money is conserved (sum of equity at the mark plus the insurance
fund equals deposits - withdrawals + contributions), positions net to zero per market,
every account rebuilt from its events equals the fold of the log, and a rejected command
changed nothing (no new event, every account view unchanged).
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearing.audit.invariants import check_ledger
from tests.ledger import Ledger, unversioned

ACCOUNTS = ["a", "b", "c", "d"]
SETUP = [
    {"type": "create_market", "market": "X-PERP", "kind": "perpetual", "tick_size": "0.5", "step_size": "0.01",
     "initial_margin_fraction": "0.2", "maintenance_margin_fraction": "0.1", "price_band": "0.25"},
    {"type": "create_market", "market": "Y-PERP", "kind": "perpetual", "tick_size": "0.01", "step_size": "0.1",
     "contract_size": "10", "tiers": [
         {"notional_floor": "0", "initial_margin_fraction": "0.1", "maintenance_margin_fraction": "0.05"},
         {"notional_floor": "5000", "initial_margin_fraction": "0.25", "maintenance_margin_fraction": "0.15"}],
     "price_band": "0.3"},
    {"type": "price", "market": "X-PERP", "price": "1000"},
    {"type": "price", "market": "Y-PERP", "price": "20"},
    *({"type": "open_account", "account": name} for name in ACCOUNTS),
    *({"type": "deposit", "account": name, "amount": "3000"} for name in ACCOUNTS),
]

amounts = st.decimals(min_value="0.000001", max_value="5000", places=6).map(lambda d: format(d.normalize(), "f"))
markets = st.sampled_from([("X-PERP", "0.5", "0.01", 1000), ("Y-PERP", "0.01", "0.1", 20)])


@st.composite
def commands(draw):
    kind = draw(st.sampled_from(["deposit", "deposit", "withdraw", "trade", "trade", "trade", "price", "fund"]))
    if kind in ("deposit", "withdraw"):
        return {"type": kind, "account": draw(st.sampled_from(ACCOUNTS)), "amount": draw(amounts)}
    if kind == "fund":
        return {"type": "fund_insurance", "amount": draw(amounts)}
    market, tick, step, base = draw(markets)
    ticks = draw(st.integers(min_value=int(base * 0.85 / float(tick)), max_value=int(base * 1.15 / float(tick))))
    price = format((ticks * Decimal(tick)).normalize(), "f")
    if kind == "price":
        return {"type": "price", "market": market, "price": price}
    buyer, seller = draw(st.lists(st.sampled_from(ACCOUNTS), min_size=2, max_size=2, unique=draw(st.integers(0, 7)) > 0))
    size = format((draw(st.integers(min_value=1, max_value=1500)) * Decimal(step)).normalize(), "f")
    return {"type": "trade", "market": market, "buyer": buyer, "seller": seller, "size": size, "price": price}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(commands(), min_size=1, max_size=40))
def test_random_sequences_conserve_money_and_rejections_change_nothing(sequence):
    ledger = Ledger()
    ledger.post_ok(SETUP)
    for command in sequence:
        head = ledger.head()
        before = {name: ledger.account(name) for name in ACCOUNTS}
        (outcome,) = ledger.post([command])
        if outcome.status == "rejected":
            ledger.assert_rejection_wrote_only_its_answer(head, outcome)
            assert {name: ledger.account(name) for name in ACCOUNTS} == before
        else:
            assert ledger.head() > head
        check_ledger(ledger.app)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(commands(), min_size=5, max_size=60), st.integers(min_value=1, max_value=7))
def test_batching_does_not_change_outcomes_or_state(sequence, batch_size):
    one_by_one, batched = Ledger(), Ledger()
    for ledger in (one_by_one, batched):
        ledger.post_ok(SETUP)
    with_ids = [{**command, "id": f"c{index}"} for index, command in enumerate(sequence)]
    first = [(o.status, o.code) for o in one_by_one.post(with_ids, batch_size=1)]
    second = [(o.status, o.code) for o in batched.post(with_ids, batch_size=batch_size)]
    assert first == second
    assert [unversioned(one_by_one.account(n)) for n in ACCOUNTS] == [unversioned(batched.account(n)) for n in ACCOUNTS]
