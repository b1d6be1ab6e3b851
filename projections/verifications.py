"""The record of ``clearing audit verify --record`` runs, for the API's ``/audit/verification``.

A verification only reads; recording its result is the auditor's explicit choice
(``--record``), which needs write access to the store. One row per run in
``audit_verifications``: wall-clock start and end (an operational record, not a ledger
fact: nothing in the domain reads it), the head verified, the chain's head hash there,
whether every check passed, the first failure, and each check's result as JSON.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Boolean, Column, Integer, MetaData, String, Table, Text, inspect, select

TABLE = "audit_verifications"
_METADATA = MetaData()
VERIFICATIONS = Table(
    TABLE, _METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", String(40), nullable=False),
    Column("finished_at", String(40), nullable=False),
    Column("head", Integer, nullable=False),
    Column("chain_hash", String(64)),
    Column("verified", Boolean, nullable=False),
    Column("failure", Text),
    Column("checks", Text, nullable=False),
)


def record(engine: Any, document: dict[str, Any]) -> None:
    """Append one verification (``document``: the keys of ``VERIFICATIONS`` but ``id``)."""
    _METADATA.create_all(engine, tables=[VERIFICATIONS])
    with engine.begin() as connection:
        connection.execute(VERIFICATIONS.insert().values(**{**document, "checks": json.dumps(document["checks"])}))


def last(engine: Any) -> dict[str, Any] | None:
    """The latest recorded verification, or None (none recorded, or no table: never recorded)."""
    with engine.connect() as connection:
        if not inspect(connection).has_table(TABLE):
            return None
        row = connection.execute(select(VERIFICATIONS).order_by(VERIFICATIONS.c.id.desc()).limit(1)).mappings().first()
    if row is None:
        return None
    found = dict(row)
    found.pop("id")
    found["checks"] = json.loads(found["checks"])
    return found
