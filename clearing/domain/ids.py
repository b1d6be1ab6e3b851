"""Deterministic aggregate ids from natural keys (uuid5), so the same name is the same id.

Creating a second aggregate with an id that exists fails in the event store with the
library's ``IntegrityError``; that makes ``open_account`` and command ids idempotent
under concurrency without any lookup table of our own. Account and market ids are cached (they repeat on every command);
command ids are unique, so caching them would only hold memory.
"""

from __future__ import annotations

from functools import lru_cache
from uuid import UUID, uuid5

NAMESPACE = UUID("6f1c0f8e-2b7a-5c3e-9d41-8a2b6c1d0e57")


@lru_cache(maxsize=100_000)
def account_id(account: str) -> UUID:
    return uuid5(NAMESPACE, f"account/{account}")


@lru_cache(maxsize=100_000)
def market_id(market: str) -> UUID:
    return uuid5(NAMESPACE, f"market/{market}")


def insurance_fund_id() -> UUID:
    return INSURANCE_FUND_ID


def token_id(name: str) -> UUID:
    return uuid5(NAMESPACE, f"token/{name}")


def command_id(command: str) -> UUID:
    return uuid5(NAMESPACE, f"command/{command}")


INSURANCE_FUND_ID = uuid5(NAMESPACE, "insurance-fund/main")


CLEARINGHOUSE_ID = uuid5(NAMESPACE, "clearinghouse/main")


def clearinghouse_id() -> UUID:
    return CLEARINGHOUSE_ID
