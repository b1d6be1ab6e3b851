"""One setting chooses the event store: a file path (SQLite) or a ``postgresql://`` URL.

``--db`` on the command line, else ``CLEARING_DB``, else ``clearing.db`` in the current
directory. The value is turned into the eventsourcing library's own environment keys
(``PERSISTENCE_MODULE``, ``SQLITE_DBNAME`` or ``POSTGRES_*``); nothing else is configured
by hand. ``postgresql://user:secret@host:5432/db?schema=clearing`` selects a schema.

A ``postgresql://`` URL means what it means to libpq (``psql`` and every libpq client): a
part it leaves out comes from the ``PG*`` environment variables, then libpq's defaults; a
missing password leaves ``~/.pgpass`` (``PGPASSFILE``) to libpq; every libpq query parameter
(``sslmode=verify-full``, ``sslrootcert``, ``application_name``, ...) reaches the store's
connections. Only ``schema`` is ours (``_postgres_env``).
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote

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
    if not NAME_PATTERN.fullmatch(name):
        raise InputError("invalid_operator", "as", f"operator {name[:64]!r} must be a name (letters, digits, _ . : @ -)")
    return name


def _login_name() -> str:
    import getpass

    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no login name in a container without a passwd entry
        return DEFAULT_OPERATOR
    from clearing.commands import NAME_PATTERN

    return name if NAME_PATTERN.fullmatch(name) else DEFAULT_OPERATOR


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


#: the libpq parameters the library's ``PostgresDatastore`` passes itself (from ``POSTGRES_*``)
LIBRARY_PARAMETERS = ("dbname", "host", "port", "user", "password")
#: the libpq environment variables this process exported for a ``--db`` URL, with their values
_EXPORTED: dict[str, str] = {}


def _postgres_env(url: str) -> dict[str, str]:
    """The library's ``POSTGRES_*`` keys, and the URL's other libpq parameters as ``PG*`` keys.

    The URL is parsed by libpq itself (``psycopg.conninfo.conninfo_to_dict``) once our own
    ``schema`` parameter is taken out. A part the URL leaves out resolves as libpq resolves
    it: its ``PG*`` variable or a service (``PGSERVICE``), then libpq's default (the login
    user, port 5432, the Unix-socket directory); only the database has no default (libpq's,
    the user name, is no place to put a ledger by accident). The password is the URL's, else
    ``POSTGRES_PASSWORD`` as set in the environment, else ``PGPASSWORD``, else empty: libpq
    then looks in ``PGPASSFILE`` / ``~/.pgpass``. Every other libpq parameter (``sslmode``,
    ``sslrootcert``, ``application_name``, ``options``, ``connect_timeout``, ...) is exported
    as its libpq environment variable (``PGSSLMODE``, ...) for this process, where libpq
    reads it for each connection the library's pool opens (and the probe's, and any other).
    Example: ``postgresql:///ledger?sslmode=verify-full&schema=clearing`` with
    ``PGHOST=db.internal`` -> ``POSTGRES_HOST=db.internal``, ``POSTGRES_DBNAME=ledger``,
    ``POSTGRES_SCHEMA=clearing``, ``PGSSLMODE=verify-full``.
    """
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    rest, schema = _take_schema(url)
    try:
        given = {key: str(value) for key, value in conninfo_to_dict(rest).items() if str(value) != ""}
    except ProgrammingError as error:
        raise InputError("invalid_db", "db", _parse_failure(str(error), url)) from None
    environment_names = _libpq_environment_names()
    exported: dict[str, str] = {}
    for keyword, value in given.items():
        if keyword in LIBRARY_PARAMETERS:
            continue
        name = environment_names.get(keyword)
        if name is None:
            raise InputError("invalid_db", "db", f"libpq parameter {keyword} has no environment variable, so it cannot "
                             "reach the store's connections (the library passes only dbname, host, port, user and "
                             "password); put it in a pg_service.conf service and name that with ?service=")
        exported[name] = value
    previous, exported_before = {name: os.environ.get(name) for name in exported}, dict(_EXPORTED)
    _export(exported)  # before the defaults are read: a ?service= of the URL supplies them too
    try:
        database, user, port, host, password = _resolve(given)
    except InputError:  # a refused URL leaves the environment as it was
        for name, old in previous.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old
        _EXPORTED.clear()
        _EXPORTED.update(exported_before)
        raise
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": database,
        "POSTGRES_HOST": host,
        "POSTGRES_PORT": port,
        "POSTGRES_USER": user,
        "POSTGRES_PASSWORD": password,
        **exported,
    }
    if schema is not None:
        env["POSTGRES_SCHEMA"] = schema
    # The library waits forever for its table lock by default; a stuck writer must surface.
    # Its pool opens 5 connections per process up front; a command uses one at a time
    # (verify's parallel checks are processes; the writers' lock borrows a second one while
    # a batch is saved, clearing/writer_lock.py), so open one and allow a few more.
    return _with_defaults(env, POSTGRES_LOCK_TIMEOUT="10", POSTGRES_CONNECT_TIMEOUT="5",
                          POSTGRES_POOL_SIZE="1", POSTGRES_MAX_OVERFLOW="4")


def _resolve(given: dict[str, str]) -> tuple[str, str, str, str, str]:
    """Database, user, port, host and password: the URL's, else as libpq would take them."""
    defaults = _libpq_defaults()
    database = given.get("dbname") or defaults.get("dbname")
    if not database:
        raise InputError("invalid_db", "db", "the PostgreSQL URL needs a database name: postgresql://user@host/db "
                         "(or set PGDATABASE)")
    user = given.get("user") or defaults.get("user")
    if not user:
        raise InputError("invalid_db", "db", "the PostgreSQL URL names no user and libpq finds none (no PGUSER, no "
                         "login name): postgresql://user@host/db")
    port = given.get("port") or defaults.get("port") or "5432"
    if not all(part.isdigit() and 0 < int(part) < 65536 for part in port.split(",") if part):
        raise InputError("invalid_db", "db", f"port {port[:32]!r} of the PostgreSQL URL must be a number 1-65535")
    host = (given.get("host") or defaults.get("host") or given.get("hostaddr") or defaults.get("hostaddr")
            or _libpq_default_host())
    if given.get("password"):
        password = given["password"]
    elif "POSTGRES_PASSWORD" in os.environ:
        password = os.environ["POSTGRES_PASSWORD"]
    else:  # libpq takes an empty password as given: PGPASSWORD would be ignored, ~/.pgpass is still read
        password = defaults.get("password") or ""
    return database, user, port, host, password


