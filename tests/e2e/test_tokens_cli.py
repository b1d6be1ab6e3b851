"""``clearing tokens create|revoke|list`` (issue 12): the secret printed once and never stored,
its hash and role in the log as an event, a name issued once, a revocation recorded."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

CLEARING = str(Path(sys.executable).parent / "clearing")


def clearing(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLEARING, "--db", db, "--as", "ops-lead", *args], capture_output=True, text=True, timeout=120)


def test_a_token_is_printed_once_kept_as_its_hash_and_revoked_in_the_log(tmp_path: Path):
    db = str(tmp_path / "ledger.db")
    created = clearing(db, "tokens", "create", "--name", "fca", "--role", "regulator", "--at", "2025-01-01T00:00:00Z")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("clr_") and len(secret) > 40 and "shown once" in created.stderr
    log = clearing(db, "export").stdout
    assert secret not in log and hashlib.sha256(secret.encode()).hexdigest() in log
    again = clearing(db, "tokens", "create", "--name", "fca", "--role", "auditor")
    assert again.returncode == 1 and "[token_exists]" in again.stderr and "Traceback" not in again.stderr
    listed = json.loads(clearing(db, "tokens", "list", "--json").stdout)
    assert [(t["name"], t["role"], t["active"], t["issued_by"]) for t in listed] == [("fca", "regulator", True, "ops-lead")]
    revoked = clearing(db, "tokens", "revoke", "fca", "--json")
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["status"] == "applied", revoked.stdout
    assert clearing(db, "tokens", "revoke", "fca").returncode == 1
    [token] = json.loads(clearing(db, "tokens", "list", "--json").stdout)
    assert token["active"] is False and token["revoked_by"] == "ops-lead" and token["revoked_position"] > token["issued_position"]
    document = json.loads(clearing(db, "tokens", "create", "--name", "kpmg", "--role", "auditor", "--json").stdout)
    assert document["role"] == "auditor" and document["token"].startswith("clr_") and document["positions"]
    assert "verified" in clearing(db, "projections", "catch-up").stdout + clearing(db, "audit", "verify").stdout


def test_a_bad_role_or_name_is_refused_with_its_code_and_writes_nothing(tmp_path: Path):
    db = str(tmp_path / "ledger.db")
    bad_role = clearing(db, "tokens", "create", "--name", "x", "--role", "king")
    assert bad_role.returncode == 2 and "king" in bad_role.stderr
    bad_name = clearing(db, "tokens", "create", "--name", "no spaces", "--role", "auditor")
    assert bad_name.returncode == 1 and "[invalid_name]" in bad_name.stderr, bad_name.stderr
    assert not Path(db).exists()  # refused before the store was opened: not even created
    assert clearing(db, "deposit", "a", "1").returncode == 1  # now the store exists, without tokens
    assert clearing(db, "tokens", "list").stdout.strip() == "no tokens"
