"""Kill -9 harness: ``clearing post`` killed at random moments, then re-posted, ends like a clean run.

A seeded stream with rejections (tests/killharness.py) is posted once cleanly; then, per cycle,
into a fresh store, the same stream is posted with a random ``--batch-size`` and killed with
SIGKILL at a random moment (one to three times), and finally posted again to completion. Every
line's final outcome, the event log (minus what batching legitimately changes) and every
aggregate must equal the clean run's; the first differences are reported precisely.

Cycles: ``CLEARING_KILL_CYCLES`` (default 20, SQLite) and ``CLEARING_KILL_CYCLES_POSTGRES``
(default 5); ``CLEARING_KILL_SEED`` (default 1) picks the stream and the kills. 200 cycles:
``bench/kill_cycles.py``.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

from tests.conftest import require_postgres
from tests.killharness import Capture, PostgresStores, SqliteStores, compare, run_harness

CYCLES = int(os.environ.get("CLEARING_KILL_CYCLES", "20"))
POSTGRES_CYCLES = int(os.environ.get("CLEARING_KILL_CYCLES_POSTGRES", "5"))
SEED = int(os.environ.get("CLEARING_KILL_SEED", "1"))
#: the stream must exercise these rejections, or the harness proves little
EXPECTED_CODES = {"insufficient_margin", "insufficient_collateral", "id_conflict", "account_not_found",
                  "price_outside_band", "self_trade", "market_expired"}


def check(report) -> None:
    print("\n" + report.summary(limit=5))
    assert set(report.clean_codes) >= EXPECTED_CODES, report.clean_codes
    assert report.clean_statuses["already_applied"] and report.clean_statuses["rejected"] >= 50
    kills = [kill for cycle in report.cycles for kill in cycle.kills]
    assert len(report.cycles) == 0 or sum(1 for kill in kills if kill[3]) >= len(kills) // 2, "most kills must hit a running post"
    assert not report.failed, report.summary(limit=5)


def test_killed_and_reposted_streams_end_like_the_clean_run_on_sqlite(tmp_path):
    check(run_harness(SqliteStores(tmp_path), tmp_path, CYCLES, SEED))


@pytest.fixture
def postgres_stores() -> PostgresStores:
    """A fresh schema per store (as tests/conftest.py's ``postgres_db``, which gives only one)."""
    return PostgresStores(require_postgres())


def test_killed_and_reposted_streams_end_like_the_clean_run_on_postgres(postgres_stores, tmp_path):
    check(run_harness(postgres_stores, tmp_path, POSTGRES_CYCLES, SEED))


def test_compare_names_each_kind_of_difference():
    event = ("Account a", "Account.Deposited", 2, {"amount": "1"})
    clean = Capture({1: ("applied",), 2: ("rejected", "insufficient_margin", "buyer")}, Counter(), [event],
                    {"Account a": {"collateral": 1}}, 1)
    other = Capture({1: ("applied",), 2: ("applied",)}, Counter(), [event, ("Account a", "Account.Withdrawn", 3, {})],
                    {"Account a": {"collateral": 2}}, 2, ["exit status 2, expected 1"])
    found = compare(clean, other, lines=["{}", '{"id":"t2"}'])
    assert found[0] == "run problem: exit status 2, expected 1"
    assert found[1].startswith("outcome of line 2: clean ('rejected', 'insufficient_margin', 'buyer'), this run ('applied',)")
    assert found[2].startswith("event log: 1 extra event(s) at index 1, first: Account.Withdrawn on Account a v3")
    assert found[3] == "aggregate Account a: collateral clean 1 this run 2"
    assert compare(clean, clean) == []
