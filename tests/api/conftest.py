"""A served ledger for the API tests: the report scenario of ``tests/unit/test_reports.py``
(five business days, a margin call, liquidations to the backstop, a deficit paid by the
fund and socialized) on SQLite and on PostgreSQL, with tokens of every kind."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from clearing.domain.roles import token_digest
from projections.runner import Projector
from projections.store import ProjectionStore
from tests.conftest import require_postgres
from tests.unit.test_reports import build

SECRETS = {"fca": "clr_regulator-secret", "kpmg": "clr_auditor-secret", "desk": "clr_operator-secret",
           "gone": "clr_revoked-secret"}
ROLES = {"fca": "regulator", "kpmg": "auditor", "desk": "operator", "gone": "auditor"}
TOKENS = "\n".join(
    f'{{"type":"issue_token","id":"tk-{name}","name":"{name}","role":"{ROLES[name]}",'
    f'"token_sha256":"{token_digest(secret)}","at":"2025-03-05T10:00:00Z"}}' for name, secret in SECRETS.items()
) + '\n{"type":"revoke_token","id":"tk-revoke","name":"gone","at":"2025-03-05T11:00:00Z"}'


@dataclass
class Served:
    db: str
    client: TestClient

    def get(self, path: str, token: str | None = "fca", headers: dict[str, str] | None = None, **kwargs: object) -> object:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {SECRETS.get(token, token)}"
        return self.client.get(path, headers=sent, **kwargs)  # type: ignore[arg-type]


def served_ledger(db: str) -> str:
    built = build(db)
    built.ledger.post_ok(TOKENS)
    Projector(built.ledger.app, ProjectionStore(db)).catch_up()  # every projection, the chain included
    return db


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def served_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield served_ledger(str(tmp_path_factory.mktemp("api") / "ledger.db"))
        return
    url = require_postgres()
    import psycopg

    schema = f"test_api_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield served_ledger(f"{url}{'&' if '?' in url else '?'}schema={schema}")
    finally:
        gc.collect()
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(scope="session")
def served(served_db: str) -> Iterator[Served]:
    from projections.api.app import create_app

    app = create_app(served_db)
    with TestClient(app) as client:
        yield Served(served_db, client)
    app.state.store.close()


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def sqlite_served_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The served ledger on SQLite only, for tests of files the command line writes."""
    return served_ledger(str(tmp_path_factory.mktemp("charts") / "ledger.db"))
