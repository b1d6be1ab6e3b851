"""Governance that one writer cannot bypass: M-of-N approvals of the exact change (ADR 10).

The ledger behind most scenarios: BTC-PERP, M = 2 and N = 3 set on the fresh ledger (the
bootstrap rule), then officers olga and omar registered, so a quorum exists. A line
``NAME> {...}`` is posted as operator NAME (``clearing --as NAME``); other lines by nobody
in particular. Every rejection must write nothing but its answer record.
"""

from __future__ import annotations

import json
from decimal import Decimal as Dec

import pytest
from click.testing import CliRunner

from clearing.domain.governance import Change
from cli.main import main
from tests.ledger import MARKET_BTC, Ledger

QUORUM = MARKET_BTC + """
{"type":"set_parameters","parameters":{"approvals_required":2,"officers_max":3}}
{"type":"register_officer","officer":"olga"}
{"type":"register_officer","officer":"omar"}
"""


def quorum_ledger(script: str = "") -> Ledger:
    ledger = Ledger()
    ledger.post_ok(QUORUM + script)
    return ledger


def events(ledger: Ledger, kind: str) -> list:
    rows = ledger.app.recorder.select_notifications(start=1, limit=100000)
    return [ledger.app.mapper.to_domain_event(n) for n in rows if n.topic.endswith(":" + kind)]


def clearinghouse(ledger: Ledger):
    (established,) = events(ledger, "Clearinghouse.Established")
    return ledger.app.repository.get(established.originator_id)


def refused(ledger: Ledger, line: str, operator: str = "") -> tuple[str | None, str | None, str]:
    """Post one line that must be rejected; returns (code, field, message) after checking
    it wrote nothing but its answer."""
    head = ledger.head()
    (outcome,) = ledger.post(line, operator=operator)
    assert outcome.status == "rejected", outcome.summary
    assert outcome.message and "\n" not in outcome.message and (outcome.field or "") in outcome.message
    ledger.assert_rejection_wrote_only_its_answer(head, outcome)
    return outcome.code, outcome.field, outcome.message


def approvals(*officers: str, at: str | None = None, **change) -> str:
    """``approve`` lines of ``change`` (action=..., ...) by each officer, posted as that officer."""
    when = {"at": at} if at else {}
    return "\n".join(f"{o}> " + json.dumps({"type": "approve", "officer": o, **change, **when}) for o in officers)


def params(at: str | None = None, market: str | None = None, **values) -> str:
    command = {"type": "set_parameters", "parameters": values}
    command.update({"market": market} if market else {})
    command.update({"at": at} if at else {})
    return json.dumps(command)


# -- the reproduction ------------------------------------------------------------------------------


def test_one_writer_cannot_lower_the_quorum_register_and_pause_once_a_quorum_exists():
    ledger = quorum_ledger()
    assert refused(ledger, params(approvals_required=1, officers_max=3), "mallory")[:2] == (
        "quorum_not_met", "parameters.approvals_required")
    assert refused(ledger, '{"type":"register_officer","officer":"mallory"}', "mallory")[:2] == ("quorum_not_met", "officer")
    assert refused(ledger, approvals("mallory", action="pause", operation="liquidations"))[:2] == ("unknown_officer", "officer")
    assert refused(ledger, '{"type":"pause","operation":"liquidations"}', "mallory")[:2] == ("quorum_not_met", "operation")
    ch = clearinghouse(ledger)
    assert (ch.officers, ch.parameters["approvals_required"], ch.paused, ch.approvals) == (["olga", "omar"], 2, [], {})


def test_an_officer_cannot_approve_as_another():
    ledger = quorum_ledger()
    line = json.dumps({"type": "approve", "officer": "olga", "action": "pause", "operation": "trading"})
    code, field, message = refused(ledger, line, "mallory")
    assert (code, field) == ("approver_not_operator", "officer") and "posted as mallory" in message
    assert refused(ledger, line)[:2] == ("approver_not_operator", "officer")  # posted by nobody
    assert refused(ledger, line.replace("olga", "omar"), "olga")[:2] == ("approver_not_operator", "officer")
    assert not events(ledger, "Clearinghouse.ChangeApproved")


