"""A ``postgresql://`` --db means what it means to libpq (``clearing.settings._postgres_env``).

No server is needed here: the URL is resolved, and the library's pool is built but not
opened. The live checks are in tests/e2e/test_pg_conninfo.py.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator

import pytest
from eventsourcing.postgres import PostgresFactory
from eventsourcing.utils import Environment
from psycopg import pq

from clearing import settings
from clearing.errors import InputError, StoreError
from clearing.pg_probe import connect_arguments, probe
from clearing.settings import store_env

#: every variable libpq reads, and the library's keys this resolution reads
LIBPQ_VARIABLES = sorted(option.envvar.decode() for option in pq.Conninfo.get_defaults() if option.envvar)
LIBRARY_VARIABLES = ("POSTGRES_PASSWORD", "POSTGRES_CONNECT_TIMEOUT", "POSTGRES_LOCK_TIMEOUT", "POSTGRES_POOL_SIZE",
                     "POSTGRES_MAX_OVERFLOW")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No PG* or POSTGRES_* variable set; whatever a test exports is undone afterwards."""
    saved = dict(os.environ)
    for name in (*LIBPQ_VARIABLES, *LIBRARY_VARIABLES):
        os.environ.pop(name, None)
    monkeypatch.setattr(settings, "_EXPORTED", {})
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_a_part_the_url_leaves_out_comes_from_the_pg_variables(monkeypatch):
    monkeypatch.setenv("PGHOST", "db.example")
    monkeypatch.setenv("PGPORT", "6543")
    monkeypatch.setenv("PGUSER", "carol")
    monkeypatch.setenv("PGDATABASE", "books")
    env = store_env("postgresql://")
    assert (env["POSTGRES_HOST"], env["POSTGRES_PORT"], env["POSTGRES_USER"], env["POSTGRES_DBNAME"]) == (
        "db.example", "6543", "carol", "books")
    only_db = store_env("postgresql:///ledger?schema=clearing")
    assert (only_db["POSTGRES_HOST"], only_db["POSTGRES_USER"], only_db["POSTGRES_DBNAME"]) == (
        "db.example", "carol", "ledger")


def test_the_url_wins_over_the_environment(monkeypatch):
    for name, value in (("PGHOST", "db.example"), ("PGPORT", "6543"), ("PGUSER", "carol"), ("PGDATABASE", "books"),
                        ("PGSSLMODE", "disable")):
        monkeypatch.setenv(name, value)
    env = store_env("postgresql://alice@db2.example:5439/ledger?sslmode=verify-full")
    assert (env["POSTGRES_HOST"], env["POSTGRES_PORT"], env["POSTGRES_USER"], env["POSTGRES_DBNAME"]) == (
        "db2.example", "5439", "alice", "ledger")
    assert env["PGSSLMODE"] == os.environ["PGSSLMODE"] == "verify-full"


def test_without_url_parts_or_variables_libpq_defaults_apply():
    env = store_env("postgresql:///ledger")
    assert env["POSTGRES_USER"] == pwd.getpwuid(os.geteuid()).pw_name  # libpq's: the login name, not "postgres"
    assert env["POSTGRES_PORT"] == "5432"
    host = env["POSTGRES_HOST"]  # libpq's compiled default: its Unix-socket directory, not 127.0.0.1
    assert host != "127.0.0.1" and (host.startswith("/") or host == "localhost"), host


def test_a_host_address_alone_names_the_host():
    env = store_env("postgresql:///ledger?hostaddr=10.1.2.3")
    assert env["POSTGRES_HOST"] == "10.1.2.3" and os.environ["PGHOSTADDR"] == "10.1.2.3"


def test_every_libpq_parameter_of_the_url_reaches_libpq_through_its_variable():
    env = store_env("postgresql://alice@db.example/ledger?sslmode=verify-full&sslrootcert=/etc/ssl/ca.pem"
                    "&application_name=clearing%20ledger&options=-c%20statement_timeout%3D5s"
                    "&target_session_attrs=read-write&connect_timeout=7&schema=clearing")
    carried = {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": "/etc/ssl/ca.pem", "PGAPPNAME": "clearing ledger",
               "PGOPTIONS": "-c statement_timeout=5s", "PGTARGETSESSIONATTRS": "read-write", "PGCONNECT_TIMEOUT": "7"}
    for name, value in carried.items():
        assert env[name] == os.environ[name] == value, name
    assert env["POSTGRES_SCHEMA"] == "clearing" and "schema" not in " ".join(os.environ).lower()
    # the probe leaves the timeout to libpq's own connect_timeout, as the pool's connections do
    assert "connect_timeout" not in connect_arguments(env)


def test_the_probe_connects_with_exactly_the_library_pools_parameters(monkeypatch):
    monkeypatch.setenv("PGUSER", "carol")
    env = store_env("postgresql://db.example:6000/ledger?sslmode=require&schema=clearing")
    factory = PostgresFactory(Environment("ClearingApplication", env))  # builds the pool, does not open it
    try:
        pool_kwargs = {key: value for key, value in factory.datastore.pool.kwargs.items() if key != "row_factory"}
    finally:
        factory.datastore.close()
    arguments = connect_arguments(env)
    assert arguments.pop("connect_timeout") == 5  # the pool's wait, POSTGRES_CONNECT_TIMEOUT
    assert arguments == pool_kwargs == {"dbname": "ledger", "host": "db.example", "port": "6000", "user": "carol",
                                        "password": ""}


