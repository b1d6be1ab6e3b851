"""The property layer of the decision audit: clean logs pass, and a log with one decision
changed so that it breaks a property fails naming it.

The corrupted logs are the decision audit's (one event replaced by a copy with a field
changed); the properties see only the recorded numbers, so each corruption is chosen to
break the property itself, not merely to differ from what the engine would decide.
"""

from __future__ import annotations

from decimal import Decimal as Dec
from typing import Any

import pytest

from clearing.audit.properties import check_events
from clearing.errors import InvariantViolation
from tests.ledger import Ledger
from tests.unit.test_decision_audit import (
    corrupt,
    covered_by_the_fund,
    deleveraged,
    event_at,
    events_of,
    kind,
    partially_then_fully_liquidated,
    position_of,
    socialized,
    with_liquidator_fee,
)
from tests.unit.test_risk_scenarios import QUEUE_BOOK


def broken(events: list[tuple[int, Any]], position: int, **values: Any) -> str:
    with pytest.raises(InvariantViolation) as raised:
        check_events(corrupt(events, position, **values))
    return str(raised.value)


# the scenarios' queue book with alice short 3 (carol buys the third): her deleveraging at 1,200 is larger
# than any one long, so it closes against two counterparties in rank order
WIDE_BOOK = QUEUE_BOOK.replace('"account": "alice", "amount": "210"', '"account": "alice", "amount": "320"') + (
    '{"type":"trade","market":"X-PERP","buyer":"carol","seller":"alice","size":"1","price":"1000"}\n')


def queue(policy: str, book: str = QUEUE_BOOK) -> Ledger:
    ledger = Ledger()
    ledger.post_ok(book + f'{{"type":"set_parameters","market":"X-PERP","parameters":{{"loss_policy":"{policy}"}}}}')
    ledger.post_ok('{"type":"price","market":"X-PERP","price":"1200"}')
    return ledger


@pytest.mark.parametrize("build", [partially_then_fully_liquidated, covered_by_the_fund, socialized, deleveraged,
                                   with_liquidator_fee, lambda: queue("adl"), lambda: queue("adl_hyperliquid"),
                                   lambda: queue("waterfill_leverage"),
                                   lambda: queue("adl", WIDE_BOOK)])
def test_engine_logs_keep_every_property(build):
    check_events(events_of(build()))


def test_a_penalty_above_the_surplus_or_a_fee_above_the_penalty_is_found():
    events = events_of(with_liquidator_fee())
    at = position_of(events, "Account.Liquidated")
    step = event_at(events, at)
    assert step.penalty == step.quote_fill - step.quote_bankruptcy == Dec(40)  # the whole surplus
    assert broken(events, at, penalty=Dec(41)).startswith("penalty_within_surplus: alice")
    assert broken(events, at, fee_liquidator=Dec(41)).startswith("penalty_within_surplus")
    assert broken(events, at, fee_liquidator=Dec(-1)).startswith("penalty_within_surplus")


def test_a_deficit_not_covered_exactly_or_a_fill_below_bankruptcy_left_healthy_is_found():
    events = events_of(covered_by_the_fund())
    at = position_of(events, "Account.Liquidated")
    step = event_at(events, at)
    assert step.quote_bankruptcy > step.quote_fill
    assert broken(events, at, risk_status_after="healthy").startswith("deficit_covered")
    assert "left a deficit of" in broken(events, at, quote_fill=step.quote_fill - 1)
    cover = position_of(events, "Account.LossCovered")
    paid = event_at(events, cover)
    message = broken(events, cover, deficit=paid.deficit - 1, fund_paid=paid.fund_paid - 1)
    assert message.startswith("deficit_covered")


def test_covers_that_do_not_add_up_to_their_draws_or_shares_are_found():
    events = events_of(socialized())
    cover = position_of(events, "Account.LossCovered")
    paid = event_at(events, cover)
    assert paid.fund_paid > 0 and paid.allocated > 0
    assert broken(events, cover, allocated=paid.allocated + 1).startswith("covers_add_up")  # fund + allocated != deficit
    # moved from the allocations to the fund: adds up, but no draw and no shares say so
    message = broken(events, cover, fund_paid=paid.fund_paid + 1, allocated=paid.allocated - 1)
    assert message.startswith("covers_add_up") and "by its draws" in message
    share = position_of(events, "Account.LossAllocated")
    assert "charged in shares" in broken(events, share, share=event_at(events, share).share + Dec("0.000001"))
    draw = position_of(events, "InsuranceFund.Drawn")
    assert "by its draws" in broken(events, draw, amount=event_at(events, draw).amount - 1)


def test_a_deleveraging_slice_off_its_bankruptcy_quote_is_found():
    events = events_of(deleveraged())
    at = position_of(events, "Account.Liquidated", reason="adl")
    step = event_at(events, at)
    assert broken(events, at, quote_fill=step.quote_fill + 1).startswith("deleveraged_at_bankruptcy")
    assert broken(events, at, penalty=Dec(0), risk_status_after="healthy").startswith("deleveraged_at_bankruptcy")


@pytest.mark.parametrize("policy", ["adl", "adl_hyperliquid"])
def test_slices_out_of_rank_order_are_found(policy):
    events = events_of(queue(policy, WIDE_BOOK))
    # decision order is the bankrupt account's slices; the takers' events may be logged in another order
    order = [e.counterparty for _, e in events if kind(e) == "Account.Liquidated" and e.reason == "adl"]
    takes = {e.account: (p, e) for p, e in events if kind(e) == "Account.PositionTaken" and e.basis == "adl"}
    assert len(order) >= 2, "the wide book deleverages against at least two counterparties"
    (first_at, first), (_, second) = takes[order[0]], takes[order[1]]
    assert first.adl_rank is not None and second.adl_rank is not None and first.adl_rank >= second.adl_rank
    assert broken(events, first_at, adl_rank=second.adl_rank - 1).startswith("ranks_in_order")
    assert broken(events, first_at, adl_rank=None).startswith("ranks_in_order")  # unranked before a score


def test_waterfilling_records_leverage_not_a_queue_order_and_is_not_held_to_one():
    events = events_of(queue("waterfill_leverage"))
    takes = [(p, e) for p, e in events if kind(e) == "Account.PositionTaken" and e.basis == "adl"]
    assert len(takes) >= 2
    check_events(corrupt(events, takes[0][0], adl_rank=Dec(-1000)))  # no order is claimed under water-filling


def test_a_command_s_events_are_logged_in_the_order_they_were_decided():
    # the fill, its taker's side, the fund's draw for the deficit, the cover: aggregate by
    # aggregate they would read Liquidated, LossCovered, PositionTaken, Drawn
    events = events_of(covered_by_the_fund())
    start = position_of(events, "Account.Liquidated")
    names = [kind(e) for p, e in events if p >= start and kind(e) in {
        "Account.Liquidated", "Account.PositionTaken", "InsuranceFund.Drawn", "Account.LossCovered"}]
    assert names == ["Account.Liquidated", "Account.PositionTaken", "InsuranceFund.Drawn", "Account.LossCovered"]
    versions: dict[Any, int] = {}
    for _, event in events:  # each aggregate's own events keep their version order
        assert event.originator_version == versions.get(event.originator_id, 0) + 1
        versions[event.originator_id] = event.originator_version
