"""Risk-engine scenarios that read like a ledger: a JSONL script in, balances out.

Market BTC-PERP: tick 0.1, step 0.001, IMF 10 %, MMF 5 %, band 50 %. Alice deposits
1,000 and buys 0.2 at 50,000 (IM exactly 1,000) from bob (100,000); carol long 0.1 and
dave short 0.1 (100,000 each) give the market more holders. The backstop liquidator is
an ordinary funded account (ADR 13): ``backstop`` deposits 50,000 (``BACKSTOP``), enough
to carry every position these scenarios hand it at ``liquidator_position_cap`` 1 (at most
aaron's and alice's 0.4 at 47,000, notional 18,800); the scenarios about a backstop that
cannot carry pass a smaller amount to ``ledger_with``. Defaults unless a script sets them:
spread 0.5 x MMF x ABR (``liquidation_price_rule`` dydx: ABR = clamp(1 - equity / MM, 0,
1)), fee 1 %, buffer 10 %, cap 50 %, min notional 1,000, floor 0.5, position cap 1, manual
band 10 %. Every scenario ends with ``check_ledger`` (money conserved, fund never
negative, flat accounts pay nothing, allocations sum to their loss, every account solvent
at the end of every command, replay equals live).
"""

from decimal import Decimal as Dec

import pytest

from clearing.audit.invariants import check_ledger
from tests.ledger import MARKET_BTC, Ledger, accounts_with

BACKSTOP = "50000"


def setup(backstop: str | None = BACKSTOP) -> str:
    """The market, the four accounts and, unless ``backstop`` is None, the funded backstop."""
    funded = accounts_with(("backstop", backstop)) if backstop is not None else ""
    return f"""
{MARKET_BTC}
{accounts_with(("alice", "1000"), ("bob", "100000"), ("carol", "100000"), ("dave", "100000"))}
{funded}
{{"type":"price","market":"BTC-PERP","price":"50000"}}
{{"type":"trade","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"0.2","price":"50000"}}
{{"type":"trade","market":"BTC-PERP","buyer":"carol","seller":"dave","size":"0.1","price":"50000"}}
"""


SETUP = setup()


def ledger_with(script: str = "", backstop: str | None = BACKSTOP) -> Ledger:
    ledger = Ledger()
    ledger.post_ok(setup(backstop) + script)
    check_ledger(ledger.app)
    return ledger


def price(value: str, at: str | None = None) -> str:
    when = f',"at":"{at}"' if at else ""
    return f'{{"type":"price","market":"BTC-PERP","price":"{value}"{when}}}'


def fund(ledger: Ledger) -> Dec:
    found = ledger.app.get_insurance_fund()
    return found.balance if found else Dec(0)


def events(ledger: Ledger, kind: str) -> list:
    rows = ledger.app.recorder.select_notifications(start=1, limit=100000)
    return [ledger.app.mapper.to_domain_event(n) for n in rows if n.topic.endswith(":" + kind)]


def test_margin_call_met_by_a_deposit():
    ledger = ledger_with('{"type":"set_parameters","parameters":{"margin_call_grace":3600}}')
    ledger.post_ok(price("47000"))  # equity 400 < MM 470, above the floor 235
    alice = ledger.account("alice")
    assert alice["status"] == "margin_call" and alice["margin_call"]["amount_to_initial"] == "540"
    (call,) = events(ledger, "Account.MarginCallIssued")
    assert (call.equity, call.maintenance_margin, call.initial_margin) == (Dec(400), Dec(470), Dec(940))
    assert call.parameters["margin_call_grace"] == 3600 and call.parameters["clearinghouse_parameters_version"] == 1
    ledger.post_ok('{"type":"deposit","account":"alice","amount":"500"}')  # equity 900 >= MM but < IM 940: 40 still due
    assert ledger.account("alice")["status"] == "margin_call"
    (paid,) = events(ledger, "Account.MarginCallPaid")
    assert (paid.deposit, paid.amount_paid, paid.amount_due) == (Dec(500), Dec(500), Dec(40))
    ledger.post_ok('{"type":"deposit","account":"alice","amount":"40"}')  # the full 540 paid: met
    assert ledger.account("alice")["status"] == "healthy" and ledger.account("alice")["margin_call"] is None
    assert [e.reason for e in events(ledger, "Account.MarginCallMet")] == ["deposit"]
    assert [e.amount_due for e in events(ledger, "Account.MarginCallPaid")] == [Dec(40), Dec(0)]
    assert ledger.position("alice", "BTC-PERP") == Dec("0.2")
    check_ledger(ledger.app)


def test_price_recovery_clears_the_call():
    """cme: at 49,000 equity 800 >= MM 490 but < IM 980, the call stands; at 50,000 equity 1,000 = IM: met."""
    ledger = ledger_with('{"type":"set_parameters","parameters":{"margin_call_grace":3600}}')
    ledger.post_ok(price("47000") + "\n" + price("49000"))
    assert ledger.account("alice")["status"] == "margin_call" and not events(ledger, "Account.MarginCallMet")
    ledger.post_ok(price("50000"))
    assert ledger.account("alice")["status"] == "healthy"
    assert [e.reason for e in events(ledger, "Account.MarginCallMet")] == ["price"]
    check_ledger(ledger.app)


def test_maintenance_rule_meets_the_call_at_maintenance():
    """The pre-issue-8 rule, kept as ``margin_call_rule`` maintenance: equity 800 >= MM 490 meets it."""
    ledger = ledger_with('{"type":"set_parameters","parameters":{"margin_call_grace":3600,"margin_call_rule":"maintenance"}}')
    ledger.post_ok(price("47000") + "\n" + price("49000"))
    assert ledger.account("alice")["status"] == "healthy"
    assert [e.reason for e in events(ledger, "Account.MarginCallMet")] == ["price"]
    check_ledger(ledger.app)


def test_partial_payment_leaves_the_call_open_and_the_deadline_stands():
    """Call at 00:10 for 540 (IM 940 - equity 400), deadline 01:10. Deposit 200 at 00:20:
    paid 200, 340 due, equity 600 >= MM 470, so not liquidated. At 01:20 mark 47,000: equity
    600 >= MM, still not liquidated, call still open. At 01:30 mark 45,000: equity 1,200 -
    1,000 = 200 < MM 450 and the deadline has passed: liquidated at once (no new call)."""
    ledger = ledger_with('{"type":"set_parameters","parameters":{"margin_call_grace":3600}}')
    ledger.post_ok(price("47000", "2025-01-01T00:10:00Z"))
    ledger.post_ok('{"type":"deposit","account":"alice","amount":"200","at":"2025-01-01T00:20:00Z"}')
    (paid,) = events(ledger, "Account.MarginCallPaid")
    assert (paid.amount_paid, paid.amount_due, paid.equity, paid.initial_margin) == (Dec(200), Dec(340), Dec(600), Dec(940))
    assert ledger.account("alice")["status"] == "margin_call"
    ledger.post_ok(price("47000", "2025-01-01T01:20:00Z"))
    assert not events(ledger, "Account.Liquidated") and ledger.account("alice")["status"] == "margin_call"
    ledger.post_ok(price("45000", "2025-01-01T01:30:00Z"))
    assert len(events(ledger, "Account.MarginCallIssued")) == 1
    (first, *_) = events(ledger, "Account.Liquidated")
    assert first.account == "alice" and first.equity_before == Dec(200) and first.maintenance_margin_before == Dec(450)
    check_ledger(ledger.app)