def test_schema_is_ours_taken_out_and_validated():
    env = store_env("postgresql://h/ledger?sslmode=require&schema=ledger_1")
    assert env["POSTGRES_SCHEMA"] == "ledger_1" and env["PGSSLMODE"] == "require"
    assert "POSTGRES_SCHEMA" not in store_env("postgresql://h/ledger?schema=")  # empty: the library's public
    for bad in ('a";drop', "1abc", "x" * 64):
        with pytest.raises(InputError) as refused:
            store_env(f"postgresql://h/ledger?schema={bad}")
        assert refused.value.code == "invalid_db" and "schema" in refused.value.message
    with pytest.raises(InputError, match="more than once"):
        store_env("postgresql://h/ledger?schema=a&schema=b")


@pytest.mark.parametrize(("url", "named"), [
    ("postgresql://h/ledger?sslmdoe=require", "'sslmdoe'"),
    ("postgresql://h/ledger?schema=ok&search_path=x", "'search_path'"),
    ("postgresql://h/ledger?keepalives=1", "keepalives"),  # libpq's, but no variable can carry it
])
def test_a_parameter_that_cannot_reach_libpq_is_refused_by_name(url, named):
    with pytest.raises(InputError) as refused:
        store_env(url)
    assert refused.value.code == "invalid_db" and named in refused.value.message
    assert not any(name in os.environ for name in LIBPQ_VARIABLES)


def test_a_refused_url_leaves_the_environment_as_it_was():
    with pytest.raises(InputError, match="database name"):
        store_env("postgresql://h/?sslmode=require")  # no database: refused after the export
    assert "PGSSLMODE" not in os.environ and settings._EXPORTED == {}


def test_one_process_connects_with_one_set_of_libpq_parameters():
    store_env("postgresql://h/ledger?sslmode=verify-full")
    assert store_env("postgresql://h/ledger?sslmode=verify-full&schema=other")["PGSSLMODE"] == "verify-full"
    with pytest.raises(InputError, match="PGSSLMODE"):
        store_env("postgresql://h/other?sslmode=disable")
    store_env("postgresql://h/other")  # leaves sslmode out: keeps what was exported, never weaker
    assert os.environ["PGSSLMODE"] == "verify-full"


def test_the_password_is_the_urls_else_postgres_password_else_pgpassword_else_left_to_pgpass(monkeypatch):
    assert store_env("postgresql://alice@h/ledger")["POSTGRES_PASSWORD"] == ""  # libpq then reads ~/.pgpass
    monkeypatch.setenv("PGPASSWORD", "from-pgpassword")
    assert store_env("postgresql://alice@h/ledger")["POSTGRES_PASSWORD"] == "from-pgpassword"
    monkeypatch.setenv("POSTGRES_PASSWORD", "from-postgres-password")
    assert store_env("postgresql://alice@h/ledger")["POSTGRES_PASSWORD"] == "from-postgres-password"
    assert store_env("postgresql://alice:from%40url@h/ledger")["POSTGRES_PASSWORD"] == "from@url"
    assert store_env("postgresql://alice@h/ledger?password=from-query")["POSTGRES_PASSWORD"] == "from-query"
    assert os.environ["POSTGRES_PASSWORD"] == "from-postgres-password"  # never overwritten


@pytest.mark.parametrize("url", [
    "postgresql://alice:s3cr%zzet@h/ledger",  # libpq's parse error quotes the token
    "postgresql://alice:s3cret@h/ledger?nope=1",
    "postgresql://alice:s3cret@h:99999/ledger",
    "postgresql://alice:s3cret@h/",
    "postgresql://alice:s3cret@h/ledger?schema=a%22%3Bdrop",
    "postgresql://alice@h/ledger?password=s3cret&nope=1",
    "postgresql://alice@h/ledger?password=s3cr%zzet",
    "postgresql://alice@h/ledger?sslpassword=s3cret",
])
def test_no_password_in_any_error_text(url):
    with pytest.raises(InputError) as refused:
        store_env(url)
    assert refused.value.code == "invalid_db"
    for text in (str(refused.value), repr(refused.value), refused.value.message):
        assert "s3cr" not in text, text


def test_no_password_in_a_refusal_of_the_probe():
    with pytest.raises(StoreError) as refused:  # nothing listens on port 1
        probe(store_env("postgresql://alice:s3cret@127.0.0.1:1/ledger"))
    assert refused.value.code == "connection_refused" and "s3cret" not in str(refused.value) + repr(refused.value)


def test_read_only_adds_create_table_n_and_nothing_else():
    url = "postgresql://alice@h/ledger?sslmode=require&schema=clearing"
    written, read = store_env(url), store_env(url, read_only=True)
    assert read.pop("CREATE_TABLE") == "n" and read == written and "CREATE_TABLE" not in written
