"""``clearing serve`` never writes (issue 12): on an immutable SQLite copy every endpoint and
every dashboard page answers, and the file's bytes do not change; on PostgreSQL, with a
role granted only SELECT."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
from pathlib import Path

from fastapi.testclient import TestClient

from tests.api.conftest import SECRETS, served_ledger
from tests.e2e.test_read_only import frozen, select_only_role  # noqa: F401 - frozen: the immutable directory fixture

AUTH = {"Authorization": f"Bearer {SECRETS['fca']}"}
ENDPOINTS = (
    "/api/v1/health", "/api/v1/accounts", "/api/v1/accounts?format=csv", "/api/v1/accounts/alice",
    "/api/v1/accounts/alice?as_of=40", "/api/v1/markets", "/api/v1/markets/BTC-PERP",
    "/api/v1/markets/BTC-PERP?as_of=2025-03-02T00:00:00Z", "/api/v1/insurance-fund", "/api/v1/insurance-fund?format=csv",
    "/api/v1/losses", "/api/v1/liquidations?date=2025-03-03", "/api/v1/reports",
    "/api/v1/reports/daily-margin?date=2025-03-03", "/api/v1/reports/stress?date=2025-03-03&format=json",
    "/api/v1/audit/digest", "/api/v1/audit/verification", "/api/v1/events?from=1&limit=5", "/api/v1/events/3",
    "/api/v1/tokens", "/api/v1/openapi.json",
    "/", "/fund", "/accounts", "/accounts/alice", "/markets", "/markets/BTC-PERP", "/liquidations", "/losses", "/reports",
    "/events/3", "/charts/coverage.svg",
)


def answers_every_endpoint(db: str) -> None:
    from projections.api.app import create_app

    app = create_app(db)
    try:
        with TestClient(app) as client:
            for path in ENDPOINTS:
                response = client.get(path, headers=AUTH)
                assert response.status_code == 200, (path, response.status_code, response.text[:300])
    finally:
        app.state.store.close()


def test_the_server_answers_every_endpoint_on_an_immutable_sqlite_copy(tmp_path: Path, frozen: Path):  # noqa: F811
    original = served_ledger(str(tmp_path / "ledger.db"))
    with sqlite3.connect(original) as connection:  # fold the write-ahead log into the file before it is copied
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    copy = frozen / "ledger.db"
    shutil.copyfile(original, copy)
    before = hashlib.sha256(copy.read_bytes()).hexdigest()
    subprocess.run(["chattr", "+i", str(copy), str(frozen)], check=True)
    answers_every_endpoint(str(copy))
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in frozen.iterdir()) == ["ledger.db"]


def test_the_server_answers_every_endpoint_with_a_role_that_may_only_select(postgres_db: str):
    served_ledger(postgres_db)
    with select_only_role(postgres_db) as reader:
        answers_every_endpoint(reader)
