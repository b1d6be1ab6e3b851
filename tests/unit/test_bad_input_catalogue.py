"""The bad-input catalogue: every case gets a specific code, names its field, writes nothing.

Each row is (case name, JSON line, expected code, expected field). The ledger behind every
row holds: BTC-PERP (tick 0.1, step 0.001, IMF 10%, MMF 5%, band 10%, mark 50,000 at
T+1h), NOMARK-PERP (no mark yet), OLD-PERP (closed), BTC-FUT (expires 2025-03-01), alice and
bob with 10,000 each and alice long 0.1 BTC from bob, carol closed, dave with 100 and no
position, an insurance fund of 1,000, and command id "dep-used" already applied; risk
officers olga and omar (M = 1, N = 2; olga approved omar), liquidations paused in BTC-FUT,
and olga's approvals (not yet used) of pausing trading and, at 2025-01-01T00:00Z, of
``liquidation_spread`` 0.4 and ``approvals_required`` 2. LIQ-PERP (tick 0.01, step 1, IMF
10%, MMF 5%, band 50%): erin (1,000) bought 100 from bob at 100; at mark 94 her equity 400
is below MM 470 and she is being liquidated, waiting for a liquidator: the backstop was
opened on first use with nothing and cannot carry her position (ADR 13). GAP-PERP (the same
terms): frank (10,000) bought 1,000 from gabe (20,000) at 100 and is waiting likewise at 94.
In BTC-FUT hana (5,000) bought 1 from ivy (100,000) at 50,000 and is queued at 47,000 (liquidations
paused there). Tokens: fca (regulator) issued, old-auditor issued and revoked. Rows are posted
as the operator ``POSTED_AS`` names (default: nobody).
Grow this table with every feature (docs/errors.md lists the codes).
"""

import json

import pytest

from tests.ledger import Ledger

