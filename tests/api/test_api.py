"""The HTTP API against the command line on the same store (issue 12): the same numbers,
byte-identical reports, the CLI's error codes with HTTP statuses, and tokens refused."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from click.testing import CliRunner

from cli.main import main
from tests.api.conftest import SECRETS, Served, repo_root
from tests.unit.test_reports import DATES

REPORTS = ("daily-margin", "positions", "insurance-fund", "liquidations", "loss-allocations", "disclosures", "stress")


def cli(db: str, *args: str) -> str:
    result = CliRunner().invoke(main, ["--db", db, *args], catch_exceptions=False)
    assert result.exit_code == 0, (args, result.output)
    return result.stdout


def cli_json(db: str, *args: str) -> Any:
    return json.loads(cli(db, *args, "--json"))


def ok(response: Any) -> Any:
    assert response.status_code == 200, (response.request.url, response.status_code, response.text[:300])
    return response.json()


def refused(response: Any, status: int, code: str, field: str | None = None) -> None:
    assert response.status_code == status, (response.request.url, response.status_code, response.text[:300])
    error = response.json()["error"]
    assert error["code"] == code, error
    if field is not None:
        assert error["field"] == field, error
    assert "Traceback" not in response.text


def test_accounts_list_pages_through_every_account_as_the_cli_lists_them(served: Served):
    expected = cli_json(served.db, "account", "list")
    seen: list[dict[str, Any]] = []
    after = None
    while True:
        page = ok(served.get("/api/v1/accounts", params={"limit": 2, **({"after": after} if after else {})}))
        seen += page["accounts"]
        after = page["next_after"]
        if after is None:
            break
    assert seen == expected and len(expected) >= 7
    only = ok(served.get("/api/v1/accounts", params={"status": "healthy"}))["accounts"]
    assert only == cli_json(served.db, "account", "list", "--status", "healthy")


def test_one_account_is_the_cli_account_show(served: Served):
    for name in ("alice", "bob", "erin", "backstop"):
        view = ok(served.get(f"/api/v1/accounts/{name}"))
        assert view.pop("lag")["behind"] == 0 and view.pop("as_of_position") is None
        assert view == cli_json(served.db, "account", "show", name)
    assert ok(served.get("/api/v1/accounts/bob"))["positions"][0]["adl_rank"] >= 1


def test_an_account_as_of_a_position_or_time_is_the_cli_as_of(served: Served):
    for as_of in ("30", "2025-03-02T10:31:00Z"):
        view = ok(served.get("/api/v1/accounts/alice", params={"as_of": as_of}))
        view.pop("lag")
        assert isinstance(view.pop("as_of_position"), int)
        assert view == cli_json(served.db, "account", "show", "alice", "--as-of", as_of)


def test_markets_carry_the_cli_figures_twap_and_parameters_in_force(served: Served):
    listed = ok(served.get("/api/v1/markets"))
    assert listed["markets"] == cli_json(served.db, "market", "list")
    view = ok(served.get("/api/v1/markets/BTC-PERP"))
    shown = cli_json(served.db, "market", "show", "BTC-PERP")
    assert view["open_interest"] == shown["open_interest"] and view["terms"]["tiers"] == shown["tiers"]
    parameters = {row["name"]: row for row in view["parameters"]}
    assert parameters["loss_policy"]["value"] == "socialize_per_contract" and parameters["loss_policy"]["source"] == "market"
    assert parameters == {row["name"]: row for row in cli_json(served.db, "parameters", "show", "--market", "BTC-PERP")
                          ["parameters"]}
    assert view["twap"]["price_twap"] is not None and view["twap"]["twap_window"] == int(parameters["twap_window"]["value"])
    earlier = ok(served.get("/api/v1/markets/BTC-PERP", params={"as_of": "2025-03-01T23:00:00Z"}))
    assert earlier["terms"]["mark_price"] == "50000" and earlier["twap"]["price_twap"] == "50000"


def test_the_fund_pages_are_the_cli_movements(served: Served):
    shown = cli_json(served.db, "insurance-fund", "show")
    first = ok(served.get("/api/v1/insurance-fund", params={"limit": 2}))
    rest = ok(served.get("/api/v1/insurance-fund", params={"limit": 100, "offset": 2}))
    assert first["balance"] == shown["balance"] == "0"  # 100 + 70 in, 170 out for erin's deficit
    assert first["movements"] + rest["movements"] == shown["movements"]
    assert first["movements_total"] == len(shown["movements"]) == 4
    newest = ok(served.get("/api/v1/insurance-fund", params={"newest_first": True, "limit": 1}))["movements"]
    assert newest == shown["movements"][-1:]
    as_of = ok(served.get("/api/v1/insurance-fund", params={"as_of": "2025-03-02T23:00:00Z"}))
    assert as_of["balance"] == "170"


def test_losses_and_the_liquidation_register(served: Served):
    lines = [json.loads(line) for line in cli(served.db, "losses", "--json").splitlines()]
    page = ok(served.get("/api/v1/losses"))
    assert page["allocations"] == lines and page["rows_total"] == 4
    assert sorted(row["share"] for row in lines) == ["115", "115", "230", "230"]
    register = ok(served.get("/api/v1/liquidations", params={"date": "2025-03-03"}))
    kinds = [row["kind"] for row in register["rows"]]
    assert "liquidation_fill" in kinds and "loss_covered" in kinds and "fund_draw" in kinds
    assert all(row["day"] == "2025-03-03" for row in register["rows"])
    alice = ok(served.get("/api/v1/liquidations", params={"account": "alice"}))["rows"]
    assert {row["kind"] for row in alice} >= {"margin_call", "liquidation_fill"}


@pytest.mark.parametrize("name", REPORTS)
def test_every_report_is_byte_identical_to_clearing_report_with_its_etag(served: Served, name: str):
    for day in DATES:
        for output_format in ("csv", "json"):
            response = served.get(f"/api/v1/reports/{name}", params={"date": day, "format": output_format})
            assert response.status_code == 200, response.text
            result = CliRunner().invoke(main, ["--db", served.db, "report", name, "--date", day, "--format", output_format],
                                        catch_exceptions=False)
            assert response.content == result.stdout_bytes, (name, day, output_format)
            etag = response.headers["etag"]
            again = served.get(f"/api/v1/reports/{name}", params={"date": day, "format": output_format},
                               headers={"If-None-Match": etag})
            assert again.status_code == 304 and again.content == b""
    assert response.headers["x-clearing-provisional"] in ("true", "false")


def test_the_digest_and_the_last_recorded_verification(served: Served):
    assert ok(served.get("/api/v1/audit/digest")) == cli_json(served.db, "audit", "digest")
    before = ok(served.get("/api/v1/audit/verification"))["last"]
    result = CliRunner().invoke(main, ["--db", served.db, "audit", "verify", "--record"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    last = ok(served.get("/api/v1/audit/verification"))["last"]
    assert last is not None and last["verified"] is True and last != before
    assert last["head"] == ok(served.get("/api/v1/audit/digest"))["position"]
    assert last["chain_hash"] == ok(served.get("/api/v1/audit/digest"))["head"]


def test_health_events_and_tokens(served: Served):
    assert ok(served.get("/api/v1/health")) == {"store": "reachable", "lag": {"position": ok(served.get(
        "/api/v1/audit/digest"))["position"], "head": ok(served.get("/api/v1/audit/digest"))["position"], "behind": 0}}
    events = ok(served.get("/api/v1/events", params={"from": 1, "limit": 3}))["events"]
    assert [event["position"] for event in events] == [1, 2, 3]
    assert ok(served.get("/api/v1/events/2"))["events"] == [events[1]]
    listed = {token["name"]: token for token in ok(served.get("/api/v1/tokens"))["tokens"]}
    assert listed["gone"]["active"] is False and listed["fca"]["role"] == "regulator"
    assert all("token_sha256" not in token for token in listed.values())


def test_every_token_problem_is_refused_and_both_reading_roles_are_let_in(served: Served):
    refused(served.get("/api/v1/accounts", token=None), 401, "unauthorized", "authorization")
    refused(served.get("/api/v1/accounts", token="clr_not-a-token"), 401, "invalid_token", "authorization")
    refused(served.get("/api/v1/accounts", token="gone"), 401, "revoked_token", "authorization")
    refused(served.get("/api/v1/accounts", token="desk"), 403, "forbidden_role", "authorization")
    assert served.get("/api/v1/accounts", token=None).headers["www-authenticate"].startswith("Bearer")
    for token in ("fca", "kpmg"):
        ok(served.get("/api/v1/accounts", token=token))
    refused(served.get("/api/v1/reports/daily-margin", token=None, params={"date": "2025-03-01"}), 401, "unauthorized")
    page = served.get("/fund", token=None, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert served.get("/fund", token="desk", follow_redirects=False).status_code == 403


def test_bad_requests_get_the_cli_codes_never_a_500(served: Served):
    refused(served.get("/api/v1/accounts/nobody"), 404, "account_not_found", "account")
    refused(served.get("/api/v1/markets/NOPE"), 404, "market_not_found", "market")
    refused(served.get("/api/v1/reports/daily-margin", params={"date": "2025-13-01"}), 422, "invalid_date", "date")
    refused(served.get("/api/v1/reports/daily-margin", params={"date": "2020-01-01"}), 404, "date_outside_log", "date")
    refused(served.get("/api/v1/reports/daily-margin"), 422, "missing_field", "date")
    refused(served.get("/api/v1/reports/everything", params={"date": "2025-03-01"}), 422, "unknown_report", "report")
    refused(served.get("/api/v1/accounts/alice", params={"as_of": "yesterday"}), 422, "invalid_until", "until")
    refused(served.get("/api/v1/accounts", params={"limit": 0}), 422, "invalid_value", "limit")
    refused(served.get("/api/v1/accounts", params={"status": "rich"}), 422, "invalid_value", "status")
    refused(served.get("/api/v1/events/999999"), 404, "event_not_found", "position")
    refused(served.get("/api/v1/nothing-here"), 404, "not_found")
    refused(served.client.post("/api/v1/accounts", headers={"Authorization": f"Bearer {SECRETS['fca']}"}), 405,
            "method_not_allowed")


def test_the_access_log_names_the_token_never_the_secret(served: Served, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.INFO, logger="clearing.access"):
        served.get("/api/v1/markets", token="kpmg")
        served.get("/api/v1/markets", token="desk")
        served.get("/api/v1/markets", token=None)
    lines = [json.loads(record.getMessage()) for record in caplog.records if record.name == "clearing.access"]
    assert [(line["path"], line["status"], line["token"]) for line in lines] == [
        ("/api/v1/markets", 200, "kpmg"), ("/api/v1/markets", 403, "desk"), ("/api/v1/markets", 401, None)]
    assert not any(secret in caplog.text for secret in SECRETS.values())


def test_every_dashboard_page_renders_with_its_charts_and_links_to_events(served: Served):
    served.client.cookies.set("clearing_token", SECRETS["fca"])
    try:
        for path, chart in (("/", "insurance-fund"), ("/fund", "insurance-fund"), ("/accounts", "coverage"),
                            ("/markets", "open-interest"), ("/liquidations", "liquidations"), ("/losses", "losses"),
                            ("/reports", None), ("/accounts/alice", None), ("/markets/BTC-PERP", None), ("/events/5", None)):
            page = served.client.get(path)
            assert page.status_code == 200, (path, page.text[:300])
            if chart is not None:
                assert f'id="chart-{chart}"' in page.text and "<svg" in page.text, path
        fund = served.client.get("/fund").text
        assert 'href="/events/' in fund and "liquidation_penalty" in fund
        svg = served.client.get("/charts/insurance-fund.svg", params={"from": "2025-03-01", "to": "2025-03-05"})
        assert svg.headers["content-type"].startswith("image/svg+xml") and "balance" in svg.text
    finally:
        served.client.cookies.clear()


def test_the_openapi_schema_in_docs_is_the_served_one(served: Served):
    refused(served.get("/api/v1/openapi.json", token=None), 401, "unauthorized")
    served_schema = ok(served.get("/api/v1/openapi.json"))
    stored = json.loads((repo_root() / "docs" / "openapi.json").read_text())
    assert served_schema == stored, "docs/openapi.json is stale: python -m projections.api.schema > docs/openapi.json"


def test_an_unknown_query_parameter_is_refused_not_ignored(served: Served):
    refused(served.get("/api/v1/accounts", params={"limt": 10}), 422, "unknown_field", "limt")
    refused(served.get("/api/v1/health", params={"x": 1}), 422, "unknown_field", "x")
