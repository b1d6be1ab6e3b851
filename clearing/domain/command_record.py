"""``CommandRecord``: one aggregate per answered client command id (idempotency).

Its id is uuid5 of the client's command id, so a second answer for the same id cannot be
stored: the event store's uniqueness of (aggregate id, version) refuses it with the
library's ``IntegrityError`` even when two writers race. The record keeps the command's
canonical content and its **outcome**, so a re-post is answered the same way for ever and
decides nothing again (TigerBeetle's ``id_already_failed`` idea):

* ``Accepted``: the command was applied; a re-post with the same content is
  ``already_applied``.
* ``Rejected``: a rule refused it on the state of that moment (``insufficient_margin``,
  say); a re-post with the same content is ``already_rejected`` with the original code,
  field and message, even if today's state would accept it.
* other content under the same id is ``id_conflict``, naming the first field that differs.

It is written in the same transaction as the command's domain events (or, for a
rejection, with the rest of its batch), so an answer is either stored or never given.
Each record also carries who posted it (``operator``), the command's effective business
time (``at``) and the log's business-time watermark after it (``latest_at`` = the greatest
``at`` so far; None when that is the record's own ``at``), which bounds how far a later
command may be back-dated.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

from clearing.domain import ids


def _upcast_v1_v2(state: dict[str, Any]) -> None:
    """Records written before outcomes were kept: no operator or times were recorded."""
    state.setdefault("operator", "")
    state.setdefault("at", None)
    state.setdefault("latest_at", None)


class CommandRecord(Aggregate, created_event_name="Accepted"):
    """The operator's command as answered, in canonical form, with its outcome."""

    class Accepted(Aggregate.Created):
        class_version = 2
        command_id: str
        command_type: str
        content: dict[str, Any]
        operator: str
        at: datetime | None
        latest_at: datetime | None

        upcast_v1_v2 = staticmethod(_upcast_v1_v2)

    class Rejected(Aggregate.Created):
        """A rule rejection, kept so the same id is never decided again."""

        command_id: str
        command_type: str
        content: dict[str, Any]
        code: str
        field: str | None
        message: str
        operator: str
        at: datetime
        latest_at: datetime | None

        def apply(self, record: CommandRecord) -> None:
            record.code, record.field, record.message = self.code, self.field, self.message

    @staticmethod
    def create_id(command_id: str) -> UUID:
        return ids.command_id(command_id)

    def __init__(
        self,
        command_id: str,
        command_type: str,
        content: dict[str, Any],
        operator: str = "",
        at: datetime | None = None,
        latest_at: datetime | None = None,
    ) -> None:
        self.command_id = command_id
        self.command_type = command_type
        self.content = content
        self.operator = operator
        self.at = at
        self.latest_at = latest_at
        self.code: str | None = None
        self.field: str | None = None
        self.message: str | None = None

    @property
    def rejected(self) -> bool:
        return self.code is not None


_TOPIC = get_topic(CommandRecord)
RECORD_TOPICS = (get_topic(CommandRecord.Accepted), get_topic(CommandRecord.Rejected))


def accepted(
    command_id: str,
    command_type: str,
    content: dict[str, Any],
    operator: str = "",
    at: datetime | None = None,
    latest_at: datetime | None = None,
) -> CommandRecord.Accepted:
    """The record's one event, built directly: the record is written, never kept in memory.

    This is the event ``CommandRecord(command_id=..., ...)`` would trigger (version 1, the
    aggregate's topic); building it without the aggregate saves the library's constructor
    machinery on every command. ``tests/unit/test_scenarios.py`` checks the two are equal.
    """
    return _record(CommandRecord.Accepted, command_id, command_type, content, operator, at, latest_at)


def rejected(
    command_id: str,
    command_type: str,
    content: dict[str, Any],
    error: Any,
    operator: str,
    at: datetime,
    latest_at: datetime | None,
) -> CommandRecord.Rejected:
    """The record of a rule rejection (``error`` is the :class:`ClearingError` raised)."""
    return _record(CommandRecord.Rejected, command_id, command_type, content, operator, at, latest_at,
                   code=error.code, field=error.field, message=error.message)


_Event = TypeVar("_Event", bound=Aggregate.Created)


def _record(
    kind: type[_Event], command_id: str, command_type: str, content: dict[str, Any], operator: str,
    at: datetime | None, latest_at: datetime | None, **outcome: Any,
) -> _Event:
    """Version 1 of the record aggregate, with the aggregate's topic, built without it."""
    # the library makes each event class a dataclass of its annotations when the class is
    # created, so mypy knows only the base class's fields: construct through a callable
    construct: Callable[..., _Event] = kind
    return construct(
        originator_id=ids.command_id(command_id),
        originator_version=CommandRecord.INITIAL_VERSION,
        timestamp=kind.create_timestamp(),
        originator_topic=_TOPIC,
        command_id=command_id,
        command_type=command_type,
        content=content,
        operator=operator,
        at=at,
        latest_at=latest_at,
        **outcome,
    )


def first_difference(stored: dict[str, Any], posted: dict[str, Any]) -> str | None:
    """Name of the first field (in sorted order, ``type`` first) whose values differ."""
    keys = sorted(set(stored) | set(posted), key=lambda key: (key != "type", key))
    for key in keys:
        if stored.get(key) != posted.get(key):
            return key
    return None