def test_an_approval_records_its_operator_and_the_execution_records_who_approved_what():
    ledger = quorum_ledger(approvals("olga", "omar", action="set_parameters", parameters={"liquidation_fee_rate": "0.02"}))
    approved = events(ledger, "Clearinghouse.ChangeApproved")
    fingerprint = Change.of_parameters(None, {"liquidation_fee_rate": Dec("0.02")}).fingerprint
    assert [(e.officer, e.operator, e.key) for e in approved] == [("olga", "olga", fingerprint), ("omar", "omar", fingerprint)]
    ledger.post_ok(params(liquidation_fee_rate="0.020"))  # the same typed value is the same change
    change = events(ledger, "Clearinghouse.ParametersSet")[-1]
    assert change.governance["rule"] == "quorum" and change.governance["fingerprint"] == fingerprint
    assert change.governance["approved_by"] == ["olga", "omar"] and change.parameters_after["liquidation_fee_rate"] == Dec("0.02")
    assert clearinghouse(ledger).approvals == {}, "consumed"
    assert refused(ledger, params(liquidation_fee_rate="0.02"))[0] == "quorum_not_met", "approvals are used once"


# -- content binding -----------------------------------------------------------------------------


def test_fingerprints_bind_action_scope_and_exact_content():
    two = Change.of_parameters(None, {"approvals_required": 2})
    assert two.fingerprint != Change.of_parameters(None, {"approvals_required": 3}).fingerprint
    assert two.fingerprint == Change.of_parameters(None, {"approvals_required": 2}).fingerprint
    fee = Change.of_parameters(None, {"liquidation_fee_rate": Dec("0.0150")})
    assert fee.fingerprint == Change.of_parameters(None, {"liquidation_fee_rate": Dec("0.015")}).fingerprint
    assert fee.fingerprint != Change.of_parameters("BTC-PERP", {"liquidation_fee_rate": Dec("0.015")}).fingerprint
    assert Change.of_control("pause", "trading", None).fingerprint != Change.of_control("resume", "trading", None).fingerprint
    assert two.fingerprint.startswith("sha256:") and len(two.fingerprint) == 7 + 64


@pytest.mark.parametrize(
    ("approved", "posted", "field"),
    [
        ({"action": "set_parameters", "parameters": {"officers_max": 2}}, params(officers_max=3, at="2025-01-02T00:00:00Z"),
         "parameters.officers_max"),
        ({"action": "set_parameters", "parameters": {"liquidation_fee_rate": "0.02"}, "market": "BTC-PERP"},
         params(liquidation_fee_rate="0.02"), "parameters.liquidation_fee_rate"),
        ({"action": "set_parameters", "parameters": {"liquidation_fee_rate": "0.02"}},
         params(liquidation_fee_rate="0.02", liquidation_spread="0.5"), "parameters.liquidation_fee_rate"),
        ({"action": "pause", "operation": "liquidations"}, '{"type":"pause","operation":"trading"}', "operation"),
        ({"action": "pause", "operation": "trading", "market": "BTC-PERP"}, '{"type":"pause","operation":"trading"}',
         "operation"),
        ({"action": "register_officer", "candidate": "otto"}, '{"type":"register_officer","officer":"mallory"}', "officer"),
    ],
    ids=["other value", "other scope", "more names", "other operation", "other market", "other candidate"],
)
def test_an_approval_of_different_content_does_not_count(approved, posted, field):
    ledger = quorum_ledger(approvals("olga", "omar", at="2025-01-01T00:10:00Z", **approved))
    assert refused(ledger, posted)[:2] == ("quorum_not_met", field)
    assert len(clearinghouse(ledger).approvals) == 1, "the approvals of the other change are still held"


# -- expiry and timelock -------------------------------------------------------------------------


def test_an_approval_older_than_approval_ttl_does_not_count_and_can_be_renewed():
    fee = {"action": "set_parameters", "parameters": {"liquidation_fee_rate": "0.02"}}
    ledger = quorum_ledger(approvals("olga", "omar", at="2025-01-01T00:10:00Z", **fee))
    code, field, message = refused(ledger, params(liquidation_fee_rate="0.02", at="2025-01-02T00:10:01Z"))
    assert (code, field) == ("approval_expired", "parameters.liquidation_fee_rate") and "olga, omar" in message
    ledger.post_ok(approvals("olga", at="2025-01-02T00:11:00Z", **fee))  # an expired approval may be given again
    assert refused(ledger, params(liquidation_fee_rate="0.02", at="2025-01-02T00:12:00Z"))[0] == "approval_expired"
    ledger.post_ok(approvals("omar", at="2025-01-02T00:12:00Z", **fee) + "\n"
                   + params(liquidation_fee_rate="0.02", at="2025-01-02T00:13:00Z"))
    assert events(ledger, "Clearinghouse.ParametersSet")[-1].governance["approved_by"] == ["olga", "omar"]


