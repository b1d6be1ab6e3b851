"""The store's schema version: which layout of our own tables a store holds.

The library owns its event and snapshot tables; beside them this code keeps the command
index (``clearing.command_index``) and the projection tables (``projections.store``). A
store records, in the one-row table ``clearing_schema``, the highest ``STORE_SCHEMA`` of
the code that created tables in it: every writer creates what is missing when it opens
the store and raises the recorded version to its own, never lowers it.

Versions (bump with every change of layout, and list it here):

- 1: events and snapshots (the library's), the command index and its ``built`` marker,
  the projection registry with generation tables. Stores written before versions were
  recorded hold the same tables and record 1 when a writer next opens them.

``clearing --version`` reads the version of the configured store with the standard
library's ``sqlite3`` (read-only) or with psycopg, so it never loads SQLAlchemy,
eventsourcing or pydantic. Example: a new SQLite store -> ``store schema 1``.
"""

from __future__ import annotations

STORE_SCHEMA = 1
SCHEMA_TABLE = "clearing_schema"

#: SQLite: the table, created with the library's create statements (a no-op, taking no
#: lock, once it exists)
SQLITE_CREATE = f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"

#: SQLite: what a writer reads first, and writes only when the version it reads is missing
#: or lower than its own. Writing on every open would make each starting process take the
#: write lock inside the library's deferred create transaction, which fails at once
#: ("database is locked") when another process has committed since that transaction read.
SQLITE_READ = f"SELECT version FROM {SCHEMA_TABLE} WHERE id = 1"
SQLITE_RECORD = (
    f"INSERT OR IGNORE INTO {SCHEMA_TABLE} VALUES (1, {STORE_SCHEMA})",
    f"UPDATE {SCHEMA_TABLE} SET version = {STORE_SCHEMA} WHERE id = 1 AND version < {STORE_SCHEMA}",
)

#: The same for PostgreSQL, with ``{table}`` the schema-qualified table name. The update
#: matches no row once the version is current, so writers that start together take no
#: row lock on it.
POSTGRES_STATEMENTS = (
    "CREATE TABLE IF NOT EXISTS {table} (id integer PRIMARY KEY CHECK (id = 1), version integer NOT NULL)",
    f"INSERT INTO {{table}} VALUES (1, {STORE_SCHEMA}) ON CONFLICT DO NOTHING",
    f"UPDATE {{table}} SET version = {STORE_SCHEMA} WHERE id = 1 AND version < {STORE_SCHEMA}",
)


def describe(db: str) -> str:
    """One line on the store ``db`` names: its recorded schema version, or why there is none.

    Never creates or changes anything: a missing SQLite file is reported, not made. The
    line names ``db`` as given: the caller redacts a password in it.
    """
    from clearing.settings import is_postgres

    try:
        version = _postgres_version(db) if is_postgres(db) else _sqlite_version(db)
    except Exception as error:  # a version line must print whatever the store's state
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return f"store {db}: not readable ({reason})"
    if version is None:
        return f"store {db}: none yet (this code writes schema {STORE_SCHEMA})"
    if version == 0:
        return f"store {db}: schema not recorded (written before versions were recorded; a writer records it)"
    newer = "" if version <= STORE_SCHEMA else f"; newer than this code's {STORE_SCHEMA}: upgrade clearing-ledger"
    return f"store {db}: schema {version}{newer}"


def _sqlite_version(db: str) -> int | None:
    """The recorded version; 0 for a store without the table; None when there is no store."""
    import sqlite3
    from contextlib import closing
    from pathlib import Path

    from clearing.settings import sqlite_read_uri

    if db == ":memory:" or not Path(db).expanduser().is_file():
        return None
    with closing(sqlite3.connect(sqlite_read_uri(db), uri=True)) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if SCHEMA_TABLE not in tables:
            return 0 if tables else None
        row = connection.execute(f"SELECT version FROM {SCHEMA_TABLE} WHERE id = 1").fetchone()
        return int(row[0]) if row else 0


def _postgres_version(db: str) -> int | None:
    import psycopg

    from clearing.pg_probe import connect_arguments
    from clearing.settings import store_env

    env = store_env(db, read_only=True)
    schema = env.get("POSTGRES_SCHEMA") or "public"
    with psycopg.connect(**connect_arguments(env)) as connection:
        found = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)).fetchall()
        tables = {row[0] for row in found}
        if SCHEMA_TABLE not in tables:
            return 0 if tables else None
        row = connection.execute(
            psycopg.sql.SQL("SELECT version FROM {}.{} WHERE id = 1").format(
                psycopg.sql.Identifier(schema), psycopg.sql.Identifier(SCHEMA_TABLE))).fetchone()
        return int(row[0]) if row else 0
