"""``--as-of`` on the insurance fund and the losses (issue 11), the command line as a subprocess.

Both read the stored rows at or before the position (their tables only grow), so the
answer as of a point is the answer the live store gave at that point; each case is
checked against what the command printed when the log stood there.
"""

from __future__ import annotations

import json
import subprocess

from tests.e2e.test_cli import CLEARING

CONTRIBUTIONS = ('{"type":"fund_insurance","id":"f1","amount":"100","contributor":"treasury","at":"2025-01-01T10:00:00Z"}\n'
                 '{"type":"fund_insurance","id":"f2","amount":"50","contributor":"treasury","at":"2025-01-01T11:00:00Z"}\n')
LATER = '{"type":"fund_insurance","id":"f3","amount":"25","at":"2025-01-02T09:00:00Z"}\n'


def clearing(db: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLEARING, "--db", db, *args], input=stdin, capture_output=True, text=True, timeout=300)


def document(db: str, *args: str) -> dict[str, object]:
    done = clearing(db, *args)
    assert done.returncode == 0, (args, done.stderr)
    parsed: dict[str, object] = json.loads(done.stdout)
    return parsed


def test_the_fund_as_of_a_position_or_a_time_is_what_it_was_then(tmp_path):
    db = str(tmp_path / "ledger.db")
    assert clearing(db, "post", "--sync", "-", stdin=CONTRIBUTIONS).returncode == 0
    then = document(db, "insurance-fund", "show", "--json")
    head_then = int(document(db, "audit", "digest", "--json")["position"])  # type: ignore[call-overload]
    assert clearing(db, "post", "--sync", "-", stdin=LATER).returncode == 0
    now = document(db, "insurance-fund", "show", "--json")
    assert now["balance"] == "175" and then["balance"] == "150"
    assert document(db, "insurance-fund", "show", "--as-of", str(head_then), "--json") == then
    assert document(db, "insurance-fund", "show", "--as-of", "2025-01-01T23:59:59Z", "--json") == then
    first = document(db, "insurance-fund", "show", "--as-of", "2025-01-01T10:30:00Z", "--json")
    assert first["balance"] == "100" and len(first["movements"]) == 1  # type: ignore[arg-type]
    grouped = document(db, "query", "insurance-fund", "show", "--as-of", str(head_then), "--json")
    assert grouped == then


def test_losses_as_of_a_point_and_bad_as_of_input(tmp_path):
    db = str(tmp_path / "ledger.db")
    assert clearing(db, "post", "--sync", "-", stdin=CONTRIBUTIONS).returncode == 0
    empty = clearing(db, "losses", "--as-of", "1")
    assert empty.returncode == 0 and "no loss allocations" in empty.stdout
    for args in (("insurance-fund", "show", "--as-of", "soon"), ("losses", "--as-of", "2025-01-01T10:00:00"),
                 ("losses", "--as-of", "0")):
        refused = clearing(db, *args)
        assert refused.returncode == 1 and "[invalid_until]" in refused.stderr, (args, refused.stderr)
        assert "Traceback" not in refused.stderr


def test_as_of_beyond_what_the_projection_has_applied_is_refused(tmp_path):
    db = str(tmp_path / "ledger.db")
    assert clearing(db, "post", "--sync", "-", stdin=CONTRIBUTIONS).returncode == 0
    assert clearing(db, "post", "--no-sync", "-", stdin=LATER).returncode == 0  # the fund's rows stop before it
    head = int(document(db, "audit", "digest", "--json")["position"])  # type: ignore[call-overload]
    behind = clearing(db, "insurance-fund", "show", "--as-of", str(head))
    assert behind.returncode == 3 and "[projection_behind]" in behind.stderr, behind.stderr
    assert clearing(db, "projections", "catch-up").returncode == 0
    assert document(db, "insurance-fund", "show", "--as-of", str(head), "--json")["balance"] == "175"