@pytest.mark.parametrize(("rule", "fill", "penalty"), [
    # dydx: equity 400 of MM 470, ABR = 1 - 400 / 470 = 70 / 470; spread 47,000 x 0.5 x 5 % = 1,175
    # x 70 / 470 = 175 -> 46,825. q_f = 4,682.5, q_b = 4,700 - 400 x 235 / 470 = 4,500: penalty
    # min(182.5 surplus, 1 % x 4,682.5 = 46.825) = 46.825
    ("dydx", Dec("46825"), Dec("46.825")),
    # full_spread (the rule before issue 8): 47,000 x (1 - 0.5 x 5 %) = 45,825; q_f 4,582.5, penalty 45.825
    ("full_spread", Dec("45825"), Dec("45.825")),
])
def test_call_unmet_at_the_deadline_is_liquidated(rule, fill, penalty):
    ledger = ledger_with('{"type":"set_parameters","parameters":{"margin_call_grace":3600,'
                         f'"liquidation_price_rule":"{rule}"}}}}')
    ledger.post_ok(price("47000", "2025-01-01T00:10:00Z") + "\n" + price("47000", "2025-01-01T01:00:00Z"))
    assert not events(ledger, "Account.Liquidated"), "still inside the grace period"
    ledger.post_ok(price("47000", "2025-01-01T01:10:00Z"))
    (step,) = events(ledger, "Account.Liquidated")
    # shortage 470 x 1.1 - 400 = 117 over 47,000 x (5.5 % - 2.5 % - 1 %) = 940 -> 0.125, capped at 50 % = 0.1
    # (the size assumes the full spread under either rule)
    assert step.reason == "margin" and step.size_delta == Dec("-0.1")
    assert (step.price_fill, step.quote_bankruptcy, step.penalty) == (fill, Dec(4500), penalty)
    assert step.parameters["liquidation_price_rule"] == rule
    (taken,) = events(ledger, "Account.PositionTaken")
    assert (taken.account, taken.basis, taken.size_delta, taken.price) == ("backstop", "backstop", Dec("0.1"), fill)
    # the backstop's check: 50,000 + 0.1 x (47,000 - fill) against IM 470 and notional 4,700 (cap 1)
    assert (taken.equity_after, taken.initial_margin_after, taken.notional_after) == (
        Dec(50000) + Dec("0.1") * (Dec(47000) - fill), Dec(470), Dec(4700))
    assert fund(ledger) == penalty  # liquidator_fee_share 0: the whole penalty to the fund
    check_ledger(ledger.app)


def test_partial_then_full_liquidation_with_penalty_for_the_fund():
    ledger = ledger_with('{"type":"set_parameters","parameters":{"liquidation_spread":"0","liquidation_min_notional":"5000"}}')
    ledger.post_ok(price("45400"))  # equity 80, MM 454: below the floor, due at once; spread 0, so ABR is moot
    (first,) = events(ledger, "Account.Liquidated")
    assert (first.size_delta, first.price_fill, first.quote_fill, first.quote_bankruptcy) == (
        Dec("-0.1"), Dec("45400"), Dec("4540"), Dec("4500"))
    assert first.penalty == Dec(40) and first.risk_status_after == "liquidating"  # min(40 surplus, 1 % of 4,540)
    assert ledger.collateral("alice") == Dec(500) and fund(ledger) == Dec(40)
    assert ledger.position("backstop", "BTC-PERP") == Dec("0.1")

    ledger.post_ok(price("45300"))  # notional 4,530 <= 5,000: the rest closes in full
    second = events(ledger, "Account.Liquidated")[1]
    assert (second.size_delta, second.quote_bankruptcy, second.penalty) == (Dec("-0.100"), Dec(4500), Dec(30))
    assert ledger.position("alice", "BTC-PERP") == 0 and ledger.collateral("alice") == 0
    assert ledger.account("alice")["status"] == "healthy" and fund(ledger) == Dec(70)
    check_ledger(ledger.app)


def test_bankruptcy_covered_by_the_fund():
    ledger = ledger_with('{"type":"fund_insurance","amount":"1000"}')
    ledger.post_ok(price("44000"))  # equity -200: insolvent, closed in full
    # ABR = 1 at equity <= 0, so dydx charges the full spread: 44,000 x (1 - 2.5 %) = 42,900; the
    # fund (1,000) covers the 420 shortfall, so the backstop takes it (50,000 + 220 >= notional 8,800)
    (step,) = events(ledger, "Account.Liquidated")
    assert (step.price_fill, step.quote_fill, step.quote_bankruptcy, step.penalty) == (Dec("42900"), Dec(8580), Dec(9000), 0)
    (draw,) = events(ledger, "InsuranceFund.Drawn")
    assert draw.amount == Dec(420) and fund(ledger) == Dec(580)
    (covered,) = events(ledger, "Account.LossCovered")
    assert (covered.deficit, covered.fund_paid, covered.allocated, covered.policy) == (Dec(420), Dec(420), 0, "insurance_fund")
    assert ledger.collateral("alice") == 0 and ledger.account("alice")["status"] == "bankrupt"
    assert not events(ledger, "Account.LossAllocated")
    check_ledger(ledger.app)


def test_bankruptcy_that_exhausts_the_fund_exactly():
    ledger = ledger_with('{"type":"fund_insurance","amount":"420"}')
    ledger.post_ok(price("44000"))
    assert fund(ledger) == 0 and ledger.collateral("alice") == 0
    assert not events(ledger, "Account.LossAllocated") and events(ledger, "Account.PositionTaken")[0].basis != "adl"
    check_ledger(ledger.app)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # 320 over |size|: backstop 0.2, bob 0.2, carol 0.1, dave 0.1 (largest remainder, ties by name)
        ("socialize_per_contract", {"backstop": "106.666667", "bob": "106.666667", "carol": "53.333333", "dave": "53.333333"}),
        # 320 over gains at 44,000: bob 1,200, dave 600, backstop 220 (bought at 42,900); carol is at a loss
        ("haircut_gains", {"bob": "190.09901", "dave": "95.049505", "backstop": "34.851485"}),
        # 320 by leverage x gain: bob 8,800 / 101,200 x 1,200 = 104.347826, dave 4,400 / 100,600 x 600
        # = 26.242545, backstop 8,800 / 50,220 x 220 = 38.550378 (sum 169.140749); none reaches its gain
        ("leverage_weighted_gains", {"bob": "197.417267", "dave": "49.648676", "backstop": "72.934057"}),
    ],
)
def test_bankruptcy_beyond_the_fund_is_allocated_by_policy(policy, expected):
    ledger = ledger_with(f'{{"type":"fund_insurance","amount":"100"}}\n'
                         f'{{"type":"set_parameters","market":"BTC-PERP","parameters":{{"loss_policy":"{policy}"}}}}')
    before = {name: ledger.collateral(name) for name in ("bob", "carol", "dave")}
    ledger.post_ok(price("44000"))
    shares = {e.account: str(e.share.normalize()) for e in events(ledger, "Account.LossAllocated")}
    assert shares == expected
    assert sum(Dec(v) for v in shares.values()) == Dec(320)
    (covered,) = events(ledger, "Account.LossCovered")
    assert (covered.deficit, covered.fund_paid, covered.allocated, covered.policy) == (Dec(420), Dec(100), Dec(320), policy)
    assert fund(ledger) == 0 and ledger.collateral("alice") == 0
    for name, paid in expected.items():
        if name in before:
            assert ledger.collateral(name) == before[name] - Dec(paid)
    check_ledger(ledger.app)


def test_bankruptcy_beyond_the_fund_deleverages_the_top_ranked_short():
    ledger = ledger_with('{"type":"fund_insurance","amount":"100"}')  # default loss_policy adl
    ledger.post_ok(price("44000"))
    fills = events(ledger, "Account.PositionTaken")
    assert [(f.account, f.basis, f.size_delta, f.price) for f in fills] == [("bob", "adl", Dec("0.2"), Dec("44500"))]
    assert fills[0].loss_vs_mark == Dec(100)  # bought back at 44,500 instead of 44,000
    assert fills[0].adl_rank > 0
    assert fund(ledger) == 0 and ledger.collateral("alice") == 0
    assert ledger.position("bob", "BTC-PERP") == 0 and ledger.collateral("bob") == Dec(101100)
    assert ledger.position("dave", "BTC-PERP") == Dec("-0.1"), "dave ranks below bob and is untouched"
    check_ledger(ledger.app)


