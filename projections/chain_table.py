"""Projection ``chain``: the hash of every event, recorded when the event is appended.

Each row is ``(position, hash)`` with ``hash = H(previous hash, event)`` from
``clearing.audit.chain.event_hash``. ``clearing audit verify`` recomputes the chain from the log
and compares it with these rows, so a changed, deleted, inserted or reordered event is
named by its position. An auditor's saved digest (``clearing audit digest``) protects
against someone who rewrites both the log and this table.

Unlike the read models, the chain is never rebuilt from the log: rebuilding it from a
tampered log would bless the tampering. ``REBUILDABLE = False``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Column, Integer, String, func, select

from clearing.audit.chain import GENESIS, event_hash
from projections.base import Projection, TableSpec

CHAIN = TableSpec("audit_chain", [
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("hash", String(64), nullable=False),
], ("position",), kind="append")


class ChainProjection(Projection):
    NAME = "chain"
    DESCRIPTION = "hash chain over the event log (extended only, never rebuilt)"
    SPECS = (CHAIN,)
    REBUILDABLE = False
    ALL_EVENTS = True

    def __init__(self) -> None:
        super().__init__()
        self.previous: bytes | None = None

    def handlers(self) -> dict[str, Callable[[int, Any, Any], None]]:
        return {}

    def on_any(self, position: int, notification: Any) -> None:
        if self.previous is None:
            self.previous = self._last_hash()
        self.previous = event_hash(self.previous, notification.originator_id, notification.originator_version,
                                   notification.topic, notification.state)
        self.append("audit_chain", {"position": position, "hash": self.previous.hex()})

    def _last_hash(self) -> bytes:
        table = self.tables["audit_chain"]
        last = self.session.execute(select(func.max(table.c.position))).scalar()
        if last is None:
            return GENESIS
        return bytes.fromhex(self.session.execute(select(table.c.hash).where(table.c.position == last)).scalar_one())

    def forget(self) -> None:
        super().forget()
        self.previous = None

    def head(self, session: Any) -> tuple[int, int, str]:
        """(events, last position, last hash hex) of the recorded chain."""
        table = self.tables["audit_chain"]
        events, last = session.execute(select(func.count(), func.max(table.c.position))).one()
        if not events:
            return 0, 0, GENESIS.hex()
        return events, last, session.execute(select(table.c.hash).where(table.c.position == last)).scalar_one()

    def stored(self, session: Any) -> Any:
        """The recorded chain, ``(position, hash bytes)`` in position order."""
        table = self.tables["audit_chain"]
        for position, digest in session.execute(select(table.c.position, table.c.hash).order_by(table.c.position)):
            yield position, bytes.fromhex(digest)
