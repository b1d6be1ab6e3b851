"""One setting chooses the event store: a file path (SQLite) or a ``postgresql://`` URL.

``--db`` on the command line, else ``CLEARING_DB``, else ``clearing.db`` in the current
directory. The value is turned into the eventsourcing library's own environment keys
(``PERSISTENCE_MODULE``, ``SQLITE_DBNAME`` or ``POSTGRES_*``); nothing else is configured
by hand. ``postgresql://user:secret@host:5432/db?schema=clearing`` selects a schema.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from clearing.errors import InputError, StoreError

DEFAULT_BATCH_SIZE = 1000  # commands committed per transaction by `clearing post`
MAX_BATCH_SIZE = 100_000

DEFAULT_DB = "clearing.db"
SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")  # a PostgreSQL identifier that needs no quoting
ENV_VAR = "CLEARING_DB"
OPERATOR_VAR = "CLEARING_OPERATOR"
DEFAULT_OPERATOR = "operator"


def resolve_db(option: str | None) -> str:
    return option or os.environ.get(ENV_VAR) or DEFAULT_DB


def resolve_operator(option: str | None) -> str:
    """Who posts: ``--as``, else ``CLEARING_OPERATOR``, else the login name.

    Until roles and credentials exist this is a declared identity, recorded on every
    command; an ``approve`` must name it as the approving officer.
    """
    from clearing.commands import NAME_PATTERN

    name = option or os.environ.get(OPERATOR_VAR) or _login_name()
    if not NAME_PATTERN.match(name):
        raise InputError("invalid_operator", "as", f"operator {name[:64]!r} must be a name (letters, digits, _ . : @ -)")
    return name


def _login_name() -> str:
    import getpass

    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no login name in a container without a passwd entry
        return DEFAULT_OPERATOR
    from clearing.commands import NAME_PATTERN

    return name if NAME_PATTERN.match(name) else DEFAULT_OPERATOR


def is_postgres(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def store_env(db: str, read_only: bool = False) -> dict[str, str]:
    """Environment for the eventsourcing application from the one ``db`` setting.

    ``read_only``: for a command that only reads. No table is created (the library's
    ``CREATE_TABLE=n``) and an SQLite file is opened read-only (``sqlite_read_uri``), so a
    read works on an auditor's read-only copy and can never change the store.
    """
    if is_postgres(db):
        env = _postgres_env(db)
        if read_only:
            env["CREATE_TABLE"] = "n"
        return env
    if db.startswith(("sqlite:", "file:")) and db != ":memory:":
        raise InputError("invalid_db", "db", "give SQLite as a plain file path, not a URL")
    if db != ":memory:":
        parent = Path(db).expanduser().resolve().parent
        if not parent.is_dir():
            raise InputError("invalid_db", "db", f"directory {parent} does not exist")
        db = str(Path(db).expanduser())
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": db}
    if read_only and db != ":memory:":
        env.update(SQLITE_DBNAME=sqlite_read_uri(db), CREATE_TABLE="n")
    return _with_defaults(env, SQLITE_LOCK_TIMEOUT="30")


def sqlite_read_uri(path: str) -> str:
    """An SQLite URI that opens ``path`` without ever writing to it.

    ``mode=ro``: SQLite refuses every write. A store in WAL mode is read through its shared
    memory file (``-shm``), which SQLite creates beside the store when it can; on a copy in a
    directory this user cannot write, it cannot, and the copy is opened ``immutable=1``
    (nothing else writes a copy), unless a write-ahead log (``-wal``) with committed
    transactions lies beside it: those would be missed, so that is an error
    (``store_read_only``). Example: ``/audit/ledger.db`` in a read-only directory ->
    ``file:/audit/ledger.db?mode=ro&immutable=1``.
    """
    import sqlite3
    from contextlib import closing
    from urllib.parse import quote

    resolved = Path(path).expanduser().resolve()
    uri = f"file:{quote(str(resolved))}?mode=ro"
    try:
        with closing(sqlite3.connect(uri, uri=True)) as connection:
            connection.execute("PRAGMA journal_mode").fetchone()
        return uri
    except sqlite3.OperationalError:
        log = resolved.with_name(resolved.name + "-wal")
        if log.exists() and log.stat().st_size > 0:
            raise StoreError("store_read_only", "db",
                             f"{path} cannot be read read-only: its write-ahead log {log.name} holds transactions and "
                             "this user cannot write the directory's shared-memory file; copy the store after its "
                             "writers stop (the log is then folded in) or give this user write access to the "
                             "directory") from None
        return f"{uri}&immutable=1"


def _postgres_env(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    database = unquote(parts.path.lstrip("/"))
    if not database:
        raise InputError("invalid_db", "db", "the PostgreSQL URL needs a database name: postgresql://user@host/db")
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": database,
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
    }
    if "schema" in query:
        schema = query["schema"][0]
        if not SCHEMA_NAME.match(schema):
            raise InputError("invalid_db", "db", f"schema {schema[:64]!r} must be 1-63 letters, digits and _ (not starting "
                             "with a digit)")
        env["POSTGRES_SCHEMA"] = schema
    # The library waits forever for its table lock by default; a stuck writer must surface.
    # Its pool opens 5 connections per process up front; a command uses one at a time
    # (verify's parallel checks are processes; the writers' lock borrows a second one while
    # a batch is saved, clearing/writer_lock.py), so open one and allow a few more.
    return _with_defaults(env, POSTGRES_LOCK_TIMEOUT="10", POSTGRES_CONNECT_TIMEOUT="5",
                          POSTGRES_POOL_SIZE="1", POSTGRES_MAX_OVERFLOW="4")


def _with_defaults(env: dict[str, str], **defaults: str) -> dict[str, str]:
    """Add library timeouts unless the operator set them in the environment."""
    for key, value in defaults.items():
        if key not in os.environ:
            env[key] = value
    return env
