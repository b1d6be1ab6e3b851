"""Property test: random price paths through a leveraged population keep the ledger exact.

Hypothesis draws a loss policy, an insurance fund, a grace period, the backstop
liquidator's capital, a population of leveraged longs and shorts in two markets, and a
path of price moves (steps of 3 %, or of 2 % on a third of the paths, which then stop
just below maintenance more often) and funding periods. The backstop is an ordinary
funded account (ADR 13) that takes a position only if it can carry it (IM met, notional
<= 1 x equity); its capital is drawn small (none - opened on first use - to 5,000,
against positions of 100 to 1,800 of notional), so some paths see takeovers and others
its refusal (``TakeoverRefused``: the insolvent deleveraged, the solvent waiting). After
every command ``check_ledger`` holds (money conserved, fund never negative, flat accounts
pay no losses, allocations sum to their loss, bankrupt accounts end at zero or above,
every account touched - the backstop included - solvent at the end of every command,
replay equals live), and no account is missed by the liquidation-price index: every
account below maintenance after a price move (the backstop included) is under a margin
call, being liquidated, or bankrupt - none is still marked healthy.
"""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clearing.audit.decisions import audit_log
from clearing.audit.invariants import check_ledger
from clearing.domain.parameters import LOSS_POLICIES
from clearing.domain.risk.totals import margin_totals
from tests.ledger import Ledger

MARKETS = {"X-PERP": ("1000", "0.5", "0.01"), "Y-PERP": ("20", "0.01", "0.1")}


@st.composite
def scenarios(draw):
    policy = draw(st.sampled_from(list(LOSS_POLICIES)))
    fund = draw(st.sampled_from([0, 0, 5, 50, 400]))
    grace = draw(st.sampled_from([0, 0, 60]))
    traders = draw(st.lists(st.tuples(st.sampled_from(list(MARKETS)), st.integers(1, 9), st.integers(150, 900)),
                            min_size=2, max_size=6))
    moves = draw(st.lists(st.tuples(st.sampled_from([*MARKETS, "funding"]), st.integers(-15, 15)), min_size=3, max_size=14))
    backstop = draw(st.sampled_from([0, 200, 1000, 5000]))
    scale = draw(st.sampled_from([3, 3, 2]))  # % per unit of move (3 x 15 = 45 % stays inside the 50 % band)
    return policy, fund, grace, backstop, traders, [(target, percent if target == "funding" else percent * scale)
                                                    for target, percent in moves]


def setup(policy: str, fund: int, grace: int, traders, backstop: int = 0) -> tuple[Ledger, list[str]]:
    lines = [
        {"type": "create_market", "market": "X-PERP", "kind": "perpetual", "tick_size": "0.5", "step_size": "0.01",
         "initial_margin_fraction": "0.1", "maintenance_margin_fraction": "0.05", "price_band": "0.5"},
        {"type": "create_market", "market": "Y-PERP", "kind": "perpetual", "tick_size": "0.01", "step_size": "0.1",
         "contract_size": "10", "initial_margin_fraction": "0.2", "maintenance_margin_fraction": "0.1", "price_band": "0.5"},
        {"type": "set_parameters", "parameters": {"loss_policy": policy, "margin_call_grace": grace}},
        {"type": "price", "market": "X-PERP", "price": "1000"},
        {"type": "price", "market": "Y-PERP", "price": "20"},
        {"type": "open_account", "account": "maker"},
        {"type": "deposit", "account": "maker", "amount": "1000000"},
    ]
    if fund:
        lines.append({"type": "fund_insurance", "amount": str(fund)})
    if backstop:
        lines += [{"type": "open_account", "account": "backstop"},
                  {"type": "deposit", "account": "backstop", "amount": str(backstop)}]
    names = []
    for n, (market, steps, deposit) in enumerate(traders):
        name = f"t{n}"
        names.append(name)
        price, _, step = MARKETS[market]
        lines += [{"type": "open_account", "account": name}, {"type": "deposit", "account": name, "amount": str(deposit)}]
        size = format(steps * Decimal(step) * 10, "f")
        buyer, seller = (name, "maker") if n % 2 == 0 else ("maker", name)
        lines.append({"type": "trade", "market": market, "buyer": buyer, "seller": seller, "size": size, "price": price})
    ledger = Ledger()
    outcomes = ledger.post(lines)
    assert all(o.status == "applied" or o.code == "insufficient_margin" for o in outcomes), [
        (o.code, o.message) for o in outcomes]
    return ledger, names