SETUP = """
{"type":"create_market","id":"m-btc","market":"BTC-PERP","kind":"perpetual","tick_size":"0.1","step_size":"0.001","initial_margin_fraction":"0.1","maintenance_margin_fraction":"0.05","price_band":"0.1","at":"2025-01-01T00:00:00Z"}
{"type":"price","id":"p-btc","market":"BTC-PERP","price":"50000","at":"2025-01-01T01:00:00Z"}
{"type":"create_market","id":"m-nomark","market":"NOMARK-PERP","kind":"perpetual","tick_size":"0.1","step_size":"0.001","initial_margin_fraction":"0.1","maintenance_margin_fraction":"0.05","at":"2025-01-01T00:00:00Z"}
{"type":"create_market","id":"m-old","market":"OLD-PERP","kind":"perpetual","tick_size":"0.1","step_size":"0.001","initial_margin_fraction":"0.1","maintenance_margin_fraction":"0.05","at":"2025-01-01T00:00:00Z"}
{"type":"price","id":"p-old","market":"OLD-PERP","price":"100","at":"2025-01-01T00:00:00Z"}
{"type":"close_market","id":"c-old","market":"OLD-PERP","at":"2025-01-01T00:00:00Z"}
{"type":"create_market","id":"m-fut","market":"BTC-FUT","kind":"future","expiry":"2025-03-01T08:00:00Z","tick_size":"0.5","step_size":"0.001","initial_margin_fraction":"0.1","maintenance_margin_fraction":"0.05","at":"2025-01-01T00:00:00Z"}
{"type":"price","id":"p-fut","market":"BTC-FUT","price":"50000","at":"2025-01-01T00:00:00Z"}
{"type":"open_account","id":"o-alice","account":"alice"}
{"type":"deposit","id":"d-alice","account":"alice","amount":"10000"}
{"type":"open_account","id":"o-bob","account":"bob"}
{"type":"deposit","id":"d-bob","account":"bob","amount":"10000"}
{"type":"open_account","id":"o-carol","account":"carol"}
{"type":"close_account","id":"c-carol","account":"carol"}
{"type":"open_account","id":"o-dave","account":"dave"}
{"type":"deposit","id":"dep-used","account":"dave","amount":"100"}
{"type":"trade","id":"t-setup","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"0.1","price":"50000","at":"2025-01-01T01:00:00Z"}
{"type":"fund_insurance","id":"f-setup","amount":"1000"}
{"type":"create_market","id":"m-set","market":"SET-FUT","kind":"future","expiry":"2025-01-01T00:30:00Z","tick_size":"0.5","step_size":"0.001","initial_margin_fraction":"0.1","maintenance_margin_fraction":"0.05","at":"2025-01-01T00:00:00Z"}
{"type":"settle","id":"s-set","market":"SET-FUT","price":"100","at":"2025-01-01T00:30:00Z"}
{"type":"set_parameters","id":"sp-setup","parameters":{"officers_max":2,"approvals_required":1}}
{"type":"register_officer","id":"r-olga","officer":"olga"}
olga> {"type":"approve","id":"a-omar","officer":"olga","action":"register_officer","candidate":"omar"}
{"type":"register_officer","id":"r-omar","officer":"omar"}
olga> {"type":"approve","id":"a-setup","officer":"olga","action":"pause","operation":"liquidations","market":"BTC-FUT"}
{"type":"pause","id":"p-setup","operation":"liquidations","market":"BTC-FUT"}
olga> {"type":"approve","id":"a-pending","officer":"olga","action":"pause","operation":"trading"}
olga> {"type":"approve","id":"a-spread","officer":"olga","action":"set_parameters","parameters":{"liquidation_spread":"0.4"},"at":"2025-01-01T00:00:00Z"}
olga> {"type":"approve","id":"a-quorum","officer":"olga","action":"set_parameters","parameters":{"approvals_required":2},"at":"2025-01-01T00:00:00Z"}
{"type":"create_market","id":"m-liq","market":"LIQ-PERP","kind":"perpetual","tick_size":"0.01","step_size":"1","initial_margin_fraction":"0.1","maintenance_margin_fraction":"0.05","price_band":"0.5"}
{"type":"price","id":"p-liq","market":"LIQ-PERP","price":"100"}
{"type":"open_account","id":"o-erin","account":"erin"}
{"type":"deposit","id":"d-erin","account":"erin","amount":"1000"}
{"type":"trade","id":"t-erin","market":"LIQ-PERP","buyer":"erin","seller":"bob","size":"100","price":"100"}
{"type":"price","id":"p-liq-94","market":"LIQ-PERP","price":"94"}
{"type":"create_market","id":"m-gap","market":"GAP-PERP","kind":"perpetual","tick_size":"0.01","step_size":"1","initial_margin_fraction":"0.1","maintenance_margin_fraction":"0.05","price_band":"0.5"}
{"type":"price","id":"p-gap","market":"GAP-PERP","price":"100"}
{"type":"open_account","id":"o-frank","account":"frank"}
{"type":"deposit","id":"d-frank","account":"frank","amount":"10000"}
{"type":"open_account","id":"o-gabe","account":"gabe"}
{"type":"deposit","id":"d-gabe","account":"gabe","amount":"20000"}
{"type":"trade","id":"t-frank","market":"GAP-PERP","buyer":"frank","seller":"gabe","size":"1000","price":"100"}
{"type":"price","id":"p-gap-94","market":"GAP-PERP","price":"94"}
{"type":"open_account","id":"o-hana","account":"hana"}
{"type":"deposit","id":"d-hana","account":"hana","amount":"5000"}
{"type":"open_account","id":"o-ivy","account":"ivy"}
{"type":"deposit","id":"d-ivy","account":"ivy","amount":"100000"}
{"type":"trade","id":"t-hana","market":"BTC-FUT","buyer":"hana","seller":"ivy","size":"1","price":"50000","at":"2025-01-01T02:00:00Z"}
{"type":"price","id":"p-fut-47","market":"BTC-FUT","price":"47000","at":"2025-01-01T02:00:00Z"}
{"type":"issue_token","id":"tk-used","name":"fca","role":"regulator","token_sha256":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}
{"type":"issue_token","id":"tk-gone","name":"old-auditor","role":"auditor","token_sha256":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}
{"type":"revoke_token","id":"tk-revoke","name":"old-auditor"}
"""  # noqa: E501 - a JSON Lines script: one command per line, as posted
LIQUIDATE = {"type": "liquidate", "id": "l-new", "account": "alice", "market": "BTC-PERP", "price": "50000"}
PARAMS = {"type": "set_parameters", "id": "sp-new"}
TOKEN = {"type": "issue_token", "id": "tk-new", "name": "esma", "role": "regulator", "token_sha256": "c" * 64}
APPROVE = {"type": "approve", "id": "a-new", "officer": "omar", "action": "pause", "operation": "trading"}

