"""The server keeps a built report per projection position: a new event makes the next
request build it again, so it stays byte-identical to ``clearing report``."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from fastapi.testclient import TestClient

from cli.main import main
from projections.runner import Projector
from projections.store import ProjectionStore
from tests.api.conftest import SECRETS, served_ledger
from tests.ledger import Ledger

AUTH = {"Authorization": f"Bearer {SECRETS['fca']}"}
PATH = "/api/v1/reports/daily-margin"
DAY = {"date": "2025-03-05", "format": "csv"}


def cli_report(db: str) -> bytes:
    result = CliRunner().invoke(main, ["--db", db, "report", "daily-margin", "--date", DAY["date"]], catch_exceptions=False)
    return result.stdout_bytes


def test_a_kept_report_is_built_again_once_the_projections_move(tmp_path: Path):
    from clearing.settings import store_env
    from projections.api.app import create_app

    db = served_ledger(str(tmp_path / "ledger.db"))
    app = create_app(db)
    try:
        with TestClient(app) as client:
            first = client.get(PATH, params=DAY, headers=AUTH)
            assert first.content == cli_report(db)
            assert client.get(PATH, params=DAY, headers=AUTH).content == first.content  # kept
            ledger = Ledger(env=store_env(db))
            ledger.post_ok('{"type":"deposit","id":"late-carol","account":"carol","amount":"12345","at":"2025-03-05T12:00:00Z"}')
            Projector(ledger.app, ProjectionStore(db)).catch_up()
            second = client.get(PATH, params=DAY, headers=AUTH)
            assert second.content != first.content
            assert second.content == cli_report(db)
            assert second.headers["etag"] != first.headers["etag"]
    finally:
        app.state.store.close()
