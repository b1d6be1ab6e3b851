"""One error contract for the whole command line: a line, a code, an exit status.

Every failure is printed as ``error: [code] message`` on standard error (a JSON object
``{"error": {"code", "field", "message"}}`` when the command was given ``--json``), never as
a traceback unless ``--debug`` (or ``CLEARING_DEBUG=1``) asks for one, and the process exits
with the status of its kind:

==== =====================================================================
0    done: every command applied (or already applied)
1    a command was rejected (now or before), or a query's input was refused
2    usage: an unknown option, a bad argument, a bad --db
3    the store is unreachable or unusable (and files that cannot be read or written)
4    audit verification failed
5    the store kept refusing a batch: conflict retries exhausted
70   an internal error: a bug (run again with --debug and report the traceback)
130  interrupted (Ctrl-C)
==== =====================================================================

``Failure`` is a ``click.ClickException`` with those codes, so click prints it and exits;
``LazyGroup.invoke`` (``cli.main``) turns every other exception into one. A password in a
message (a ``postgresql://user:secret@`` URL, ``password=...``) is replaced by ``***``.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import sys
import traceback
from typing import IO, Any

import click

from clearing.errors import ClearingError, ConflictError, StoreError

DONE, REJECTED, USAGE, STORE, VERIFY_FAILED, RETRIES_EXHAUSTED, INTERNAL, INTERRUPTED = 0, 1, 2, 3, 4, 5, 70, 130
EXIT_CODES = {
    DONE: "done: every command applied (or already applied)",
    REJECTED: "a command was rejected (now or before), or a query's input was refused",
    USAGE: "usage: an unknown option, a bad argument, a bad --db",
    STORE: "the store is unreachable or unusable, or a file cannot be read or written",
    VERIFY_FAILED: "audit verification failed",
    RETRIES_EXHAUSTED: "the store kept refusing a batch: conflict retries exhausted",
    INTERNAL: "an internal error: a bug (run again with --debug and report the traceback)",
    INTERRUPTED: "interrupted (Ctrl-C)",
}
DEBUG_VAR = "CLEARING_DEBUG"
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*):[^@\s]*@", re.IGNORECASE)
_KEY_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\"[^\"]*\"|\S+)", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every password replaced by ``***``.

    >>> redact("cannot connect to postgresql://alice:s3cret@db:5432/ledger")
    'cannot connect to postgresql://alice:***@db:5432/ledger'
    >>> redact("host=db password=s3cret user=alice")
    'host=db password=*** user=alice'
    """
    return _KEY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1:***@", text))


class Failure(click.ClickException):
    """A failure with its code and exit status, printed as the contract above says."""

    def __init__(self, code: str, message: str, exit_code: int, field: str | None = None) -> None:
        super().__init__(redact(" ".join(message.split())))
        self.code = code
        self.field = field
        self.exit_code = exit_code
        self.as_json = _json_wanted()  # decided where it is raised, while the command's context is current

    @classmethod
    def of(cls, error: ClearingError, exit_code: int | None = None) -> Failure:
        """A ledger error as a failure; its exit status from its kind unless given."""
        return cls(error.code, error.message, exit_code if exit_code is not None else exit_code_of(error), error.field)

    def show(self, file: IO[Any] | None = None) -> None:
        if self.as_json:
            document = {"error": {"code": self.code, "field": self.field, "message": self.message}}
            click.echo(json.dumps(document, ensure_ascii=False), err=True)
        else:
            click.echo(f"error: [{self.code}] {self.message}", err=True)


#: projection codes that say the store's read side cannot be used (the others refuse an argument)
UNUSABLE_PROJECTIONS = frozenset({"projection_missing", "projection_behind", "projection_outdated",
                                  "projection_not_committed", "follower_running"})


def exit_code_of(error: ClearingError) -> int:
    if isinstance(error, StoreError) or error.code in UNUSABLE_PROJECTIONS:
        return STORE
    if isinstance(error, ConflictError) and error.code == "retries_exhausted":
        return RETRIES_EXHAUSTED
    return REJECTED


def failure_of(error: BaseException) -> Failure:
    """Any exception a command let out, as a ``Failure`` (``--debug`` prints its traceback first)."""
    if debugging():
        traceback.print_exception(error)
    if isinstance(error, KeyboardInterrupt):
        return Failure("interrupted", "interrupted; every batch already reported is committed, the rest was not "
                                      "written (post the same input again to finish)", INTERRUPTED)
    if isinstance(error, ClearingError):
        return Failure.of(error)
    if _is_store_error(error):
        return Failure("store_failed", f"the event store failed: {first_line(error)}", STORE)
    if isinstance(error, UnicodeDecodeError):
        return Failure("invalid_utf8", f"input is not UTF-8 text: {first_line(error)}", REJECTED)
    if isinstance(error, OSError):
        return Failure("io_failed", first_line(error), STORE)
    return Failure("internal_error", f"{type(error).__name__}: {first_line(error)} (a bug: run again with --debug "
                                     "for the traceback and report it)", INTERNAL)


def _is_store_error(error: BaseException) -> bool:
    from eventsourcing.persistence import PersistenceError

    if isinstance(error, PersistenceError | sqlite3.Error):
        return True
    names = {f"{cls.__module__}.{cls.__name__}" for cls in type(error).__mro__}
    return any(name.startswith(("sqlalchemy.exc.", "psycopg.", "psycopg_pool.")) for name in names)


def first_line(error: BaseException) -> str:
    """The first line of the exception's message (its class name when it has none)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def debugging() -> bool:
    context = click.get_current_context(silent=True)
    root = context.find_root() if context is not None else None
    return bool(root is not None and root.meta.get("debug")) or os.environ.get(DEBUG_VAR, "") not in ("", "0")


def _json_wanted() -> bool:
    """Whether the command being run was given ``--json`` (``report``: ``--format json``); from
    its context while one is current, else from the arguments."""
    context = click.get_current_context(silent=True)
    while context is not None:
        if context.params.get("as_json") or context.params.get("output_format") == "json":
            return True
        context = context.parent
    return "--json" in sys.argv[1:]