def test_an_approval_exactly_approval_ttl_old_still_counts():
    fee = {"action": "set_parameters", "parameters": {"liquidation_fee_rate": "0.02"}}
    ledger = quorum_ledger(approvals("olga", "omar", at="2025-01-01T00:10:00Z", **fee))
    ledger.post_ok(params(liquidation_fee_rate="0.02", at="2025-01-02T00:10:00Z"))


def test_a_threshold_change_waits_the_timelock_after_its_quorum():
    lower = {"action": "set_parameters", "parameters": {"approvals_required": 1}}
    ledger = quorum_ledger(approvals("olga", at="2025-01-01T10:00:00Z", **lower) + "\n"
                           + approvals("omar", at="2025-01-01T10:30:00Z", **lower))
    code, field, message = refused(ledger, params(approvals_required=1, at="2025-01-01T11:00:00Z"))
    assert (code, field) == ("timelock_pending", "parameters.approvals_required")
    assert "2025-01-01T11:30:00+00:00" in message  # quorum at 10:30 + governance_timelock 3,600 s
    assert refused(ledger, params(approvals_required=1, at="2025-01-01T11:29:59Z"))[0] == "timelock_pending"
    ledger.post_ok(params(approvals_required=1, at="2025-01-01T11:30:00Z"))
    applied = events(ledger, "Clearinghouse.ParametersSet")[-1]
    assert applied.governance["quorum_at"].isoformat() == "2025-01-01T10:30:00+00:00"
    assert applied.governance["governance_timelock"] == 3600 and clearinghouse(ledger).parameters["approvals_required"] == 1


def test_approval_ttl_must_exceed_the_timelock():
    ledger = Ledger()
    ledger.post_ok(params(approval_ttl=7200, governance_timelock=3600))
    assert refused(ledger, params(governance_timelock=7200))[:2] == ("parameter_out_of_range", "parameters.governance_timelock")
    assert refused(ledger, params(approval_ttl=3600))[:2] == ("parameter_out_of_range", "parameters.approval_ttl")


# -- bootstrap -----------------------------------------------------------------------------------


def test_a_fresh_ledger_is_configured_under_the_bootstrap_rule_until_a_quorum_exists():
    ledger = Ledger()
    assert refused(ledger, approvals("olga", action="pause", operation="trading"))[0] == "unknown_officer"
    assert refused(ledger, '{"type":"pause","operation":"trading"}')[0] == "quorum_not_met", "no bootstrap for controls"
    ledger.post_ok(QUORUM)
    assert [e.governance["rule"] for e in events(ledger, "Clearinghouse.ParametersSet")] == ["bootstrap"]
    assert [e.governance["rule"] for e in events(ledger, "Clearinghouse.OfficerRegistered")] == ["bootstrap", "bootstrap"]
    assert refused(ledger, '{"type":"register_officer","officer":"otto"}')[:2] == ("quorum_not_met", "officer")
    ledger.post_ok(approvals("olga", "omar", action="register_officer", candidate="otto")
                   + '\n{"type":"register_officer","officer":"otto"}')
    otto = events(ledger, "Clearinghouse.OfficerRegistered")[-1]
    assert otto.governance["rule"] == "quorum" and otto.governance["approved_by"] == ["olga", "omar"]
    assert otto.governance["fingerprint"] == Change.of_officer("otto").fingerprint


def test_a_quorum_once_reached_cannot_be_given_up_by_raising_m_above_the_officers():
    ledger = quorum_ledger(approvals("olga", "omar", action="set_parameters", parameters={"approvals_required": 3}))
    code, field, message = refused(ledger, params(approvals_required=3, at="2025-01-01T02:00:00Z"))
    assert (code, field) == ("parameter_out_of_range", "parameters.approvals_required") and "2 registered officers" in message


