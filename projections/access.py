"""Who holds a token, read from the log itself (ADR 29).

No projection holds the tokens: the server must refuse a revoked token from the moment its
revocation is committed, whatever the projections' lag, so the registry reads the two
token events straight from the log (the recorder's topic filter), at start and then only
the events after the last one read. A store with no token events gives an empty registry,
and reading it writes nothing (a read-only copy serves).

Example: ``fca`` issued at position 3 and revoked at 9: ``lookup`` of its secret returns the
token with ``revoked_position`` 9, and ``active`` is False.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eventsourcing.utils import get_topic

from clearing.audit.log import read_log
from clearing.domain.access import AccessToken
from clearing.domain.roles import token_digest

TOPICS = (get_topic(AccessToken.Issued), get_topic(AccessToken.Revoked))
PAGE = 1000


@dataclass
class TokenRecord:
    """One token as the log records it (never the secret)."""

    name: str
    role: str
    token_sha256: str
    issued_by: str
    issued_at: datetime
    issued_position: int
    revoked_by: str | None = None
    revoked_at: datetime | None = None
    revoked_position: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked_position is None

    def document(self) -> dict[str, Any]:
        """The token for ``tokens list`` and the API: everything but the digest."""
        return {"name": self.name, "role": self.role, "active": self.active, "issued_by": self.issued_by,
                "issued_at": self.issued_at.isoformat(), "issued_position": self.issued_position,
                "revoked_by": self.revoked_by,
                "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
                "revoked_position": self.revoked_position}


@dataclass
class TokenRegistry:
    """Every token issued in the log, kept up to date by ``refresh`` (thread-safe)."""

    app: Any
    by_name: dict[str, TokenRecord] = field(default_factory=dict)
    by_digest: dict[str, TokenRecord] = field(default_factory=dict)
    reached: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def refresh(self) -> None:
        """Read the token events after the last position read, up to the head."""
        head = self.app.recorder.max_notification_id() or 0
        if head <= self.reached:
            return
        with self._lock:
            if head <= self.reached:
                return
            for page in read_log(self.app.recorder, self.app.mapper, start=self.reached + 1, stop=head, page=PAGE,
                                 topics=TOPICS):
                for notification, event in page.decoded():
                    self._apply(notification.id, event)
            self.reached = head

    def _apply(self, position: int, event: Any) -> None:
        if isinstance(event, AccessToken.Issued):
            record = TokenRecord(event.name, event.role, event.token_sha256, event.issued_by, event.at, position)
            self.by_name[record.name] = record
            self.by_digest[record.token_sha256] = record
        elif isinstance(event, AccessToken.Revoked):
            revoked = self.by_name[event.name]
            revoked.revoked_by, revoked.revoked_at, revoked.revoked_position = event.revoked_by, event.at, position

    def lookup(self, secret: str) -> TokenRecord | None:
        """The token whose secret this is (revoked or not), after reading the log's new events."""
        self.refresh()
        return self.by_digest.get(token_digest(secret))

    def tokens(self) -> list[TokenRecord]:
        self.refresh()
        return sorted(self.by_name.values(), key=lambda record: record.issued_position)