def _take_schema(url: str) -> tuple[str, str | None]:
    """``url`` without its ``schema`` query parameter (ours, not libpq's), and the schema.

    Only that parameter is cut out of the query, byte for byte; everything else is left for
    libpq to parse. An empty ``schema=`` is no schema (the library's ``public``).
    """
    base, separator, query = url.partition("?")
    if not separator:
        return url, None
    kept, schemas = [], []
    for item in query.split("&"):
        key, _, value = item.partition("=")
        if unquote(key) == "schema":
            schemas.append(unquote(value))
        elif item:
            kept.append(item)
    if len(schemas) > 1:
        raise InputError("invalid_db", "db", "the PostgreSQL URL gives schema more than once")
    schema = schemas[0] if schemas and schemas[0] else None
    if schema is not None and not SCHEMA_NAME.match(schema):
        raise InputError("invalid_db", "db", f"schema {schema[:64]!r} must be 1-63 letters, digits and _ (not starting "
                         "with a digit)")
    return (f"{base}?{'&'.join(kept)}" if kept else base), schema


def _parse_failure(message: str, url: str) -> str:
    """What libpq said of ``url``, with every password in it (URL or query) replaced by ``***``."""
    message = " ".join(message.split())
    unknown = re.fullmatch(r'invalid URI query parameter: "(.*)"', message)
    if unknown:
        return (f"the PostgreSQL URL has an unknown query parameter {unknown.group(1)!r}: only libpq's connection "
                "parameters and schema are allowed")
    secrets = []
    rest = url.split("://", 1)[-1]
    userinfo, at, _ = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")
    if at and ":" in userinfo:
        secrets.append(userinfo.split(":", 1)[1])
    query = url.partition("?")[2]
    secrets += [item.partition("=")[2] for item in query.split("&") if item.partition("=")[0] in ("password",
                                                                                                 "sslpassword")]
    for secret in secrets:
        for form in {secret, unquote(secret)}:
            if form:
                message = message.replace(form, "***")
    return f"the PostgreSQL URL cannot be parsed: {message}"


def _export(variables: dict[str, str]) -> None:
    """Set libpq's environment ``variables`` for this process, where libpq reads them.

    The library's pool connects with only dbname, host, port, user and password; libpq
    takes every other parameter from its environment variable (libpq-envars). One process
    connects with one set of them: a later URL that gives one of them another value is
    refused rather than changing the connections of the first (a URL that leaves one out
    keeps what was exported).
    """
    differing = sorted(name for name, value in variables.items() if _EXPORTED.get(name, value) != value)
    if differing:
        raise InputError("invalid_db", "db", f"the PostgreSQL URL sets {', '.join(differing)} to another value than the "
                         "URL this process already connects with; one process connects with one set of libpq "
                         "parameters")
    for name, value in variables.items():
        os.environ[name] = value
        _EXPORTED[name] = value


@lru_cache(maxsize=1)
def _libpq_environment_names() -> dict[str, str]:
    """Each libpq keyword that has an environment variable, with its name: sslmode -> PGSSLMODE."""
    from psycopg import pq

    return {option.keyword.decode(): option.envvar.decode() for option in pq.Conninfo.get_defaults() if option.envvar}


def _libpq_defaults() -> dict[str, str]:
    """What libpq takes for a parameter not given: its environment variable, a service, the compiled default.

    Read now (``PQconndefaults``), after this URL's own parameters were exported.
    """
    from psycopg import pq

    return {option.keyword.decode(): option.val.decode() for option in pq.Conninfo.get_defaults() if option.val}


@lru_cache(maxsize=1)
def _libpq_default_host() -> str:
    """The host libpq connects to when neither a URL, ``PGHOST`` nor a service names one.

    Its compiled default: the Unix-socket directory (``/var/run/postgresql`` on Debian,
    ``/tmp`` upstream), ``localhost`` where there are no sockets. ``PQconndefaults`` leaves
    it out, so it is read back from a connection that stops at option validation (an
    invalid ``sslmode``), before any socket is opened; the placeholder password keeps
    libpq from reading the password file for it.
    """
    from psycopg import pq

    pgconn = pq.PGconn.connect_start(b"host='' hostaddr='' password=unused sslmode=resolve-default-host")
    try:
        return pgconn.host.decode() or "localhost"
    finally:
        pgconn.finish()


def _with_defaults(env: dict[str, str], **defaults: str) -> dict[str, str]:
    """Add library timeouts unless the operator set them in the environment."""
    for key, value in defaults.items():
        if key not in os.environ:
            env[key] = value
    return env
