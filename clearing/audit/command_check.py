"""``audit verify``'s ``commands`` check: the command index says what the log says.

The command index (``clearing.command_index``) answers re-posted ids, and nothing in the
hash chain covers it: a row edited in SQL would answer a re-post with someone else's content,
and a row added would refuse a command id that was never used. The check derives the rows
from the log with the function a save uses (``index_rows``) and requires each to be stored
exactly so (looked up page by page); when no writer moved the head during the read, the
table must also hold nothing else (same number of rows). Example: a trade ``t7`` whose row
says ``"size": "0.6"`` while its fills say 0.5 fails with ``[command_index_differs] t7:
content``.
"""

from __future__ import annotations

from typing import Any

from clearing.audit.log import CheckFailed, LogPage
from clearing.command_index import INDEXED_TOPICS, index_rows


class CommandIndexCheck:
    """Each page's index rows looked up in the table; the count compared at the end."""

    name = "commands"

    def __init__(self, app: Any) -> None:
        self.recorder = app.recorder
        self.derived = 0
        self.built = self.recorder.command_index_built()  # a store written before the index: nothing to compare yet

    def consume(self, page: LogPage) -> None:
        if not self.built:
            return
        events = [event for note, event in page.decoded() if note.topic in INDEXED_TOPICS]
        rows = index_rows(events)
        if not rows:
            return
        stored = self.recorder.select_commands([row.command_id for row in rows])
        for row in rows:
            found = stored.get(row.command_id)
            if found is None:
                raise CheckFailed(f"[command_index_missing] {row.command_id}: answered in the log, absent from the index")
            if found != row:
                differs = next(name for name in row._fields if getattr(found, name) != getattr(row, name))
                raise CheckFailed(f"[command_index_differs] {row.command_id}: {differs} differs from the log")
        self.derived += len(rows)

    def finish(self, head: int) -> str:
        if not self.built:
            if self.recorder.count_commands():
                raise CheckFailed("[command_index_extra] the index holds rows but was never built from the log")
            return "no command index yet (the store was written before it; the next post builds it from the records)"
        if (self.recorder.max_notification_id() or 0) == head:  # no writer since the read: nothing else stored
            stored = self.recorder.count_commands()
            if stored != self.derived:
                raise CheckFailed(f"[command_index_extra] the index holds {stored} command id(s), the log answers "
                                  f"{self.derived}")
            return f"{self.derived} command id(s) indexed as the log answers them, and no other"
        return f"{self.derived} command id(s) indexed as the log answers them (writers active: extra rows not counted)"
