"""Scenarios that read like a ledger: a short JSONL script in, balances out.

All run on the library's in-memory store; the same scripts run on SQLite and PostgreSQL
in tests/integration. ``check_ledger`` re-derives every balance from the log afterwards.
"""

from decimal import Decimal as Dec

from clearing.audit.invariants import check_ledger
from tests.ledger import MARKET_BTC, Ledger, accounts_with
from tests.margin_state import insurance_fund_view

ETH = ('{"type":"create_market","id":"m-eth","market":"ETH-PERP","kind":"perpetual","tick_size":"0.01",'
       '"step_size":"0.001","initial_margin_fraction":"0.1","maintenance_margin_fraction":"0.05","price_band":"0.5"}')


def test_long_gains_what_the_short_loses_and_realizes_on_close():
    ledger = Ledger()
    ledger.post_ok(f"""
{MARKET_BTC}
{accounts_with(("alice", "10000"), ("bob", "10000"))}
{{"type":"price","market":"BTC-PERP","price":"50000"}}
{{"type":"trade","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"0.5","price":"50000"}}
{{"type":"price","market":"BTC-PERP","price":"52000"}}
""")
    alice, bob = ledger.account("alice"), ledger.account("bob")
    assert (alice["equity"], bob["equity"]) == ("11000", "9000")
    assert alice["positions"][0]["unrealized_pnl"] == "1000"
    assert alice["initial_margin"] == "2600" and alice["maintenance_margin"] == "1300"
    assert alice["free_collateral"] == "8400" and alice["margin_ratio"] == "8.4615"

    ledger.post_ok('{"type":"trade","market":"BTC-PERP","buyer":"bob","seller":"alice","size":"0.5","price":"52000"}')
    assert ledger.collateral("alice") == Dec(11000) and ledger.collateral("bob") == Dec(9000)
    assert ledger.account("alice")["positions"] == [] and ledger.account("alice")["realized_pnl"] == "1000"
    check_ledger(ledger.app)


def test_published_isolated_example_through_the_whole_ledger():
    """Equity 1,000, short 3 ETH at 3,000, MMF 5%: liquidation price 3,174.60 (dYdX docs)."""
    ledger = Ledger()
    ledger.post_ok(f"""
{ETH}
{accounts_with(("alice", "1000"), ("bob", "100000"))}
{{"type":"price","market":"ETH-PERP","price":"3000"}}
""")
    # IMF 10% needs 900 for 3 ETH: within alice's 1,000.
    ledger.post_ok('{"type":"trade","market":"ETH-PERP","buyer":"bob","seller":"alice","size":"3","price":"3000"}')
    (position,) = ledger.account("alice")["positions"]
    assert position["size"] == "-3" and position["entry_price"] == "3000"
    assert position["maintenance_margin"] == "450"
    assert position["liquidation_price"] == "3174.6"
    check_ledger(ledger.app)


def test_partial_reduce_and_flip_keep_money_exact():
    ledger = Ledger()
    ledger.post_ok(f"""
{MARKET_BTC}
{accounts_with(("alice", "100000"), ("bob", "100000"), ("carol", "100000"))}
{{"type":"price","market":"BTC-PERP","price":"30000"}}
{{"type":"trade","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"1","price":"30000"}}
{{"type":"trade","market":"BTC-PERP","buyer":"alice","seller":"carol","size":"2","price":"30001"}}
{{"type":"price","market":"BTC-PERP","price":"31000"}}
{{"type":"trade","market":"BTC-PERP","buyer":"bob","seller":"alice","size":"1","price":"31000"}}
{{"type":"trade","market":"BTC-PERP","buyer":"carol","seller":"alice","size":"3.5","price":"30999.9"}}
""")
    alice = ledger.account("alice")
    (position,) = alice["positions"]
    assert position["size"] == "-1.5" and position["entry_price"] == "30999.9"
    # closed 3 bought at 90,002 total for 31,000 + 2 x 30,999.9 = 92,999.8: realized 2,997.8
    assert alice["realized_pnl"] == "2997.8"
    assert ledger.collateral("alice") == Dec("102997.8")
    check_ledger(ledger.app)


def test_withdrawal_stops_at_free_collateral():
    ledger = Ledger()
    ledger.post_ok(f"""
{MARKET_BTC}
{accounts_with(("alice", "6000"), ("bob", "6000"))}
{{"type":"price","market":"BTC-PERP","price":"50000"}}
{{"type":"trade","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"1","price":"50000"}}
""")
    too_much, exact = ledger.post('{"type":"withdraw","account":"alice","amount":"1000.000001"}\n'
                                  '{"type":"withdraw","account":"alice","amount":"1000"}')
    assert (too_much.status, too_much.code) == ("rejected", "insufficient_free_collateral")
    assert exact.status == "applied"
    assert ledger.account("alice")["free_collateral"] == "0"
    check_ledger(ledger.app)


