"""The decision audit: clean logs audit clean, and one changed number is found where it is.

Clean logs come from the risk scenarios (calls, partial and full liquidations, fund draws,
the three loss policies, ADL, the pause queue, TWAP deferral, manual liquidation in and out
of the band, funding, settlement, the backstop taking positions, running out of capacity
and being liquidated itself; ``ledger_with`` funds the backstop with 50,000) and from the
random paths of ``test_risk_properties``. Corrupted logs are the
same events with ONE decision event replaced by a copy with one number changed (or one
injected, or one dropped); the first finding must name that event's log position and the
check that re-derives that number.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from decimal import Decimal as Dec
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings

from clearing.audit.decisions import Finding, audit_decisions, audit_log
from clearing.audit.log import log_events
from clearing.domain.parameters import DEFAULTS, effective
from clearing.domain.risk.fill import fill_effect
from clearing.domain.risk.penalty import decide_penalty
from clearing.domain.risk.step import spread_price
from clearing.domain.risk.totals import MarginTotals, margin_totals
from tests.ledger import MARKET_BTC, Ledger, accounts_with
from tests.unit import test_risk_properties as properties
from tests.unit.test_risk_scenarios import FUTURE, QUEUE_BOOK, ledger_with, price

ETH = ('{"type":"create_market","market":"ETH-PERP","kind":"perpetual","tick_size":"0.01","step_size":"0.01",'
       '"initial_margin_fraction":"0.1","maintenance_margin_fraction":"0.05","price_band":"0.5"}')


# -- helpers ------------------------------------------------------------------------------------


def events_of(ledger: Ledger) -> list[tuple[int, Any]]:
    return list(log_events(ledger.app))


def kind(event: Any) -> str:
    return type(event).__qualname__


def position_of(events: list[tuple[int, Any]], name: str, n: int = 0, **match: Any) -> int:
    """Log position of the ``n``-th event of type ``name`` whose fields equal ``match``."""
    found = [p for p, e in events if kind(e) == name and all(getattr(e, k) == v for k, v in match.items())]
    return found[n]


def changed(event: Any, **values: Any) -> Any:
    """A copy of a frozen domain event with some fields replaced."""
    copy = object.__new__(type(event))
    object.__setattr__(copy, "__dict__", {**event.__dict__, **values})
    return copy


def corrupt(events: list[tuple[int, Any]], position: int, **values: Any) -> list[tuple[int, Any]]:
    """The log with the event at ``position`` replaced by a copy with ``values``."""
    return [(p, changed(e, **values) if p == position else e) for p, e in events]


def event_at(events: list[tuple[int, Any]], position: int) -> Any:
    return next(e for p, e in events if p == position)


def first(findings: list[Finding]) -> tuple[int, str]:
    assert findings, "the audit found nothing"
    return findings[0].position, findings[0].check


def assert_clean(ledger: Ledger) -> None:
    assert audit_log(ledger.app, stop_at_first=False) == []


CALLED = '{"type":"set_parameters","parameters":{"margin_call_grace":3600}}'
BACKSTOP = ("backstop", "100000")  # the backstop liquidator, funded to carry what these scenarios hand it
OUT_OF_BAND = '{"type":"liquidate","account":"alice","market":"BTC-PERP","price":"40000","liquidator":"carol"}'
OUT_OF_BAND_APPROVED = (
    '{"type":"register_officer","officer":"olga"}\n'
    'olga> {"type":"approve","officer":"olga","action":"liquidate","account":"alice","market":"BTC-PERP","price":"40000",'
    '"liquidator":"carol"}\n'
    f"{OUT_OF_BAND}"
)
PENALTY = '{"type":"set_parameters","parameters":{"liquidation_spread":"0","liquidation_min_notional":"5000"}}'


def called() -> Ledger:
    """Alice under call (grace 3,600 s): equity 400 < MM 470 at 47,000."""
    ledger = ledger_with(CALLED)
    ledger.post_ok(price("47000"))
    return ledger


def partially_then_fully_liquidated() -> Ledger:
    ledger = ledger_with(PENALTY)
    ledger.post_ok(price("45400"))
    ledger.post_ok(price("45300"))
    return ledger


def covered_by_the_fund() -> Ledger:
    ledger = ledger_with('{"type":"fund_insurance","amount":"1000"}')
    ledger.post_ok(price("44000"))
    return ledger


def socialized(policy: str = "socialize_per_contract") -> Ledger:
    ledger = ledger_with(f'{{"type":"fund_insurance","amount":"100"}}\n'
                         f'{{"type":"set_parameters","market":"BTC-PERP","parameters":{{"loss_policy":"{policy}"}}}}')
    ledger.post_ok(price("44000"))
    return ledger


def deleveraged() -> Ledger:
    ledger = ledger_with('{"type":"fund_insurance","amount":"100"}')  # default loss_policy adl
    ledger.post_ok(price("44000"))
    return ledger


def with_liquidator_fee() -> Ledger:
    ledger = ledger_with('{"type":"set_parameters","parameters":{"liquidation_spread":"0","liquidation_min_notional":"5000",'
                         '"liquidator_fee_share":"0.25"}}')
    ledger.post_ok(price("45400"))
    return ledger


def two_markets(script: str) -> Ledger:
    ledger = Ledger()
    ledger.post_ok(f"{MARKET_BTC}\n{ETH}\n{script}")
    return ledger


# -- clean logs audit clean ------------------------------------------------------------------------


@pytest.mark.parametrize("build",
                         [called, partially_then_fully_liquidated, covered_by_the_fund, deleveraged, with_liquidator_fee])
def test_engine_logs_audit_clean(build):
    assert_clean(build())


@pytest.mark.parametrize("policy", ["socialize_per_contract", "haircut_gains", "leverage_weighted_gains"])
def test_allocated_losses_audit_clean(policy):
    assert_clean(socialized(policy))


@pytest.mark.parametrize("policy", ["socialize_per_contract", "haircut_gains", "leverage_weighted_gains"])
def test_a_loss_share_moved_between_payers_is_found(policy):
    """One quantum moved from the first payer to the second, each collateral kept consistent:
    the totals still add up, only the split is wrong (``risk.allocation.cash_allocation``)."""
    events = events_of(socialized(policy))
    one, two = (position_of(events, "Account.LossAllocated", n) for n in (0, 1))
    quantum = Dec("0.000001")
    first_share, second_share = event_at(events, one), event_at(events, two)
    moved = corrupt(corrupt(events, one, share=first_share.share - quantum,
                            collateral_after=first_share.collateral_after + quantum),
                    two, share=second_share.share + quantum, collateral_after=second_share.collateral_after - quantum)
    found = audit_decisions(moved)
    assert first(found) == (one, "loss_share_differs"), found
    assert policy in found[0].message


def test_a_loss_share_with_another_basis_is_found():
    events = events_of(socialized("leverage_weighted_gains"))
    at = position_of(events, "Account.LossAllocated")
    basis = event_at(events, at).basis
    assert first(audit_decisions(corrupt(events, at, basis=basis * 2))) == (at, "loss_share_differs")


@pytest.mark.parametrize("policy", ["adl_hyperliquid", "waterfill_leverage"])
def test_each_queue_policy_audits_clean_and_a_changed_plan_is_found(policy):
    ledger = Ledger()
    ledger.post_ok(QUEUE_BOOK + f'{{"type":"set_parameters","market":"X-PERP","parameters":{{"loss_policy":"{policy}"}}}}')
    ledger.post_ok('{"type":"price","market":"X-PERP","price":"1200"}')
    assert_clean(ledger)
    events = events_of(ledger)
    at = position_of(events, "Account.PositionTaken", basis="adl")
    rank = event_at(events, at).adl_rank
    assert first(audit_decisions(corrupt(events, at, adl_rank=rank + Dec("0.000001")))) == (at, "adl_rank_differs")
    # the same log audited as if the market's policy had been plain adl: another plan
    as_adl = [(p, changed(e, changes={**e.changes, "loss_policy": "adl"},
                          overrides_after={**e.overrides_after, "loss_policy": "adl"})
               if kind(e) == "Market.ParametersSet" else e) for p, e in events]
    found = audit_decisions(as_adl, stop_at_first=False)
    assert "adl_queue_differs" in {f.check for f in found}, found


def test_calls_met_by_deposit_and_by_price_audit_clean():
    ledger = called()
    ledger.post_ok('{"type":"deposit","account":"alice","amount":"500"}')
    ledger.post_ok(price("47000") + "\n" + price("49000"))
    assert_clean(ledger)


def test_call_unmet_at_the_deadline_audits_clean():
    ledger = ledger_with(CALLED)
    ledger.post_ok(price("47000", "2025-01-01T00:10:00Z") + "\n" + price("47000", "2025-01-01T01:10:00Z"))
    assert [kind(e) for _, e in events_of(ledger)].count("Account.Liquidated") == 1
    assert_clean(ledger)


def test_pause_queue_and_resume_audit_clean():
    ledger = ledger_with("""
{"type":"register_officer","officer":"olga"}
olga> {"type":"approve","officer":"olga","action":"pause","operation":"liquidations","market":"BTC-PERP"}
{"type":"pause","operation":"liquidations","market":"BTC-PERP"}
""")
    ledger.post_ok(price("45400") + "\n" + price("45300"))
    ledger.post_ok("""
