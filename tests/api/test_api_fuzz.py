"""The API fuzzed from its own OpenAPI schema with schemathesis (issue 12): no 500s, every
response matches its schema and its documented status, across at least ``MIN_PER_GROUP``
generated requests per endpoint group (the schema's tags), on the served ledger (SQLite).

Each operation gets up to ``EXAMPLES`` generated cases (hypothesis stops early on an
operation with few distinct inputs, such as one without parameters); the last test counts
what was sent per group, so a run that generated too little fails instead of passing quietly.

Every check schemathesis has runs but one: ``positive_data_acceptance`` expects every
request the schema allows to succeed, and a schema cannot say everything the ledger
checks (an ``as_of`` of ``0`` matches the pattern of a position but no log starts there; an
ISO date can name a day outside the log). Those get the CLI's 422 or 404 with their code,
which the status and schema checks still hold to the documented responses.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.api.conftest import SECRETS

EXAMPLES = 520
MIN_PER_GROUP = 500
SENT: Counter[str] = Counter()
AUTH = {"Authorization": f"Bearer {SECRETS['kpmg']}"}


@pytest.fixture(scope="session")
def api_app(sqlite_served_db: str) -> Iterator[Any]:
    from projections.api.app import create_app

    app = create_app(sqlite_served_db)
    yield app
    app.state.store.close()


@pytest.fixture(scope="session")
def api_schema(api_app: Any) -> Any:
    return schemathesis.openapi.from_asgi("/api/v1/openapi.json", api_app, headers=AUTH)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.auth()
class AuditorToken:
    """Every generated request carries the auditor's token (a case that is meant to leave it
    out is one schemathesis generates on purpose, and then expects the 401 it gets)."""

    def get(self, case: Any, context: Any) -> str:
        return SECRETS["kpmg"]

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_request_gets_a_500_or_a_response_outside_its_schema(case: Any) -> None:
    SENT[case.operation.tags[0] if case.operation.tags else "untagged"] += 1
    case.call_and_validate(excluded_checks=[positive_data_acceptance])


def test_every_endpoint_group_got_enough_generated_requests() -> None:
    if not SENT:
        pytest.skip("run with the fuzz test above (it was deselected)")
    groups = {"accounts", "markets", "insurance fund", "losses", "liquidations", "reports", "audit"}
    assert set(SENT) == groups, SENT
    print(f"generated requests per group: {dict(SENT)}")
    short = {group: count for group, count in SENT.items() if count < MIN_PER_GROUP}
    assert not short, f"groups with fewer than {MIN_PER_GROUP} generated requests: {short} (all: {dict(SENT)})"
