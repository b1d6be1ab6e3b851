"""Export the event log to a verifiable JSON Lines file, and import such a file into a store.

The file (format ``clearing-event-log``, version 1) is one JSON object per line, ASCII
only, no spaces, keys in a fixed order, ``\\n`` line ends, so the same log always exports
to the same bytes::

    {"format":"clearing-event-log","version":1,"scheme":"sha256-v1"}
    {"position":1,"originator_id":"<uuid>","originator_version":1,"topic":"...","state":"...","hash":"<hex>"}
    ...
    {"events":N,"head":"<hex>","position":<last position>}

``state`` is the stored state (JSON written by orjson) as text; ``hash`` is the event's
link in the ``sha256-v1`` chain (``clearing.audit.chain``), so the file carries its own proof.

Import checks the *whole* file first (header, every line's hash recomputed from its
fields and the previous hash, the trailer's count and head) and writes nothing unless it
all holds. It then inserts the events through the library's own
``recorder.insert_events``, one transaction per batch, with the batch's rows of the command
index (``clearing.command_index``), which the file does not carry: they are derived from
its events. The target store must be empty or
hold exactly a prefix of the file (an interrupted import), which is then continued.
Positions are assigned by the target store; the chain does not depend on them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from uuid import UUID

import orjson
from eventsourcing.persistence import StoredEvent

from clearing.audit.chain import GENESIS, PAGE, SCHEME, Digest, digest, iter_pages, notification_hash
from clearing.command_index import COMMANDS_KWARG, INDEXED_TOPICS, ensure_built, index_rows
from clearing.errors import InputError

FORMAT = "clearing-event-log"
VERSION = 1
BATCH = 5000

HEADER_KEYS = ("format", "version", "scheme")
EVENT_KEYS = ("position", "originator_id", "originator_version", "topic", "state", "hash")
TRAILER_KEYS = ("events", "head", "position")

Progress = Callable[[str, int], None]


# -- export -----------------------------------------------------------------------------


def export_log(
    recorder: Any, out: TextIO, *, progress: Callable[[int], None] | None = None, page: int = PAGE
) -> Digest:
    """Write the whole log to ``out`` as JSON Lines and return its digest.

    Rule: header, one line per event in log order with its chain hash, then a trailer
    with the count, head and last position; the bytes depend only on the log.
    ``progress`` is called after each page with the number of events written.
    """
    out.write(_line({"format": FORMAT, "version": VERSION, "scheme": SCHEME}))
    position, events, head = 0, 0, GENESIS
    for notifications in iter_pages(recorder, page=page):
        lines = []
        for notification in notifications:
            head = notification_hash(head, notification)
            lines.append(_line(_event_object(notification, head)))
        out.write("".join(lines))
        position = notifications[-1].id
        events += len(notifications)
        if progress is not None:
            progress(events)
    out.write(_line({"events": events, "head": head.hex(), "position": position}))
    return Digest(position, events, head.hex())


def _line(obj: dict[str, Any]) -> str:
    """One line of the file: compact ASCII JSON, keys in the order given, then ``\\n``."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True) + "\n"


def _event_object(notification: Any, link: bytes) -> dict[str, Any]:
    return {
        "position": notification.id,
        "originator_id": str(notification.originator_id),
        "originator_version": notification.originator_version,
        "topic": notification.topic,
        "state": _state_text(notification),
        "hash": link.hex(),
    }


def _state_text(notification: Any) -> str:
    """The stored state as text; only UTF-8 (JSON) states can be exported losslessly."""
    try:
        return bytes(notification.state).decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(
            "export_state_not_text",
            "state",
            f"the event at position {notification.id} has a state that is not UTF-8 text "
            "(a compressed or encrypted store?); this export format carries JSON states only",
        ) from None


# -- import: reading and checking the file ------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """One verified event line of the file."""

    line: int
    index: int  # 1-based count of events in the file
    position: int
    event: StoredEvent
    link: bytes