olga> {"type":"approve","officer":"olga","action":"resume","operation":"liquidations","market":"BTC-PERP"}
{"type":"resume","operation":"liquidations","market":"BTC-PERP"}
""")
    kinds = [kind(e) for _, e in events_of(ledger)]
    assert "Clearinghouse.LiquidationQueued" in kinds and "Account.Liquidated" in kinds
    assert_clean(ledger)


def test_twap_deferral_funding_and_manual_liquidation_audit_clean():
    ledger = ledger_with('{"type":"set_parameters","parameters":{"twap_window":600,"twap_max_deviation":"0.05"}}')
    ledger.post_ok(price("50000", "2025-01-01T00:05:00Z") + "\n" + price("45400", "2025-01-01T00:10:00Z"))
    ledger.post_ok(price("45400", "2025-01-01T00:30:00Z"))
    ledger.post_ok('{"type":"funding","market":"BTC-PERP","rate":"0.0001"}')
    assert_clean(ledger)
    manual = ledger_with('{"type":"set_parameters","parameters":{"margin_call_grace":86400}}')
    manual.post_ok(price("47000"))
    manual.post_ok('{"type":"liquidate","account":"alice","market":"BTC-PERP","price":"46900","liquidator":"carol"}')
    assert_clean(manual)


def test_settlement_losses_audit_clean():
    ledger = ledger_with(f"""{FUTURE}
{{"type":"price","market":"BTC-0331","price":"50000"}}
{{"type":"open_account","account":"erin"}}
{{"type":"deposit","account":"erin","amount":"2500"}}
{{"type":"trade","market":"BTC-0331","buyer":"erin","seller":"dave","size":"0.5","price":"50000"}}
{{"type":"fund_insurance","amount":"300"}}
""")
    ledger.post_ok('{"type":"settle","market":"BTC-0331","price":"44000","at":"2025-03-31T08:00:00Z"}')
    assert_clean(ledger)


def test_insolvent_account_closes_every_position_largest_requirement_first():
    ledger = two_markets(f"""{accounts_with(("alice", "1500"), ("zed", "100000"), BACKSTOP)}
{{"type":"fund_insurance","amount":"5000"}}
{{"type":"price","market":"BTC-PERP","price":"50000"}}
{{"type":"price","market":"ETH-PERP","price":"3000"}}
{{"type":"trade","market":"BTC-PERP","buyer":"alice","seller":"zed","size":"0.2","price":"50000"}}
{{"type":"trade","market":"ETH-PERP","buyer":"alice","seller":"zed","size":"1.5","price":"3000"}}
{{"type":"price","market":"BTC-PERP","price":"42000"}}
""")  # equity 1,500 - 1,600 = -100: insolvent; MM 420 (BTC) before 225 (ETH); the funded backstop takes both
    steps = [e for _, e in events_of(ledger) if kind(e) == "Account.Liquidated"]
    assert [(s.market, s.reason, s.counterparty) for s in steps] == [("BTC-PERP", "insolvent", "backstop"),
                                                                     ("ETH-PERP", "insolvent", "backstop")]
    assert_clean(ledger)


def test_tiered_market_with_oracle_sources_audits_clean():
    """Tiers 10 %/5 % then 20 %/10 % from 20,000 (deductions 2,000 / 1,000); marks from sources."""
    tiers = [{"notional_floor": "0", "initial_margin_fraction": "0.1", "maintenance_margin_fraction": "0.05"},
             {"notional_floor": "20000", "initial_margin_fraction": "0.2", "maintenance_margin_fraction": "0.1"}]
    listing = json.dumps({"type": "create_market", "market": "BTC-PERP", "kind": "perpetual", "tick_size": "0.1",
                          "step_size": "0.001", "price_band": "0.5", "tiers": tiers})
    ledger = Ledger()
    ledger.post_ok(f"""{listing}
{accounts_with(("alice", "3000"), ("bob", "100000"), BACKSTOP)}
{{"type":"set_parameters","market":"BTC-PERP","parameters":{{"oracle_sources":["a","b","c"]}}}}
{{"type":"price","market":"BTC-PERP","price":"50000","source":"a"}}
{{"type":"trade","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"0.5","price":"50000"}}
{{"type":"price","market":"BTC-PERP","price":"46000","source":"b"}}
{{"type":"price","market":"BTC-PERP","price":"46000","source":"c"}}
""")  # 46,000: equity 1,000 < MM 23,000 x 10 % - 1,000 = 1,300, above the floor 650: one partial step
    steps = [e for _, e in events_of(ledger) if kind(e) == "Account.Liquidated"]
    assert steps and steps[0].parameters["oracle_sources"] == ["a", "b", "c"] and steps[0].counterparty == "backstop"
    assert_clean(ledger)


def test_the_formulas_it_re_derives():
    # the deciders the engine and the audit both call
    assert fill_effect(Dec(2), Dec(200), Dec(-3), Dec(110), Dec(1), Dec("0.01")) == (Dec(-1), Dec(-110), Dec(20))
    params = effective(DEFAULTS, {"liquidation_spread": Dec("0.5"), "liquidation_fee_rate": Dec("0.01")}, 0, 0)
    assert decide_penalty(Dec(4540), Dec(4500), params, Dec("0.000001")).penalty == Dec(40)  # min(surplus 40, 45.40)
    assert decide_penalty(Dec(4500), Dec(4540), params, Dec("0.000001")).penalty == 0  # a deficit pays no penalty
    ledger = called()
    events = events_of(ledger)
    call = event_at(events, position_of(events, "Account.MarginCallIssued"))
    assert (call.equity, call.maintenance_margin, call.amount_to_initial) == (Dec(400), Dec(470), Dec(540))
    market = ledger.app.get_market("BTC-PERP")
    totals = MarginTotals(equity=Dec(400), initial_margin=Dec(940), maintenance_margin=Dec(470))
    # dydx (default): ABR = 1 - 400 / 470; the spread 47,000 x 0.5 x 5 % = 1,175 x 70 / 470 = 175
    assert spread_price(Dec("0.2"), market, params, totals) == Dec(46825)
    assert spread_price(Dec("-0.2"), market, params, totals) == Dec(47175)  # a short's fill rises
    full = effective(DEFAULTS, {"liquidation_spread": Dec("0.5"), "liquidation_price_rule": "full_spread"}, 0, 0)
    assert spread_price(Dec("0.2"), market, full, totals) == Dec(45825)  # 47,000 x (1 - 0.5 x 5 %)
    older = effective({k: v for k, v in DEFAULTS.items() if k != "liquidation_price_rule"},
                      {"liquidation_spread": Dec("0.5")}, 0, 0)
    assert spread_price(Dec("0.2"), market, older, totals) == Dec(45825)  # a log older than the rule keeps the full spread
    insolvent = MarginTotals(equity=Dec(-1), initial_margin=Dec(940), maintenance_margin=Dec(470))
    assert spread_price(Dec("0.2"), market, params, insolvent) == Dec(45825)  # ABR 1 at or below zero equity


# -- one changed number is found where it is ---------------------------------------------------------


def test_changed_call_equity():
    events = events_of(called())
    at = position_of(events, "Account.MarginCallIssued")
    assert first(audit_decisions(corrupt(events, at, equity=Dec(401)))) == (at, "call_figures_differ")


def test_changed_call_amount_and_deadline():
    events = events_of(called())
    at = position_of(events, "Account.MarginCallIssued")
    call = event_at(events, at)
    assert first(audit_decisions(corrupt(events, at, amount_to_initial=Dec(530)))) == (at, "amount_differs")
    later = call.deadline + timedelta(seconds=1)
    assert first(audit_decisions(corrupt(events, at, deadline=later))) == (at, "deadline_differs")


def test_changed_recorded_parameters():
    events = events_of(called())
    at = position_of(events, "Account.MarginCallIssued")
    recorded = dict(event_at(events, at).parameters, margin_call_grace=60)
    found = audit_decisions(corrupt(events, at, parameters=recorded))
    assert first(found) == (at, "parameters_differ") and "margin_call_grace expected 3600 recorded 60" in found[0].message
    events = events_of(partially_then_fully_liquidated())
    at = position_of(events, "Account.Liquidated")
    recorded = dict(event_at(events, at).parameters, clearinghouse_parameters_version=7)
    assert first(audit_decisions(corrupt(events, at, parameters=recorded))) == (at, "parameters_differ")


def test_call_on_a_healthy_account():
    """An injected call for carol (figures right, but equity 99,700 >= MM 235)."""
    ledger = called()
    events = events_of(ledger)
    at = position_of(events, "Account.MarginCallIssued")
    call = event_at(events, at)
    carol = ledger.app.get_account("carol")
    totals = margin_totals(carol.collateral, carol.positions, {"BTC-PERP": ledger.app.get_market("BTC-PERP")})
    injected = changed(call, account="carol", equity=totals.equity, initial_margin=totals.initial_margin,
                       maintenance_margin=totals.maintenance_margin, amount_to_initial=totals.initial_margin - totals.equity)
    index = [p for p, _ in events].index(at) + 1
    stream = [e for _, e in events[:index]] + [injected] + [e for _, e in events[index:]]
    found = audit_decisions(list(enumerate(stream, start=1)))
    assert found == [Finding(index + 1, "call_not_warranted", found[0].message)]
    assert "carol" in found[0].message and "99700" in found[0].message


def test_dropped_call_is_a_missed_call_at_the_price_event():
    events = events_of(called())
    call = position_of(events, "Account.MarginCallIssued")
    mark = position_of(events, "Market.MarkPriceSet", price_mark=Dec(47000))
    found = audit_decisions([(p, e) for p, e in events if p != call], stop_at_first=False)
    assert first(found) == (mark, "call_missed") and "alice" in found[0].message
    assert [f.check for f in found] == ["call_missed"]


def test_changed_liquidation_penalty_and_figures():
    events = events_of(partially_then_fully_liquidated())
    at = position_of(events, "Account.Liquidated")
    assert first(audit_decisions(corrupt(events, at, penalty=Dec(39)))) == (at, "penalty_differs")
    assert first(audit_decisions(corrupt(events, at, equity_before=Dec(81)))) == (at, "liquidation_figures_differ")
    assert first(audit_decisions(corrupt(events, at, quote_fill=Dec(4541)))) == (at, "liquidation_figures_differ")
    assert first(audit_decisions(corrupt(events, at, size_delta=Dec("-0.101")))) == (at, "size_differs")
    assert first(audit_decisions(corrupt(events, at, price_fill=Dec(45390)))) == (at, "fill_price_differs")
    assert first(audit_decisions(corrupt(events, at, collateral_after=Dec(501)))) == (at, "liquidation_after_differs")


def test_changed_fee_split():
    events = events_of(with_liquidator_fee())
    at = position_of(events, "Account.Liquidated")
    step = event_at(events, at)
    assert step.fee_liquidator == Dec(10)  # 40 x 0.25
    assert first(audit_decisions(corrupt(events, at, fee_liquidator=Dec(11)))) == (at, "fee_split_differs")
    zero_share = events_of(partially_then_fully_liquidated())
    at = position_of(zero_share, "Account.Liquidated")
    assert first(audit_decisions(corrupt(zero_share, at, fee_liquidator=Dec(1)))) == (at, "fee_split_differs")


def test_changed_bankruptcy_price_and_quote():
    events = events_of(covered_by_the_fund())
    at = position_of(events, "Account.Liquidated")
    step = event_at(events, at)
    assert first(audit_decisions(corrupt(events, at, price_bankruptcy=step.price_bankruptcy + 1))) == (at, "bankruptcy_differs")
    assert first(audit_decisions(corrupt(events, at, quote_bankruptcy=step.quote_bankruptcy - 1))) == (at, "bankruptcy_differs")
    adl = events_of(deleveraged())
    at = position_of(adl, "Account.Liquidated", reason="adl")
    assert first(audit_decisions(corrupt(adl, at, price_bankruptcy=Dec("44500.1")))) == (at, "bankruptcy_differs")


def test_changed_fund_draw():
    events = events_of(covered_by_the_fund())
    at = position_of(events, "InsuranceFund.Drawn")
    assert event_at(events, at).amount == Dec(420)
    found = audit_decisions(corrupt(events, at, amount=Dec(400)))
    assert first(found) == (at, "fund_draw_differs") and "expected 420, recorded 400" in found[0].message
    adl = events_of(deleveraged())  # the fund pays min(negative equity 200, balance 100) before deleveraging
    at = position_of(adl, "InsuranceFund.Drawn")
    assert first(audit_decisions(corrupt(adl, at, amount=Dec(99), balance_after=Dec(1)))) == (at, "fund_draw_differs")


def test_loss_covered_not_summing():
    events = events_of(socialized())
    at = position_of(events, "Account.LossCovered")
    assert first(audit_decisions(corrupt(events, at, allocated=Dec(321)))) == (at, "loss_cover_differs")
    assert first(audit_decisions(corrupt(events, at, fund_paid=Dec(99), allocated=Dec(321)))) == (at, "loss_cover_differs")


def test_liquidation_before_the_deadline_was_not_warranted():
    ledger = ledger_with(CALLED)
    ledger.post_ok(price("47000", "2025-01-01T00:10:00Z") + "\n" + price("47000", "2025-01-01T01:10:00Z"))
    events = events_of(ledger)
    at = position_of(events, "Account.Liquidated")
    early = event_at(events, at).at - timedelta(minutes=30)  # the call was issued at 00:10 with a 1 h grace
    found = audit_decisions(corrupt(events, at, at=early))
    assert first(found) == (at, "liquidation_not_warranted") and "deadline" in found[0].message


def test_changed_deferral():
    ledger = ledger_with('{"type":"set_parameters","parameters":{"twap_window":600,"twap_max_deviation":"0.05"}}')
    ledger.post_ok(price("50000", "2025-01-01T00:05:00Z") + "\n" + price("45400", "2025-01-01T00:10:00Z"))
    events = events_of(ledger)
    at = position_of(events, "Account.LiquidationDeferred")
    assert first(audit_decisions(corrupt(events, at, deviation=Dec("0.0921")))) == (at, "deferral_differs")


def test_stop_at_first_false_reports_every_finding():
    events = events_of(called())
    at = position_of(events, "Account.MarginCallIssued")
    found = audit_decisions(corrupt(events, at, equity=Dec(401), amount_to_initial=Dec(1)), stop_at_first=False)
    assert [(f.position, f.check) for f in found] == [(at, "call_figures_differ"), (at, "amount_differs")]


def test_audit_log_reports_progress_by_page():
    ledger = called()
    seen: list[int] = []
    assert audit_log(ledger.app, progress=seen.append) == []
    assert seen == [ledger.head()]


# -- what the engine really records in two corners (see the report) ----------------------------------


def test_a_loss_payer_checked_earlier_in_the_sweep_is_audited():
    """aaron (two markets, so checked on every BTC price) is checked first and healthy, then
    pays a share of bob's deficit; the audit's verdict must match aaron's state after it."""
    ledger = two_markets(f"""{accounts_with(("aaron", "1850"), ("bob", "1000"), ("zed", "100000"), BACKSTOP)}
{{"type":"set_parameters","market":"BTC-PERP","parameters":{{"loss_policy":"socialize_per_contract"}}}}
{{"type":"price","market":"BTC-PERP","price":"50000"}}
{{"type":"price","market":"ETH-PERP","price":"3000"}}
{{"type":"trade","market":"BTC-PERP","buyer":"aaron","seller":"zed","size":"0.2","price":"50000"}}
{{"type":"trade","market":"ETH-PERP","buyer":"aaron","seller":"zed","size":"1","price":"3000"}}
{{"type":"trade","market":"BTC-PERP","buyer":"bob","seller":"zed","size":"0.2","price":"50000"}}
""")
    ledger.post_ok(price("44000"))
    events = events_of(ledger)
    position_of(events, "Account.LossAllocated", account="aaron")  # the backstop took bob's position; aaron paid a share
    aaron = ledger.account("aaron")
    missed = aaron["status"] == "healthy" and Dec(aaron["equity"]) < Dec(aaron["maintenance_margin"])
    found = audit_log(ledger.app, stop_at_first=False)
    mark = position_of(events, "Market.MarkPriceSet", price_mark=Dec(44000))
    assert [(f.position, f.check) for f in found] == ([(mark, "call_missed")] if missed else [])
    assert not missed, "the engine re-checks an account after charging it a loss share (regression)"


def test_a_loss_payer_of_a_queued_liquidation_is_audited_after_resume():
    """The same loss, but bob was queued while paused and is liquidated by ``resume``."""
    ledger = two_markets(f"""{accounts_with(("aaron", "1850"), ("bob", "1000"), ("zed", "100000"), BACKSTOP)}
{{"type":"set_parameters","market":"BTC-PERP","parameters":{{"loss_policy":"socialize_per_contract"}}}}
{{"type":"register_officer","officer":"olga"}}
{{"type":"price","market":"BTC-PERP","price":"50000"}}
{{"type":"price","market":"ETH-PERP","price":"3000"}}
{{"type":"trade","market":"BTC-PERP","buyer":"aaron","seller":"zed","size":"0.2","price":"50000"}}
{{"type":"trade","market":"ETH-PERP","buyer":"aaron","seller":"zed","size":"1","price":"3000"}}
{{"type":"trade","market":"BTC-PERP","buyer":"bob","seller":"zed","size":"0.2","price":"50000"}}
olga> {{"type":"approve","officer":"olga","action":"pause","operation":"liquidations","market":"BTC-PERP"}}
{{"type":"pause","operation":"liquidations","market":"BTC-PERP"}}
{{"type":"price","market":"BTC-PERP","price":"44000"}}
olga> {{"type":"approve","officer":"olga","action":"resume","operation":"liquidations","market":"BTC-PERP"}}
{{"type":"resume","operation":"liquidations","market":"BTC-PERP"}}
""")
    events = events_of(ledger)
    aaron = ledger.account("aaron")
    missed = aaron["status"] == "healthy" and Dec(aaron["equity"]) < Dec(aaron["maintenance_margin"])
    share = position_of(events, "Account.LossAllocated", account="aaron")
    found = audit_log(ledger.app, stop_at_first=False)
    assert [(f.position, f.check) for f in found] == ([(share, "call_missed")] if missed else [])
    assert not missed, "resume re-checks the accounts its liquidations charged (regression)"


def test_liquidations_sharing_an_id_in_one_command_are_joined_by_account():
    """A manual liquidation's loss re-check liquidates dan; both steps may carry ``<id>/L1``."""
    ledger = ledger_with("")
    ledger.post_ok("""
{"type":"open_account","account":"dan"}
{"type":"deposit","account":"dan","amount":"1000"}
{"type":"set_parameters","parameters":{"margin_call_grace":86400,"loss_policy":"socialize_per_contract"}}
{"type":"trade","market":"BTC-PERP","buyer":"dan","seller":"bob","size":"0.2","price":"50000"}
""")
    ledger.post_ok(price("47000"))
    ledger.post_ok(OUT_OF_BAND_APPROVED)  # 40,000 is 14.9 % from the mark 47,000: approved by olga
    steps = [e for _, e in events_of(ledger) if kind(e) == "Account.Liquidated"]
    assert [s.account for s in steps] == ["alice", "dan"]
    assert "Clearinghouse.ApprovalsConsumed" in [kind(e) for _, e in events_of(ledger)]
    assert_clean(ledger)


# -- properties over random paths --------------------------------------------------------------------

CHECKED = {
    "Account.MarginCallIssued": ("equity", "initial_margin", "maintenance_margin", "amount_to_initial"),
    "Account.MarginCallMet": ("equity", "maintenance_margin"),
    "Account.Liquidated": ("equity_before", "maintenance_margin_before", "quote_fill", "quote_bankruptcy", "penalty",
                           "fee_liquidator", "collateral_after", "price_fill"),
    "Account.LossCovered": ("fund_paid", "allocated", "deficit"),
    "InsuranceFund.Drawn": ("amount",),
    "Account.TakeoverRefused": ("price_fill", "equity", "liquidator_equity_after", "liquidator_initial_margin_after",
                                "liquidator_notional_after"),
    "Account.PositionTaken": ("equity_after", "initial_margin_after", "notional_after"),  # a takeover's capacity figures
}


def random_path(scenario) -> Ledger:
    """A ``test_risk_properties`` path (moves already scaled to percent); the explicit example is a call
    (equity 25 < MM 38.25 at 850, inside the 60 s grace, above the floor) met when the mark returns to 977.5."""
    policy, fund, grace, backstop, traders, moves = scenario
    ledger, _ = properties.setup(policy, fund, grace, traders, backstop)
    prices = {"X-PERP": Dec(1000), "Y-PERP": Dec(20)}
    for target, percent in moves:
        if target == "funding":
            command = {"type": "funding", "market": "X-PERP", "rate": format(Dec(percent or 1).scaleb(-4), "f")}
        else:
            tick = Dec(properties.MARKETS[target][1])
            prices[target] = (prices[target] * (100 + percent) / 100 / tick).quantize(Dec(1)) * tick
            command = {"type": "price", "market": target, "price": format(prices[target], "f")}
        (outcome,) = ledger.post(json.dumps(command))
        assert outcome.status == "applied", (outcome.code, outcome.message)
    return ledger


@settings(max_examples=40, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(properties.scenarios())
@example(("socialize_per_contract", 0, 60, 0, [("X-PERP", 9, "160"), ("Y-PERP", 1, "150")], [("X-PERP", -15), ("X-PERP", 15)]))
def test_random_paths_audit_clean_and_every_changed_number_is_found(scenario):
    events = events_of(random_path(scenario))
    assert audit_decisions(events, stop_at_first=False) == []
    sampled = {}
    for position, event in events:  # the first and the last decision of each kind
        if kind(event) in CHECKED and getattr(event, "basis", "backstop") == "backstop":  # a deleveraging slice has no figures
            sampled.setdefault(kind(event), []).append((position, event))
    for position, event in dict(pe for found in sampled.values() for pe in (found[0], found[-1])).items():
        for name in CHECKED[kind(event)]:
            value = getattr(event, name)
            found = audit_decisions(corrupt(events, position, **{name: value + Dec("0.000001")}))
            assert found and found[0].position == position, (kind(event), name, found)
            CORRUPTED[kind(event)] += 1


CORRUPTED: Counter = Counter()


def test_the_random_paths_above_corrupted_every_kind_of_decision():
    """Guards the property above against paths without decisions (runs after it)."""
    if not CORRUPTED:
        pytest.skip("run together with test_random_paths_audit_clean_and_every_changed_number_is_found")
    assert set(CORRUPTED) == set(CHECKED), CORRUPTED


def test_exact_quote_deleveraging_audits_clean_and_a_rounded_or_skewed_slice_is_found():
    """The exact-quote scenarios of ``test_risk_scenarios``: -50,499.50 for one slice, and
    -151,350.01 split 50,450.003333 / 100,900.006667 over two."""
    from tests.unit.test_risk_scenarios import EXACT_ADL

    one = Ledger()
    one.post_ok(EXACT_ADL + '{"type":"trade","market":"X-PERP","buyer":"bob","seller":"alice","size":"1","price":"50000"}')
    one.post_ok('{"type":"price","market":"X-PERP","price":"51000"}')
    assert_clean(one)
    events = events_of(one)
    at = position_of(events, "Account.Liquidated", reason="adl")
    # the old booking: rounded to the tick against the account, -50,500, leaving it at -0.50
    rounded = corrupt(events, at, quote_fill=Dec(-50500), quote_bankruptcy=Dec(-50500), price_fill=Dec(50500),
                      price_bankruptcy=Dec(50500), realized_pnl=Dec(-500), collateral_after=Dec("-0.5"), equity_after=Dec("-0.5"))
    assert first(audit_decisions(rounded)) == (at, "bankruptcy_differs")

    two = Ledger()
    two.post_ok(EXACT_ADL.replace('"499.5"', '"1350.01"')
                + '{"type":"trade","market":"X-PERP","buyer":"bob","seller":"alice","size":"1","price":"50000"}\n'
                + '{"type":"trade","market":"X-PERP","buyer":"carol","seller":"alice","size":"2","price":"50000"}')
    two.post_ok('{"type":"price","market":"X-PERP","price":"51000"}')
    assert_clean(two)
    events = events_of(two)
    for n in (0, 1):
        at = position_of(events, "Account.Liquidated", n, reason="adl")
        step = event_at(events, at)
        skewed = corrupt(events, at, quote_fill=step.quote_fill + Dec("0.000001"),
                         quote_bankruptcy=step.quote_bankruptcy + Dec("0.000001"))
        assert (at, "bankruptcy_differs") in [(f.position, f.check) for f in audit_decisions(skewed, stop_at_first=False)]
        assert first(audit_decisions(corrupt(events, at, price_fill=step.price_fill + 1))) == (at, "fill_price_differs")


def paid_in_part_then_in_full() -> Ledger:
    """Alice's call for 540: deposit 200 (340 due, call open), then 340 (met, paid in full)."""
    ledger = called()
    ledger.post_ok('{"type":"deposit","account":"alice","amount":"200"}')
    ledger.post_ok('{"type":"deposit","account":"alice","amount":"340"}')
    return ledger


def test_partial_and_full_call_payments_audit_clean():
    ledger = paid_in_part_then_in_full()
    ledger.post_ok(price("49000"))
    assert_clean(ledger)


def test_changed_call_payment():
    events = events_of(paid_in_part_then_in_full())
    at = position_of(events, "Account.MarginCallPaid")
    assert first(audit_decisions(corrupt(events, at, amount_due=Dec(300)))) == (at, "call_payment_differs")
    assert first(audit_decisions(corrupt(events, at, amount_paid=Dec(540)))) == (at, "call_payment_differs")


def test_call_met_at_maintenance_under_the_cme_rule_is_caught():
    """A call 'met' by the first deposit (equity 600 >= MM 470 but < IM 940, 340 still due)."""
    events = events_of(paid_in_part_then_in_full())
    paid = position_of(events, "Account.MarginCallPaid")
    met = position_of(events, "Account.MarginCallMet")
    met_event = event_at(events, met)
    forged = [(p, e) for p, e in events if p != met]
    forged.insert(next(i for i, (p, _) in enumerate(forged) if p == paid) + 1,
                  (paid + 0, changed(met_event, equity=Dec(600), initial_margin=Dec(940), amount_due=Dec(340))))
    findings = audit_decisions(forged)
    assert findings and findings[0].check in ("call_met_not_warranted", "call_met_figures_differ")
    assert any(f.check == "call_met_not_warranted" for f in audit_decisions(forged, stop_at_first=False))


# -- ADR 13: the dYdX fill price, the liquidator's capacity, refused takeovers, no exemption ------------


def unmet_at_the_deadline(rule: str) -> Ledger:
    """Alice's call (grace 1 h) unmet at 01:10: one partial step of 0.1 at 47,000."""
    ledger = ledger_with('{"type":"set_parameters","parameters":{"margin_call_grace":3600,'
                         f'"liquidation_price_rule":"{rule}"}}}}')
    ledger.post_ok(price("47000", "2025-01-01T00:10:00Z") + "\n" + price("47000", "2025-01-01T01:10:00Z"))
    return ledger


@pytest.mark.parametrize(("rule", "fill", "other"), [("dydx", Dec(46825), Dec(45825)), ("full_spread", Dec(45825), Dec(46825))])
def test_the_fill_price_follows_the_price_rule_and_the_other_rule_s_price_is_found(rule, fill, other):
    """dydx: ABR = 1 - 400 / 470, spread 1,175 x 70 / 470 = 175 -> 46,825; full_spread 45,825.
    A fill booked at the other rule's price (its quote and everything after consistent with
    it) is found at the fill: under dydx that is the ABR-less price."""
    events = events_of(unmet_at_the_deadline(rule))
    assert audit_decisions(events, stop_at_first=False) == []
    at = position_of(events, "Account.Liquidated")
    step = event_at(events, at)
    assert (step.size_delta, step.price_fill) == (Dec("-0.1"), fill)
    quote = other * Dec("0.1")
    moved = quote - step.quote_fill
    forged = corrupt(events, at, price_fill=other, quote_fill=quote, realized_pnl=step.realized_pnl + moved,
                     collateral_after=step.collateral_after + moved, equity_after=step.equity_after + moved)
    found = audit_decisions(forged)
    assert first(found) == (at, "fill_price_differs") and "ABR" in found[0].message


def out_of_capacity() -> Ledger:
    """The backstop (15,000, cap 1) runs out of capacity in one sweep at 44,000.

    In risk order: alice (equity -200 of MM 440) is taken (notional 8,800 <= 15,220);
    erin (long 0.4 from 50,000 with 2,300: equity -100 of MM 880) is refused (notional 26,400 >
    15,660) and deleveraged against bob although the loss policy is socialize_per_contract;
    frank (long 0.1 with 580: equity -20 of MM 220) is taken (13,200 <= 15,330). The log reads
    in decision order (``decision_order``): erin's refusal and deleveraging come before the
    backstop's take of frank, although the backstop was touched first (by alice's step).
    """
    return ledger_with(f"""{accounts_with(("erin", "2300"), ("frank", "580"))}
{{"type":"trade","market":"BTC-PERP","buyer":"erin","seller":"bob","size":"0.4","price":"50000"}}
{{"type":"trade","market":"BTC-PERP","buyer":"frank","seller":"bob","size":"0.1","price":"50000"}}
{{"type":"fund_insurance","amount":"1000"}}
{{"type":"set_parameters","market":"BTC-PERP","parameters":{{"loss_policy":"socialize_per_contract","liquidator_position_cap":"1"}}}}
{price("44000")}""", backstop="15000")


def test_the_backstop_running_out_of_capacity_falls_through_to_deleveraging_and_audits_clean():
    ledger = out_of_capacity()
    events = events_of(ledger)
    refused = event_at(events, position_of(events, "Account.TakeoverRefused"))
    assert (refused.account, refused.liquidator, refused.outcome) == ("erin", "backstop", "deleveraged")
    assert (refused.liquidator_equity_after, refused.liquidator_notional_after) == (Dec(15660), Dec(26400))
    taken = [(e.liquidated_account, e.basis, e.account) for _, e in events if kind(e) == "Account.PositionTaken"]
    # in decision order (issue 9); aggregate by aggregate, frank's take came before erin's refusal
    assert taken == [("alice", "backstop", "backstop"), ("erin", "adl", "bob"), ("frank", "backstop", "backstop")]
    assert (position_of(events, "Account.TakeoverRefused")
            < position_of(events, "Account.PositionTaken", liquidated_account="frank"))
    assert_clean(ledger)


def test_a_changed_refusal_is_found():
    events = events_of(out_of_capacity())
    at = position_of(events, "Account.TakeoverRefused")
    refused = event_at(events, at)
    for name, check in [("liquidator_equity_after", "capacity_differs"), ("liquidator_initial_margin_after", "capacity_differs"),
                        ("liquidator_notional_after", "capacity_differs"), ("equity", "refusal_differs"),
                        ("maintenance_margin", "refusal_differs"), ("liquidator_position_cap", "refusal_differs"),
                        ("price_fill", "fill_price_differs"), ("size_delta", "size_differs")]:
        assert first(audit_decisions(corrupt(events, at, **{name: getattr(refused, name) + Dec("0.1")}))) == (at, check), name
    assert first(audit_decisions(corrupt(events, at, outcome="waiting"))) == (at, "refusal_differs")
    assert first(audit_decisions(corrupt(events, at, liquidator="carol"))) == (at, "refusal_differs")
    # the figures of the backstop after frank's take (recorded before the refusal in the log) are not those it refused with
    frank = event_at(events, position_of(events, "Account.PositionTaken", liquidated_account="frank"))
    found = audit_decisions(corrupt(events, at, liquidator_equity_after=frank.equity_after + Dec(440),
                                    liquidator_notional_after=Dec(30800)))
    assert first(found) == (at, "capacity_differs")


def test_a_refusal_the_backstop_could_carry_is_found():
    """The same log with the market's cap recorded as 2: 26,400 <= 2 x 15,660, so no refusal was warranted."""
    events = events_of(out_of_capacity())
    override = position_of(events, "Market.ParametersSet")
    overrides = dict(event_at(events, override).overrides_after, liquidator_position_cap=Dec(2))
    found = audit_decisions(corrupt(events, override, overrides_after=overrides), stop_at_first=False)
    assert (position_of(events, "Account.TakeoverRefused"), "refusal_not_warranted") in [(f.position, f.check) for f in found]


def test_a_changed_capacity_figure_and_a_takeover_the_backstop_could_not_carry_are_found():
    events = events_of(out_of_capacity())
    at = position_of(events, "Account.PositionTaken", liquidated_account="frank")
    taken = event_at(events, at)
    for name in ("equity_after", "initial_margin_after", "notional_after"):
        skewed = corrupt(events, at, **{name: getattr(taken, name) + Dec("0.000001")})
        assert first(audit_decisions(skewed)) == (at, "capacity_differs")
    # a backstop with 8,000 (figures recorded consistently with it) cannot carry alice's 8,800 of notional
    deposit = position_of(events, "Account.Deposited", account="backstop")
    alice = position_of(events, "Account.PositionTaken", liquidated_account="alice")
    poorer = corrupt(corrupt(events, deposit, amount=Dec(8000), collateral_after=Dec(8000)), alice, equity_after=Dec(8220))
    found = audit_decisions(poorer)
    assert first(found) == (alice, "takeover_not_allowed") and "8800" in found[0].message


def backstop_liquidated() -> Ledger:
    """The backstop (1,000, cap 10) takes alice's 0.2 at 42,900; at 39,000 its equity 220 < MM 390:
    called (grace 1 h, above the floor); at 37,000 equity -180 <= 0: due at once, and it cannot
    take its own position: refused (liquidator = itself), the fund pays 180, then bob is deleveraged."""
    ledger = ledger_with('{"type":"set_parameters","parameters":{"margin_call_grace":3600,"liquidator_position_cap":"10"}}\n'
                         '{"type":"fund_insurance","amount":"1000"}', backstop="1000")
    for mark in ("44000", "39000", "37000"):
        ledger.post_ok(price(mark))
    return ledger


def test_the_backstop_is_called_and_liquidated_like_any_account():
    ledger = backstop_liquidated()
    events = events_of(ledger)
    call = event_at(events, position_of(events, "Account.MarginCallIssued", account="backstop"))
    assert (call.equity, call.maintenance_margin) == (Dec(220), Dec(390))
    at = position_of(events, "Account.TakeoverRefused")
    refused = event_at(events, at)
    assert (refused.account, refused.liquidator, refused.outcome, refused.equity) == (
        "backstop", "backstop", "deleveraged", Dec(-180))
    assert event_at(events, position_of(events, "Account.Liquidated", account="backstop")).counterparty == "bob"
    assert_clean(ledger)
    # no exemption: the backstop's call dropped is a missed call at the price that took it below maintenance
    dropped = [(p, e) for p, e in events if p != position_of(events, "Account.MarginCallIssued", account="backstop")]
    found = audit_decisions(dropped)
    assert first(found) == (position_of(events, "Market.MarkPriceSet", price_mark=Dec(39000)), "call_missed")
    assert "backstop" in found[0].message
    # its own figures on the refusal, and the outcome
    assert first(audit_decisions(corrupt(events, at, liquidator_equity_after=Dec(-179)))) == (at, "capacity_differs")
    assert first(audit_decisions(corrupt(events, at, outcome="waiting"))) == (at, "refusal_differs")


def test_a_changed_adl_rank_is_found():
    events = events_of(deleveraged())
    at = position_of(events, "Account.PositionTaken", basis="adl")
    rank = event_at(events, at).adl_rank
    assert first(audit_decisions(corrupt(events, at, adl_rank=rank + Dec("0.000001")))) == (at, "adl_rank_differs")


def test_an_out_of_band_manual_liquidation_needs_its_approvals_consumed():
    ledger = ledger_with('{"type":"set_parameters","parameters":{"margin_call_grace":86400}}')
    ledger.post_ok(price("47000"))
    ledger.post_ok(OUT_OF_BAND_APPROVED)
    assert_clean(ledger)
    events = events_of(ledger)
    consumed = position_of(events, "Clearinghouse.ApprovalsConsumed")
    at = position_of(events, "Account.Liquidated")
    found = audit_decisions([(p, e) for p, e in events if p != consumed])
    assert first(found) == (at, "liquidation_not_warranted") and "band" in found[0].message


def test_the_sweep_order_is_re_checked_against_the_risk_order():
    """aaron (equity 450 / MM 470) and alice (400 / 470) are both liquidated at 47,000, alice
    first (deeper below maintenance). Recorded figures that put aaron deeper make the
    recorded order wrong: ``risk_order_differs`` (besides the figures themselves)."""
    ledger = ledger_with(accounts_with(("aaron", "1050"))
                         + '\n{"type":"trade","market":"BTC-PERP","buyer":"aaron","seller":"bob","size":"0.2","price":"50000"}')
    ledger.post_ok(price("47000"))
    assert_clean(ledger)
    events = events_of(ledger)
    at = position_of(events, "Account.Liquidated", account="aaron")
    found = audit_decisions(corrupt(events, at, equity_before=Dec(300)), stop_at_first=False)
    assert "risk_order_differs" in {f.check for f in found}, found
    (finding,) = [f for f in found if f.check == "risk_order_differs"]
    assert "['alice', 'aaron']" in finding.message and "['aaron', 'alice']" in finding.message


@pytest.mark.parametrize("policy", ["adl", "adl_hyperliquid", "waterfill_leverage", "haircut_gains", "leverage_weighted_gains",
                                    "socialize_per_contract"])
def test_settlement_shares_audit_clean_and_a_moved_share_is_found(policy):
    """tests/unit/test_risk_scenarios.py ``settled_book``: 2,600 of erin's settlement deficit
    charged by each policy; moving one quantum between the first two payers is found."""
    from tests.unit.test_risk_scenarios import settled_book
    ledger = settled_book(policy)
    assert_clean(ledger)
    events = events_of(ledger)
    one, two = (position_of(events, "Account.LossAllocated", n) for n in (0, 1))
    quantum = Dec("0.000001")
    a, b = event_at(events, one), event_at(events, two)
    moved = corrupt(corrupt(events, one, share=a.share - quantum, collateral_after=a.collateral_after + quantum),
                    two, share=b.share + quantum, collateral_after=b.collateral_after - quantum)
    found = audit_decisions(moved, stop_at_first=False)  # the settlements' collateral after differs too
    assert (one, "loss_share_differs") in [(f.position, f.check) for f in found], found


def test_a_settlement_rank_changed_is_found():
    from tests.unit.test_risk_scenarios import settled_book
    events = events_of(settled_book("adl"))
    at = position_of(events, "Account.LossAllocated")
    rank = event_at(events, at).rank
    assert first(audit_decisions(corrupt(events, at, rank=rank + Dec("0.000001")))) == (at, "loss_share_differs")