def test_pause_needs_quorum_queues_liquidations_and_resume_processes_them():
    ledger = ledger_with("""
{"type":"set_parameters","parameters":{"officers_max":3,"approvals_required":2}}
{"type":"register_officer","officer":"olga"}
{"type":"register_officer","officer":"omar"}
olga> {"type":"approve","officer":"olga","action":"register_officer","candidate":"otto"}
omar> {"type":"approve","officer":"omar","action":"register_officer","candidate":"otto"}
{"type":"register_officer","officer":"otto"}
olga> {"type":"approve","officer":"olga","action":"pause","operation":"liquidations","market":"BTC-PERP"}
""")
    (early,) = ledger.post('{"type":"pause","operation":"liquidations","market":"BTC-PERP"}')
    assert (early.status, early.code) == ("rejected", "quorum_not_met")
    ledger.post_ok("""
omar> {"type":"approve","officer":"omar","action":"pause","operation":"liquidations","market":"BTC-PERP"}
{"type":"pause","operation":"liquidations","market":"BTC-PERP"}
""")
    ledger.post_ok(price("45400"))
    assert ledger.account("alice")["status"] == "margin_call", "calls are still issued"
    assert not events(ledger, "Account.Liquidated")
    (queued,) = events(ledger, "Clearinghouse.LiquidationQueued")
    assert (queued.account, queued.equity, queued.maintenance_margin) == ("alice", Dec(80), Dec(454))
    ledger.post_ok(price("45300"))
    assert len(events(ledger, "Clearinghouse.LiquidationQueued")) == 1, "queued once"
    (resume_early,) = ledger.post('{"type":"resume","operation":"liquidations","market":"BTC-PERP"}')
    assert resume_early.code == "quorum_not_met"
    ledger.post_ok("""
otto> {"type":"approve","officer":"otto","action":"resume","operation":"liquidations","market":"BTC-PERP"}
olga> {"type":"approve","officer":"olga","action":"resume","operation":"liquidations","market":"BTC-PERP"}
{"type":"resume","operation":"liquidations","market":"BTC-PERP"}
""")
    (dequeued,) = events(ledger, "Clearinghouse.LiquidationDequeued")
    assert dequeued.outcome == "liquidated" and events(ledger, "Account.Liquidated")
    applied = events(ledger, "Clearinghouse.ControlApplied")
    assert [(a.action, a.approved_by) for a in applied] == [("pause", ["olga", "omar"]), ("resume", ["otto", "olga"])]
    check_ledger(ledger.app)


def test_trading_pause_rejects_trades():
    ledger = ledger_with("""
{"type":"register_officer","officer":"olga"}
olga> {"type":"approve","officer":"olga","action":"pause","operation":"trading"}
{"type":"pause","operation":"trading"}
""")
    (outcome,) = ledger.post('{"type":"trade","market":"BTC-PERP","buyer":"carol","seller":"dave","size":"0.1","price":"50000"}')
    assert (outcome.code, outcome.field) == ("trading_paused", "market")


def test_funding_is_zero_sum_to_the_quantum():
    ledger = ledger_with(price("50000.3") + '\n{"type":"funding","market":"BTC-PERP","rate":"0.0000137"}')
    paid = {e.account: e.amount for e in events(ledger, "Account.FundingPaid")}
    # longs pay size x mark x rate rounded up: 0.2 x 50,000.3 x 0.0000137 = 0.13700082.. -> 0.137001
    assert paid["alice"] == Dec("-0.137001") and paid["carol"] == Dec("-0.068501")
    assert paid["bob"] + paid["dave"] == Dec("0.205502") and sum(paid.values()) == 0
    check_ledger(ledger.app)


def test_negative_funding_pays_longs():
    ledger = ledger_with('{"type":"funding","market":"BTC-PERP","rate":"-0.0001"}')
    paid = {e.account: e.amount for e in events(ledger, "Account.FundingPaid")}
    assert paid == {"alice": Dec(1), "bob": Dec(-1), "carol": Dec("0.5"), "dave": Dec("-0.5")}


FUTURE = ('{"type":"create_market","market":"BTC-0331","kind":"future","expiry":"2025-03-31T08:00:00Z","tick_size":"0.5",'
          '"step_size":"0.001","initial_margin_fraction":"0.1","maintenance_margin_fraction":"0.05","price_band":"0.5"}')


def test_futures_settlement_realizes_pnl_and_marks_the_market_settled():
    ledger = ledger_with(f"""{FUTURE}
{{"type":"price","market":"BTC-0331","price":"50000"}}
{{"type":"trade","market":"BTC-0331","buyer":"carol","seller":"dave","size":"0.5","price":"50000"}}
""")
    (early,) = ledger.post('{"type":"settle","market":"BTC-0331","price":"52000"}')
    assert (early.code, early.field) == ("not_expired", "at")
    ledger.post_ok('{"type":"settle","market":"BTC-0331","price":"52000","at":"2025-03-31T08:00:00Z"}')
    assert ledger.position("carol", "BTC-0331") == 0 and ledger.position("dave", "BTC-0331") == 0
    assert ledger.collateral("carol") == Dec(101000) and ledger.collateral("dave") == Dec(99000)
    market = ledger.app.get_market("BTC-0331")
    assert market.status == "settled" and market.holders == {}
    check_ledger(ledger.app)


@pytest.mark.parametrize(("policy", "recorded"), [
    ("adl", "adl"), ("adl_hyperliquid", "adl_hyperliquid"), ("waterfill_leverage", "waterfill_leverage"),
    ("socialize_per_contract", "socialize_per_contract"), ("haircut_gains", "haircut_gains"),
    ("leverage_weighted_gains", "leverage_weighted_gains"),
])
def test_settlement_loss_beyond_the_fund_under_every_policy(policy, recorded):
    """Erin long 0.5 of BTC-0331 from dave, settled at 44,000: erin -500, the fund pays 300;
    dave, the only other holder (short, gain 3,000), bears the last 200 under every policy,
    recorded under the policy's own name."""
    ledger = ledger_with(f"""{FUTURE}
{{"type":"set_parameters","market":"BTC-0331","parameters":{{"loss_policy":"{policy}"}}}}
{{"type":"price","market":"BTC-0331","price":"50000"}}
{{"type":"open_account","account":"erin"}}
{{"type":"deposit","account":"erin","amount":"2500"}}
{{"type":"trade","market":"BTC-0331","buyer":"erin","seller":"dave","size":"0.5","price":"50000"}}
{{"type":"fund_insurance","amount":"300"}}
""")
    ledger.post_ok('{"type":"settle","market":"BTC-0331","price":"44000","at":"2025-03-31T08:00:00Z"}')
    (share,) = events(ledger, "Account.LossAllocated")
    assert (share.account, share.share, share.policy) == ("dave", Dec(200), recorded)
    assert ledger.collateral("erin") == 0 and ledger.collateral("dave") == Dec(100000 + 3000 - 200)
    check_ledger(ledger.app)


