"""Who may do what over HTTP, and how a token is kept: the one table of roles (ADR 29).

Plain data and one hash, with no library import, so the command models (``IssueToken``'s
``role``) and the command line (``clearing tokens create --role``) name the same roles as
the server checks, without loading the event store to print a help text.
"""

from __future__ import annotations

import hashlib
from typing import Literal

READ = "read"
#: What each role may do; the server checks a request's permission against this table only.
PERMISSIONS: dict[str, frozenset[str]] = {
    "regulator": frozenset({READ}),
    "auditor": frozenset({READ}),
    "operator": frozenset(),
    "oracle": frozenset(),
    "risk_officer": frozenset(),
}
ROLES = tuple(PERMISSIONS)
Role = Literal["regulator", "auditor", "operator", "oracle", "risk_officer"]
assert Role.__args__ == ROLES, "the roles' type names the roles of PERMISSIONS"  # type: ignore[attr-defined]


def token_digest(secret: str) -> str:
    """The stored form of a token: SHA-256 of its UTF-8 text, in hex.

    A token is 256 random bits, so a plain (unsalted) hash cannot be searched; the server
    hashes what a request presents and looks the digest up. Example:
    ``token_digest("clr_x")`` is ``"3b7c..."`` (64 hex digits).
    """
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()
