"""One digest over several partitions: what an auditor keeps for a ledger split into stores.

Beyond one PostgreSQL primary the ledger is partitioned by market group, one store per
partition (ADR 24). Each store keeps its own hash chain and digest; the combined digest
names every partition and its digest, in name order, and hashes them, so one short value
commits to all of them and a changed, missing or extra partition changes it.

Rule: ``partitions-sha256-v1:<count>:<sha256 of the lines "<name> <digest>\\n" in name order>``.
Example: partitions ``a`` with ``sha256-v1:3:3:<h1>`` and ``b`` with ``sha256-v1:5:5:<h2>``
hash ``"a sha256-v1:3:3:<h1>\\nb sha256-v1:5:5:<h2>\\n"``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from clearing.audit.chain import Digest
from clearing.errors import InputError

COMBINED_SCHEME = "partitions-sha256-v1"
PARTITION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def combined_digest(partitions: Mapping[str, Digest]) -> str:
    """The combined digest of named partitions (at least one; names as ``PARTITION_NAME``)."""
    if not partitions:
        raise InputError("invalid_partition", "partition", "name at least one partition")
    for name in partitions:
        if not PARTITION_NAME.match(name):
            raise InputError("invalid_partition", "partition",
                             f"partition name {name[:40]!r} must be 1-64 letters, digits, _ . -")
    lines = "".join(f"{name} {partitions[name].to_text()}\n" for name in sorted(partitions))
    return f"{COMBINED_SCHEME}:{len(partitions)}:{hashlib.sha256(lines.encode()).hexdigest()}"
