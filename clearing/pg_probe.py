"""Why a PostgreSQL store cannot be reached, said before the library's pool hides it.

The library's pool retries a failed connect until its timeout and then reports only
"couldn't get a connection after N sec", whatever the cause. ``probe`` makes one direct
connection first, with exactly the parameters the library's pool connects with
(``connect_arguments``: host, port, user, database and password from the ``POSTGRES_*``
keys, every other libpq parameter from the ``PG*`` environment ``clearing.settings``
exported), and turns the driver's refusal into a code of its own, naming host, port,
database and user (never the password). Example: ``postgresql://bob@db:5432/ledger`` with no
role ``bob`` -> ``[auth_failed] PostgreSQL at db:5432 refused user bob (role "bob" does not
exist)``.
"""

from __future__ import annotations

import os
from typing import Any

from clearing.errors import StoreError

#: (code, what the driver's message says, our message); the first that matches wins
CAUSES = (
    ("ssl_failed", ("server does not support SSL",),
     "PostgreSQL at {host}:{port} does not support SSL, which sslmode={sslmode} requires"),
    ("ssl_failed", ("certificate verify failed", "does not match host name", "root certificate file", "SSL error",
                    "SSL SYSCALL", "server certificate"),
     "the SSL connection to PostgreSQL at {host}:{port} cannot be verified or set up (sslmode={sslmode})"),
    ("auth_failed", ("password authentication failed", "no password supplied", "role \"", "no pg_hba.conf entry"),
     "PostgreSQL at {host}:{port} refused user {user}"),
    ("database_missing", ("database \"",), "PostgreSQL at {host}:{port} has no database {database}"),
    ("connection_refused", ("Connection refused", "accepting TCP/IP connections"),
     "nothing accepts connections at {host}:{port}"),
    ("host_unknown", ("failed to resolve host", "could not translate host name", "Name or service not known"),
     "host {host} is not known"),
    ("host_unreachable", ("No route to host", "Network is unreachable", "Host is unreachable"),
     "host {host} cannot be reached"),
    ("connect_timeout", ("timeout expired", "timed out"),
     "PostgreSQL at {host}:{port} did not answer within {timeout} s ({timeout_setting} sets it)"),
)


def connect_arguments(env: dict[str, str]) -> dict[str, Any]:
    """The keyword arguments of ``psycopg.connect`` that connect as the library's pool does.

    The pool passes dbname, host, port, user and password from the ``POSTGRES_*`` keys (the
    password as given, an empty one included: libpq then reads ``~/.pgpass``); libpq takes
    every other parameter from its environment, where ``clearing.settings.store_env``
    exported the URL's. The pool waits ``POSTGRES_CONNECT_TIMEOUT`` seconds for a
    connection; that is the timeout here too, unless libpq's own ``connect_timeout`` (the
    URL's, or ``PGCONNECT_TIMEOUT``) is set, which both then obey.
    """
    arguments: dict[str, Any] = {
        "host": env["POSTGRES_HOST"], "port": env["POSTGRES_PORT"], "user": env["POSTGRES_USER"],
        "dbname": env["POSTGRES_DBNAME"],
        "password": env.get("POSTGRES_PASSWORD", os.environ.get("POSTGRES_PASSWORD", "")),
    }
    if not _libpq_timeout(env):
        arguments["connect_timeout"] = _pool_timeout(env)
    return arguments


def probe(env: dict[str, str]) -> None:
    """Connect once as ``env`` (the library's ``POSTGRES_*`` keys) says; ``StoreError`` naming why not."""
    import psycopg

    arguments = connect_arguments(env)
    try:
        psycopg.connect(**arguments).close()
    except (psycopg.OperationalError, psycopg.ProgrammingError) as error:
        libpq_timeout = _libpq_timeout(env)
        timeout = int(libpq_timeout) if libpq_timeout.isdigit() else _pool_timeout(env)
        raise classify(str(error), env["POSTGRES_HOST"], env["POSTGRES_PORT"], env["POSTGRES_USER"],
                       env["POSTGRES_DBNAME"], timeout,
                       sslmode=env.get("PGSSLMODE") or os.environ.get("PGSSLMODE") or "prefer",
                       timeout_setting="connect_timeout / PGCONNECT_TIMEOUT" if libpq_timeout
                       else "POSTGRES_CONNECT_TIMEOUT") from None


def _libpq_timeout(env: dict[str, str]) -> str:
    return env.get("PGCONNECT_TIMEOUT") or os.environ.get("PGCONNECT_TIMEOUT") or ""


def _pool_timeout(env: dict[str, str]) -> int:
    value = env.get("POSTGRES_CONNECT_TIMEOUT") or os.environ.get("POSTGRES_CONNECT_TIMEOUT") or "5"
    return int(value) if value.isdigit() else 5


def classify(message: str, host: str, port: str, user: str, database: str, timeout: int, *, sslmode: str = "prefer",
             timeout_setting: str = "POSTGRES_CONNECT_TIMEOUT") -> StoreError:
    """The refusal ``message`` of the driver as a ``StoreError`` with its own code.

    >>> classify('FATAL:  database "nodb" does not exist', "db", "5432", "bob", "nodb", 5).code
    'database_missing'
    """
    detail = next((line.split("FATAL:", 1)[-1].strip() for line in message.splitlines()
                   if "FATAL" in line or "failed" in line), message.strip().splitlines()[-1] if message.strip() else "")
    names = {"host": host, "port": port, "user": user, "database": database, "timeout": timeout, "sslmode": sslmode,
             "timeout_setting": timeout_setting}
    for code, needles, says in CAUSES:
        if any(needle in message for needle in needles):
            return StoreError(code, "db", f"{says.format(**names)} ({detail})")
    return StoreError("store_unreachable", "db",
                      f"PostgreSQL at {host}:{port} cannot be used by user {user}, database {database} ({detail})")