# -- what is governed ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (params(backstop_liquidator="mallory"), "parameters.backstop_liquidator"),
        (params(liquidator_fee_share="0.5"), "parameters.liquidator_fee_share"),
        (params(liquidation_fee_rate="0.001"), "parameters.liquidation_fee_rate"),  # even lowered: money moves
        (params(liquidation_spread="1"), "parameters.liquidation_spread"),
        (params(market="BTC-PERP", loss_policy="socialize_per_contract"), "parameters.loss_policy"),
        (params(market="BTC-PERP", oracle_sources=["a"]), "parameters.oracle_sources"),
        (params(twap_max_deviation="0.0001"), "parameters.twap_max_deviation"),
        (params(approval_ttl=172800), "parameters.approval_ttl"),
        (params(margin_call_grace=3600), "parameters.margin_call_grace"),  # up relaxes
        (params(market="BTC-PERP", liquidation_floor="0.4"), "parameters.liquidation_floor"),  # down relaxes
        (params(liquidation_buffer="0.05"), "parameters.liquidation_buffer"),
        (params(max_liquidation_fraction="0.25"), "parameters.max_liquidation_fraction"),
        (params(liquidation_min_notional="10"), "parameters.liquidation_min_notional"),
        (params(liquidation_floor="0.6", margin_call_grace=60), "parameters.margin_call_grace"),  # one relaxing name is enough
    ],
)
def test_money_moving_and_relaxing_changes_need_approval(line, field):
    assert refused(quorum_ledger(), line)[:2] == ("quorum_not_met", field)


@pytest.mark.parametrize(
    "line",
    [
        params(liquidation_floor="0.6"),
        params(market="BTC-PERP", liquidation_buffer="0.2"),
        params(max_liquidation_fraction="1"),
        params(liquidation_min_notional="5000", liquidation_floor="0.5"),  # 0.5 is unchanged: not relaxed
    ],
)
def test_tightening_changes_need_no_approval(line):
    ledger = quorum_ledger()
    ledger.post_ok(line)
    kind = "Market.ParametersSet" if '"market"' in line else "Clearinghouse.ParametersSet"
    assert events(ledger, kind)[-1].governance["rule"] == "not_governed"


def test_a_market_override_is_judged_against_the_value_in_force_in_that_market():
    grace = {"action": "set_parameters", "parameters": {"margin_call_grace": 3600}, "market": "BTC-PERP"}
    ledger = quorum_ledger(approvals("olga", "omar", **grace) + "\n" + params(market="BTC-PERP", margin_call_grace=3600))
    (override,) = events(ledger, "Market.ParametersSet")
    assert override.governance["rule"] == "quorum" and override.governance["approved_by"] == ["olga", "omar"]
    (consumed,) = events(ledger, "Clearinghouse.ApprovalsConsumed")
    assert consumed.governance["fingerprint"] == override.governance["fingerprint"] and clearinghouse(ledger).approvals == {}
    ledger.post_ok(params(market="BTC-PERP", margin_call_grace=600))  # down from 3,600: tightening
    assert refused(ledger, params(market="BTC-PERP", margin_call_grace=1800))[0] == "quorum_not_met"  # up from 600


# -- the command line ------------------------------------------------------------------------------


def test_cli_approvals_name_the_operator_and_the_exact_change(tmp_path):
    db = str(tmp_path / "gov.db")

    def run(*args: str):
        return CliRunner().invoke(main, ["--db", db, *args], catch_exceptions=False)

    assert run("set-parameters", "approvals_required=2", "officers_max=3").exit_code == 0  # bootstrap
    assert run("register-officer", "olga").exit_code == 0 and run("register-officer", "omar").exit_code == 0
    assert run("--as", "olga", "approve", "olga", "set-parameters", "liquidation_fee_rate=0.02").exit_code == 0
    other = run("--as", "olga", "approve", "omar", "set-parameters", "liquidation_fee_rate=0.02")
    assert other.exit_code == 1 and "approver_not_operator" in other.output
    early = run("set-parameters", "liquidation_fee_rate=0.02")
    assert early.exit_code == 1 and "quorum_not_met" in early.output
    assert run("--as", "omar", "approve", "omar", "set-parameters", "liquidation_fee_rate=0.02").exit_code == 0
    applied = run("set-parameters", "liquidation_fee_rate=0.02")
    assert applied.exit_code == 0 and "(quorum)" in applied.output
    assert run("--as", "olga", "approve", "olga", "register-officer", "otto").exit_code == 0
    assert run("--as", "olga", "approve", "olga", "pause", "sideways").exit_code == 2
