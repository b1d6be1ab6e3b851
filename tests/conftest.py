"""Store fixtures: in-memory (POPO), SQLite file, and PostgreSQL when reachable.

PostgreSQL is found through ``CLEARING_TEST_POSTGRES`` (a ``postgresql://`` URL) or the
standard ``PG*`` variables. Each test gets its own schema, dropped afterwards. When no
server is reachable the PostgreSQL tests are skipped with the reason, unless
``CLEARING_REQUIRE_POSTGRES=1`` (set by .ci/run), which makes that an error instead.
"""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def postgres_url() -> str | None:
    url = os.environ.get("CLEARING_TEST_POSTGRES")
    if url:
        return url
    if any(key in os.environ for key in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE")):
        user = os.environ.get("PGUSER", "postgres")
        password = os.environ.get("PGPASSWORD", "")
        auth = f"{user}:{password}" if password else user
        return (f"postgresql://{auth}@{os.environ.get('PGHOST', '127.0.0.1')}:{os.environ.get('PGPORT', '5432')}/"
                f"{os.environ.get('PGDATABASE', 'postgres')}")
    return None


def _postgres_reason() -> str | None:
    url = postgres_url()
    if url is None:
        return "no PostgreSQL configured (set CLEARING_TEST_POSTGRES or PGHOST)"
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3):
            return None
    except Exception as error:
        return f"PostgreSQL at {url} unreachable: {str(error).splitlines()[0]}"


_REASON = _postgres_reason()


def require_postgres() -> str:
    """The server's URL, or skip (fail under ``CLEARING_REQUIRE_POSTGRES=1``) with the reason."""
    if _REASON is not None:
        if os.environ.get("CLEARING_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required here: {_REASON}")
        pytest.skip(_REASON)
    url = postgres_url()
    assert url is not None
    return url


@pytest.fixture
def postgres_db() -> Iterator[str]:
    """A postgresql:// URL with a fresh schema, dropped after the test."""
    url = require_postgres()
    import psycopg

    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in url else "?"
    try:
        yield f"{url}{separator}schema={schema}"
    finally:
        # Applications a test left open hold pool connections until they are collected, and
        # the command line raises the collector's thresholds (clearing/runtime.py): collect
        # now, so a long run does not approach the server's max_connections (it peaked at 93).
        gc.collect()
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def sqlite_db(tmp_path: Path) -> str:
    return str(tmp_path / "ledger.db")


@pytest.fixture(params=["sqlite", "postgres"])
def store_db(request: pytest.FixtureRequest) -> str:
    """Each integration test runs on an SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_db")
    return request.getfixturevalue("postgres_db")



@pytest.fixture(autouse=True)
def _error_codes_are_registered() -> Iterator[None]:
    """Fail a test in which a ledger error was built with a code ``clearing.errors.REGISTRY``
    does not hold (the product still raises it; the registry and docs/errors.md must list it)."""
    from clearing.errors import UNREGISTERED

    UNREGISTERED.clear()
    yield
    assert not UNREGISTERED, f"unregistered error codes raised: {sorted(UNREGISTERED)} (add them to clearing.errors.REGISTRY)"