TRADE = {"type": "trade", "id": "t-new", "market": "BTC-PERP", "buyer": "alice", "seller": "bob", "size": "0.01",
         "price": "50000"}
PRICE = {"type": "price", "id": "p-new", "market": "BTC-PERP", "price": "50100", "at": "2025-01-01T02:00:00Z"}
DEPOSIT = {"type": "deposit", "id": "d-new", "account": "alice", "amount": "100"}
MARKET = {"type": "create_market", "id": "m-new", "market": "NEW-PERP", "kind": "perpetual", "tick_size": "0.1",
          "step_size": "0.001", "initial_margin_fraction": "0.1", "maintenance_margin_fraction": "0.05"}
TIERS = [{"notional_floor": "0", "initial_margin_fraction": "0.02", "maintenance_margin_fraction": "0.01"},
         {"notional_floor": "100000", "initial_margin_fraction": "0.05", "maintenance_margin_fraction": "0.025"}]


def line(base: dict, **changes) -> str:
    command = {**base, **changes}
    return json.dumps({key: value for key, value in command.items() if value is not ...})


CASES = [
    # -- the line itself
    ("malformed JSON", '{"type": "deposit", ', "malformed_json", None),
    ("not an object", "[1, 2, 3]", "not_an_object", None),
    ("line too long", json.dumps({**DEPOSIT, "account": "a" * 70000}), "line_too_long", None),
    ("missing type", line(DEPOSIT, type=...), "missing_field", "type"),
    ("unknown type", line(DEPOSIT, type="teleport"), "unknown_type", "type"),
    ("missing id", line(DEPOSIT, id=...), "missing_field", "id"),
    ("empty id", line(DEPOSIT, id=""), "invalid_id", "id"),
    ("id is a number", line(DEPOSIT, id=7), "invalid_id", "id"),
    ("id with a trailing newline", line(DEPOSIT, id="dep-x\n"), "invalid_id", "id"),
    ("unknown field", line(DEPOSIT, memo="hi"), "unknown_field", "memo"),
    ("naive time", line(DEPOSIT, at="2025-01-01T00:00:00"), "invalid_time", "at"),
    ("garbage time", line(DEPOSIT, at="yesterday"), "invalid_time", "at"),
    # -- found by tests/e2e/test_fuzz_post.py (each was a traceback or last-one-wins)
    ("duplicate key", '{"type":"deposit","id":"d-dup","account":"alice","amount":"1","amount":"2"}', "duplicate_key",
     "amount"),
    ("duplicate key inside parameters", '{"type":"set_parameters","id":"sp-dup","parameters":{"margin_call_grace":60,'
     '"margin_call_grace":61}}', "duplicate_key", "margin_call_grace"),
    ("line not UTF-8", '{"type":"deposit","id":"d-utf","account":"al\udcffice","amount":"1"}', "invalid_utf8", None),
    ("lone surrogate escape", '{"type":"deposit","id":"d-sur","account":"\\ud800","amount":"1"}', "invalid_unicode",
     "account"),
    ("lone surrogate inside parameters", '{"type":"set_parameters","id":"sp-sur","parameters":{"oracle_sources":["\\udfff"]}}',
     "invalid_unicode", "parameters.oracle_sources.0"),
    ("NaN inside parameters", '{"type":"set_parameters","id":"sp-nan","parameters":{"margin_call_grace":NaN}}',
     "invalid_number", "parameters.margin_call_grace"),
    ("integer beyond 64 bits inside parameters", line(PARAMS, parameters={"margin_call_grace": 10**30}), "invalid_number",
     "parameters.margin_call_grace"),
    ("integer of 5,000 digits", '{"type":"deposit","id":"d-big","account":"alice","amount":' + "9" * 5000 + "}",
     "invalid_number", "amount"),
    ("nesting too deep to parse", '{"type":"set_parameters","id":"sp-deep","parameters":{"x":' + "[" * 5000 + "]" * 5000
     + "}}", "nesting_too_deep", None),
    ("nesting deeper than 8 levels", line(PARAMS, parameters={"margin_call_grace": [[[[[[[60]]]]]]]}), "nesting_too_deep",
     "parameters.margin_call_grace.0.0.0.0.0.0"),
    ("the store's typed-value key inside parameters", line(PARAMS, parameters={
        "approvals_required": {"_type_": "decimal_str", "_data_": "2"}}), "invalid_value",
     "parameters.approvals_required._type_"),
    ("the store's data key inside parameters", line(PARAMS, parameters={"margin_call_grace": {"_data_": "60"}}),
     "invalid_value", "parameters.margin_call_grace._data_"),
    ("time out of range after its offset", line(DEPOSIT, at="0001-01-01T00:00:00+01:00"), "time_out_of_range", "at"),
    ("time not ASCII", line(DEPOSIT, at="２０２５-01-01T00:00:00Z"), "invalid_time", "at"),
    # -- numbers
    ("missing amount", line(DEPOSIT, amount=...), "missing_field", "amount"),
    ("float amount", line(DEPOSIT, amount=1.5), "float_not_allowed", "amount"),
    ("float that looks whole", line(PRICE, price=50000.0), "float_not_allowed", "price"),
    ("NaN literal", '{"type":"deposit","id":"d-nan","account":"alice","amount":NaN}', "invalid_number", "amount"),
    ("Infinity literal", '{"type":"deposit","id":"d-inf","account":"alice","amount":Infinity}', "invalid_number", "amount"),
    ("NaN string", line(DEPOSIT, amount="NaN"), "invalid_number", "amount"),
    ("exponent string", line(DEPOSIT, amount="1e3"), "invalid_number", "amount"),
    ("boolean amount", line(DEPOSIT, amount=True), "invalid_number", "amount"),
    ("list amount", line(DEPOSIT, amount=[100]), "invalid_number", "amount"),
    ("zero amount", line(DEPOSIT, amount="0"), "not_positive", "amount"),
    ("negative amount", line(DEPOSIT, amount="-5"), "not_positive", "amount"),
    ("too many decimals", line(DEPOSIT, amount="1.0000001"), "too_many_decimals", "amount"),
    # -- accounts
    ("unknown account", line(DEPOSIT, account="zed"), "account_not_found", "account"),
    ("bad account name", line(DEPOSIT, account="al ice"), "invalid_name", "account"),
    ("account name not a string", line(DEPOSIT, account=12), "invalid_name", "account"),
    # a regex's $ matches before a final newline: names and ids are matched whole (found by the fuzz of issue 12)
    ("account name with a trailing newline", line(DEPOSIT, account="alice\n"), "invalid_name", "account"),
    ("officer name with a trailing newline", '{"type":"register_officer","id":"r-nl","officer":"otto\\n"}', "invalid_name",
     "officer"),
    ("deposit to closed account", line(DEPOSIT, account="carol"), "account_closed", "account"),
    ("open existing account", '{"type":"open_account","id":"o-again","account":"alice"}', "account_exists", "account"),
    ("withdraw beyond collateral", line(DEPOSIT, type="withdraw", amount="10001"), "insufficient_collateral", "amount"),
    ("withdraw beyond free collateral", line(DEPOSIT, type="withdraw", amount="9600"), "insufficient_free_collateral", "amount"),
    ("close account holding collateral", '{"type":"close_account","id":"c-dave","account":"dave"}', "account_not_empty",
     "account"),
    ("close account with a position", '{"type":"close_account","id":"c-alice","account":"alice"}', "account_not_flat", "account"),
    # -- trades
    ("trade unknown market", line(TRADE, market="DOGE-PERP"), "market_not_found", "market"),
    ("trade unknown buyer", line(TRADE, buyer="zed"), "account_not_found", "buyer"),
    ("trade unknown seller", line(TRADE, seller="zed"), "account_not_found", "seller"),
    ("self trade", line(TRADE, seller="alice"), "self_trade", "seller"),
    ("trade closed buyer", line(TRADE, buyer="carol"), "account_closed", "buyer"),
    ("trade closed market", line(TRADE, market="OLD-PERP", price="100"), "market_closed", "market"),
    ("trade without mark price", line(TRADE, market="NOMARK-PERP"), "no_mark_price", "market"),
    ("trade expired future", line(TRADE, market="BTC-FUT", at="2025-03-01T08:00:00Z"), "market_expired", "at"),
    ("size off step", line(TRADE, size="0.0001"), "size_off_step", "size"),
    ("zero size", line(TRADE, size="0"), "not_positive", "size"),
    ("price off tick", line(TRADE, price="50000.05"), "price_off_tick", "price"),
    ("trade price outside band", line(TRADE, price="60000"), "trade_price_outside_band", "price"),
    ("insufficient margin buyer", line(TRADE, size="2"), "insufficient_margin", "buyer"),
    ("insufficient margin seller", line(TRADE, buyer="dave", seller="bob", size="2.5"), "insufficient_margin", "buyer"),
    ("flat account cannot open", line(TRADE, buyer="dave", size="0.1"), "insufficient_margin", "buyer"),
    # -- prices
    ("mark off tick", line(PRICE, price="50100.05"), "price_off_tick", "price"),
    ("mark outside band", line(PRICE, price="56000"), "price_outside_band", "price"),
    ("mark time going back", line(PRICE, at="2025-01-01T00:59:59Z"), "stale_time", "at"),
    ("negative mark", line(PRICE, price="-1"), "not_positive", "price"),
    ("mark unknown market", line(PRICE, market="DOGE-PERP"), "market_not_found", "market"),
    # -- markets
    ("create existing market", line(MARKET, market="BTC-PERP"), "market_exists", "market"),
    ("maintenance above initial", line(MARKET, maintenance_margin_fraction="0.2"), "invalid_margin_fractions",
     "maintenance_margin_fraction"),
    ("fraction above one", line(MARKET, initial_margin_fraction="1.5"), "invalid_fraction", "initial_margin_fraction"),
    ("missing initial fraction", line(MARKET, initial_margin_fraction=...), "missing_field", "initial_margin_fraction"),
    ("unknown kind", line(MARKET, kind="option"), "invalid_value", "kind"),
    ("future without expiry", line(MARKET, kind="future"), "expiry_required", "expiry"),
    ("perpetual with expiry", line(MARKET, expiry="2026-01-01T00:00:00Z"), "expiry_not_allowed", "expiry"),
    ("expiry in the past", line(MARKET, kind="future", expiry="2020-01-01T00:00:00Z", at="2025-01-01T00:00:00Z"),
     "expiry_in_past", "expiry"),
    ("tiers not starting at 0", line(MARKET, initial_margin_fraction=..., maintenance_margin_fraction=...,
                                     tiers=[{**TIERS[0], "notional_floor": "10"}]), "invalid_tiers", "tiers.0.notional_floor"),
    ("tier floors not increasing", line(MARKET, initial_margin_fraction=..., maintenance_margin_fraction=...,
                                        tiers=[TIERS[0], {**TIERS[1], "notional_floor": "0"}]), "invalid_tiers", "tiers.1"),
    ("tier fractions decreasing", line(MARKET, initial_margin_fraction=..., maintenance_margin_fraction=...,
                                       tiers=[TIERS[1] | {"notional_floor": "0"}, TIERS[0] | {"notional_floor": "5"}]),
     "invalid_tiers", "tiers.1"),
    ("tier with unknown field", line(MARKET, tiers=[{**TIERS[0], "cum": "0"}]), "unknown_field", "tiers.0.cum"),
    ("tiers disagree with fractions", line(MARKET, tiers=TIERS), "invalid_tiers", "initial_margin_fraction"),
    ("empty tier list", line(MARKET, initial_margin_fraction=..., maintenance_margin_fraction=..., tiers=[]),
     "invalid_value", "tiers"),
    ("tick x step finer than the quantum", line(MARKET, tick_size="0.5", step_size="0.0000001"), "incompatible_quanta",
     "tick_size"),
    ("close a closed market", '{"type":"close_market","id":"c-old-2","market":"OLD-PERP"}', "market_closed", "market"),
    # -- insurance fund
    ("zero contribution", '{"type":"fund_insurance","id":"f-0","amount":"0"}', "not_positive", "amount"),
    # -- risk engine (issue 3)
    ("liquidate a healthy account", line(LIQUIDATE), "account_healthy", "account"),
    ("liquidate an account without a position", line(LIQUIDATE, account="dave"), "no_position", "market"),
    ("liquidate in an unknown market", line(LIQUIDATE, market="NOPE-PERP"), "market_not_found", "market"),
    ("liquidate with a float price", line(LIQUIDATE, price=50000.5), "float_not_allowed", "price"),
    # -- the funded liquidator of last resort (ADR 13): dave (100) would hold 100 LIQ-PERP at 94,
    # notional 9,400, on equity 100 (IM 940)
    ("liquidate to a liquidator without margin", line(LIQUIDATE, account="erin", market="LIQ-PERP", price="94",
                                                      liquidator="dave"), "liquidator_undercapitalized", "liquidator"),
    ("liquidate to the empty backstop", line(LIQUIDATE, account="erin", market="LIQ-PERP", price="94"),
     "liquidator_undercapitalized", "liquidator"),
    # alice can carry it (equity 10,000 + 5,400 >= notional 5,000 + 9,400) but 40 is 57 % from the mark 94
    # GAP-PERP: frank (10,000) long 1,000 at 100 from gabe, equity 4,000 at 94, bankruptcy price 90:
    # gabe taking it back at 85 closes the market's last other position and leaves 5,000, more than
    # the fund's 1,000, with nobody to bear it
    ("liquidation deficit without a payer", line(LIQUIDATE, account="frank", market="GAP-PERP", price="85", liquidator="gabe"),
     "deficit_without_payer", "price"),
    ("liquidate more than the position", line(LIQUIDATE, account="erin", market="LIQ-PERP", price="94", size="200",
                                              liquidator="alice"), "size_exceeds_position", "size"),
    # BTC-FUT: hana (5,000) long 1 at 50,000 from ivy (100,000); at 47,000 her equity 2,000 < MM 2,350, and
    # liquidations are paused there (she is queued)
    ("manual liquidation while liquidations are paused", line(LIQUIDATE, account="hana", market="BTC-FUT", price="47000",
                                                              liquidator="alice"), "liquidations_paused", "market"),
    ("auction price out of band without approval", line(LIQUIDATE, account="erin", market="LIQ-PERP", price="40",
                                                        liquidator="alice"), "price_out_of_band", "price"),
    ("approval of a liquidation without its price", line(APPROVE, action="liquidate", operation=..., account="erin",
                                                         market="LIQ-PERP"), "missing_field", "price"),
    ("approval of a liquidation without its market", line(APPROVE, action="liquidate", operation=..., account="erin",
                                                          price="40"), "missing_field", "market"),
    ("approval of a liquidation carrying an operation", line(APPROVE, action="liquidate", account="erin", market="LIQ-PERP",
                                                             price="40"), "unknown_field", "operation"),
    ("unknown liquidation price rule", line(PARAMS, parameters={"liquidation_price_rule": "midpoint"}),
     "parameter_out_of_range", "parameters.liquidation_price_rule"),
    ("liquidator position cap of 0", line(PARAMS, parameters={"liquidator_position_cap": "0"}), "parameter_out_of_range",
     "parameters.liquidator_position_cap"),
    ("manual liquidation band of 200 %", line(PARAMS, market="BTC-PERP", parameters={"manual_liquidation_band": "2"}),
     "parameter_out_of_range", "parameters.manual_liquidation_band"),
    ("settle a perpetual", '{"type":"settle","id":"s-new","market":"BTC-PERP","price":"50000"}', "not_a_future", "market"),
    ("settle before expiry", '{"type":"settle","id":"s-new","market":"BTC-FUT","price":"50000"}', "not_expired", "at"),
    ("settle a settled market", '{"type":"settle","id":"s-new","market":"SET-FUT","price":"100","at":"2025-01-02T00:00:00Z"}',
     "market_settled", "market"),
    ("price on a settled market", '{"type":"price","id":"p-new","market":"SET-FUT","price":"100"}', "market_settled", "market"),
    ("price from an unconfigured source", line(PRICE, source="feedx"), "unknown_source", "source"),
    ("funding on a future", '{"type":"funding","id":"f-new","market":"BTC-FUT","rate":"0.0001"}', "not_a_perpetual", "market"),
    ("funding rate of 100 %", '{"type":"funding","id":"f-new","market":"BTC-PERP","rate":"1"}', "rate_out_of_range", "rate"),
    ("funding rate of zero", '{"type":"funding","id":"f-new","market":"BTC-PERP","rate":"0"}', "not_positive", "rate"),
    ("approval by an unknown officer", line(APPROVE, officer="mallory"), "unknown_officer", "officer"),
    ("duplicate approval", line(APPROVE, officer="olga"), "duplicate_approval", "officer"),
    ("approval of an unknown action", line(APPROVE, action="delete"), "invalid_value", "action"),
    ("approval as another officer", line(APPROVE), "approver_not_operator", "officer"),
    ("approval of a pause without its operation", line(APPROVE, operation=...), "missing_field", "operation"),
    ("approval of a pause carrying parameters", line(APPROVE, parameters={"loss_policy": "adl"}), "unknown_field", "parameters"),
    ("approval to register a registered officer", line(APPROVE, action="register_officer", operation=..., candidate="olga"),
     "officer_exists", "candidate"),
    ("money-moving parameter without approval", line(PARAMS, parameters={"liquidator_fee_share": "0.5"}), "quorum_not_met",
     "parameters.liquidator_fee_share"),
    ("relaxing market override without approval", line(PARAMS, market="BTC-PERP", parameters={"margin_call_grace": 3600}),
     "quorum_not_met", "parameters.margin_call_grace"),
    ("approval older than approval_ttl", line(PARAMS, parameters={"liquidation_spread": "0.4"}, at="2025-01-03T00:00:00Z"),
     "approval_expired", "parameters.liquidation_spread"),
    ("threshold change inside the timelock", line(PARAMS, parameters={"approvals_required": 2}, at="2025-01-01T00:10:00Z"),
     "timelock_pending", "parameters.approvals_required"),
    ("approval_ttl not above the timelock", line(PARAMS, parameters={"approval_ttl": 3600}), "parameter_out_of_range",
     "parameters.approval_ttl"),
    ("resume without quorum", '{"type":"resume","id":"r-new","operation":"liquidations","market":"BTC-FUT"}',
     "quorum_not_met", "operation"),
    ("pause what is paused", '{"type":"pause","id":"p-new","operation":"liquidations","market":"BTC-FUT"}',
     "already_paused", "market"),
    ("resume what is not paused", '{"type":"resume","id":"r-new","operation":"trading"}', "not_paused", "operation"),
    ("pause an unknown operation", '{"type":"pause","id":"p-new","operation":"withdrawals"}', "invalid_value", "operation"),
    ("register an officer twice", '{"type":"register_officer","id":"r-new","officer":"olga"}', "officer_exists", "officer"),
    ("more officers than officers_max", '{"type":"register_officer","id":"r-new","officer":"otto"}', "officers_full", "officer"),
    ("parameter out of range", line(PARAMS, parameters={"liquidation_fee_rate": "0.5"}), "parameter_out_of_range",
     "parameters.liquidation_fee_rate"),
    ("negative grace", line(PARAMS, parameters={"margin_call_grace": -1}), "parameter_out_of_range",
     "parameters.margin_call_grace"),
    ("unknown loss policy", line(PARAMS, market="BTC-PERP", parameters={"loss_policy": "lottery"}), "parameter_out_of_range",
     "parameters.loss_policy"),
    ("unknown parameter", line(PARAMS, parameters={"leverage": "100"}), "unknown_parameter", "parameters.leverage"),
    ("clearinghouse-only parameter on a market", line(PARAMS, market="BTC-PERP", parameters={"officers_max": 3}),
     "unknown_parameter", "parameters.officers_max"),
    ("float parameter", line(PARAMS, parameters={"liquidation_fee_rate": 0.01}), "float_not_allowed",
     "parameters.liquidation_fee_rate"),
    ("quorum above officers_max", line(PARAMS, parameters={"approvals_required": 3}), "parameter_out_of_range",
     "parameters.approvals_required"),
    ("no parameters", line(PARAMS, parameters={}), "missing_field", "parameters"),
    ("grace as a string", line(PARAMS, parameters={"margin_call_grace": "60"}), "invalid_value", "parameters.margin_call_grace"),
    # -- access tokens (ADR 29)
    ("token name issued twice", line(TOKEN, name="fca"), "token_exists", "name"),
    ("token digest not hex", line(TOKEN, token_sha256="zz" * 32), "invalid_sha256", "token_sha256"),
    ("token digest too short", line(TOKEN, token_sha256="ab"), "invalid_sha256", "token_sha256"),
    ("token digest in capitals", line(TOKEN, token_sha256="AB" * 32), "invalid_sha256", "token_sha256"),
    ("token role unknown", line(TOKEN, role="admin"), "invalid_value", "role"),
    ("token without a digest", '{"type":"issue_token","id":"tk-new","name":"x","role":"auditor"}', "missing_field",
     "token_sha256"),
    ("revoke a token never issued", '{"type":"revoke_token","id":"tk-new","name":"nobody"}', "token_not_found", "name"),
    ("revoke a token twice", '{"type":"revoke_token","id":"tk-new","name":"old-auditor"}', "token_revoked", "name"),
    # -- idempotency
    ("same id, other content", line(DEPOSIT, id="dep-used", account="dave", amount="200"), "id_conflict", "amount"),
    ("same id, other type", line(DEPOSIT, id="dep-used", type="withdraw", account="dave"), "id_conflict", "type"),
]


