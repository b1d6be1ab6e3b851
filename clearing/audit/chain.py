"""A tamper-evident hash chain over the event log, its digest, and its verification.

Scheme ``sha256-v1``. Every event in the notification log gets a hash that covers the hash
of the event before it, so changing, deleting, inserting or reordering any stored event
changes every hash from there on::

    h(0) = GENESIS (32 zero bytes)
    h(n) = SHA-256( h(n-1) || field("sha256-v1") || field(originator_id, 16 bytes)
                    || field(originator_version, decimal ASCII) || field(topic, UTF-8)
                    || field(state, the stored bytes) )
    field(b) = len(b) as 8 bytes big-endian || b

Every field is length-prefixed, so no two different events serialise to the same bytes.
The log position (notification id) is deliberately *not* hashed: a log imported into
another store, where positions may be renumbered, keeps the same chain; order is still
covered because each hash covers the previous one.

A ``Digest`` (``sha256-v1:<position>:<events>:<head hex>``) is the head of the chain at
some position; saved somewhere the database cannot reach, it lets an auditor check later
that nothing at or before that position was altered. ``verify_chain`` recomputes the chain
from the log and compares it with a recorded chain and/or a digest, and checks that every
aggregate's versions run 1, 2, 3, ... in log order; it returns the first break found.

The log is read only through the library's recorder (``select_notifications``), a page
at a time, so memory stays flat apart from one integer per aggregate for the version check.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Notification

from clearing.audit.log import CheckFailed, LogPage, read_log
from clearing.errors import InputError

GENESIS: bytes = bytes(32)
SCHEME = "sha256-v1"
PAGE = 5000

HASH_MISMATCH = "hash_mismatch"
EVENT_MISSING = "event_missing"
EVENT_INSERTED = "event_inserted"
EVENT_UNCHAINED = "event_unchained"
VERSION_GAP = "version_gap"
DIGEST_MISMATCH = "digest_mismatch"
LOG_TRUNCATED = "log_truncated"

_LENGTH_BYTES = 8
_SCHEME_FIELD = len(SCHEME).to_bytes(_LENGTH_BYTES, "big") + SCHEME.encode("ascii")
_UUID_FIELD_PREFIX = (16).to_bytes(_LENGTH_BYTES, "big")
_HEX_HASH = re.compile(r"[0-9a-f]{64}")
_NUMBER = re.compile(r"0|[1-9][0-9]*")


def _length(size: int) -> bytes:
    """The length prefix of a field: 8 bytes, big-endian."""
    return size.to_bytes(_LENGTH_BYTES, "big")


def _uuid_bytes(originator_id: UUID | str) -> bytes:
    """The 16 bytes of an aggregate id (a UUID, or its text as a text-id store returns it)."""
    return (originator_id if isinstance(originator_id, UUID) else UUID(str(originator_id))).bytes


def event_hash(previous: bytes, originator_id: UUID, originator_version: int, topic: str, state: bytes) -> bytes:
    """The chain hash of one event: SHA-256 over the previous hash and the event's fields.

    Rule: the same previous hash and the same four stored fields always give the same 32
    bytes, and changing any one of them changes the hash. The log position is not hashed.
    """
    if len(previous) != len(GENESIS):
        raise ValueError(f"a previous hash is {len(GENESIS)} bytes, got {len(previous)}")
    version = str(int(originator_version)).encode("ascii")
    topic_bytes = topic.encode("utf-8")
    return hashlib.sha256(
        b"".join((
            previous,
            _SCHEME_FIELD,
            _UUID_FIELD_PREFIX,
            _uuid_bytes(originator_id),
            _length(len(version)),
            version,
            _length(len(topic_bytes)),
            topic_bytes,
            _length(len(state)),
            state,
        ))
    ).digest()


def notification_hash(previous: bytes, notification: Any) -> bytes:
    """``event_hash`` of a stored event or notification (anything with the four fields).

    The library always stores ``state`` as bytes. A row edited in SQLite with a text
    function (``replace(state, ...)``) comes back as ``str``; it is hashed as its UTF-8
    bytes, so the edit shows as a ``hash_mismatch`` at its position instead of a crash.
    """
    state = notification.state
    if isinstance(state, str):
        state = state.encode("utf-8")
    return event_hash(previous, notification.originator_id, notification.originator_version, notification.topic, state)


def iter_pages(recorder: Any, *, start: int = 1, page: int = PAGE) -> Iterator[Sequence[Notification]]:
    """The stored notifications from position ``start`` to the head, a page at a time
    (``clearing.audit.log.read_log`` without decoding)."""
    for log_page in read_log(recorder, start=start, page=page):
        yield log_page.notifications


def iter_links(
    recorder: Any, *, start: int = 1, previous: bytes = GENESIS, page: int = PAGE
) -> Iterator[tuple[Notification, bytes]]:
    """Every notification from ``start`` with its chain hash, in log order."""
    for notifications in iter_pages(recorder, start=start, page=page):
        for notification in notifications:
            previous = notification_hash(previous, notification)
            yield notification, previous


def iter_chain(
    recorder: Any, *, start: int = 1, previous: bytes = GENESIS, page: int = PAGE
) -> Iterator[tuple[int, bytes]]:
    """``(position, hash)`` for every notification from ``start``, in log order.

    Rule: the hash of the first event read covers ``previous``, which must be the hash of
    the event before ``start`` (GENESIS when starting at the beginning of the log).
    """
    for notification, link in iter_links(recorder, start=start, previous=previous, page=page):
        yield notification.id, link


@dataclass(frozen=True)
class Digest:
    """The head of the chain at ``position``, after ``events`` events.

    Rule: an empty log has position 0, 0 events and the GENESIS head; otherwise there is
    at least one event and no more events than positions (positions start at 1).
    """

    position: int
    events: int
    head: str
    scheme: str = SCHEME

    def to_text(self) -> str:
        """One line: ``sha256-v1:<position>:<events>:<head hex>``."""
        return f"{self.scheme}:{self.position}:{self.events}:{self.head}"

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Read ``to_text``'s form back; anything else is ``InputError("invalid_digest")``."""
        parts = text.strip().split(":")
        if len(parts) != 4:
            raise _bad_digest(f"expected {SCHEME}:<position>:<events>:<head>, got {text.strip()[:80]!r}")
        scheme, position, events, head = parts
        if scheme != SCHEME:
            raise _bad_digest(f"unknown digest scheme {scheme[:40]!r} (this ledger writes {SCHEME})")
        if not _NUMBER.fullmatch(position) or not _NUMBER.fullmatch(events):
            raise _bad_digest("position and event count must be non-negative integers without sign or leading zeros")
        if not _HEX_HASH.fullmatch(head):
            raise _bad_digest("the head must be 64 lowercase hexadecimal digits")
        digest = cls(int(position), int(events), head, scheme)
        problem = digest._inconsistency()
        if problem:
            raise _bad_digest(problem)
        return digest

    def _inconsistency(self) -> str | None:
        """Why these numbers cannot describe a log, or None."""
        if (self.events == 0) != (self.position == 0):
            return "a digest has no events exactly when its position is 0"
        if self.events > self.position:
            return f"{self.events} events cannot fit in positions 1..{self.position}"
        if self.events == 0 and self.head != GENESIS.hex():
            return "the digest of an empty log has the genesis head (64 zeros)"
        return None