def assert_nobody_missed(ledger: Ledger) -> None:
    app = ledger.app
    markets = {name: app.get_market(name) for name in MARKETS}
    for name in [f"t{n}" for n in range(6)] + ["backstop"]:
        try:
            account = app.get_account(name)
        except Exception:
            continue
        if not account.open_positions():
            continue
        totals = margin_totals(account.collateral, account.positions, markets)
        if totals.equity < totals.maintenance_margin:
            assert account.risk_status != "healthy", f"{name} is below maintenance but still healthy"


#: Paths that pin the rarer mechanisms, whatever Hypothesis draws. The draw is deterministic
#: for one process but not across them: collecting tests/unit/test_reports.py first (which
#: imports projections.ledgers) was seen to turn 12 paths of 100 with a loss allocation into
#: none, so ``test_the_paths_above_reached_every_mechanism`` does not rest on the draw alone.
EXAMPLES = [
    # X-PERP long 0.9 on 150 (equity 16.7 % of notional); -13 %: equity 33 of notional 783 (4.2 % <
    # MMF 5 %, above the 1.67 % where the fill would be below the bankruptcy quote) and no backstop
    # capital: the takeover is refused and the account waits; -30 % more: insolvent, refused and
    # deleveraged although the policy is a cash one
    ("socialize_per_contract", 0, 0, 0, [("X-PERP", 9, 150), ("X-PERP", 9, 900)], [("X-PERP", -13), ("X-PERP", -30)]),
    # the same long at -30 % at once, a backstop of 5,000 that can carry it: taken, the fund's 5 drawn,
    # the rest haircut from the gains of the two shorts
    ("haircut_gains", 5, 0, 5000, [("X-PERP", 9, 150), ("X-PERP", 9, 900), ("X-PERP", 3, 900)],
     [("funding", 5), ("X-PERP", -30)]),
    # Y-PERP long 9 contracts on 400 under adl with a fund of 400 and a backstop of 200: refused and
    # deleveraged after the fund paid the negative equity
    ("adl", 400, 0, 200, [("Y-PERP", 9, 400), ("Y-PERP", 9, 900)], [("Y-PERP", -12), ("Y-PERP", -12), ("Y-PERP", -30)]),
    # the same path under the two other queue policies, and the first two under leverage-weighted gains
    ("adl_hyperliquid", 400, 0, 200, [("Y-PERP", 9, 400), ("Y-PERP", 9, 900)],
     [("Y-PERP", -12), ("Y-PERP", -12), ("Y-PERP", -30)]),
    ("waterfill_leverage", 0, 0, 0, [("X-PERP", 9, 150), ("X-PERP", 5, 300), ("X-PERP", 9, 900), ("X-PERP", 4, 200)],
     [("X-PERP", -13), ("X-PERP", -30)]),
    ("socialize_per_contract", 5, 0, 5000, [("X-PERP", 9, 150), ("X-PERP", 9, 900), ("X-PERP", 3, 900)],
     [("funding", 5), ("X-PERP", -30)]),
    ("leverage_weighted_gains", 5, 0, 5000, [("X-PERP", 9, 150), ("X-PERP", 9, 900), ("X-PERP", 3, 900)],
     [("funding", 5), ("X-PERP", -30)]),
]


def with_examples(test):
    for scenario in EXAMPLES:
        test = example(scenario)(test)
    return test


