"""The API's response documents, as pydantic models: they are the OpenAPI schema
(``docs/openapi.json``) that schemathesis checks every response against. Decimals are
strings, as in every JSON the ledger prints."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    code: str
    field: str | None = None
    message: str


class ErrorBody(BaseModel):
    """Every refusal: the CLI's code, the field it names and a one-line message."""

    error: ErrorDetail


class Lag(BaseModel):
    """Where the projections stand: ``position`` read, the log's ``head``, ``behind`` = head - position."""

    position: int
    head: int
    behind: int


class AccountRow(BaseModel):
    account: str
    status: str
    collateral: str
    equity: str
    initial_margin: str
    maintenance_margin: str
    positions: int


class AccountPage(BaseModel):
    accounts: list[AccountRow]
    next_after: str | None  # pass as ``after`` for the next page; null on the last
    limit: int
    lag: Lag


class MarginCall(BaseModel):
    market: str | None
    issued_at: str | None
    deadline: str | None
    amount_to_initial: str
    amount_due: str
    rule: str | None


class PositionView(BaseModel):
    market: str
    size: str
    entry_price: str
    mark_price: str
    notional: str
    unrealized_pnl: str
    realized_pnl: str
    initial_margin: str
    maintenance_margin: str
    liquidation_price: str | None
    adl_score: str | None
    adl_rank: int
    adl_holders: int
    adl_policy: str


class AccountView(BaseModel):
    account: str
    status: str
    margin_call: MarginCall | None
    collateral: str
    equity: str
    initial_margin: str
    maintenance_margin: str
    free_collateral: str
    margin_ratio: str | None
    realized_pnl: str
    positions: list[PositionView]
    version: int
    as_of_position: int | None  # the log position of an ``as_of`` replay; null for the live tables
    lag: Lag


class MarketRow(BaseModel):
    market: str
    kind: str
    status: str
    mark_price: str | None
    mark_time: str | None
    open_interest: str
    volume: str
    trades: int
    expiry: str | None
    listed_at: str


class MarketList(BaseModel):
    markets: list[MarketRow]
    lag: Lag


class Twap(BaseModel):
    price_twap: str | None  # the time-weighted average of the marks before the last one
    twap_window: int  # seconds


class MarketView(BaseModel):
    market: str
    kind: str
    status: str
    expiry: str | None
    open_interest: str
    volume: str
    trades: int
    terms: dict[str, Any]  # contract size, tick, step, band, collateral, tiers, mark: ``clearing market show``
    twap: Twap
    parameters: list[dict[str, Any]]  # in force: name, value, source, set_at_position, governed
    as_of_position: int | None
    lag: Lag


class FundMovement(BaseModel):
    at: str
    direction: str
    cause: str
    amount: str
    counterparty: str | None
    reference: str | None
    balance_after: str
    position: int


class FundPage(BaseModel):
    balance: str
    movements_total: int
    offset: int
    movements: list[FundMovement]
    lag: Lag


class LossRow(BaseModel):
    at: str
    loss_id: str
    market: str
    account: str
    policy: str
    share: str
    basis: str
    basis_total: str | None
    loss_total: str | None
    price_mark: str
    price: str | None = None
    rank: str | None = None
    liquidated_account: str | None = None


class LossPage(BaseModel):
    allocations: list[LossRow]
    rows_total: int
    offset: int
    lag: Lag


class RegisterPage(BaseModel):
    rows: list[dict[str, Any]]  # the liquidation register's columns (``projections.queries.REGISTER_FIELDS``)
    rows_total: int
    offset: int
    lag: Lag


class Digest(BaseModel):
    digest: str
    scheme: str
    position: int
    events: int
    head: str


class Verification(BaseModel):
    verified: bool
    head: int
    chain_hash: str | None
    started_at: str
    finished_at: str
    failure: str | None
    checks: list[dict[str, Any]]


class LastVerification(BaseModel):
    """The last ``clearing audit verify --record``; null when none was recorded."""

    last: Verification | None


class Health(BaseModel):
    store: str  # "reachable"
    lag: Lag


class Event(BaseModel):
    position: int
    type: str
    aggregate_id: str
    aggregate_version: int
    recorded_at: str
    data: dict[str, Any]


class EventList(BaseModel):
    events: list[Event]  # a run's fills are one record per fill, all at the run's position


class TokenList(BaseModel):
    tokens: list[dict[str, Any]]


class ReportList(BaseModel):
    reports: list[str]
