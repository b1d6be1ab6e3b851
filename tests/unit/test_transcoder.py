"""The orjson-encoding transcoder writes exactly the library's bytes and reads them back."""

from __future__ import annotations

from eventsourcing.persistence import JSONTranscoder

from clearing.application import ClearingApplication
from clearing.transcodings import OrjsonEncodingTranscoder
from tests.ledger import MARKET_BTC, Ledger, accounts_with


def library_transcoder(app: ClearingApplication) -> JSONTranscoder:
    transcoder = JSONTranscoder()
    app.register_transcodings(transcoder)
    return transcoder


def test_every_stored_event_and_snapshot_is_byte_identical_to_the_library_encoding():
    ledger = Ledger()
    ledger.post_ok(f"""
{MARKET_BTC}
{{"type":"create_market","id":"m-t","market":"T-FUT","kind":"future","expiry":"2030-01-01T00:00:00+02:00","tick_size":"0.5","step_size":"0.01","tiers":[{{"notional_floor":"0","initial_margin_fraction":"0.1","maintenance_margin_fraction":"0.05"}},{{"notional_floor":"1000000","initial_margin_fraction":"0.2","maintenance_margin_fraction":"0.1"}}]}}
{accounts_with(("alice", "100000.000001"), ("bob", "100000"))}
{{"type":"price","market":"BTC-PERP","price":"50000.1"}}
{{"type":"trade","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"0.123","price":"50000.1"}}
{{"type":"withdraw","account":"bob","amount":"1.5"}}
{{"type":"fund_insurance","amount":"7","contributor":"treasury"}}
{{"type":"close_market","market":"T-FUT"}}
""")
    app = ledger.app
    assert isinstance(app.mapper.transcoder, OrjsonEncodingTranscoder)
    library = library_transcoder(app)
    notifications = app.recorder.select_notifications(start=1, limit=1000)
    assert len({n.topic for n in notifications}) >= 9
    for notification in notifications:
        event = app.mapper.to_domain_event(notification)
        state = {k: v for k, v in vars(event).items() if k not in ("originator_id", "originator_version")}
        if getattr(type(event), "class_version", 1) > 1:  # the mapper stores the version of an upcastable class
            state["class_version"] = type(event).class_version
        assert app.mapper.transcoder.encode(state) == library.encode(state) == notification.state
    account = app.get_account("alice")
    snapshot = type(account).Snapshot.take(account)
    state = {k: v for k, v in vars(snapshot).items() if k not in ("originator_id", "originator_version")}
    assert app.mapper.transcoder.encode(state) == library.encode(state)
    assert library.decode(app.mapper.transcoder.encode(state)) == library.decode(library.encode(state))