def test_reposting_a_whole_script_is_a_no_op():
    script = f"""
{MARKET_BTC}
{accounts_with(("alice", "10000"), ("bob", "10000"))}
{{"type":"price","id":"p1","market":"BTC-PERP","price":"50000"}}
{{"type":"trade","id":"t1","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"0.1","price":"50000"}}
{{"type":"withdraw","id":"w1","account":"alice","amount":"100"}}
"""
    ledger = Ledger()
    first = ledger.post_ok(script)
    head = ledger.head()
    second = ledger.post(script)
    assert [o.status for o in first] == ["applied"] * len(first)
    assert [o.status for o in second] == ["already_applied"] * len(second)
    assert ledger.head() == head
    # batches of one go through the same checks (each repeat judged before state)
    assert {o.status for o in ledger.post(script, batch_size=1)} == {"already_applied"}


def test_a_repeated_id_inside_one_batch_is_caught_too():
    ledger = Ledger()
    ledger.post_ok(accounts_with(("alice", "10")))
    same, other = ledger.post('{"type":"deposit","id":"x","account":"alice","amount":"1"}\n'
                              '{"type":"deposit","id":"x","account":"alice","amount":"1"}\n'
                              '{"type":"deposit","id":"x","account":"alice","amount":"2"}')[1:]
    assert same.status == "already_applied"
    assert (other.code, other.field) == ("id_conflict", "amount")
    assert ledger.collateral("alice") == Dec(11)


def test_insurance_fund_lists_every_contribution_with_running_balance():
    ledger = Ledger()
    ledger.post_ok('{"type":"fund_insurance","amount":"1000","contributor":"treasury"}\n'
                   '{"type":"fund_insurance","amount":"0.5"}')
    fund = insurance_fund_view(ledger.app)
    assert fund["balance"] == "1000.5"
    assert [(m["direction"], m["cause"], m["amount"], m["balance_after"], m["counterparty"]) for m in fund["movements"]] == [
        ("in", "contribution", "1000", "1000", "treasury"), ("in", "contribution", "0.5", "1000.5", None)]
    assert (fund["inflows"], fund["outflows"]) == ("1000.5", "0")
    check_ledger(ledger.app)


def test_tiered_market_charges_the_bracket_with_its_deduction():
    ledger = Ledger()
    ledger.post_ok("""
{"type":"create_market","market":"BTC-T","kind":"perpetual","tick_size":"0.1","step_size":"0.001","price_band":"0.5","tiers":[{"notional_floor":"0","initial_margin_fraction":"0.02","maintenance_margin_fraction":"0.01"},{"notional_floor":"100000","initial_margin_fraction":"0.05","maintenance_margin_fraction":"0.025"}]}
{"type":"open_account","account":"whale"}
{"type":"deposit","account":"whale","amount":"100000"}
{"type":"open_account","account":"desk"}
{"type":"deposit","account":"desk","amount":"100000"}
{"type":"price","market":"BTC-T","price":"50000"}
{"type":"trade","market":"BTC-T","buyer":"whale","seller":"desk","size":"4","price":"50000"}
""")
    whale = ledger.account("whale")
    # notional 200,000 in tier 2: IM 200,000 x 5% - 3,000 = 7,000; MM 200,000 x 2.5% - 1,500 = 3,500
    assert (whale["initial_margin"], whale["maintenance_margin"]) == ("7000", "3500")
    check_ledger(ledger.app)


def test_retries_that_run_out_still_report_stored_commands_as_already_applied():
    from eventsourcing.persistence import IntegrityError

    from clearing import application
    from clearing.composition import real_parts

    ledger = Ledger()
    ledger.post_ok(accounts_with(("alice", "10")) + '\n{"type":"deposit","id":"kept","account":"alice","amount":"1"}')

    def always_conflicting(app, events):
        raise IntegrityError("conflict")

    ledger.app.parts = real_parts().replace(save_batch=always_conflicting, backoff=lambda attempt: 0)  # the store turns hostile
    kept, new = ledger.post('{"type":"deposit","id":"kept","account":"alice","amount":"1"}\n'
                            '{"type":"deposit","id":"new","account":"alice","amount":"1"}')
    assert kept.status == "already_applied"
    assert (new.status, new.code) == ("rejected", "retries_exhausted")
    assert ledger.app.conflicts_retried == application.MAX_ATTEMPTS


def test_the_command_record_event_is_the_one_the_aggregate_would_trigger():
    from clearing.domain.command_record import CommandRecord, accepted

    built = accepted("c-1", "deposit", {"type": "deposit", "account": "a", "amount": "1"})
    (triggered,) = CommandRecord(command_id="c-1", command_type="deposit",
                                 content={"type": "deposit", "account": "a", "amount": "1"}).collect_events()
    assert {**vars(built), "timestamp": None} == {**vars(triggered), "timestamp": None}
    assert built.mutate(None).__dict__ | {"_created_on": None, "_modified_on": None} == \
        triggered.mutate(None).__dict__ | {"_created_on": None, "_modified_on": None}