SETTLEMENT_BOOK = accounts_with(("erin", "6300"), ("frank", "1000"), ("gina", "3000"), ("hank", "50000"), ("ivan", "50000")) + """
{"type":"trade","market":"BTC-0331","buyer":"ivan","seller":"hank","size":"0.5","price":"50000"}
{"type":"trade","market":"BTC-0331","buyer":"erin","seller":"dave","size":"0.5","price":"50000"}
{"type":"trade","market":"BTC-0331","buyer":"erin","seller":"frank","size":"0.1","price":"50000"}
{"type":"price","market":"BTC-0331","price":"48000"}
{"type":"trade","market":"BTC-0331","buyer":"erin","seller":"gina","size":"0.4","price":"48000"}
{"type":"fund_insurance","amount":"300"}
"""


def settled_book(policy: str) -> Ledger:
    ledger = ledger_with(f"""{FUTURE}
{{"type":"set_parameters","market":"BTC-0331","parameters":{{"loss_policy":"{policy}"}}}}
{{"type":"price","market":"BTC-0331","price":"50000"}}
""" + SETTLEMENT_BOOK)
    ledger.post_ok('{"type":"settle","market":"BTC-0331","price":"40000","at":"2025-03-31T08:00:00Z"}')
    return ledger


@pytest.mark.parametrize(("policy", "expected"), [
    # at 40,000 the shorts score (PnL% x notional / equity): gina 3,200 / 19,200 x 16,000 / 6,200 = 0.4301,
    # frank 0.2 x 4,000 / 2,000 = 0.4, hank 0.2 x 20,000 / 55,000 = 0.0727, dave 0.2 x 20,000 / 105,000
    # = 0.0381: gina 0.4, frank 0.1 and hank 0.5 close erin's 1.0, each bearing 2,600 x its contracts
    ("adl", {"gina": "1040", "frank": "260", "hank": "1300"}),
    # water-filling 1.0 (40,000) over leverage gina 2.58, frank 2, hank 0.36, dave 0.19: all above L =
    # (60,000 - 40,000) / 168,200 = 0.118906, closing 0.38157, 0.094055, 0.336505, 0.187873 -> 0.382,
    # 0.094, 0.336, 0.188 on the step
    ("waterfill_leverage", {"gina": "993.2", "frank": "244.4", "hank": "873.6", "dave": "488.8"}),
    # pro rata to the settlement gains 3,200, 1,000, 5,000, 5,000 (14,200)
    ("haircut_gains", {"gina": "585.915493", "frank": "183.098591", "hank": "915.492958", "dave": "915.492958"}),
])
def test_settlement_deficit_is_charged_by_the_policy_plan(policy, expected):
    """Erin long 1.0 of BTC-0331 (0.5 and 0.1 at 50,000 from dave and frank, 0.4 at 48,000 from
    gina) with 6,300; hank short 0.5 at 50,000 against ivan. Settled at 40,000 erin realizes
    -9,200 and ends at -2,900; the fund pays 300 and 2,600 is left. Under a queue policy the
    opposite winners (every short) are closed by the policy's plan at erin's bankruptcy price."""
    ledger = settled_book(policy)
    shares = {e.account: e.share for e in events(ledger, "Account.LossAllocated")}
    assert shares == {name: Dec(amount) for name, amount in expected.items()}
    (covered,) = events(ledger, "Account.LossCovered")
    assert (covered.deficit, covered.fund_paid, covered.allocated, covered.policy) == (Dec(2900), Dec(300), Dec(2600), policy)
    assert ledger.collateral("erin") == 0
    check_ledger(ledger.app)


def test_settlement_loss_beyond_the_fund_haircuts_the_winners():
    ledger = ledger_with(f"""{FUTURE}
{{"type":"price","market":"BTC-0331","price":"50000"}}
{{"type":"open_account","account":"erin"}}
{{"type":"deposit","account":"erin","amount":"2500"}}
{{"type":"trade","market":"BTC-0331","buyer":"erin","seller":"dave","size":"0.5","price":"50000"}}
{{"type":"fund_insurance","amount":"300"}}
""")
    ledger.post_ok('{"type":"settle","market":"BTC-0331","price":"44000","at":"2025-03-31T08:00:00Z"}')
    (covered,) = events(ledger, "Account.LossCovered")  # erin: 2,500 - 3,000 = -500
    assert (covered.deficit, covered.fund_paid, covered.allocated) == (Dec(500), Dec(300), Dec(200))
    assert ledger.collateral("erin") == 0 and ledger.collateral("dave") == Dec(100000 + 3000 - 200)
    check_ledger(ledger.app)


def test_oracle_median_ignores_one_bad_source():
    ledger = ledger_with('{"type":"set_parameters","market":"BTC-PERP","parameters":{"oracle_sources":["a","b","c"]}}')
    ledger.post_ok("""
{"type":"price","market":"BTC-PERP","price":"50000","source":"a"}
{"type":"price","market":"BTC-PERP","price":"50010","source":"b"}
{"type":"price","market":"BTC-PERP","price":"70000","source":"c"}
""")
    assert ledger.app.get_market("BTC-PERP").price_mark == Dec(50010)
    (bad,) = ledger.post('{"type":"price","market":"BTC-PERP","price":"50000"}')
    assert (bad.code, bad.field) == ("source_required", "source")


def test_liquidation_deferred_while_the_mark_is_far_from_its_twap():
    ledger = ledger_with('{"type":"set_parameters","parameters":{"twap_window":600,"twap_max_deviation":"0.05"}}')
    ledger.post_ok(price("50000", "2025-01-01T00:05:00Z") + "\n" + price("45400", "2025-01-01T00:10:00Z"))
    (deferred,) = events(ledger, "Account.LiquidationDeferred")
    assert deferred.price_twap == Dec(50000) and deferred.deviation == Dec("0.092")
    assert not events(ledger, "Account.Liquidated")
    ledger.post_ok(price("45400", "2025-01-01T00:30:00Z"))  # the TWAP has caught up: liquidated now
    assert events(ledger, "Account.Liquidated")
    check_ledger(ledger.app)


def test_manual_liquidation_at_an_auction_price():
    ledger = ledger_with('{"type":"set_parameters","parameters":{"margin_call_grace":86400}}')
    ledger.post_ok(price("47000"))
    ledger.post_ok('{"type":"liquidate","account":"alice","market":"BTC-PERP","price":"46900","liquidator":"carol"}')
    (step,) = events(ledger, "Account.Liquidated")
    assert (step.reason, step.counterparty, step.price_fill, step.size_delta) == ("manual", "carol", Dec(46900), Dec("-0.2"))
    assert ledger.position("carol", "BTC-PERP") == Dec("0.3") and ledger.position("alice", "BTC-PERP") == 0
    check_ledger(ledger.app)


# Market X-PERP for the exact-quote ADL: tick 1, step 1, IMF 0.9 %, MMF 0.5 %, empty fund.
EXACT_ADL = """
{"type":"create_market","id":"m-x","market":"X-PERP","kind":"perpetual","tick_size":"1","step_size":"1","initial_margin_fraction":"0.009","maintenance_margin_fraction":"0.005","price_band":"0.5"}
""" + accounts_with(("alice", "499.5"), ("bob", "100000"), ("carol", "100000"), ("dave", "100000")) + """
{"type":"price","market":"X-PERP","price":"50000"}
"""