def _bad_digest(message: str) -> InputError:
    return InputError("invalid_digest", "digest", message)


def digest(recorder: Any, *, page: int = PAGE) -> Digest:
    """The digest of the whole log: last position, event count and chain head."""
    position, events, head = 0, 0, GENESIS
    for notification, link in iter_links(recorder, page=page):
        position, head = notification.id, link
        events += 1
    return Digest(position, events, head.hex())


@dataclass(frozen=True)
class ChainBreak:
    """The first place where the log differs from its recorded chain or digest."""

    position: int
    code: str
    message: str

    def line(self) -> str:
        """How ``audit verify`` prints it."""
        return f"[{self.code}] at position {self.position}: {self.message}"


def verify_chain(
    recorder: Any,
    *,
    stored: Iterable[tuple[int, bytes]] | None = None,
    digest: Digest | None = None,
    progress: Callable[[int], None] | None = None,
    page: int = PAGE,
) -> ChainBreak | None:
    """Recompute the chain from event 1 and return the first break, or None.

    Rules, checked in log order, the first break found wins:

    * ``stored`` (a recorded chain of ``(position, hash)`` in position order), compared
      in lockstep: a different hash at p is ``hash_mismatch`` (changed or reordered); a
      recorded p absent from the log is ``event_missing`` (deleted); a log position not
      recorded but before the last recorded one is ``event_inserted``; log positions after
      the last recorded one are ``event_unchained`` (appended since the chain was extended).
    * every aggregate's versions run 1, 2, 3, ... in log order, else ``version_gap`` at the
      first event out of sequence (an event deleted, duplicated or reordered before it).
    * ``digest``: the chain has an event at ``digest.position``, with ``digest.events``
      events up to it and ``digest.head`` as its hash, else ``digest_mismatch`` at the
      digest position, or ``log_truncated`` (at the first position after the log's last
      event) when the log ends before it. Events after the digest position are not its
      concern. When ``stored`` is also given its exact position is preferred.

    ``progress`` is called after each page with the number of events checked so far.
    """
    check = _Verification(stored, digest)
    checked = 0
    for notifications in iter_pages(recorder, page=page):
        for notification in notifications:
            found = check.event(notification)
            if found is not None:
                return found
        checked += len(notifications)
        if progress is not None:
            progress(checked)
    return check.end()


