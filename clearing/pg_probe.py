"""Why a PostgreSQL store cannot be reached, said before the library's pool hides it.

The library's pool retries a failed connect until its timeout and then reports only
"couldn't get a connection after N sec", whatever the cause. ``probe`` makes one direct
connection first, with the same host, port, user, database and timeout, and turns the
driver's refusal into a code of its own, naming host, port, database and user (never the
password). Example: ``postgresql://bob@db:5432/ledger`` with no role ``bob`` ->
``[auth_failed] PostgreSQL at db:5432 refused user bob (role "bob" does not exist)``.
"""

from __future__ import annotations

from clearing.errors import StoreError

#: (code, what the driver's message says, our message); the first that matches wins
CAUSES = (
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
     "PostgreSQL at {host}:{port} did not answer within {timeout} s (POSTGRES_CONNECT_TIMEOUT sets it)"),
)


def probe(env: dict[str, str]) -> None:
    """Connect once as ``env`` (the library's ``POSTGRES_*`` keys) says; ``StoreError`` naming why not."""
    import psycopg

    host, port, user, database = env["POSTGRES_HOST"], env["POSTGRES_PORT"], env["POSTGRES_USER"], env["POSTGRES_DBNAME"]
    timeout = int(env.get("POSTGRES_CONNECT_TIMEOUT", "5"))
    try:
        psycopg.connect(host=host, port=port, user=user, dbname=database, password=env.get("POSTGRES_PASSWORD") or None,
                        connect_timeout=timeout).close()
    except psycopg.OperationalError as error:
        raise classify(str(error), host, port, user, database, timeout) from None


def classify(message: str, host: str, port: str, user: str, database: str, timeout: int) -> StoreError:
    """The refusal ``message`` of the driver as a ``StoreError`` with its own code.

    >>> classify('FATAL:  database "nodb" does not exist', "db", "5432", "bob", "nodb", 5).code
    'database_missing'
    """
    detail = next((line.split("FATAL:", 1)[-1].strip() for line in message.splitlines()
                   if "FATAL" in line or "failed" in line), message.strip().splitlines()[-1] if message.strip() else "")
    names = {"host": host, "port": port, "user": user, "database": database, "timeout": timeout}
    for code, needles, says in CAUSES:
        if any(needle in message for needle in needles):
            return StoreError(code, "db", f"{says.format(**names)} ({detail})")
    return StoreError("store_unreachable", "db",
                      f"PostgreSQL at {host}:{port} cannot be used by user {user}, database {database} ({detail})")