def test_deleveraging_books_the_exact_bankruptcy_quote_and_leaves_zero():
    """Alice deposits 499.50 and sells 1 at 50,000 to bob; the mark jumps to 51,000.

    Equity 499.50 - 1,000 = -500.50 and the fund is empty, so bob (the only long) is
    deleveraged. Bankruptcy quote for buying back 1: cost - collateral = -50,000 - 499.50
    = -50,499.50, i.e. 50,499.50 a contract, off the tick of 1. The old code rounded it
    against alice to 50,500 and left her at -0.50 that nobody paid; now both sides book
    exactly 50,499.50: alice ends at 0, bob at 100,000 + 499.50.
    """
    ledger = Ledger()
    ledger.post_ok(EXACT_ADL + '{"type":"trade","market":"X-PERP","buyer":"bob","seller":"alice","size":"1","price":"50000"}')
    ledger.post_ok('{"type":"price","market":"X-PERP","price":"51000"}')
    (step,) = events(ledger, "Account.Liquidated")
    assert step.reason == "adl" and step.size_delta == Dec(1)
    assert (step.quote_bankruptcy, step.quote_fill, step.price_fill) == (Dec("-50499.5"), Dec("-50499.5"), Dec("50499.5"))
    (taken,) = events(ledger, "Account.PositionTaken")
    assert (taken.account, taken.basis, taken.size_delta, taken.quote) == ("bob", "adl", Dec(-1), Dec("50499.5"))
    assert taken.realized_pnl == Dec("499.5") and taken.loss_vs_mark == Dec("500.5")  # sold at 50,499.50, mark 51,000
    assert ledger.collateral("alice") == 0 and ledger.position("alice", "X-PERP") == 0
    assert ledger.collateral("bob") == Dec("100499.5") and ledger.position("bob", "X-PERP") == 0
    assert fund(ledger) == 0 and not events(ledger, "Account.LossAllocated")
    deposits = Dec("499.5") + 3 * Dec(100000)
    assert sum(ledger.collateral(n) for n in ("alice", "bob", "carol", "dave")) + fund(ledger) == deposits
    check_ledger(ledger.app)


def test_deleveraging_splits_the_exact_quote_over_slices_by_largest_remainder():
    """Alice sells 3 at 50,000 (1 to bob, 2 to carol) with 1,350.01 (IM 1,350); mark 51,000.

    Quote -150,000 - 1,350.01 = -151,350.01 for 3 (50,450.003333... a contract). Bob and
    carol are closed in rank order; the quote is split by size on the 0.000001 grid by
    largest remainder: 50,450.003333 and 100,900.006667 (carol's remainder, 0.000000666...,
    is the larger), adding up to 151,350.01 exactly; alice ends at 0.
    """
    ledger = Ledger()
    ledger.post_ok(EXACT_ADL.replace('"499.5"', '"1350.01"')
                   + '{"type":"trade","market":"X-PERP","buyer":"bob","seller":"alice","size":"1","price":"50000"}\n'
                   + '{"type":"trade","market":"X-PERP","buyer":"carol","seller":"alice","size":"2","price":"50000"}')
    ledger.post_ok('{"type":"price","market":"X-PERP","price":"51000"}')
    steps = events(ledger, "Account.Liquidated")
    assert sum(s.quote_fill for s in steps) == Dec("-151350.01") and {s.reason for s in steps} == {"adl"}
    quotes = {t.account: t.quote for t in events(ledger, "Account.PositionTaken")}
    assert quotes == {"bob": Dec("50450.003333"), "carol": Dec("100900.006667")}
    assert ledger.collateral("alice") == 0 and ledger.position("alice", "X-PERP") == 0
    assert ledger.collateral("bob") == Dec("100450.003333") and ledger.collateral("carol") == Dec("100900.006667")
    check_ledger(ledger.app)


QUEUE_BOOK = """
{"type":"create_market","id":"m-x","market":"X-PERP","kind":"perpetual","tick_size":"1","step_size":"0.1","initial_margin_fraction":"0.1","maintenance_margin_fraction":"0.05","price_band":"0.5"}
""" + accounts_with(("alice", "210"), ("bob", "300"), ("carol", "1000"), ("dave", "400"), ("erin", "100000")) + """
{"type":"price","market":"X-PERP","price":"900"}
{"type":"trade","market":"X-PERP","buyer":"dave","seller":"erin","size":"2","price":"900"}
{"type":"price","market":"X-PERP","price":"1000"}
{"type":"trade","market":"X-PERP","buyer":"bob","seller":"alice","size":"2","price":"1000"}
{"type":"trade","market":"X-PERP","buyer":"carol","seller":"erin","size":"2","price":"1000"}
"""


@pytest.mark.parametrize(("policy", "expected"), [
    # BitMEX PnL% x leverage: dave 600 / 1,800 x 2,400 / 1,000 = 0.8, bob 400 / 2,000 x 2,400 / 700
    # = 0.685714, carol 0.342857: dave closes his 2
    ("adl", {"dave": (Dec(-2), Dec(2210))}),
    # Hyperliquid (mark / entry) x notional / equity: bob 1.2 x 3.428571 = 4.114286, dave 1.333333 x 2.4
    # = 3.2, carol 1.2 x 1.714286 = 2.057143: bob closes his 2
    ("adl_hyperliquid", {"bob": (Dec(-2), Dec(2210))}),
    # water-filling 2 (value 2,400) over leverage bob 3.428571, dave 2.4, carol 1.714286: all three lie
    # above L = (3 x 2,400 - 2,400) / (700 + 1,000 + 1,400) = 1.548387, so they close 2 - L x equity /
    # 1,200 = 1.096774, 0.709677, 0.193548 -> on the step by largest remainder 1.1, 0.7, 0.2, each
    # booking its share of 2,210 by size (1,215.50, 773.50, 221)
    ("waterfill_leverage", {"bob": (Dec("-1.1"), Dec("1215.5")), "dave": (Dec("-0.7"), Dec("773.5")),
                            "carol": (Dec("-0.2"), Dec(221))}),
])
def test_each_queue_policy_deleverages_its_own_plan(policy, expected):
    """Alice sells 2 to bob at 1,000 with 210 (IM 200); longs bob (2 at 1,000, 300), carol (2 at
    1,000, 1,000) and dave (2 at 900, 400), erin short 4. At 1,200 alice's equity is 210 - 400 =
    -190 and the fund is empty, so she is deleveraged at her exact bankruptcy quote: she pays
    2,000 + 210 = 2,210 for the 2 (1,105 a contract) and ends at 0. At 1,200 bob has equity 700,
    carol 1,400, dave 1,000 (notional 2,400 each). Who closes is the policy's plan."""
    ledger = Ledger()
    ledger.post_ok(QUEUE_BOOK + f'{{"type":"set_parameters","market":"X-PERP","parameters":{{"loss_policy":"{policy}"}}}}')
    ledger.post_ok('{"type":"price","market":"X-PERP","price":"1200"}')
    taken = {t.account: (t.size_delta, t.quote) for t in events(ledger, "Account.PositionTaken")}
    assert taken == expected
    assert {t.basis for t in events(ledger, "Account.PositionTaken")} == {"adl"}
    assert ledger.collateral("alice") == 0 and ledger.position("alice", "X-PERP") == 0
    before = {"bob": (Dec(300), Dec(2)), "carol": (Dec(1000), Dec(2)), "dave": (Dec(400), Dec(2))}
    for name, (collateral, size) in before.items():
        delta, quote = expected.get(name, (Dec(0), Dec(0)))
        entry = Dec(900) if name == "dave" else Dec(1000)
        assert ledger.position(name, "X-PERP") == size + delta
        assert ledger.collateral(name) == collateral + quote + delta * entry  # realized: quote - entry x closed
    check_ledger(ledger.app)


def test_candidates_are_liquidated_in_risk_order_not_name_order():
    """aaron (1,050) and alice (1,000) both long 0.2 at 50,000. At 47,000: aaron equity 450 /
    MM 470 = 0.957, alice 400 / 470 = 0.851. By name aaron would go first; by risk alice does."""
    ledger = ledger_with(accounts_with(("aaron", "1050"))
                         + '\n{"type":"trade","market":"BTC-PERP","buyer":"aaron","seller":"bob","size":"0.2","price":"50000"}')
    ledger.post_ok(price("47000"))
    order = [e.account for e in events(ledger, "Account.Liquidated")]
    assert order[:1] == ["alice"] and "aaron" in order
    assert order.index("alice") < order.index("aaron")
    check_ledger(ledger.app)


