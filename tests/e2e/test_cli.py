"""The ``clearing`` command line, through click's CliRunner and as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main
from tests.conftest import REPO
from tests.ledger import MARKET_BTC, accounts_with, dated

CLEARING = str(Path(sys.executable).parent / "clearing")
SCRIPT = dated(f"""# a commented scenario
{MARKET_BTC}
{accounts_with(("alice", "1000"), ("bob", "100000"))}

{{"type":"price","id":"p1","market":"BTC-PERP","price":"30000","at":"2025-01-01T00:00:00Z"}}
{{"type":"trade","id":"t1","market":"BTC-PERP","buyer":"bob","seller":"alice","size":"0.3","price":"30000","at":"2025-01-01T00:00:01Z"}}
""", "2024-12-31T23:00:00Z")


def run(db: str, *args: str, stdin: str | None = None):
    return CliRunner().invoke(main, ["--db", db, *args], input=stdin, catch_exceptions=False)


@pytest.fixture
def db(tmp_path) -> str:
    return str(tmp_path / "cli.db")


def test_post_prints_one_line_per_command_and_is_idempotent(db, tmp_path):
    script = tmp_path / "s.jsonl"
    script.write_text(SCRIPT)
    first = run(db, "post", "--sync", str(script))
    assert first.exit_code == 0, first.output
    lines = first.stdout.strip().splitlines()
    assert len(lines) == 7 and all(" applied: " in line for line in lines)
    assert "7 command(s): 7 applied, 0 already applied, 0 rejected" in first.stderr
    again = run(db, "post", "--sync", "--json", str(script))
    assert again.exit_code == 0
    assert [json.loads(line)["status"] for line in again.stdout.splitlines()] == ["already_applied"] * 7


def test_rejections_give_code_field_one_line_and_exit_one(db):
    run(db, "post", "--sync", "-", stdin=SCRIPT)
    bad = ('{"type":"deposit","id":"d9","account":"alice","amount":1.5}\nnot json\n'
           '{"type":"deposit","id":"d10","account":"alice","amount":"5"}\n')
    result = run(db, "post", "--sync", "--json", "-", stdin=bad)
    assert result.exit_code == 1
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["line"], r["status"], r.get("code"), r.get("field")) for r in rows] == [
        (1, "rejected", "float_not_allowed", "amount"), (2, "rejected", "malformed_json", None), (3, "applied", None, None)]


def test_account_show_json_has_every_field_as_strings(db):
    run(db, "post", "--sync", "-", stdin=SCRIPT)
    result = run(db, "account", "show", "alice", "--json")
    assert result.exit_code == 0
    view = json.loads(result.stdout)
    for key in ("account", "collateral", "equity", "initial_margin", "maintenance_margin", "free_collateral",
                "margin_ratio", "status", "positions"):
        assert key in view
    (position,) = view["positions"]
    assert set(position) >= {"market", "size", "entry_price", "mark_price", "unrealized_pnl", "maintenance_margin",
                             "liquidation_price"}
    assert all(isinstance(v, str) for k, v in position.items() if k not in ("adl_rank", "adl_holders"))
    assert (position["adl_score"], position["adl_rank"], position["adl_holders"]) == ("0", 1, 1)  # the only short, flat PnL
    assert (view["equity"], position["size"], position["maintenance_margin"]) == ("1000", "-0.3", "450")
    # equity 1,000, short 0.3 at 30,000, MMF 5%: (1,000 + 9,000) / (0.015 + 0.3) = 31,746.03... -> 31,746.0
    assert position["liquidation_price"] == "31746"


def test_text_views_and_event_log(db):
    run(db, "post", "--sync", "-", stdin=SCRIPT + '{"type":"fund_insurance","id":"f1","amount":"500"}\n')
    account = run(db, "account", "show", "alice")
    assert "liquidation_price" in account.stdout and "31746" in account.stdout
    market = run(db, "market", "show", "BTC-PERP")
    assert "mark_price        30000" in market.stdout
    fund = json.loads(run(db, "insurance-fund", "show", "--json").stdout)
    assert fund["balance"] == "500" and fund["movements"][0]["cause"] == "contribution"
    events = [json.loads(line) for line in run(db, "events", "--json").stdout.splitlines()]
    assert [e["position"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "CommandRecord.Accepted" and events[1]["type"] == "Market.Listed"
    later = run(db, "events", "--from", "5", "--limit", "2", "--json").stdout.splitlines()
    assert [json.loads(line)["position"] for line in later] == [5, 6]


def test_unknown_account_is_an_error_exit(db):
    run(db, "post", "--sync", "-", stdin=SCRIPT)
    result = run(db, "account", "show", "nobody")
    assert result.exit_code == 1 and "account_not_found" in result.stderr


EARLIER = "2024-12-31T23:00:00Z"  # before the 2025 prices: a later command may not be back-dated past the log


def test_subcommands_build_the_same_commands_as_post(db):
    assert run(db, "create-market", "ETH-PERP", "--kind", "perpetual", "--tick-size", "0.01", "--step-size", "0.01",
               "--imf", "0.1", "--mmf", "0.05", "--id", "m", "--at", EARLIER).exit_code == 0
    assert run(db, "open-account", "alice", "--id", "o1", "--at", EARLIER).exit_code == 0
    assert run(db, "open-account", "bob", "--id", "o2", "--at", EARLIER).exit_code == 0
    assert run(db, "deposit", "alice", "1000", "--id", "d1", "--at", EARLIER).exit_code == 0
    assert run(db, "deposit", "bob", "1000", "--id", "d2", "--at", EARLIER).exit_code == 0
    assert run(db, "price", "ETH-PERP", "3000", "--at", "2025-01-01T00:00:00Z").exit_code == 0
    trade = run(db, "trade", "ETH-PERP", "--buyer", "alice", "--seller", "bob", "--size", "1", "--price", "3000",
                "--at", "2025-01-01T00:00:01Z", "--json")
    assert trade.exit_code == 0 and json.loads(trade.stdout)["status"] == "applied"
    refused = run(db, "withdraw", "alice", "800", "--json")
    assert refused.exit_code == 1 and json.loads(refused.stdout)["code"] == "insufficient_free_collateral"
    bad_number = run(db, "deposit", "alice", "NaN")
    assert bad_number.exit_code == 1 and "invalid_number" in bad_number.stdout
    repeat = run(db, "deposit", "alice", "1000", "--id", "d1", "--at", EARLIER)
    assert repeat.exit_code == 0 and "already applied" in repeat.stdout
    conflict = run(db, "deposit", "alice", "999", "--id", "d1", "--at", EARLIER)
    assert conflict.exit_code == 1 and "id_conflict [amount]" in conflict.stdout
    assert run(db, "fund-insurance", "10", "--contributor", "ops").exit_code == 0
    tiered = run(db, "create-market", "BTC-T", "--kind", "perpetual", "--tick-size", "0.1", "--step-size", "0.001",
                 "--tier", "0:0.02:0.01", "--tier", "100000:0.05:0.025")
    assert tiered.exit_code == 0, tiered.output


def test_every_command_has_help():
    for args in ([], ["post"], ["trade"], ["account", "show"], ["events"], ["demo"], ["create-market"]):
        result = CliRunner().invoke(main, [*args, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output and len(result.output) > 200


def test_subprocess_post_from_stdin_and_file_with_env_db(tmp_path):
    env = {**os.environ, "CLEARING_DB": str(tmp_path / "env.db")}
    script = tmp_path / "s.jsonl"
    script.write_text(SCRIPT)
    first = subprocess.run([CLEARING, "post", "--sync", str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "env.db").exists()
    bad = subprocess.run([CLEARING, "post", "-"], input='{"type":"withdraw","id":"w","account":"alice","amount":"99999"}\n',
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 1
    assert "rejected insufficient_collateral [amount]" in bad.stdout
    shown = subprocess.run([CLEARING, "account", "show", "alice", "--json"], capture_output=True, text=True, env=env,
                           timeout=120)
    assert json.loads(shown.stdout)["collateral"] == "1000"


def test_subprocess_unreachable_postgres_exits_three(tmp_path):
    result = subprocess.run([CLEARING, "--db", "postgresql://postgres@127.0.0.1:1/nothing", "account", "show", "x"],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "POSTGRES_CONNECT_TIMEOUT": "1"})
    assert result.returncode == 3 and result.stderr.startswith("error: [connection_refused] ")


def test_demo_runs_on_postgres_too(postgres_db, tmp_path):
    result = subprocess.run([CLEARING, "--db", postgres_db, "demo", "--accounts", "20", "--steps", "5",
                             "--reports", str(tmp_path / "reports")], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "Lowest margin ratios" in result.stdout and "insurance fund balance 250000" in result.stdout
    assert result.stdout.rstrip().endswith("verified") and "decisions    ok" in result.stdout
    assert sorted(path.name for path in (tmp_path / "reports").iterdir()) == sorted(
        [f"{name}.csv" for name in ("daily-margin", "positions", "insurance-fund", "liquidations", "loss-allocations",
                                    "disclosures", "stress")]
        + [f"{name}.svg" for name in ("insurance-fund", "coverage", "liquidations", "losses", "open-interest")])


def test_reads_never_create_a_store(tmp_path):
    db = str(tmp_path / "absent.db")
    result = run(db, "account", "show", "alice")
    assert result.exit_code == 3 and "store_not_found" in result.stderr
    assert not (tmp_path / "absent.db").exists()


def test_a_byte_order_mark_from_an_editor_is_accepted(db, tmp_path):
    script = tmp_path / "bom.jsonl"
    script.write_bytes(b'\xef\xbb\xbf{"type":"open_account","id":"o1","account":"alice"}\n')
    result = run(db, "post", "--sync", str(script))
    assert result.exit_code == 0 and "o1 applied" in result.stdout


def test_a_store_failure_mid_stream_exits_three_and_a_rerun_completes(db, tmp_path, monkeypatch):
    from eventsourcing.persistence import OperationalError

    from clearing.application import ClearingApplication

    script = tmp_path / "s.jsonl"
    script.write_text(SCRIPT)
    original, calls = ClearingApplication._record, []

    def failing_second_batch(self, processing_event):
        calls.append(1)
        if len(calls) == 2:
            raise OperationalError("disk I/O error")
        return original(self, processing_event)

    monkeypatch.setattr(ClearingApplication, "_record", failing_second_batch)
    failed = run(db, "post", "--sync", "--batch-size", "3", str(script))
    assert failed.exit_code == 3
    assert "disk I/O error" in failed.stderr and "run the same post again" in failed.stderr
    assert len(failed.stdout.splitlines()) == 3  # only the committed first batch was reported
    monkeypatch.setattr(ClearingApplication, "_record", original)
    rerun = run(db, "post", "--sync", "--json", str(script))
    assert rerun.exit_code == 0
    assert [json.loads(line)["status"] for line in rerun.stdout.splitlines()] == ["already_applied"] * 3 + ["applied"] * 4


def test_subprocess_adl_rank_json_and_a_bad_deficit(db):
    # bob long 0.3 and alice short 0.3 at 30,000; at 31,000 bob gains 300 and alice loses 300 (equity 700)
    moved = SCRIPT + '{"type":"price","id":"p2","market":"BTC-PERP","price":"31000","at":"2025-01-01T00:00:02Z"}\n'
    assert run(db, "post", "--sync", "-", stdin=moved).exit_code == 0
    head = len(run(db, "events", "--json").stdout.splitlines())

    def adl_rank(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([CLEARING, "--db", db, "adl", "rank", "BTC-PERP", *args], capture_output=True, text=True,
                              timeout=120, check=False)

    shown = adl_rank("--deficit", "100", "--json")
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert {key: view[key] for key in ("market", "policy", "family", "mark_price", "position", "deficit")} == {
        "market": "BTC-PERP", "policy": "adl", "family": "queue", "mark_price": "31000", "position": head,
        "deficit": "100"}
    ((bob,), (alice,)) = view["longs"], view["shorts"]
    assert (bob["account"], bob["rank"], bob["size"], bob["equity"], bob["bears"]) == ("bob", 1, "0.3", "100300", "100")
    assert (alice["account"], alice["rank"], alice["size"], alice["equity"], alice["leverage"], alice["bears"]) == (
        "alice", 1, "-0.3", "700", "13.2857142857142857142857142857142857142857142857142857142857", "0")  # 9,300 / 700
    assert all(isinstance(row[key], str) for row in (bob, alice) for key in ("size", "equity", "leverage", "score"))
    # if a bankrupt short left 100, bob's gain of 300 pays it; if a bankrupt long did, alice has no gain to pay from
    assert view["what_if"] == [{"charged": "longs", "borne": "100", "uncovered": "0"},
                               {"charged": "shorts", "borne": "0", "uncovered": "100"}]
    bad = adl_rank("--deficit", "1e2", "--json")
    assert (bad.returncode, bad.stdout) == (1, "")
    assert json.loads(bad.stderr) == {"error": {"code": "invalid_number", "field": "deficit",
                                                "message": "deficit: '1e2' is not a plain decimal number"}}
    assert len(run(db, "events", "--json").stdout.splitlines()) == head  # neither read wrote anything
    helped = CliRunner().invoke(main, ["adl", "rank", "--help"])
    assert helped.exit_code == 0 and "--deficit AMOUNT" in helped.output and "waterfill_leverage" in helped.output
