"""The command index: every answered client command id, in a keyed table (ADR 25).

Idempotency (ADR 4) needs, for a posted id, whether it was answered, its canonical content
and, for a rule rejection, the error. A ``CommandRecord`` aggregate per command gave that at
the cost of one stored event per trade. The index is a table ``clearing_commands``
(``command_id`` primary key, ``command_type``, ``content`` as JSON, ``code``, ``field``,
``message``) written by the recorder **in the same transaction as the events**, so an
answer is stored exactly when its events are, and a second answer for the same id fails
the insert with the library's ``IntegrityError`` even when two writers race, as the
record's version did.

The index holds nothing the log does not: :func:`index_rows` derives its rows from the
events of a batch, and that one function is used both when a batch is saved and when a
log is imported (``clearing.transfer``), so an imported store answers every id as the
original does. A command record (``Accepted`` or ``Rejected``) gives its own row; a run's
fills (``Account.FillsRecorded``) give one row per trade, from the buyer's fill: the trade
``{"type": "trade", "market", "buyer", "seller", "size", "price"}`` plus ``at`` when the
command carried one. Example: alice's fill of trade t7, buying 0.5 BTC-PERP from bob at
50000, gives ``("t7", "trade", {"type": "trade", "market": "BTC-PERP", "buyer": "alice",
"seller": "bob", "size": "0.5", "price": "50000"}, None, None, None)``.

A store written before the index is indexed from its command records once, before its first
batch (:func:`ensure_built`); from then on the index alone answers re-posted ids.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

import orjson
from eventsourcing.utils import get_topic

from clearing.audit.log import read_log
from clearing.domain.account import Account
from clearing.domain.command_record import CommandRecord
from clearing.domain.fills import FILL_FIELDS
from clearing.money import LEDGER_CONTEXT, canonical_text

TABLE = "clearing_commands"
BUILT_TABLE = "clearing_commands_built"  # one row once the index holds every answer of the log
#: The topics whose events give index rows (what an import decodes to rebuild the index).
INDEXED_TOPICS = frozenset({get_topic(Account.FillsRecorded), get_topic(CommandRecord.Accepted),
                            get_topic(CommandRecord.Rejected)})
TRADE_ID, MARKET, COUNTERPARTY, SIZE, PRICE, AT, POSTED_AT = (
    FILL_FIELDS.index(name) for name in ("trade_id", "market", "counterparty", "size_delta", "price", "at", "posted_at"))
COMMANDS_KWARG = "command_rows"  # the rows a save writes, passed to the recorder's insert
COLUMNS = ("command_id", "command_type", "content", "code", "field", "message")


class CommandRow(NamedTuple):
    """One answered id: its canonical content and, for a rejection, the error."""

    command_id: str
    command_type: str
    content: str  # canonical content as JSON (keys sorted)
    code: str | None
    field: str | None
    message: str | None

    def content_dict(self) -> dict[str, Any]:
        loaded: dict[str, Any] = orjson.loads(self.content)
        return loaded


class CommandIndex(Protocol):
    """What the recorders add for the index (``clearing.recorders``)."""

    def select_commands(self, command_ids: Sequence[str]) -> dict[str, CommandRow]: ...

    def count_commands(self) -> int: ...

    def command_index_built(self) -> bool: ...

    def build_command_index(self, rows: Sequence[CommandRow]) -> None: ...


def ensure_built(app: Any) -> None:
    """Build the index of a store written before it existed, once, before anything is posted.

    A store that predates the index holds its answers only as command records, and a trade no
    longer writes one, so a re-posted old id would collide with nothing: the index must hold
    every answer of the log before the first batch is decided. The rows come from the log's
    records (``index_rows``), read and written holding the writers' lock exclusively (no batch
    can commit meanwhile), with the marker ``clearing_commands_built`` in the same transaction;
    a new store gets the marker alone on its first post. A record that cannot be decoded (an
    edited row) is left out; ``audit verify`` names it (``unreadable``).
    """
    recorder: CommandIndex = app.recorder
    if recorder.command_index_built():
        return
    with app.writer_lock.exclusive():
        if recorder.command_index_built():
            return
        head = app.recorder.max_notification_id() or 0
        pages = read_log(app.recorder, app.mapper, stop=head, topics=sorted(INDEXED_TOPICS)) if head else iter(())
        recorder.build_command_index(index_rows(event for page in pages for event in page.events if event is not None))


def index_rows(events: Iterable[Any]) -> list[CommandRow]:
    """The index rows a sequence of domain events gives, in log order."""
    rows: list[CommandRow] = []
    with decimal.localcontext(LEDGER_CONTEXT):
        for event in events:
            cls = type(event)
            if cls is Account.FillsRecorded:
                for wire in event.fills:
                    if wire[SIZE][0] != "-":  # the buyer's side (a fill's size is never zero): one row per trade
                        rows.append(CommandRow(wire[TRADE_ID], "trade", _json(trade_content(event.account, wire)),
                                               None, None, None))
            elif cls is CommandRecord.Accepted:
                rows.append(CommandRow(event.command_id, event.command_type, _json(event.content), None, None, None))
            elif cls is CommandRecord.Rejected:
                rows.append(CommandRow(event.command_id, event.command_type, _json(event.content), event.code,
                                       event.field, event.message))
    return rows


def trade_content(buyer: str, wire: Sequence[Any]) -> dict[str, Any]:
    """The canonical content of the trade command whose buyer's fill is stored as ``wire``
    (``Command.content``: ``type`` and the fields as posted, numbers in canonical text; the
    time as posted, which the fill keeps as text in the same ISO form). Read from the stored
    text: only the size and price are parsed, on the posting path's save."""
    content: dict[str, Any] = {
        "type": "trade", "market": wire[MARKET], "buyer": buyer, "seller": wire[COUNTERPARTY],
        "size": canonical_text(Decimal(wire[SIZE])), "price": canonical_text(Decimal(wire[PRICE])),
    }
    if wire[POSTED_AT]:
        content["at"] = wire[AT]
    return content


def _json(content: dict[str, Any]) -> str:
    # ``default=str``: a record written before reserved keys were refused may decode a
    # ``{"_type_": ...}`` object of its content into a library type (``commands._check_values``)
    return orjson.dumps(content, option=orjson.OPT_SORT_KEYS, default=str).decode()