class ChainCheck:
    """``verify_chain`` as a consumer of the one read of the log (``audit verify``'s ``chain``)."""

    name = "chain"

    def __init__(self, stored: Iterable[tuple[int, bytes]] | None, digest: Digest | None) -> None:
        self._check = _Verification(stored, digest)

    def consume(self, page: LogPage) -> None:
        check = self._check
        for notification in page.notifications:
            found = check.event(notification)
            if found is not None:
                raise CheckFailed(found.line())

    def finish(self, head: int) -> str:
        found = self._check.end()
        if found is not None:
            raise CheckFailed(found.line())
        check = self._check
        return f"{check.events} events, head {check.head.hex()[:16]}... at position {check.last_position}"


class _RecordedChain:
    """The recorded chain, read one entry ahead so the merge can look at the next one."""

    def __init__(self, stored: Iterable[tuple[int, Any]]) -> None:
        self._entries = iter(stored)
        self.last_position = 0
        self.next: tuple[int, bytes] | None = None
        self.advance()

    def advance(self) -> None:
        """Move to the next recorded entry; positions must strictly increase."""
        entry = next(self._entries, None)
        if entry is None:
            self.next = None
            return
        position, link = int(entry[0]), _as_hash(entry[1])
        if position <= self.last_position:
            raise ValueError(f"the recorded chain is not in position order at position {position}")
        self.last_position = position
        self.next = (position, link)


def _as_hash(value: Any) -> bytes:
    """A recorded hash as bytes (a projection may keep bytes, memoryview or hex text)."""
    return bytes.fromhex(value) if isinstance(value, str) else bytes(value)