# -- the funded liquidator of last resort (ADR 13) and the dYdX fillable price -----------------------


WORKED_EXAMPLE = """
{"type":"create_market","market":"D-PERP","kind":"perpetual","tick_size":"0.001","step_size":"1","initial_margin_fraction":"0.2","maintenance_margin_fraction":"0.03","price_band":"0.5"}
{"type":"set_parameters","parameters":{"liquidation_spread":"1.5","liquidation_price_rule":"RULE"}}
""" + accounts_with(("alice", "100"), ("bob", "100000"), ("backstop", "1000")) + """
{"type":"fund_insurance","amount":"100"}
{"type":"price","market":"D-PERP","price":"1"}
{"type":"trade","market":"D-PERP","buyer":"alice","seller":"bob","size":"500","price":"1"}
"""


@pytest.mark.parametrize(("rule", "fill", "fund_paid"), [
    # full_spread: 0.801 x (1 - 1.5 x 3 %) = 0.764955 -> 0.764 (down, against alice); q_f 382, q_b 400: 18
    ("full_spread", Dec("0.764"), Dec(18)),
    # dydx: ABR = 1 - 0.50 / 12.015 = 0.958385; 0.801 - 0.801 x 0.045 x 0.958385 = 0.766455 -> 0.766; q_f 383: 17
    ("dydx", Dec("0.766"), Dec(17)),
])
def test_dydx_docs_insurance_fund_example(rule, fill, fund_paid):
    """The worked example of ``clearing/domain/liquidation.py`` (dYdX's insurance-fund example).

    Alice deposits 100 and buys 500 at 1.00 (IMF 20 %, MMF 3 %, spread 1.5, tick 0.001); the
    fund holds 100 and the backstop 1,000 (it carries 500 at 0.801 = 400.5 of notional). At
    0.801 equity 0.50 < MM 12.015 (and below the floor): notional 400.5 <= 1,000 closes in
    full. q_b = 400.5 - 0.50 = 400; the deficit q_b - q_f comes from the fund.
    """
    ledger = Ledger()
    ledger.post_ok(WORKED_EXAMPLE.replace("RULE", rule))
    ledger.post_ok('{"type":"price","market":"D-PERP","price":"0.801"}')
    (step,) = events(ledger, "Account.Liquidated")
    assert (step.equity_before, step.maintenance_margin_before) == (Dec("0.5"), Dec("12.015"))
    assert (step.size_delta, step.price_fill, step.quote_fill, step.quote_bankruptcy) == (Dec(-500), fill, 500 * fill, Dec(400))
    assert step.counterparty == "backstop" and step.penalty == 0
    (covered,) = events(ledger, "Account.LossCovered")
    assert (covered.fund_paid, covered.allocated) == (fund_paid, 0)
    assert fund(ledger) == 100 - fund_paid and ledger.collateral("alice") == 0
    check_ledger(ledger.app)


@pytest.mark.parametrize(("rule", "fill", "penalty"), [
    # dydx: ABR = 1 - 499.99 / 500 = 0.00002 of the spread 50,000 x 0.2 x 5 % = 500 -> 0.01;
    # 49,999.99 -> 49,999.9 (down to the tick). q_f = 0.029 x 49,999.9 = 1,449.9971; penalty
    # min(surplus 1,449.9971 - 1,377.50145, 1 % x 1,449.9971 = 14.499971) = 14.499971
    ("dydx", Dec("49999.9"), Dec("14.499971")),
    # full_spread: 50,000 - 500 = 49,500; q_f = 1,435.5; penalty 14.355
    ("full_spread", Dec("49500"), Dec("14.355")),
])
def test_an_account_a_hair_below_maintenance_pays_almost_no_spread(rule, fill, penalty):
    """dYdX's fillable price: the spread is scaled by ABR = clamp(1 - equity / MM, 0, 1).

    Spread 0.2 (x MMF 5 % = 1 % of the mark). Erin deposits 1,099.99 and buys 0.2 at 53,000
    (IM 1,060); at 50,000 her equity is 1,099.99 - 600 = 499.99 against MM 500: a hair
    below. Size: shortage 550 - 499.99 = 50.01 over 50,000 x (5.5 % - 1 % - 1 %) = 1,750 ->
    0.028577 -> 0.029 (the size assumes the full spread under both rules). Bankruptcy quote
    0.029 x 50,000 - 499.99 x (500 - 427.5) / 500 = 1,450 - 72.49855 = 1,377.50145.
    """
    ledger = ledger_with('{"type":"set_parameters","parameters":{"liquidation_spread":"0.2",'
                         f'"liquidation_price_rule":"{rule}"}}}}\n'
                         + price("53000") + "\n" + accounts_with(("erin", "1099.99"))
                         + '\n{"type":"trade","market":"BTC-PERP","buyer":"erin","seller":"bob","size":"0.2","price":"53000"}')
    ledger.post_ok(price("50000"))
    (step,) = events(ledger, "Account.Liquidated")
    assert (step.account, step.equity_before, step.maintenance_margin_before) == ("erin", Dec("499.99"), Dec(500))
    assert (step.size_delta, step.price_fill, step.quote_bankruptcy, step.penalty) == (
        Dec("-0.029"), fill, Dec("1377.50145"), penalty)
    # realized 0.029 x (fill - 53,000); collateral 1,099.99 + realized - penalty
    assert step.collateral_after == Dec("1099.99") + Dec("0.029") * (fill - 53000) - penalty
    assert step.risk_status_after == "healthy" and fund(ledger) == penalty
    check_ledger(ledger.app)


def test_a_backstop_out_of_capital_falls_through_to_deleveraging():
    """The backstop (5,000) spends its capacity on alice's first step and cannot take the rest.

    Fund 1,000. At 47,000 alice (equity 400 < MM 470) sells 0.1 at 46,825 (dydx, as in
    ``test_call_unmet_at_the_deadline_is_liquidated``): the backstop holds notional 4,700
    against equity 5,017.50. Alice: collateral 1,000 - 317.50 - 46.825 penalty = 635.675.
    At 43,000 her equity is 635.675 - 700 = -64.325: insolvent, so ABR 1 and the fill
    43,000 x 0.975 = 41,925. The backstop would then hold 0.2 (notional 8,600) with equity
    5,000 + 0.1 x (43,000 - 46,825) + 0.1 x (43,000 - 41,925) = 4,725 < 8,600: refused.
    Alice is deleveraged although the fund could pay the 171.825 shortfall: the fund pays her
    negative equity (64.325), and bob (the top-ranked short) buys her 0.1 back at the
    bankruptcy price 43,000 (quote 4,300 = her position's value, her equity now 0).
    """
    ledger = ledger_with('{"type":"fund_insurance","amount":"1000"}', backstop="5000")
    ledger.post_ok(price("47000"))
    (taken,) = events(ledger, "Account.PositionTaken")
    assert (taken.account, taken.size_delta, taken.price) == ("backstop", Dec("0.1"), Dec(46825))
    assert (taken.equity_after, taken.notional_after) == (Dec("5017.5"), Dec(4700))
    assert ledger.collateral("alice") == Dec("635.675") and fund(ledger) == Dec("1046.825")

    ledger.post_ok(price("43000"))
    (refused,) = events(ledger, "Account.TakeoverRefused")
    assert (refused.account, refused.liquidator, refused.outcome) == ("alice", "backstop", "deleveraged")
    assert (refused.size_delta, refused.price_fill, refused.equity, refused.maintenance_margin) == (
        Dec("-0.1"), Dec(41925), Dec("-64.325"), Dec(215))
    assert (refused.liquidator_equity_after, refused.liquidator_initial_margin_after, refused.liquidator_notional_after,
            refused.liquidator_position_cap) == (Dec(4725), Dec(860), Dec(8600), Dec(1))
    (covered,) = events(ledger, "Account.LossCovered")
    assert (covered.fund_paid, covered.allocated, covered.policy) == (Dec("64.325"), 0, "insurance_fund")
    step = events(ledger, "Account.Liquidated")[-1]
    assert (step.reason, step.counterparty, step.size_delta, step.quote_fill, step.price_fill) == (
        "adl", "bob", Dec("-0.1"), Dec(4300), Dec(43000))
    assert ledger.collateral("alice") == 0 and ledger.position("alice", "BTC-PERP") == 0  # exactly 0
    assert ledger.account("alice")["status"] == "bankrupt"
    assert ledger.position("backstop", "BTC-PERP") == Dec("0.1"), "the backstop took nothing more"
    backstop = ledger.account("backstop")
    assert Dec(backstop["equity"]) == Dec("4617.5") >= 0  # 5,000 + 0.1 x (43,000 - 46,825)
    # bob: 100,000 + 0.1 x (50,000 - 43,000), short 0.1 left; the fund: 1,046.825 - 64.325
    assert ledger.collateral("bob") == Dec(100700) and ledger.position("bob", "BTC-PERP") == Dec("-0.1")
    assert fund(ledger) == Dec("982.5")
    check_ledger(ledger.app)


