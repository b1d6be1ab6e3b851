"""``clearing lab loss-policies``: the seeded population through a real crash window.

Runs the lab as a function on 40 accounts over the 2025-10-10 window with all six policies
(every one implemented by the engine, so every run is ``ok``), and through the command line:
on SQLite, and with ``CLEARING_DB`` pointing at PostgreSQL, which the lab must leave
untouched. Uses ../shared/data (skipped, naming the file, when it is absent); the
PostgreSQL test is skipped (or fails under ``CLEARING_REQUIRE_POSTGRES=1``) without a server.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from click.testing import CliRunner

from clearing.application import ClearingApplication
from clearing.domain.risk.totals import margin_totals
from clearing.lab.outputs import rows
from clearing.lab.population import (
    CENT,
    ENTRY_SPREAD,
    FUND_FRACTION,
    INITIAL_MARGIN_FRACTION,
    MARKET,
    PRICE_BAND,
    STEP_SIZE,
    TICK_SIZE,
    build_population,
    setup_commands,
)
from clearing.lab.runner import OK, POLICIES, SKIPPED, LabReport, RunResult, run_lab
from clearing.lab.tape import load_tape
from clearing.money import round_up
from clearing.posting import post_lines
from cli.lab import _table
from cli.main import main
from tests.conftest import REPO, SHARED_DATA

TAPE = SHARED_DATA / "binance_um_btcusdt_perp_1m_crash_windows.csv"
WINDOW = "2025-10-10_tariff_crash_adl"
FIRST_MARK = Decimal("116605.2")  # the 2025-10-10 window's first open
ZERO = Decimal(0)
CLEARING = str(REPO / ".venv" / "bin" / "clearing")


def _window():
    if not TAPE.exists():
        pytest.skip(f"crash tape not found: {TAPE}")
    return next(window for window in load_tape(TAPE) if window.name == WINDOW)


@pytest.fixture(scope="module")
def report():
    return run_lab([_window()], accounts=40, seed=7, policies=POLICIES)


class TestPopulation:
    def test_pairs_balance_open_interest_on_the_step_and_the_cent(self):
        population = build_population(300, 7, FIRST_MARK, "long")
        longs = sum((m.size for m in population.members if m.side == "long"), ZERO)
        shorts = sum((m.size for m in population.members if m.side == "short"), ZERO)
        assert longs == shorts == population.open_interest
        assert all(m.size % STEP_SIZE == 0 and m.deposit % CENT == 0 for m in population.members)
        assert population.open_interest_notional == population.open_interest * FIRST_MARK
        assert population.backstop_deposit == round_up(population.open_interest_notional, CENT)
        assert population.fund == round_up(population.open_interest_notional * FUND_FRACTION, CENT)

    def test_leverage_mix_and_tail_on_the_losing_side(self):
        summary = build_population(300, 7, FIRST_MARK, "long").summary()["leverage_buckets"]
        totals = {name: spec["long"] + spec["short"] for name, spec in summary.items()}
        assert totals == {"low": 180, "mid": 90, "tail": 30}
        assert (summary["tail"]["long"], summary["tail"]["short"]) == (24, 6)
        flipped = build_population(300, 7, FIRST_MARK, "short").summary()["leverage_buckets"]
        assert (flipped["tail"]["long"], flipped["tail"]["short"]) == (6, 24)

    def test_a_seed_gives_one_population(self):
        assert build_population(40, 3, Decimal(100), "long") == build_population(40, 3, Decimal(100), "long")
        assert build_population(40, 3, Decimal(100), "long") != build_population(40, 4, Decimal(100), "long")

    def test_pairs_trade_at_different_prices_and_equity_covers_initial_margin_at_the_first_mark(self):
        population = build_population(300, 7, FIRST_MARK, "long")
        prices = [price for _, _, _, price in population.pairs]
        assert len(set(prices)) > len(prices) * 9 // 10, "pairs should trade at (nearly) all different prices"
        assert min(prices) < FIRST_MARK < max(prices)
        assert all(price % TICK_SIZE == 0 and abs(price / FIRST_MARK - 1) <= ENTRY_SPREAD for price in prices)
        assert ENTRY_SPREAD <= PRICE_BAND
        by_name = {member.name: member for member in population.members}
        for long_name, short_name, size, price in population.pairs:
            assert (by_name[long_name].price, by_name[short_name].price) == (price, price)
            assert by_name[long_name].size == by_name[short_name].size == size
        for member in population.members:
            notional = member.size * FIRST_MARK
            equity = member.deposit + member.pnl_at(FIRST_MARK)
            assert equity >= notional / member.leverage >= notional * INITIAL_MARGIN_FRACTION, member
            if member.pnl_at(FIRST_MARK) < ZERO:  # at a loss: it starts at its drawn leverage (to the cent)
                assert equity - notional / member.leverage < CENT, member

    def test_the_ledger_accepts_every_trade_and_values_each_member_as_the_model_does(self):
        population = build_population(40, 7, FIRST_MARK, "long")
        app = ClearingApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
        try:
            commands = setup_commands(population, "adl", datetime(2025, 10, 10, 20, tzinfo=UTC))
            outcomes = list(post_lines(app, [json.dumps(command) for command in commands], operator="test"))
            assert [outcome for outcome in outcomes if outcome.status != "applied"] == []
            market = app.get_market(MARKET)
            assert market.price_mark == FIRST_MARK
            for member in population.members:
                account = app.get_account(member.name)
                assert account.position(MARKET).size == (member.size if member.side == "long" else -member.size)
                totals = margin_totals(account.collateral, account.positions, {MARKET: market}, with_maintenance=False)
                assert totals.equity == member.deposit + member.pnl_at(FIRST_MARK), member
                assert totals.equity >= totals.initial_margin > ZERO, member
        finally:
            app.close()


class TestRuns:
    def test_a_row_per_policy_and_window_and_every_policy_runs(self, report):
        assert [(row["window"], row["policy"]) for row in rows(report)] == [(WINDOW, policy) for policy in POLICIES]
        assert [(run.policy, run.status, run.message) for run in report.runs] == [(p, OK, "") for p in POLICIES]

    def test_money_is_conserved_and_nothing_is_left_uncovered(self, report):
        for run in report.runs:
            metrics = run.metrics
            assert metrics["conservation_difference"] == ZERO, run.policy
            assert metrics["invariants"] == OK, (run.policy, metrics["invariants"])
            assert metrics["uncovered"] == ZERO, run.policy
            assert metrics["deficit_total"] == metrics["fund_used"] + metrics["borne_total"], run.policy

    def test_the_crash_gaps_the_tail_through_bankruptcy_and_the_policies_pay(self, report):
        by_policy = {run.policy: run.metrics for run in report.runs}
        for policy, metrics in by_policy.items():
            assert metrics["bankrupt_accounts"] > 0 and metrics["deficit_total"] > ZERO, policy
            assert metrics["borne_total"] > ZERO, policy  # the fund does not cover it all: each policy decides
        for policy in ("haircut_gains", "leverage_weighted_gains"):
            assert by_policy[policy]["borne_backstop"] == ZERO, policy  # the backstop is long in a crash: no gains

    def test_the_two_adl_rankings_pick_differently(self, report):
        by_policy = {run.policy: run.metrics for run in report.runs}
        assert by_policy["adl"] != by_policy["adl_hyperliquid"]
        assert [row["identical_to"] for row in rows(report)] == [""] * len(POLICIES)

    def test_the_same_seed_reproduces_every_metric(self, report):
        again = run_lab([_window()], accounts=40, seed=7, policies=("adl", "adl_hyperliquid"))
        first = {run.policy: run.metrics for run in report.runs if run.policy in ("adl", "adl_hyperliquid")}
        assert {run.policy: run.metrics for run in again.runs} == first
        assert again.populations == report.populations

    def test_a_name_the_engine_refuses_is_reported_skipped_by_the_function(self):
        refused = run_lab([_window()], accounts=10, seed=7, policies=("no_such_policy",))
        [run] = refused.runs
        assert (run.status, run.metrics) == (SKIPPED, {})
        assert "[parameter_out_of_range]" in run.message and "loss_policy" in run.message, run.message

    def test_identical_runs_are_noted_neutrally(self):
        metrics = {"deficit_total": Decimal(5), "uncovered": ZERO}
        report = LabReport(7, 10, ("adl", "adl_hyperliquid"), {WINDOW: {}},
                           (RunResult(WINDOW, "adl", OK, metrics=metrics),
                            RunResult(WINDOW, "adl_hyperliquid", OK, metrics=dict(metrics))), 0.0)
        table = _table(report)
        assert f"{WINDOW} adl: every metric equals adl_hyperliquid on this window" in table
        assert "not yet distinct" not in table


class TestCommandLine:
    def test_writes_results_and_charts(self, tmp_path):
        _window()
        output = tmp_path / "out"
        env = {**os.environ, "CLEARING_DB": str(tmp_path / "operator.db")}
        done = subprocess.run(
            [CLEARING, "lab", "loss-policies", "--tape", str(TAPE), "--accounts", "30",
             "--policies", "adl,haircut_gains", "--output", str(output)],
            capture_output=True, text=True, env=env, timeout=600, check=False)
        assert done.returncode == 0, done.stderr
        names = {path.name for path in output.iterdir()}
        assert {"results.csv", "results.json", "amount_borne.png", "gini_borne.png", "top_winner_survival.png",
                "max_leverage_left.png"} <= names
        with (output / "results.csv").open(newline="") as handle:
            table = list(csv.DictReader(handle))
        assert [(row["policy"], row["status"], row["uncovered"]) for row in table] == \
            [("adl", OK, "0"), ("haircut_gains", OK, "0")] * 3
        document = json.loads((output / "results.json").read_text())
        assert (document["seed"], document["accounts"], document["tape"]) == (7, 30, str(TAPE))
        assert set(document["populations"]) == {row["window"] for row in table}
        assert "haircut_gains" in done.stdout and "Traceback" not in done.stderr
        assert not (tmp_path / "operator.db").exists(), "the lab wrote to the configured store"

    def test_leaves_a_configured_postgres_store_untouched(self, postgres_db, tmp_path):
        _window()
        env = {**os.environ, "CLEARING_DB": postgres_db}
        opened = subprocess.run([CLEARING, "open-account", "alice"], capture_output=True, text=True, env=env,
                                timeout=120, check=False)
        assert opened.returncode == 0, opened.stderr
        before = _schema_state(postgres_db)
        assert before[2] is not None, before  # the operator's store has events
        output = tmp_path / "out"
        done = subprocess.run(
            [CLEARING, "lab", "loss-policies", "--tape", str(TAPE), "--accounts", "20", "--windows", WINDOW,
             "--output", str(output)],
            capture_output=True, text=True, env=env, timeout=600, check=False)
        assert done.returncode == 0, done.stderr
        with (output / "results.csv").open(newline="") as handle:
            assert [(row["policy"], row["status"]) for row in csv.DictReader(handle)] == [(p, OK) for p in POLICIES]
        assert _schema_state(postgres_db) == before, "the lab wrote to the configured PostgreSQL store"

    def test_an_unknown_policy_is_a_usage_error_and_nothing_runs(self, tmp_path):
        tape = tmp_path / "tape.csv"
        tape.write_text("window,open_time_utc,open,high,low,close\nw,2025-10-10T20:00:00Z,100,101,99,100\n")
        output = tmp_path / "out"
        result = CliRunner().invoke(main, ["lab", "loss-policies", "--tape", str(tape), "--policies",
                                           "adl,no_such_policy", "--output", str(output)])
        assert result.exit_code == 2, result.output
        assert "unknown policy 'no_such_policy'" in result.output and "known: " + ", ".join(POLICIES) in result.output
        assert not output.exists()

    @pytest.mark.parametrize(("arguments", "expected"), [
        (["--policies", "adl,bogus"], "unknown policy 'bogus'"),
        (["--accounts", "31"], "must be even"),
        (["--accounts", "4"], "between 10 and 5000"),
        (["--windows", "nope"], "not in the tape: nope"),
    ])
    def test_bad_options_are_usage_errors(self, tmp_path, arguments, expected):
        tape = tmp_path / "tape.csv"
        tape.write_text("window,open_time_utc,open,high,low,close\nw,2025-10-10T20:00:00Z,100,101,99,100\n")
        result = CliRunner().invoke(main, ["lab", "loss-policies", "--tape", str(tape), *arguments,
                                           "--output", str(tmp_path / "out")])
        assert result.exit_code == 2 and expected in result.output, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)

    def test_a_missing_or_malformed_tape_is_refused_without_a_traceback(self, tmp_path):
        missing = CliRunner().invoke(main, ["lab", "loss-policies", "--tape", str(tmp_path / "absent.csv")])
        assert missing.exit_code == 2 and "does not exist" in missing.output
        bad = tmp_path / "bad.csv"
        bad.write_text("window,open_time_utc,open,high,low,close\nw,not-a-time,100,101,99,100\n")
        malformed = CliRunner().invoke(main, ["lab", "loss-policies", "--tape", str(bad),
                                              "--output", str(tmp_path / "o")])
        assert malformed.exit_code == 2 and "[tape_malformed]" in malformed.output, malformed.output
        assert isinstance(malformed.exception, SystemExit)


def _schema_state(url: str) -> tuple[list[str], dict[str, int], int | None]:
    """The configured schema's tables, their row counts and the events' max notification id."""
    import psycopg

    base, schema = url.split("?schema=")
    with psycopg.connect(base) as connection:
        tables = [name for (name,) in connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY table_name", (schema,))]
        counts = {name: connection.execute(f'SELECT count(*) FROM "{schema}"."{name}"').fetchone()[0]
                  for name in tables}
        head = (connection.execute(f'SELECT max(notification_id) FROM "{schema}".clearing_events').fetchone()[0]
                if "clearing_events" in tables else None)
    return tables, counts, head