class _Verification:
    """State of one ``verify_chain`` walk: the recorded chain, versions, digest progress."""

    def __init__(self, stored: Iterable[tuple[int, Any]] | None, digest: Digest | None) -> None:
        self.recorded = _RecordedChain(stored) if stored is not None else None
        self.digest = digest
        self.digest_settled = digest is None or digest.events == 0
        self.versions: dict[Any, int] = {}
        self.head = GENESIS
        self.events = 0
        self.last_position = 0

    def event(self, notification: Notification) -> ChainBreak | None:
        """Check the next event of the log; breaks before its position come first."""
        position = notification.id
        if self._something_before(position):
            return self._first(self._recorded_missing_before(position), self._digest_passed(position))
        self.head = notification_hash(self.head, notification)
        self.events += 1
        self.last_position = position
        return (
            self._against_recorded(position)
            or self._version_in_sequence(notification)
            or self._digest_reached(position)
        )

    def end(self) -> ChainBreak | None:
        """After the last event: recorded entries left over, or a digest never reached."""
        if self.recorded is not None and self.recorded.next is not None:
            return self._missing(self.recorded.next[0])
        if self.digest_settled:
            return None
        assert self.digest is not None
        return ChainBreak(
            self.last_position + 1,
            LOG_TRUNCATED,
            f"the log ends at position {self.last_position} after {self.events} events; the digest covers "
            f"{self.digest.events} events up to position {self.digest.position}",
        )

    def _something_before(self, position: int) -> bool:
        """Is a recorded entry or the digest position behind this log position? (a fast test)"""
        recorded = self.recorded
        if recorded is not None and recorded.next is not None and recorded.next[0] < position:
            return True
        return not self.digest_settled and self.digest is not None and position > self.digest.position

    @staticmethod
    def _first(*breaks: ChainBreak | None) -> ChainBreak | None:
        """The break at the smallest position (the first given wins a tie)."""
        found = [brk for brk in breaks if brk is not None]
        return min(found, key=lambda brk: brk.position) if found else None

    # -- the recorded chain --------------------------------------------------------------

    def _recorded_missing_before(self, position: int) -> ChainBreak | None:
        """A recorded entry before this log position means the log lost that event."""
        if self.recorded is None or self.recorded.next is None or self.recorded.next[0] >= position:
            return None
        return self._missing(self.recorded.next[0])

    @staticmethod
    def _missing(position: int) -> ChainBreak:
        return ChainBreak(position, EVENT_MISSING, f"the recorded chain has an event at position {position} "
                                                   "that is not in the log (deleted)")

    def _against_recorded(self, position: int) -> ChainBreak | None:
        """Same position, same hash; or say how the log and the recorded chain differ."""
        if self.recorded is None:
            return None
        entry = self.recorded.next
        if entry is None:
            return ChainBreak(position, EVENT_UNCHAINED, f"the log has events from position {position} on that were "
                              f"appended after the recorded chain (last position {self.recorded.last_position})")
        if entry[0] > position:
            return ChainBreak(position, EVENT_INSERTED, f"the log has an event at position {position} that the recorded "
                              f"chain does not (inserted; the recorded chain continues at position {entry[0]})")
        self.recorded.advance()
        if entry[1] != self.head:
            return ChainBreak(position, HASH_MISMATCH, f"expected {entry[1].hex()} got {self.head.hex()} at position "
                              f"{position}: the event there, or one before it, was changed or reordered")
        return None

    # -- aggregate versions --------------------------------------------------------------

    def _version_in_sequence(self, notification: Notification) -> ChainBreak | None:
        """Each aggregate's first event has version 1 and each next one the version after."""
        key = notification.originator_id
        slot = key.int if isinstance(key, UUID) else key  # an int key: smaller, and hashed in C
        previous = self.versions.get(slot)
        expected = Aggregate.INITIAL_VERSION if previous is None else previous + 1
        version = notification.originator_version
        self.versions[slot] = version
        if version == expected:
            return None
        after = "as its first event" if previous is None else f"after version {previous}"
        return ChainBreak(notification.id, VERSION_GAP, f"aggregate {key} has version {version} at position "
                          f"{notification.id} {after} (expected {expected}): an event was deleted, duplicated, "
                          "changed or reordered")

    # -- the digest ----------------------------------------------------------------------

    def _digest_passed(self, position: int) -> ChainBreak | None:
        """The log skipped past the digest position: the event the digest ends on is gone."""
        if self.digest_settled or self.digest is None or position <= self.digest.position:
            return None
        self.digest_settled = True
        return ChainBreak(self.digest.position, DIGEST_MISMATCH, f"the digest ends on position {self.digest.position} "
                          f"but the log has no event there (it goes from {self.last_position} to {position})")

    def _digest_reached(self, position: int) -> ChainBreak | None:
        """At the digest position the event count and the head must be the digest's."""
        if self.digest_settled or self.digest is None or position != self.digest.position:
            return None
        self.digest_settled = True
        if self.events != self.digest.events:
            return ChainBreak(position, DIGEST_MISMATCH, f"the log has {self.events} events up to position {position}, "
                              f"the digest {self.digest.events}: events were inserted or deleted")
        if self.head.hex() != self.digest.head:
            return ChainBreak(position, DIGEST_MISMATCH, f"expected {self.digest.head} got {self.head.hex()} at "
                              f"position {position}: an event at or before it was changed or reordered")
        return None