#: Rows posted as an operator (``--as``); every other row is posted by nobody in particular.
POSTED_AS = {
    "approval by an unknown officer": "mallory",
    "duplicate approval": "olga",
    "approval as another officer": "olga",
    "approval to register a registered officer": "omar",
}


@pytest.fixture(scope="module")
def setup_script() -> str:
    return SETUP


@pytest.mark.parametrize(("case", "text", "code", "field"), CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_rejected_with_code_and_field_and_writes_nothing(setup_script, case, text, code, field):
    ledger = Ledger()
    ledger.post_ok(setup_script)
    head = ledger.head()
    before = {name: ledger.account(name) for name in ("alice", "bob", "dave")}

    (outcome,) = ledger.post(text, auto_id=False, operator=POSTED_AS.get(case, ""))

    assert (outcome.status, outcome.code, outcome.field) == ("rejected", code, field), outcome.message
    assert outcome.message and "\n" not in outcome.message
    if field is not None:
        assert field in outcome.message, outcome.message
    ledger.assert_rejection_wrote_only_its_answer(head, outcome, text)
    assert {name: ledger.account(name) for name in before} == before


def test_catalogue_covers_at_least_forty_cases_and_every_code_once():
    assert len(CASES) >= 40
    assert len({case[0] for case in CASES}) == len(CASES)
