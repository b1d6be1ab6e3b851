"""``clearing lab loss-policies``: the seeded population through a real crash window.

Runs the lab as a function on 40 accounts over the 2025-10-10 window with every policy
(those ``set_parameters`` refuses come back skipped), and once through the command line.
Uses ../shared/data (skipped, naming the file, when it is absent).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from decimal import Decimal

import pytest
from click.testing import CliRunner

from clearing.lab.outputs import rows
from clearing.lab.population import CENT, STEP_SIZE, build_population
from clearing.lab.runner import OK, POLICIES, SKIPPED, run_lab
from clearing.lab.tape import load_tape
from cli.main import main
from tests.conftest import REPO, SHARED_DATA

TAPE = SHARED_DATA / "binance_um_btcusdt_perp_1m_crash_windows.csv"
WINDOW = "2025-10-10_tariff_crash_adl"
EXISTING = ("adl", "socialize_per_contract", "haircut_gains")
ZERO = Decimal(0)


def _window():
    if not TAPE.exists():
        pytest.skip(f"crash tape not found: {TAPE}")
    return next(window for window in load_tape(TAPE) if window.name == WINDOW)


@pytest.fixture(scope="module")
def report():
    return run_lab([_window()], accounts=40, seed=11, policies=POLICIES)


class TestPopulation:
    def test_pairs_balance_open_interest_on_the_step_and_the_cent(self):
        population = build_population(300, 7, Decimal("116605.2"), "long")
        longs = sum((m.size for m in population.members if m.side == "long"), ZERO)
        shorts = sum((m.size for m in population.members if m.side == "short"), ZERO)
        assert longs == shorts == population.open_interest
        assert all(m.size % STEP_SIZE == 0 and m.deposit % CENT == 0 for m in population.members)
        assert population.fund % CENT == 0 and population.backstop_deposit >= population.open_interest_notional

    def test_leverage_mix_and_tail_on_the_losing_side(self):
        summary = build_population(300, 7, Decimal("116605.2"), "long").summary()["leverage_buckets"]
        assert {name: spec["long"] + spec["short"] for name, spec in summary.items()} == {"low": 180, "mid": 90, "tail": 30}
        assert (summary["tail"]["long"], summary["tail"]["short"]) == (24, 6)
        flipped = build_population(300, 7, Decimal("116605.2"), "short").summary()["leverage_buckets"]
        assert (flipped["tail"]["long"], flipped["tail"]["short"]) == (6, 24)

    def test_a_seed_gives_one_population(self):
        assert build_population(40, 3, Decimal(100), "long") == build_population(40, 3, Decimal(100), "long")
        assert build_population(40, 3, Decimal(100), "long") != build_population(40, 4, Decimal(100), "long")


class TestRuns:
    def test_a_row_per_policy_and_window(self, report):
        assert [(row["window"], row["policy"]) for row in rows(report)] == [(WINDOW, policy) for policy in POLICIES]
        for run in report.runs:
            assert run.status == OK if run.policy in EXISTING else run.status in (OK, SKIPPED), (run.policy, run.message)
            if run.status == SKIPPED:
                assert "[parameter_out_of_range]" in run.message and "loss_policy" in run.message, run.message

    def test_money_is_conserved_and_nothing_is_left_uncovered(self, report):
        for run in (run for run in report.runs if run.status == OK):
            metrics = run.metrics
            assert metrics["conservation_difference"] == ZERO, run.policy
            assert metrics["invariants"] == OK, (run.policy, metrics["invariants"])
            assert metrics["uncovered"] == ZERO, run.policy
            assert metrics["deficit_total"] == metrics["fund_used"] + metrics["borne_total"], run.policy

    def test_the_crash_gaps_the_tail_through_bankruptcy(self, report):
        for run in (run for run in report.runs if run.status == OK):
            assert run.metrics["bankrupt_accounts"] > 0 and run.metrics["deficit_total"] > ZERO, run.policy
        haircut = next(run for run in report.runs if run.policy == "haircut_gains")
        assert haircut.metrics["borne_backstop"] == ZERO  # the backstop holds the losing side: no gains to cut

    def test_the_same_seed_reproduces_every_metric(self, report):
        again = run_lab([_window()], accounts=40, seed=11, policies=EXISTING)
        first = {run.policy: run.metrics for run in report.runs if run.policy in EXISTING}
        assert {run.policy: run.metrics for run in again.runs} == first
        assert again.populations == report.populations


class TestCommandLine:
    def test_writes_results_and_charts(self, tmp_path):
        _window()
        output = tmp_path / "out"
        env = {**os.environ, "CLEARING_DB": str(tmp_path / "operator.db")}
        done = subprocess.run(
            [str(REPO / ".venv" / "bin" / "clearing"), "lab", "loss-policies", "--tape", str(TAPE), "--accounts", "30",
             "--policies", "adl,haircut_gains", "--output", str(output)],
            capture_output=True, text=True, env=env, timeout=600, check=False)
        assert done.returncode == 0, done.stderr
        names = {path.name for path in output.iterdir()}
        assert {"results.csv", "results.json", "amount_borne.png", "gini_borne.png", "top_winner_survival.png",
                "max_leverage_left.png"} <= names
        with (output / "results.csv").open(newline="") as handle:
            table = list(csv.DictReader(handle))
        assert [(row["policy"], row["status"], row["uncovered"]) for row in table] == [("adl", OK, "0"), ("haircut_gains", OK, "0")] * 3
        document = json.loads((output / "results.json").read_text())
        assert (document["seed"], document["accounts"], document["tape"]) == (7, 30, str(TAPE))
        assert set(document["populations"]) == {row["window"] for row in table}
        assert "haircut_gains" in done.stdout and "Traceback" not in done.stderr
        assert not (tmp_path / "operator.db").exists(), "the lab wrote to the configured store"

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
        malformed = CliRunner().invoke(main, ["lab", "loss-policies", "--tape", str(bad), "--output", str(tmp_path / "o")])
        assert malformed.exit_code == 2 and "[tape_malformed]" in malformed.output, malformed.output
        assert isinstance(malformed.exception, SystemExit)