@settings(max_examples=100, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@with_examples
@given(scenarios())
def test_random_price_paths_keep_every_invariant(scenario):
    policy, fund, grace, backstop, traders, moves = scenario
    ledger, _ = setup(policy, fund, grace, traders, backstop)
    check_ledger(ledger.app)
    prices = {"X-PERP": Decimal(1000), "Y-PERP": Decimal(20)}
    for target, percent in moves:
        if target == "funding":
            command = {"type": "funding", "market": "X-PERP", "rate": format(Decimal(percent or 1).scaleb(-4), "f")}
        else:
            tick = Decimal(MARKETS[target][1])
            moved = prices[target] * (100 + percent) / 100
            prices[target] = (moved / tick).quantize(Decimal(1)) * tick
            command = {"type": "price", "market": target, "price": format(prices[target], "f")}
        (outcome,) = ledger.post(json.dumps(command))
        assert outcome.status == "applied", (outcome.code, outcome.message)
        fold = check_ledger(ledger.app)
        assert_nobody_missed(ledger)
    SEEN.update(kind for kind, count in fold.counts.items() if count)
    SEEN.update(_outcomes(ledger))
    assert audit_log(ledger.app, stop_at_first=False) == []  # the decision audit re-derives every decision


def _outcomes(ledger: Ledger) -> set[str]:
    """Which way the path's takeovers went: ``taken:backstop``/``taken:adl`` and ``refused:<outcome>``."""
    found = set()
    for notification in ledger.app.recorder.select_notifications(start=1, limit=1_000_000):
        kind = notification.topic.rsplit(":", 1)[-1]
        if kind in ("Account.PositionTaken", "Account.TakeoverRefused"):
            event = ledger.app.mapper.to_domain_event(notification)
            found.add(f"taken:{event.basis}" if kind == "Account.PositionTaken" else f"refused:{event.outcome}")
        elif kind == "Account.Liquidated":
            event = ledger.app.mapper.to_domain_event(notification)
            if event.reason == "adl":
                found.add(f"deleveraged:{event.parameters['loss_policy']}")
        elif kind == "Account.LossAllocated":
            found.add(f"allocated:{ledger.app.mapper.to_domain_event(notification).policy}")
    return found


SEEN: Counter = Counter()


def test_the_paths_above_reached_every_mechanism():
    """Guards the property test against drawing only quiet paths (runs after it): the random
    draws and ``EXAMPLES`` together took every mechanism through the invariants."""
    if not SEEN:
        pytest.skip("run together with test_random_price_paths_keep_every_invariant")
    for kind in ("Account.MarginCallIssued", "Account.Liquidated", "InsuranceFund.Drawn", "Account.LossAllocated",
                 "Account.FundingPaid", "Account.TakeoverRefused",
                 # the backstop took positions, the loss policy deleveraged some, and a refused
                 # takeover fell through to deleveraging (insolvent) or left the account waiting
                 "taken:backstop", "taken:adl", "refused:deleveraged", "refused:waiting",
                 # every queue policy deleveraged and every cash policy charged a share
                 "deleveraged:adl", "deleveraged:adl_hyperliquid", "deleveraged:waterfill_leverage",
                 "allocated:socialize_per_contract", "allocated:haircut_gains", "allocated:leverage_weighted_gains"):
        assert SEEN[kind] > 0, f"no random path produced {kind}: {dict(SEEN)}"


def test_a_deficit_with_no_holder_left_to_charge_is_deleveraged_against_the_taker():
    """Found by tests/integration/test_projections.py on these draws. t0 (150) long 0.7 X-PERP
    and t1 (150) short 0.7, both against the maker (left flat). At 790 t0 is taken by the
    backstop (5,000) and its 9.60 deficit haircut from the gains of the backstop and t1. At
    1,558 t1 is insolvent (about -249); a takeover by the backstop would close the backstop's
    long and leave nobody holding X-PERP, so the deficit (the fund is empty) would have no
    payer under ``haircut_gains``: the engine deleverages t1 against the backstop at t1's
    bankruptcy price instead (``liquidation_math.loss_bearer_left``), and t1 ends at 0."""
    ledger, _ = setup("haircut_gains", 0, 0, [("X-PERP", 7, 150), ("X-PERP", 7, 150)], 5000)
    for price in ("790", "1074.5", "1558"):
        (outcome,) = ledger.post(json.dumps({"type": "price", "market": "X-PERP", "price": price}))
        assert outcome.status == "applied", (outcome.code, outcome.message)
        check_ledger(ledger.app)
    rows = ledger.app.recorder.select_notifications(start=1, limit=100000)
    fills = [e for e in (ledger.app.mapper.to_domain_event(n) for n in rows if n.topic.endswith(":Account.Liquidated"))
             if e.account == "t1"]
    assert [(e.reason, e.counterparty) for e in fills] == [("adl", "backstop")]
    assert ledger.collateral("t1") == 0 and ledger.position("t1", "X-PERP") == 0
    assert ledger.position("backstop", "X-PERP") == 0
    assert audit_log(ledger.app, stop_at_first=False) == []
