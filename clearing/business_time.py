"""Bounds on business time: no accepted ``at`` can make any later computation fail.

Business time arrives in commands (the domain never reads the clock), so it is checked at
the boundary, in three steps, each with its own error code:

* ``time_out_of_range``: every time field (``at``, ``expiry``) lies in
  [1970-01-01, 2200-01-01) UTC, so adding the longest grace period or window to it, or
  subtracting one, stays representable (``9999-12-31T23:59:59Z`` plus one hour raises
  ``OverflowError`` in Python; ``0001-01-01T00:00:00+01:00`` cannot even be converted to UTC);
* ``time_in_future``: ``at`` is at most ``max_future_skew`` (default 300 s) after the
  stamping clock, so a typo such as ``2205-10-10`` cannot freeze a market's price feed;
* ``time_before_log``: ``at`` is at most ``max_backdate`` (default 1 day) before the
  log's watermark (the greatest ``at`` of any command answered so far). This one depends on
  the log, so the application records it as the id's final answer.

Example: with the clock at 2026-12-01T12:00:00Z and the watermark at 2026-12-01T11:59:00Z,
``2026-12-01T12:04:59Z`` and ``2026-11-30T12:00:00Z`` are accepted;
``2026-12-01T12:05:01Z`` is ``time_in_future`` and ``2026-11-30T11:58:59Z`` is
``time_before_log``. Both limits are set in seconds by ``CLEARING_MAX_FUTURE_SKEW`` and
``CLEARING_MAX_BACKDATE``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from clearing.errors import InputError

TIME_MIN = datetime(1970, 1, 1, tzinfo=UTC)
TIME_MAX = datetime(2200, 1, 1, tzinfo=UTC)
FUTURE_SKEW_VAR = "CLEARING_MAX_FUTURE_SKEW"
BACKDATE_VAR = "CLEARING_MAX_BACKDATE"
DEFAULT_FUTURE_SKEW_SECONDS = 300
DEFAULT_BACKDATE_SECONDS = 86_400
MAX_LIMIT_SECONDS = 100 * 365 * 86_400


@dataclass(frozen=True)
class TimeLimits:
    """How far ``at`` may lie after the clock and before the log's watermark."""

    max_future_skew: timedelta = timedelta(seconds=DEFAULT_FUTURE_SKEW_SECONDS)
    max_backdate: timedelta = timedelta(seconds=DEFAULT_BACKDATE_SECONDS)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> TimeLimits:
        return cls(
            timedelta(seconds=_seconds(environ, FUTURE_SKEW_VAR, DEFAULT_FUTURE_SKEW_SECONDS)),
            timedelta(seconds=_seconds(environ, BACKDATE_VAR, DEFAULT_BACKDATE_SECONDS)),
        )


def _seconds(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) > MAX_LIMIT_SECONDS:
        raise InputError("invalid_setting", name,
                         f"{name} must be a whole number of seconds up to {MAX_LIMIT_SECONDS}, got {raw[:40]!r}")
    return int(raw)


def in_range(value: datetime) -> bool:
    """True when ``value`` (aware, UTC) lies in [TIME_MIN, TIME_MAX)."""
    return TIME_MIN <= value < TIME_MAX


def check_not_future(at: datetime, now: datetime, limits: TimeLimits) -> None:
    """Refuse ``at`` later than the stamping clock by more than the skew."""
    if at > now + limits.max_future_skew:
        raise InputError(
            "time_in_future",
            "at",
            f"at {at.isoformat()} is more than {int(limits.max_future_skew.total_seconds())} s after "
            f"the clock ({now.isoformat()}); see {FUTURE_SKEW_VAR}",
        )


def check_not_backdated(at: datetime, watermark: datetime | None, limits: TimeLimits) -> None:
    """Refuse ``at`` earlier than the log's watermark by more than the allowance."""
    if watermark is not None and at < watermark - limits.max_backdate:
        raise InputError(
            "time_before_log",
            "at",
            f"at {at.isoformat()} is more than {int(limits.max_backdate.total_seconds())} s before "
            f"the log's latest business time ({watermark.isoformat()}); see {BACKDATE_VAR}",
        )