def test_a_solvent_account_waits_for_a_backstop_that_cannot_carry_then_is_liquidated():
    """The backstop has 1,000: alice's step (0.1 at 46,825, notional 4,700) would leave it with
    equity 1,017.50 < 4,700. Alice (equity 400 > 0, fill above her bankruptcy quote 4,500)
    waits, ``liquidating``; every check while it waits records another refusal. After a
    deposit of 9,000 (equity 10,017.50 >= 4,700 after the takeover) the next price
    liquidates her exactly as a funded backstop would have."""
    ledger = ledger_with(backstop="1000")
    ledger.post_ok(price("47000"))
    (refused,) = events(ledger, "Account.TakeoverRefused")
    assert (refused.account, refused.liquidator, refused.outcome) == ("alice", "backstop", "waiting")
    assert (refused.liquidator_equity_after, refused.liquidator_notional_after, refused.liquidator_initial_margin_after) == (
        Dec("1017.5"), Dec(4700), Dec(470))
    assert not events(ledger, "Account.Liquidated") and not events(ledger, "Account.PositionTaken")
    assert ledger.account("alice")["status"] == "liquidating" and ledger.position("alice", "BTC-PERP") == Dec("0.2")
    ledger.post_ok(price("47000"))
    assert [r.outcome for r in events(ledger, "Account.TakeoverRefused")] == ["waiting", "waiting"]

    ledger.post_ok('{"type":"deposit","account":"backstop","amount":"9000"}')
    assert not events(ledger, "Account.Liquidated"), "a deposit to the backstop re-checks nobody else"
    ledger.post_ok(price("47000"))
    (step,) = events(ledger, "Account.Liquidated")
    assert (step.account, step.counterparty, step.size_delta, step.price_fill, step.penalty) == (
        "alice", "backstop", Dec("-0.1"), Dec(46825), Dec("46.825"))
    (taken,) = events(ledger, "Account.PositionTaken")
    assert (taken.equity_after, taken.notional_after) == (Dec("10017.5"), Dec(4700))
    assert len(events(ledger, "Account.TakeoverRefused")) == 2
    assert ledger.account("alice")["status"] == "healthy"  # equity 335.675 >= MM 235 at 0.1
    check_ledger(ledger.app)


def test_the_backstop_below_maintenance_is_liquidated_like_any_account():
    """The backstop is an ordinary account: here it sold 0.2 to carol at 50,000 on 1,000 of
    its own (fund 1,000). Nobody can take the backstop's own position (it is its own
    liquidator), so each due step is refused: at 54,000 (equity 200 < MM 540, solvent) it
    waits, ``liquidating``; at 56,000 its equity is 1,000 - 1,200 = -200, so it is
    deleveraged like any insolvent account: the fund pays the 200 and alice, the top-ranked
    long (rank 0.12 x 11,200 / 2,200 = 0.61), sells 0.2 to it at the bankruptcy price
    56,000. The backstop ends at exactly 0, bankrupt, flat."""
    ledger = ledger_with('{"type":"fund_insurance","amount":"1000"}\n' + accounts_with(("backstop", "1000"))
                         + '\n{"type":"trade","market":"BTC-PERP","buyer":"carol","seller":"backstop","size":"0.2",'
                           '"price":"50000"}',
                         backstop=None)
    ledger.post_ok(price("54000"))
    (waiting,) = events(ledger, "Account.TakeoverRefused")
    assert (waiting.account, waiting.liquidator, waiting.outcome, waiting.equity) == ("backstop", "backstop", "waiting", Dec(200))
    assert ledger.account("backstop")["status"] == "liquidating" and ledger.position("backstop", "BTC-PERP") == Dec("-0.2")

    ledger.post_ok(price("56000"))
    refused = events(ledger, "Account.TakeoverRefused")[-1]
    assert (refused.liquidator, refused.outcome, refused.equity, refused.maintenance_margin) == (
        "backstop", "deleveraged", Dec(-200), Dec(560))
    (covered,) = events(ledger, "Account.LossCovered")
    assert (covered.account, covered.fund_paid) == ("backstop", Dec(200))
    (step,) = events(ledger, "Account.Liquidated")
    assert (step.account, step.reason, step.counterparty, step.size_delta, step.quote_fill) == (
        "backstop", "adl", "alice", Dec("0.2"), Dec(-11200))
    assert ledger.collateral("backstop") == 0 and ledger.position("backstop", "BTC-PERP") == 0
    assert ledger.account("backstop")["status"] == "bankrupt"
    assert ledger.collateral("alice") == Dec(2200) and ledger.position("alice", "BTC-PERP") == 0  # sold at 56,000
    assert fund(ledger) == Dec(800)
    check_ledger(ledger.app)


def test_a_manual_liquidation_to_a_liquidator_without_margin_is_refused():
    """Erin (100) would take alice's 0.2 at 46,900 (mark 47,000): equity 100 + 20 = 120 against
    IM 940 and notional 9,400: ``liquidator_undercapitalized``, and nothing but the answer
    is written. The same liquidation to carol (100,000) is accepted."""
    ledger = ledger_with('{"type":"set_parameters","parameters":{"margin_call_grace":86400}}\n' + accounts_with(("erin", "100")))
    ledger.post_ok(price("47000"))
    line = '{"id":"liq-erin","type":"liquidate","account":"alice","market":"BTC-PERP","price":"46900","liquidator":"erin"}'
    head = ledger.head()
    (outcome,) = ledger.post(line, auto_id=False)
    assert (outcome.status, outcome.code, outcome.field) == ("rejected", "liquidator_undercapitalized", "liquidator")
    assert "equity 120" in outcome.message and "initial margin 940" in outcome.message and "notional 9400" in outcome.message
    ledger.assert_rejection_wrote_only_its_answer(head, outcome, line)
    assert ledger.position("alice", "BTC-PERP") == Dec("0.2") and ledger.position("erin", "BTC-PERP") == 0
    ledger.post_ok(line.replace("liq-erin", "liq-carol").replace('"erin"', '"carol"'))
    assert ledger.position("carol", "BTC-PERP") == Dec("0.3")
    check_ledger(ledger.app)


