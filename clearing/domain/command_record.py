"""``CommandRecord``: one aggregate per accepted client command id (idempotency).

Its id is uuid5 of the client's command id, so a second command with the same id cannot
be stored: the event store's uniqueness of (aggregate id, version) rejects it with the
library's ``IntegrityError`` even when two writers race. The record keeps the command's
canonical content, so a re-post can be told apart: same content -> already applied;
other content -> rejected naming the first field that differs.

It is written in the same transaction as the command's domain events, so a command is
either applied and recorded, or neither.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

from clearing.domain import ids


class CommandRecord(Aggregate):
    """The operator's command as accepted, in canonical form."""

    class Accepted(Aggregate.Created):
        command_id: str
        command_type: str
        content: dict[str, Any]

    @staticmethod
    def create_id(command_id: str) -> UUID:  # type: ignore[override]
        return ids.command_id(command_id)

    def __init__(self, command_id: str, command_type: str, content: dict[str, Any]) -> None:
        self.command_id = command_id
        self.command_type = command_type
        self.content = content


_TOPIC = get_topic(CommandRecord)


def accepted(command_id: str, command_type: str, content: dict[str, Any]) -> CommandRecord.Accepted:
    """The record's one event, built directly: the record is written, never kept in memory.

    This is the event ``CommandRecord(command_id=..., ...)`` would trigger (version 1, the
    aggregate's topic); building it without the aggregate saves the library's constructor
    machinery on every command. ``tests/unit/test_scenarios.py`` checks the two are equal.
    """
    return CommandRecord.Accepted(
        originator_id=ids.command_id(command_id),
        originator_version=CommandRecord.INITIAL_VERSION,
        timestamp=CommandRecord.Accepted.create_timestamp(),
        originator_topic=_TOPIC,
        command_id=command_id,
        command_type=command_type,
        content=content,
    )


def first_difference(stored: dict[str, Any], posted: dict[str, Any]) -> str | None:
    """Name of the first field (in sorted order, ``type`` first) whose values differ."""
    keys = sorted(set(stored) | set(posted), key=lambda key: (key != "type", key))
    for key in keys:
        if stored.get(key) != posted.get(key):
            return key
    return None
