"""The posting pipeline shared by ``clearing post``, the subcommands, the demo and bench.

Lines are parsed and validated one by one, stamped with the current time at the boundary
when they carry no ``at`` (the domain never reads the clock), grouped into batches and
executed; outcomes come back in line order, each only after its batch has committed.
Blank lines and lines starting with ``#`` are skipped, so scenario scripts can be commented.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

from clearing.application import ClearingApplication, Envelope, Outcome
from clearing.business_time import check_not_future
from clearing.commands import Command, parse_line
from clearing.errors import InputError
from clearing.settings import DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE


def utc_now() -> datetime:
    return datetime.now(UTC)


def post_lines(
    app: ClearingApplication,
    lines: Iterable[str],
    batch_size: int = DEFAULT_BATCH_SIZE,
    clock: Callable[[], datetime] = utc_now,
    operator: str = "",
    now: Callable[[], datetime] = utc_now,
) -> Iterator[Outcome]:
    """Post JSON Lines commands; yields one outcome per command line, in order.

    ``clock`` stamps lines without ``at``; ``now`` is the real clock that a given ``at``
    may not run ahead of by more than the application's ``max_future_skew`` (the two are
    the same clock in production; tests replay fixed times with a fake ``clock``).
    ``operator`` is recorded on every command. Projections are not touched here: the
    command line leaves them to ``--sync`` at the end or to ``projections follow`` (ADR 22).
    """
    assert 1 <= batch_size <= MAX_BATCH_SIZE
    pending: list[Envelope | Outcome] = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        pending.append(_envelope(app, text, number, clock, now, operator))
        if len(pending) >= batch_size:
            yield from _flush(app, pending)
            pending = []
    if pending:
        yield from _flush(app, pending)


def post_commands(
    app: ClearingApplication,
    commands: Iterable[Command],
    clock: Callable[[], datetime] = utc_now,
    operator: str = "",
    now: Callable[[], datetime] = utc_now,
) -> list[Outcome]:
    """Post already validated commands (the terminal subcommands build these) as one batch."""
    envelopes: list[Envelope] = []
    refused: list[Outcome] = []
    for command in commands:
        try:
            envelopes.append(_stamped(app, command, None, clock, now, operator))
        except InputError as error:
            refused.append(Outcome.rejected(error, command.id, command.type, None))
    return [*refused, *(app.execute(envelopes) if envelopes else [])]


def _envelope(
    app: ClearingApplication, text: str, number: int, clock: Callable[[], datetime], now: Callable[[], datetime], operator: str
) -> Envelope | Outcome:
    try:
        return _stamped(app, parse_line(text), number, clock, now, operator)
    except InputError as error:
        return Outcome.rejected(error, *_best_effort_id_and_type(text), number)


def _stamped(
    app: ClearingApplication, command: Command, number: int | None, clock: Callable[[], datetime],
    now: Callable[[], datetime], operator: str,
) -> Envelope:
    """The command with its effective business time; a given ``at`` must not be in the future."""
    if command.at is None:
        return Envelope(command, clock(), number, operator)
    check_not_future(command.at, now(), app.time_limits)
    return Envelope(command, command.at, number, operator)


def _flush(app: ClearingApplication, pending: list[Envelope | Outcome]) -> Iterator[Outcome]:
    envelopes = [item for item in pending if isinstance(item, Envelope)]
    executed = iter(app.execute(envelopes)) if envelopes else iter(())
    for item in pending:
        yield item if isinstance(item, Outcome) else next(executed)


def _best_effort_id_and_type(text: str) -> tuple[str, str]:
    """The id and type of a line that failed validation, for its result line ("?" if unknown)."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):
        return "?", "?"
    if not isinstance(raw, dict):
        return "?", "?"
    return _text_or_unknown(raw.get("id")), _text_or_unknown(raw.get("type"))


def _text_or_unknown(value: object) -> str:
    return value[:128] if isinstance(value, str) else "?"
