"""The ``AccessToken`` aggregate: who may read the ledger over HTTP, and since when (ADR 29).

A token is a random secret handed to one reader (a regulator's office, an audit firm). The
ledger records only its SHA-256, its name and its role, as an event, so an auditor can see
who was given access, when and by whom, and since when it was revoked; the secret itself
is printed once by ``clearing tokens create`` and never stored. One aggregate per token
name (``ids.token_id``): a name is issued once, and revoked at most once.

Roles and what they permit (``clearing.domain.roles``): ``regulator`` and ``auditor`` read every
endpoint of ``clearing serve``; ``operator``, ``oracle`` and ``risk_officer`` are issued now
for the write endpoints still to come and read nothing. Example: a token issued as
``fca-2026`` with role ``regulator``, then revoked: both events are in the log, and the
server refuses the token from the revocation's position on.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate

from clearing.domain.decision_order import InDecisionOrder
from clearing.domain.ids import token_id
from clearing.errors import RuleError


class AccessToken(InDecisionOrder):
    """One named token: its role, digest, and whether it was revoked."""

    class Issued(Aggregate.Created):
        name: str
        role: str
        token_sha256: str
        issued_by: str
        at: datetime

    @staticmethod
    def create_id(name: str) -> UUID:
        return token_id(name)

    def __init__(self, name: str, role: str, token_sha256: str, issued_by: str, at: datetime) -> None:
        self.name = name
        self.role = role
        self.token_sha256 = token_sha256
        self.issued_by = issued_by
        self.issued_at = at
        self.revoked_at: datetime | None = None

    class Revoked(Aggregate.Event):
        name: str
        revoked_by: str
        at: datetime

        def apply(self, token: AccessToken) -> None:
            token.revoked_at = self.at

    def revoke(self, revoked_by: str, at: datetime) -> None:
        """Revoke the token; a second revocation is ``token_revoked``."""
        if self.revoked_at is not None:
            raise RuleError("token_revoked", "name", f"token {self.name} was already revoked at {self.revoked_at.isoformat()}")
        self.trigger_event(self.Revoked, name=self.name, revoked_by=revoked_by, at=at)
