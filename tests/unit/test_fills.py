"""The stored form of a run's fills (``clearing.domain.fills``, ADR 25)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from uuid import uuid4

from hypothesis import given
from hypothesis import strategies as st

from clearing.command_index import index_rows, trade_content
from clearing.commands import parse_command
from clearing.domain.account import Account
from clearing.domain.fills import FILL_FIELDS, TradeFill, from_wire, to_wire, trade_fills
from clearing.money import LEDGER_CONTEXT

LIBRARY_FIELDS = {"originator_id", "originator_version", "timestamp"}


def test_a_fill_has_exactly_the_fields_of_the_event_it_replaces():
    event_fields = [field.name for field in dataclasses.fields(Account.TradeFilled) if field.name not in LIBRARY_FIELDS]
    assert list(TradeFill._fields) == [*event_fields, "posted_at", "originator_id", "originator_version"]
    assert FILL_FIELDS[0] == "trade_id" and "account" not in FILL_FIELDS


decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None, min_value=-10**12, max_value=10**12)


@given(size=decimals, price=decimals, collateral=decimals, at=st.datetimes(timezones=st.just(UTC)),
       posted_at=st.booleans(), risk=st.booleans())
def test_the_stored_form_gives_back_every_value_exactly(size, price, collateral, at, posted_at, risk):
    """Text keeps a Decimal's exponent (0.50 stays 0.50, 1E+3 stays 1E+3) and a time's zone."""
    fill = TradeFill("alice", "t1", "BTC-PERP", 7, "bob", size, price, price, size, size, price, collateral,
                     collateral, price, risk, at, posted_at)
    back = from_wire("alice", to_wire(fill, posted_at))
    assert back == fill
    assert [str(value) for value in back] == [str(value) for value in fill]


def test_a_trade_is_indexed_once_from_its_buyers_fill():
    at = datetime(2025, 1, 1, 0, 0, 1, tzinfo=UTC)
    buyer = TradeFill("alice", "t1", "BTC-PERP", 3, "bob", Decimal("0.50"), Decimal("5E+4"), Decimal(50000),
                      Decimal(0), Decimal("0.50"), Decimal(25000), Decimal(1000), Decimal(1000), Decimal(1250), True,
                      at, False)
    seller = buyer._replace(account="bob", counterparty="alice", size_delta=Decimal("-0.50"))
    rows = []
    for side in (buyer, seller):
        rows += index_rows([Account.FillsRecorded(originator_id=uuid4(), originator_version=2, timestamp=at,
                                                  account=side.account, run="t1", operator="", latest_at=at,
                                                  fills=[to_wire(side, side.posted_at)])])
    assert [row.command_id for row in rows] == ["t1"]
    assert rows[0].content_dict() == trade_content("alice", to_wire(buyer, False)) == {
        "type": "trade", "market": "BTC-PERP", "buyer": "alice", "seller": "bob", "size": "0.5", "price": "50000"}
    assert trade_content("alice", to_wire(buyer, True))["at"] == "2025-01-01T00:00:01+00:00"
    assert [fill.account for fill in trade_fills(Account.FillsRecorded(
        originator_id=uuid4(), originator_version=2, timestamp=at, account="alice", run="t1", operator="",
        latest_at=at, fills=[to_wire(buyer, False), to_wire(buyer, False)]))] == ["alice", "alice"]


@given(size=st.decimals(min_value=Decimal("0.001"), max_value=10**6, places=3),
       price=st.decimals(min_value=Decimal("0.5"), max_value=10**6, places=1),
       at=st.none() | st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)))
def test_a_trade_indexed_from_its_fill_has_the_content_the_command_has(size, price, at):
    """The index rebuilds a trade's content from its buyer's fill (on import too): it must be
    exactly what ``Command.content`` gives the posted command, which a re-post is compared with."""
    posted = {"type": "trade", "id": "t1", "market": "BTC-PERP", "buyer": "alice", "seller": "bob",
              "size": format(size, "f"), "price": format(price, "f")}
    if at is not None:
        posted["at"] = at.isoformat().replace("+00:00", "Z")  # as a client writes it
    command = parse_command(posted)
    when = command.at or datetime(2025, 1, 1, tzinfo=UTC)
    size, price = command.size, command.price  # type: ignore[attr-defined]
    fill = TradeFill("alice", "t1", "BTC-PERP", 1, "bob", size, price, price, Decimal(0), size, size * price,
                     Decimal(1), Decimal(1), Decimal(1), True, when, at is not None)
    with localcontext(LEDGER_CONTEXT):
        assert trade_content("alice", to_wire(fill, at is not None)) == command.content()