def test_a_manual_liquidation_to_a_backstop_never_opened_is_refused():
    """No backstop account exists: ``liquidate`` without a liquidator resolves it (opened on
    first use, with nothing), which cannot carry 0.2 at 46,900: refused, nothing written."""
    ledger = ledger_with('{"type":"set_parameters","parameters":{"margin_call_grace":86400}}', backstop=None)
    ledger.post_ok(price("47000"))
    line = '{"id":"liq-backstop","type":"liquidate","account":"alice","market":"BTC-PERP","price":"46900"}'
    head = ledger.head()
    (outcome,) = ledger.post(line, auto_id=False)
    assert (outcome.status, outcome.code, outcome.field) == ("rejected", "liquidator_undercapitalized", "liquidator")
    ledger.assert_rejection_wrote_only_its_answer(head, outcome, line)


SOL = """
{"type":"set_parameters","parameters":{"margin_call_grace":86400,"approvals_required":2,"officers_max":3}}
{"type":"register_officer","officer":"olga"}
{"type":"register_officer","officer":"omar"}
{"type":"fund_insurance","amount":"10000"}
{"type":"create_market","market":"SOL-PERP","kind":"perpetual","tick_size":"0.01","step_size":"1","initial_margin_fraction":"0.1","maintenance_margin_fraction":"0.05","price_band":"0.5"}
{"type":"price","market":"SOL-PERP","price":"100"}
""" + accounts_with(("erin", "1000")) + """
{"type":"trade","market":"SOL-PERP","buyer":"erin","seller":"bob","size":"100","price":"100"}
{"type":"price","market":"SOL-PERP","price":"94"}
"""


def _approve_liquidation(officer: str, price_text: str) -> str:
    return (f'{officer}> {{"type":"approve","officer":"{officer}","action":"liquidate","account":"erin",'
            f'"market":"SOL-PERP","price":"{price_text}","liquidator":"carol"}}')


def test_an_auction_price_out_of_band_needs_the_officers_approval_of_that_liquidation():
    """Erin (1,000) is long 100 SOL-PERP from 100; at mark 94 her equity is 400 < MM 470 (grace
    1 day: only called). M = 2 of olga and omar. An auction at 40 is |40 - 94| / 94 =
    57.45 % from the mark, outside the 10 % band: ``price_out_of_band``; with one approval
    ``quorum_not_met``; omar's approval of another price (41) is another change and does
    not count. With olga's and omar's approval of this exact liquidation (100 at 40 to
    carol) it is executed: q_f 4,000, q_b 9,400 - 400 = 9,000, the fund pays the 5,000
    deficit; the approvals are used up."""
    ledger = ledger_with(SOL)
    assert ledger.account("erin")["status"] == "margin_call"
    line = '{"id":"auction","type":"liquidate","account":"erin","market":"SOL-PERP","price":"40","liquidator":"carol"}'

    def refused(code: str) -> str:
        head = ledger.head()
        (outcome,) = ledger.post(line, auto_id=False)
        assert (outcome.status, outcome.code, outcome.field) == ("rejected", code, "price"), outcome.message
        ledger.assert_rejection_wrote_only_its_answer(head, outcome)
        return outcome.message

    assert "57.45 % from the mark 94" in refused("price_out_of_band")
    line = line.replace('"auction"', '"auction-2"')
    ledger.post_ok(_approve_liquidation("olga", "40"))
    assert "1 of the 2" in refused("quorum_not_met")
    line = line.replace('"auction-2"', '"auction-3"')
    ledger.post_ok(_approve_liquidation("omar", "41"))
    assert "1 of the 2" in refused("quorum_not_met")
    assert ledger.position("erin", "SOL-PERP") == 100 and fund(ledger) == 10000

    ledger.post_ok(_approve_liquidation("omar", "40"))
    ledger.post_ok(line.replace('"auction-3"', '"auction-4"'))
    (step,) = events(ledger, "Account.Liquidated")
    assert (step.reason, step.counterparty, step.size_delta, step.price_fill) == ("manual", "carol", Dec(-100), Dec(40))
    assert (step.quote_fill, step.quote_bankruptcy) == (Dec(4000), Dec(9000))
    (covered,) = events(ledger, "Account.LossCovered")
    assert (covered.deficit, covered.fund_paid, covered.allocated) == (Dec(5000), Dec(5000), 0)
    (consumed,) = events(ledger, "Clearinghouse.ApprovalsConsumed")
    assert consumed.governance["approved_by"] == ["olga", "omar"]
    assert ledger.collateral("erin") == 0 and fund(ledger) == Dec(5000)
    assert ledger.position("carol", "SOL-PERP") == 100
    check_ledger(ledger.app)


@pytest.mark.parametrize(("auction", "code"), [
    ("85", None),  # 9 / 94 = 9.57 % from the mark
    ("84.6", None),  # 9.4 / 94 = exactly 10 %: inside
    ("84.59", "price_out_of_band"),  # 9.41 / 94 = 10.01 %
])
def test_an_auction_price_inside_the_band_needs_no_approval(auction, code):
    """At mark 94 the band is 94 x (1 -/+ 10 %) = 84.60 to 103.40; inside it an auction price
    stands alone. At 85: q_f 8,500 against q_b 9,000, the fund pays 500."""
    ledger = ledger_with(SOL)
    head = ledger.head()
    (outcome,) = ledger.post(f'{{"type":"liquidate","account":"erin","market":"SOL-PERP","price":"{auction}",'
                             '"liquidator":"carol"}')
    assert outcome.code == code, outcome.message
    if code is not None:
        ledger.assert_rejection_wrote_only_its_answer(head, outcome)
        assert ledger.position("erin", "SOL-PERP") == 100
        return
    (step,) = events(ledger, "Account.Liquidated")
    assert (step.price_fill, step.quote_fill, step.counterparty) == (Dec(auction), 100 * Dec(auction), "carol")
    assert fund(ledger) == 10000 - (9000 - 100 * Dec(auction)) and not events(ledger, "Clearinghouse.ApprovalsConsumed")
    check_ledger(ledger.app)


NO_PAYER = """
{"type":"create_market","id":"m-x","market":"X-PERP","kind":"perpetual","tick_size":"1","step_size":"1","initial_margin_fraction":"0.1","maintenance_margin_fraction":"0.05","price_band":"0.5"}
{"type":"set_parameters","parameters":{"manual_liquidation_band":"0.5","margin_call_grace":86400}}
""" + accounts_with(("alice", "150"), ("bob", "100000")) + """
{"type":"price","market":"X-PERP","price":"1000"}
{"type":"trade","market":"X-PERP","buyer":"alice","seller":"bob","size":"1","price":"1000"}
{"type":"price","market":"X-PERP","price":"880"}
"""


def test_a_manual_liquidation_whose_deficit_nobody_could_bear_is_refused():
    """Alice long 1 at 1,000 with 150 (bankruptcy price 850); at 880 her equity 30 is below MM
    44. Bob, the only other holder, takes her long at an auction price of 700: that closes his
    short, nobody holds X-PERP any more and the fund is empty, so the 150 deficit would have no
    payer: ``deficit_without_payer``, nothing written. At 850 there is no deficit: accepted."""
    ledger = Ledger()
    ledger.post_ok(NO_PAYER)
    line = '{"id":"liq-700","type":"liquidate","account":"alice","market":"X-PERP","price":"700","liquidator":"bob"}'
    head = ledger.head()
    (outcome,) = ledger.post(line, auto_id=False)
    assert (outcome.status, outcome.code, outcome.field) == ("rejected", "deficit_without_payer", "price")
    assert "150" in outcome.message
    ledger.assert_rejection_wrote_only_its_answer(head, outcome, line)
    ledger.post_ok('{"type":"liquidate","account":"alice","market":"X-PERP","price":"850","liquidator":"bob"}')
    assert ledger.collateral("alice") == 0 and ledger.position("alice", "X-PERP") == 0
    assert ledger.position("bob", "X-PERP") == 0 and ledger.collateral("bob") == Dec(100150)
    check_ledger(ledger.app)
