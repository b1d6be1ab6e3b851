"""A ``postgresql://`` --db means what it means to libpq, against the live server.

The resolution itself is tested without a server in tests/unit/test_pg_conninfo.py; here
the command line, as a subprocess, shows that what the URL leaves out comes from the
``PG*`` variables, that the URL's libpq parameters reach the connections (``sslmode`` on a
server without SSL is refused with ``ssl_failed``; ``target_session_attrs=read-only``
against a primary is refused), and that no password appears in any output.
"""

from __future__ import annotations

import json
import os
import subprocess
from urllib.parse import urlsplit

import pytest

from tests.e2e.test_cli import CLEARING

DEPOSIT = ('{"type":"open_account","id":"o1","account":"alice","at":"2025-01-01T00:00:00Z"}\n'
           '{"type":"deposit","id":"d1","account":"alice","amount":"7","at":"2025-01-01T00:00:01Z"}\n')


def run(db: str, *args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
    return subprocess.run([CLEARING, "--db", db, *args], input=stdin, capture_output=True, text=True, timeout=120,
                          env={**clean, **(env or {})})


def _ssl_enabled(postgres_db: str) -> bool:
    import psycopg

    with psycopg.connect(postgres_db.split("?", maxsplit=1)[0]) as connection:
        row = connection.execute("SHOW ssl").fetchone()
    return bool(row) and row[0] == "on"


def test_what_the_url_leaves_out_comes_from_the_pg_variables(postgres_db):
    parts = urlsplit(postgres_db)
    variables = {"PGHOST": parts.hostname or "", "PGPORT": str(parts.port or 5432), "PGUSER": parts.username or "",
                 "PGDATABASE": parts.path.lstrip("/")}
    bare = f"postgresql:///?{parts.query}"  # only the schema: host, port, user, database from PG*
    posted = run(bare, "post", "--sync", "-", env=variables, stdin=DEPOSIT)
    assert posted.returncode == 0, posted.stderr
    shown = run(postgres_db, "account", "show", "alice", "--json")  # the same store, named in full
    assert shown.returncode == 0 and json.loads(shown.stdout)["collateral"] == "7", shown.stderr
    missing = run(bare, "account", "list")  # without the variables: libpq's defaults, no database named
    assert missing.returncode == 2 and "[invalid_db]" in missing.stderr and "PGDATABASE" in missing.stderr


@pytest.mark.parametrize("sslmode", ["require", "verify-full"])
def test_sslmode_reaches_every_connection(postgres_db, sslmode):
    if _ssl_enabled(postgres_db):
        pytest.skip("this server offers SSL: the refusal shown here needs one that does not")
    parts = urlsplit(postgres_db)
    url = (f"postgresql://{parts.username}:s3cret@{parts.hostname}:{parts.port or 5432}{parts.path}"
           f"?{parts.query}&sslmode={sslmode}")
    for args in (("account", "list"), ("deposit", "alice", "1")):  # a read and a write
        refused = run(url, *args)
        assert refused.returncode == 3, (args, refused.stderr)
        assert "[ssl_failed]" in refused.stderr and f"sslmode={sslmode}" in refused.stderr, refused.stderr
        assert "s3cret" not in refused.stdout + refused.stderr and "Traceback" not in refused.stderr
    allowed = run(f"{postgres_db}&sslmode=disable", "account", "list")  # the same URL without SSL connects
    assert allowed.returncode in (0, 3) and "[ssl_failed]" not in allowed.stderr, allowed.stderr
    from_variable = run(postgres_db, "account", "list", env={"PGSSLMODE": sslmode})
    assert from_variable.returncode == 3 and "[ssl_failed]" in from_variable.stderr, from_variable.stderr


def test_a_libpq_parameter_of_the_url_is_obeyed(postgres_db):
    """``target_session_attrs=read-only`` on a primary: libpq itself refuses the session."""
    refused = run(f"{postgres_db}&target_session_attrs=read-only", "account", "list")
    assert refused.returncode == 3 and "Traceback" not in refused.stderr, refused.stderr
    assert "read-only" in refused.stderr or "read-write" in refused.stderr, refused.stderr
    accepted = run(f"{postgres_db}&target_session_attrs=read-write&application_name=clearing-test", "post", "--sync",
                   "-", stdin=DEPOSIT)
    assert accepted.returncode == 0, accepted.stderr


def test_an_unknown_parameter_is_refused_before_any_connection(postgres_db):
    refused = run(f"{postgres_db}&sslmdoe=require", "deposit", "alice", "1")
    assert refused.returncode == 2 and "[invalid_db]" in refused.stderr and "'sslmdoe'" in refused.stderr