def _read_file(path: Path) -> Iterator[_Entry]:
    """Every event of the file, each checked against the chain; raises on the first problem.

    Rule: a header first; each event's hash follows from its fields and the previous
    hash; positions increase; a trailer last whose count, head and position are the
    file's; nothing after it. The generator only finishes if the whole file holds.
    """
    with path.open("rb") as lines:
        number, index, head, position = 0, 0, GENESIS, 0
        for number, raw in enumerate(lines, start=1):
            obj = _parse(raw, number)
            if number == 1:
                _check_header(obj, number)
            elif tuple(obj) == TRAILER_KEYS:
                _check_trailer(obj, number, index, head, position)
                if next(lines, None) is not None:
                    raise _malformed(number + 1, "nothing may follow the trailer")
                return
            else:
                entry = _entry(obj, number, index + 1, head, position)
                index, head, position = entry.index, entry.link, entry.position
                yield entry
        if number == 0:
            raise _malformed(1, "the file is empty")
        raise InputError("import_chain_broken", f"line {number + 1}", "the file ends without a trailer (truncated?)")


def _parse(raw: bytes, number: int) -> dict[str, Any]:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise _malformed(number, f"not valid JSON or not UTF-8: {error}") from None
    if not isinstance(obj, dict):
        raise _malformed(number, "not a JSON object")
    return obj


def _malformed(number: int, message: str) -> InputError:
    return InputError("import_malformed", f"line {number}", message)


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _check_header(obj: dict[str, Any], number: int) -> None:
    """The first line names the format, its version and the chain scheme."""
    if tuple(obj) != HEADER_KEYS or obj["format"] != FORMAT:
        raise _malformed(number, f'expected the header {{"format":"{FORMAT}",...}}: not an exported event log')
    if not (_is_count(obj["version"]) and obj["version"] == VERSION and obj["scheme"] == SCHEME):
        raise InputError("import_unsupported", f"line {number}", f"format version {obj['version']!r} with scheme "
                         f"{obj['scheme']!r}; this ledger reads version {VERSION} with {SCHEME}")


def _entry(obj: dict[str, Any], number: int, index: int, previous: bytes, last_position: int) -> _Entry:
    """Check one event line: its hash follows from its fields and the previous hash."""
    event = _stored_event(obj, number)
    link = notification_hash(previous, event)
    if link.hex() != obj["hash"]:
        raise InputError("import_chain_broken", f"line {number}", f"expected {obj['hash']} got {link.hex()} for the "
                         f"event at position {obj['position']}: it, or an event before it, was changed, removed or "
                         "moved")
    if obj["position"] <= last_position:
        raise InputError("import_chain_broken", f"line {number}",
                         f"position {obj['position']} does not follow position {last_position}")
    return _Entry(number, index, obj["position"], event, link)


def _stored_event(obj: dict[str, Any], number: int) -> StoredEvent:
    """The library's ``StoredEvent`` from an event line whose fields have the right types."""
    if tuple(obj) != EVENT_KEYS:
        raise _malformed(number, f"an event has exactly the keys {', '.join(EVENT_KEYS)}, in that order")
    for key in ("position", "originator_version"):
        if not _is_count(obj[key]) or obj[key] == 0:
            raise _malformed(number, f"{key} must be a positive integer")
    for key in ("originator_id", "topic", "state", "hash"):
        if not isinstance(obj[key], str):
            raise _malformed(number, f"{key} must be a string")
    try:
        originator_id = UUID(obj["originator_id"])
    except ValueError:
        raise _malformed(number, "originator_id must be a UUID") from None
    return StoredEvent(originator_id, obj["originator_version"], obj["topic"], obj["state"].encode("utf-8"))


def _check_trailer(obj: dict[str, Any], number: int, events: int, head: bytes, position: int) -> None:
    """The last line repeats the file's event count, chain head and last position."""
    found = (obj["events"], obj["head"], obj["position"])
    if not (_is_count(found[0]) and _is_count(found[2])) or found != (events, head.hex(), position):
        raise InputError("import_chain_broken", f"line {number}", f"the trailer says {found[0]!r} events ending in "
                         f"{found[1]!r} at position {found[2]!r}; the file has {events} ending in {head.hex()} at "
                         f"position {position}")


