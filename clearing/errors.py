"""One small typed hierarchy of ledger errors.

Every rejection carries a stable machine ``code`` (the catalogue in
``tests/unit/test_bad_input_catalogue.py`` and ``docs/errors.md``), the ``field`` of the
command it is about, and a one-line human message. A rejected command writes nothing.
"""

from __future__ import annotations


class ClearingError(Exception):
    """A command was rejected. Nothing was written."""

    def __init__(self, code: str, field: str | None, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        text = " ".join(message.split())  # always one line
        self.message = f"{field}: {text}" if field and field not in text else text

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class InputError(ClearingError):
    """The command itself is malformed: wrong shape, type or number format."""


class NotFoundError(ClearingError):
    """The command names an account or market that does not exist."""


class RuleError(ClearingError):
    """The command is well formed but breaks a ledger rule given the current state."""


class ConflictError(ClearingError):
    """The command id was used before with different content, or retries ran out."""


class InvariantViolation(AssertionError):
    """A ledger invariant does not hold. Never caught: it means a bug, so stop."""
