"""Every report stays byte-identical across changes to how events are stored (issue 10).

Three ledgers are built from the same input each run: the report scenario of
``tests/unit/test_reports.py``, each real crash window of ``../shared/data`` (skipped when
absent) and a seeded random book (two markets, forty accounts, deposits, withdrawals,
trades, marks and funding over three days). Every report, every day and both formats are
rendered, and their SHA-256 digests are compared with ``tests/golden/report_digests.json``,
which was written by the code before the change. Two digests per report: of the exact
text, and of the text without log positions (the ``position`` column and JSON's
``as_of_position``), which name rows of the log: a change that stores fewer rows per trade
renumbers them while every number a report shows stays the same.

The book's digests were regenerated once since, by ADR 26 (its positions report books a
fill's volume on the fill's own day; the code before it gave the same figures only when no
batch spanned midnight, which the batch-size test below now requires); and once for
provenance (issue 11): every JSON report gained ``chain_hash`` (compared as a placeholder,
``without_chain_hash``: its value differs between two builds of the same input), so each
exact JSON digest changed while every CSV digest and every digest without positions stayed
the same; the scenario's day before its log was dropped (such a day is now
``date_outside_log``).

Regenerate (only with a change that is meant to change a report, named in its ADR)::

    python -m tests.integration.test_report_identity --write
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
import sys
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from clearing.settings import store_env
from projections.read import Views
from projections.reports.registry import REPORT_NAMES, build_report, check_request
from projections.reports.rendering import render
from projections.runner import Projector
from projections.store import ProjectionStore
from tests.integration.test_crash_replay import POLICIES, TAPE, population, windows
from tests.ledger import Ledger
from tests.unit.test_reports import DATES, build

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "report_digests.json"
BOOK_DAYS = ("2025-06-01", "2025-06-02", "2025-06-03")


def digests_of(db: str, days: tuple[str, ...]) -> dict[str, str]:
    """SHA-256 of every report for every day in both formats, keyed ``name/day/format``."""
    ledger = Ledger(store_env(db))
    store = ProjectionStore(db)
    try:
        Projector(ledger.app, store).catch_up()
        views = Views(store)
        found = {}
        for name in REPORT_NAMES:
            for day in days:
                report = build_report(views, check_request(name, day))
                for output_format in ("csv", "json"):
                    text = render(report, output_format)
                    found[f"{name}/{day}/{output_format}"] = _digest(without_chain_hash(text, output_format))
                    found[f"{name}/{day}/{output_format}-without-positions"] = _digest(
                        without_positions(text, output_format))
        return found
    finally:
        store.close()
        ledger.app.close()


CHAIN_HASH = re.compile(r'"chain_hash": "[0-9a-f]{64}"')


def without_chain_hash(text: str, output_format: str) -> str:
    """The exact text with JSON's ``chain_hash`` value replaced by a placeholder.

    The chain hashes the stored events, whose library timestamps are the wall-clock times
    they were recorded at: a ledger built again from the same input has another head (the
    same log copied keeps it: ``tests/integration/test_reports.py``). Every other byte is
    compared; the field must be there, once.
    """
    if output_format != "json":
        return text
    replaced, count = CHAIN_HASH.subn('"chain_hash": "<the chain head>"', text)
    assert count == 1, f"a JSON report without exactly one chain_hash: {count}"
    return replaced


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def without_positions(text: str, output_format: str) -> str:
    """The report without log positions: JSON's ``as_of_position``, its ``chain_hash`` (the
    chain's head there) and every ``position`` field; CSV's ``position`` column."""
    if output_format == "json":
        document = json.loads(text)
        document.pop("as_of_position", None)
        document.pop("chain_hash", None)  # the chain's head at that position: a log position's hash
        for row in document.get("rows", []):
            row.pop("position", None)
        return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or "position" not in rows[0]:
        return text
    index = rows[0].index("position")
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([row[:index] + row[index + 1:] for row in rows])
    return buffer.getvalue()


def scenario_digests(directory: Path) -> dict[str, str]:
    db = str(directory / "scenario.db")
    build(db).ledger.app.close()
    return digests_of(db, DATES)


def crash_digests(directory: Path, window: str) -> dict[str, str]:
    """The window's population, then every minute's close as the mark (as the crash test posts it)."""
    rows = windows()[window]
    db = str(directory / f"{window}.db")
    ledger = Ledger(store_env(db))
    ledger.post_ok(population(rows[0]["open"], rows[0]["open_time_utc"], POLICIES[window]))
    commands: list[dict[str, Any]] = []
    for n, row in enumerate(rows):
        commands.append({"type": "price", "id": f"p{n}", "market": "BTCUSDT", "price": row["close"],
                         "at": row["open_time_utc"]})
        if n and n % 480 == 0:
            commands.append({"type": "funding", "id": f"f{n}", "market": "BTCUSDT", "rate": "0.0001",
                             "at": row["open_time_utc"]})
    ledger.post(commands, batch_size=60)
    ledger.app.close()
    first = rows[0]["open_time_utc"][:10]
    last = rows[-1]["open_time_utc"][:10]
    return digests_of(db, tuple(sorted({first, last})))


def random_book(seed: int = 20261203) -> Iterator[dict[str, Any]]:
    """A seeded book: 40 accounts, a perpetual and a dated future, three days of trading."""
    rng = random.Random(seed)
    start = f"{BOOK_DAYS[0]}T00:00:00Z"
    yield {"type": "create_market", "id": "m1", "market": "BTC-PERP", "kind": "perpetual", "tick_size": "0.5",
           "step_size": "0.001", "initial_margin_fraction": "0.1", "maintenance_margin_fraction": "0.05", "at": start}
    yield {"type": "create_market", "id": "m2", "market": "ETH-FUT", "kind": "future", "expiry": "2025-07-01T00:00:00Z",
           "tick_size": "0.01", "step_size": "0.01", "initial_margin_fraction": "0.2",
           "maintenance_margin_fraction": "0.1", "at": start}
    marks = {"BTC-PERP": Decimal(60000), "ETH-FUT": Decimal(3000)}
    for market, mark in marks.items():
        yield {"type": "price", "id": f"p0-{market}", "market": market, "price": str(mark), "at": start}
    yield {"type": "fund_insurance", "id": "if", "amount": "5000", "at": start}
    names = [f"acct{n:02d}" for n in range(40)]
    for name in names:
        yield {"type": "open_account", "id": f"o-{name}", "account": name, "at": start}
        yield {"type": "deposit", "id": f"d-{name}", "account": name, "amount": str(rng.randrange(2000, 40000)),
               "at": start}
    sequence = 0
    for day in BOOK_DAYS:
        for hour in range(24):
            at = f"{day}T{hour:02d}:30:00Z"
            for market, previous in list(marks.items()):
                drift = -150 if day == BOOK_DAYS[1] and hour < 12 else 0  # a half-day slide on day two
                step = Decimal(rng.randrange(-300 + drift, 301 + drift)) / 10000
                tick = Decimal("0.5") if market == "BTC-PERP" else Decimal("0.01")
                marks[market] = ((previous * (1 + step)) / tick).to_integral_value() * tick
                sequence += 1
                yield {"type": "price", "id": f"p{sequence}", "market": market, "price": str(marks[market]), "at": at}
            for _ in range(12):
                market = rng.choice(sorted(marks))
                buyer, seller = rng.sample(names, 2)
                unit = Decimal("0.001") if market == "BTC-PERP" else Decimal("0.01")
                size = unit * rng.randrange(1, 300 if market == "BTC-PERP" else 800)
                sequence += 1
                yield {"type": "trade", "id": f"t{sequence}", "market": market, "buyer": buyer, "seller": seller,
                       "size": str(size), "price": str(marks[market]), "at": at}
            if hour % 8 == 0:
                sequence += 1
                yield {"type": "funding", "id": f"f{sequence}", "market": "BTC-PERP", "rate": "0.0001", "at": at}
            name = rng.choice(names)
            sequence += 1
            kind = rng.choice(("deposit", "withdraw"))
            yield {"type": kind, "id": f"c{sequence}", "account": name, "amount": str(rng.randrange(100, 3000)),
                   "at": at}


def book_digests(directory: Path, batch_size: int = 100) -> dict[str, str]:
    db = str(directory / f"book-{batch_size}.db")
    ledger = Ledger(store_env(db))
    ledger.post(list(random_book()), batch_size=batch_size)
    ledger.app.close()
    return digests_of(db, BOOK_DAYS)


def all_digests(directory: Path) -> dict[str, dict[str, str]]:
    found = {"scenario": scenario_digests(directory), "book": book_digests(directory)}
    if TAPE.exists():
        for window in POLICIES:
            found[window] = crash_digests(directory, window)
    return found


def golden() -> dict[str, dict[str, str]]:
    loaded: dict[str, dict[str, str]] = json.loads(GOLDEN.read_text())
    return loaded


def _compare(expected: dict[str, str], found: dict[str, str]) -> None:
    assert sorted(found) == sorted(expected), "the set of reports, days or formats changed"
    changed = [key for key in expected if found[key] != expected[key]]
    assert not changed, f"{len(changed)} report(s) differ from the golden digests: {changed[:5]}"


def test_the_scenario_reports_are_unchanged(tmp_path):
    _compare(golden()["scenario"], scenario_digests(tmp_path))


def test_the_random_book_reports_are_unchanged(tmp_path):
    found = book_digests(tmp_path)
    _compare(golden()["book"], found)


def test_the_random_book_reports_do_not_depend_on_the_batch_size(tmp_path):
    """Batches of 100 span midnight; posted one command a batch, no batch does. Every number
    of every report is the same (ADR 26: volume is booked on its fill's day; before it, the
    batch's volume went to the day of its last trade, and the positions report differed)."""
    def numbers(digests: dict[str, str]) -> dict[str, str]:
        return {key: digest for key, digest in digests.items() if key.endswith("-without-positions")}
    assert numbers(book_digests(tmp_path, batch_size=1)) == numbers(book_digests(tmp_path, batch_size=100))


@pytest.mark.skipif(not TAPE.exists(), reason=f"crash data not found at {TAPE}")
@pytest.mark.parametrize("window", list(POLICIES))
def test_the_crash_window_reports_are_unchanged(window, tmp_path):
    _compare(golden()[window], crash_digests(tmp_path, window))


def test_a_changed_report_is_found(tmp_path):
    """The comparison can fail: one digest altered is named."""
    expected = dict(golden()["scenario"])
    key = sorted(expected)[0]
    expected[key] = "0" * 64
    with pytest.raises(AssertionError, match=key.replace("/", "/")):
        _compare(expected, scenario_digests(tmp_path))


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.integration.test_report_identity --write")
    if not TAPE.exists():
        sys.exit(f"crash data not found at {TAPE}: the golden file needs every window")
    with tempfile.TemporaryDirectory() as scratch:
        digests = all_digests(Path(scratch))
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")
    print(f"wrote {sum(len(v) for v in digests.values())} digests to {GOLDEN}")