@dataclass(frozen=True)
class _FileChain:
    """What the first pass learned: the file's digest and its links at batch ends."""

    digest: Digest
    links: dict[int, bytes]


def _verify_file(path: Path, keep: Callable[[int], bool], progress: Progress | None) -> _FileChain:
    """First pass: check the whole file; keep the link after each event count ``keep`` picks."""
    links = {0: GENESIS}
    index, head, position = 0, GENESIS, 0
    for entry in _read_file(path):
        index, head, position = entry.index, entry.link, entry.position
        if keep(index):
            links[index] = head
        if progress is not None and index % PAGE == 0:
            progress("verified", index)
    links[index] = head
    if progress is not None:
        progress("verified", index)
    return _FileChain(Digest(position, index, head.hex()), links)


# -- import: writing ------------------------------------------------------------------------


def import_log(app: Any, path: Path, *, progress: Progress | None = None, batch: int = BATCH) -> Digest:
    """Import an exported log file into ``app``'s store; return the store's digest after it.

    Rules: nothing is written unless the whole file verifies and the store is empty or
    holds exactly the file's first events (then the import continues after them); events
    go in through ``app.recorder.insert_events``, one transaction per ``batch`` events,
    and each batch is written only if it is what the first pass verified. The file is
    read twice, so it is a path, not a stream. ``progress(stage, count)`` is told the
    events "verified", then the events "imported".
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    recorder = app.recorder
    present = digest(recorder)
    skip = present.events
    plan = _verify_file(path, lambda index: index == skip or index % batch == 0, progress)
    _check_prefix(present, plan)
    if skip == plan.digest.events:
        return present
    ensure_built(app)  # an empty store's marker, or the index of a prefix written before it
    last_position = _insert(recorder, app.mapper, path, plan, skip, batch, progress)
    return Digest(last_position, plan.digest.events, plan.digest.head)


def _check_prefix(present: Digest, plan: _FileChain) -> None:
    """The store must be empty or hold exactly the file's first events, else refuse."""
    link = plan.links.get(present.events)
    if link is None or link.hex() != present.head:
        raise InputError(
            "store_not_empty",
            "db",
            f"the target store already has {present.events} events that are not the first {present.events} events "
            "of this file; import into an empty store",
        )


def _insert(recorder: Any, mapper: Any, path: Path, plan: _FileChain, skip: int, batch: int,
            progress: Progress | None) -> int:
    """Second pass: insert the events after the first ``skip``, batch by batch, each with
    its rows of the command index (derived from its events, as a save derives them)."""
    pending: list[StoredEvent] = []
    last_position = 0
    for entry in _reread(path):
        if entry.index <= skip:
            continue
        pending.append(entry.event)
        if entry.index % batch == 0 or entry.index == plan.digest.events:
            _same_as_first_pass(plan, entry)
            rows = index_rows(mapper.to_domain_event(event) for event in pending if event.topic in INDEXED_TOPICS)
            ids = recorder.insert_events(pending, **{COMMANDS_KWARG: rows})
            last_position = ids[-1] if ids else (recorder.max_notification_id() or 0)
            pending = []
            if progress is not None:
                progress("imported", entry.index)
    return last_position


def _reread(path: Path) -> Iterator[_Entry]:
    """The file again; after a clean first pass, any problem means it changed meanwhile."""
    try:
        yield from _read_file(path)
    except InputError as error:
        raise InputError("import_file_changed", error.field, "the file changed while it was being imported "
                         f"({error.message}); the batches before this one were imported, run the import again") from None


def _same_as_first_pass(plan: _FileChain, entry: _Entry) -> None:
    """A batch is written only if its last link is the one the first pass verified.

    The chain is cumulative, so an equal link proves every event up to it is the same
    as what was checked, even if the file was changed between the two passes.
    """
    if plan.links.get(entry.index) != entry.link:
        raise InputError("import_file_changed", f"line {entry.line}",
                         "the file changed while it was being imported; the batches before this one were imported, "
                         "run the import again")
