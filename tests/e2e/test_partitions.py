"""A ledger partitioned by market group (ADR 24): each partition is a store with its own
chain, and ``clearing audit combine`` gives one digest that commits to every partition."""

from __future__ import annotations

import hashlib

import pytest
from click.testing import CliRunner

from clearing.audit.chain import Digest
from clearing.audit.partitions import combined_digest
from clearing.errors import InputError
from cli.main import main
from tests.ledger import accounts_with, dated


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def partitions(tmp_path) -> tuple[str, str]:
    first, second = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    for db, names in ((first, ("alice", "bob")), (second, ("carol",))):
        script = tmp_path / f"{names[0]}.jsonl"
        script.write_text(dated(accounts_with(*((name, "100") for name in names)), "2025-01-01T00:00:00Z"))
        assert run("--db", db, "post", str(script)).exit_code == 0
    return first, second


def test_the_combined_digest_names_each_partition_and_hashes_them_in_name_order(partitions):
    first, second = partitions
    shown = run("audit", "combine", f"b={second}", f"a={first}")
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    digests = {line.split(" ")[0]: line.split(" ")[1] for line in lines[:2]}
    assert sorted(digests) == ["a", "b"]
    assert digests["a"] == run("--db", first, "audit", "digest").stdout.strip()
    expected = hashlib.sha256(f"a {digests['a']}\nb {digests['b']}\n".encode()).hexdigest()
    assert lines[2] == f"partitions-sha256-v1:2:{expected}"
    assert run("audit", "combine", f"a={first}", f"b={second}", "--expect", lines[2]).exit_code == 0


def test_a_change_in_any_partition_changes_the_combined_digest(partitions, tmp_path):
    first, second = partitions
    before = run("audit", "combine", f"a={first}", f"b={second}").stdout.splitlines()[-1]
    more = tmp_path / "more.jsonl"
    more.write_text('{"type":"deposit","id":"later","account":"carol","amount":"1","at":"2025-01-01T00:00:09Z"}\n')
    assert run("--db", second, "post", str(more)).exit_code == 0
    moved = run("audit", "combine", f"a={first}", f"b={second}", "--expect", before)
    assert moved.exit_code == 4 and "[digest_mismatch]" in moved.stderr
    assert run("audit", "combine", f"a={first}").stdout.splitlines()[-1] != before  # a partition missing


def test_bad_partition_arguments_are_refused(partitions):
    first, _ = partitions
    assert run("audit", "combine", first).exit_code == 2  # no NAME=
    assert run("audit", "combine", f"a={first}", f"a={first}").exit_code == 2  # named twice
    refused = run("audit", "combine", f"bad name={first}")
    assert refused.exit_code == 1 and "[invalid_partition]" in refused.stderr
    with pytest.raises(InputError) as empty:
        combined_digest({})
    assert empty.value.code == "invalid_partition"
    assert combined_digest({"a": Digest(0, 0, "0" * 64)}).startswith("partitions-sha256-v1:1:")
