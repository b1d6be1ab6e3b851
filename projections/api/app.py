"""The FastAPI application of ``clearing serve``: read-only endpoints, tokens, access log.

Every endpoint reads the projection tables or the log through the functions the command
line uses (``projections.queries``, ``projections.reports``, ``projections.controls``,
``clearing.audit.chain``), so a number served is the number ``clearing ... --json`` prints
for the same store, and a report is byte-identical to ``clearing report``. Nothing is
written: the store is opened read-only (``ReadStore``).

Errors are the CLI's: ``{"error": {"code", "field", "message"}}`` with the status of the
error's kind (``STATUS_OF_KIND``): a bad input 422, an unknown name 404, a projection not
built 503; a missing or unknown token 401, a role without the permission 403. No request
ever gets a traceback; an unexpected failure is a 500 ``internal_error`` (a bug), logged.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from itertools import islice
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from clearing.domain.roles import PERMISSIONS, READ
from clearing.errors import ClearingError
from projections.api import models as m
from projections.api.store import ReadStore
from projections.queries import ACCOUNT_STATUSES

ACCESS_LOG = logging.getLogger("clearing.access")
COOKIE = "clearing_token"
API = "/api/v1"
STATUS_OF_KIND = {"InputError": 422, "NotFoundError": 404, "RuleError": 409, "ConflictError": 409,
                  "ProjectionError": 503, "StoreError": 503}
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": m.ErrorBody, "description": "no token, an unknown token or a revoked one"},
    403: {"model": m.ErrorBody, "description": "the token's role may not read"},
    404: {"model": m.ErrorBody, "description": "unknown name or date outside the log"},
    422: {"model": m.ErrorBody, "description": "a bad parameter: the code and the field"},
    503: {"model": m.ErrorBody, "description": "the store or a projection is not usable"},
}
NOT_FOUND_CODES = frozenset({"date_outside_log"})  # an input error that names something absent: a day outside the log
Format = Literal["json", "csv"]
Limit = Annotated[int, Query(ge=1, le=1000, description="Rows per page.")]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1, description="Rows to skip.")]
AsOf = Annotated[str | None, Query(max_length=64, description="A log position, or an ISO-8601 business time with zone.")]
AccountStatus = Literal[ACCOUNT_STATUSES]  # type: ignore[valid-type]  # a risk status, or closed


class ApiError(Exception):
    """A refusal with an HTTP status and the ledger's error shape."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field, self.headers = status, code, message, field, headers


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "field": field, "message": message}}, status_code=status, headers=headers)


def create_app(db: str, read_store: ReadStore | None = None, schema_only: bool = False) -> FastAPI:
    """The application over store ``db`` (an SQLite path or a PostgreSQL URL), opened read-only.

    ``schema_only`` opens no store: the application serves nothing but gives its OpenAPI
    schema (``python -m projections.api.schema``)."""
    from importlib.metadata import version

    store: Any = read_store if read_store is not None or schema_only else ReadStore(db)
    app = FastAPI(title="clearing-ledger read API", version=version("clearing-ledger"),
                  description="Read-only API over the clearinghouse ledger's projections and event log. Every request "
                              "needs `Authorization: Bearer <token>` of a `regulator` or `auditor` token "
                              "(`clearing tokens create`). Decimals are strings. See docs/api.md.",
                  openapi_url=None, docs_url=None, redoc_url=None)
    app.state.store = store
    _install_errors(app)
    app.add_middleware(AccessLog)
    reader = Depends(_require(READ))
    app.include_router(_routes(store), dependencies=[reader])

    @app.get(f"{API}/openapi.json", include_in_schema=False, dependencies=[reader])
    def openapi() -> JSONResponse:
        """The schema, like every other path, only with a token (``docs/openapi.json`` holds a copy)."""
        return JSONResponse(app.openapi())
    from projections.api.pages import pages

    app.include_router(pages(store))
    return app


DB_VAR, ACCESS_LOG_VAR = "CLEARING_SERVE_DB", "CLEARING_SERVE_ACCESS_LOG"


def app_from_environment() -> FastAPI:
    """The application of one worker process of ``clearing serve --workers N`` (uvicorn's
    factory): the store and the access log's target come from the parent's environment."""
    import os

    configure_access_log(os.environ.get(ACCESS_LOG_VAR, "-"))
    return create_app(os.environ[DB_VAR])


def configure_access_log(target: str) -> None:
    """The access log's one handler: JSON lines to standard error (``-``) or appended to a file."""
    import sys
    from pathlib import Path

    ACCESS_LOG.setLevel(logging.INFO)
    ACCESS_LOG.propagate = False
    handler: logging.Handler
    handler = logging.StreamHandler(sys.stderr) if target == "-" else logging.FileHandler(Path(target), encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    ACCESS_LOG.handlers[:] = [handler]


# -- access: tokens and the access log -------------------------------------------------------

bearer = HTTPBearer(auto_error=False, description="A token from `clearing tokens create` (role regulator or auditor).")


def _require(permission: str) -> Callable[..., Any]:
    def check(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
        name = authorize(request, credentials.credentials if credentials is not None else None, permission)
        refuse_unknown_parameters(request)
        return name

    return check


def authorize(request: Request, secret: str | None, permission: str) -> str:
    """The token's name if it may ``permission``; else 401 (none, unknown, revoked) or 403 (role)."""
    secret = secret or request.cookies.get(COOKIE)
    challenge = {"WWW-Authenticate": 'Bearer realm="clearing"'}
    if not secret:
        raise ApiError(401, "unauthorized", "a token is required: Authorization: Bearer <token>", "authorization",
                       challenge)
    store: ReadStore = request.app.state.store
    token = store.tokens.lookup(secret)
    if token is None:
        raise ApiError(401, "invalid_token", "the token is not one this ledger issued", "authorization", challenge)
    access = request.scope.setdefault("clearing.access", {})
    access.update(token=token.name, role=token.role)
    if not token.active:
        raise ApiError(401, "revoked_token", f"token {token.name} was revoked at log position {token.revoked_position}",
                       "authorization", challenge)
    if permission not in PERMISSIONS.get(token.role, frozenset()):
        raise ApiError(403, "forbidden_role", f"role {token.role} may not {permission}; this needs a regulator or "
                       "auditor token", "authorization")
    return token.name


def refuse_unknown_parameters(request: Request) -> None:
    """``unknown_field`` for a query parameter the endpoint does not take (as for a JSON field
    a command does not have): a misspelt ``?limt=10`` is an error, not a silent default."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    allowed = _query_names(dependant)
    for key in request.query_params:
        if key not in allowed:
            shown = key if key.isprintable() and len(key) <= 40 else repr(key[:40])
            raise ApiError(422, "unknown_field", f"{shown}: not a parameter of this endpoint "
                           f"(it takes {', '.join(sorted(allowed)) or 'none'})", shown)


def _query_names(dependant: Any) -> set[str]:
    """The query parameters an endpoint takes, its dependencies' included."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


class AccessLog:
    """One JSON line per request on the ``clearing.access`` logger: time, client, method,
    path, status, token name and role (never the token), milliseconds. Nothing per request
    goes into the ledger."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}
        access = scope.setdefault("clearing.access", {})

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client")
            ACCESS_LOG.info(json.dumps({
                "time": datetime.now(UTC).isoformat(timespec="milliseconds"), "client": client[0] if client else None,
                "method": scope["method"], "path": scope["path"], "query": scope.get("query_string", b"").decode("latin-1"),
                "status": status["code"], "token": access.get("token"), "role": access.get("role"),
                "ms": round((time.perf_counter() - started) * 1000, 2)}))


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.code, error.message, error.field, error.headers)

    @app.exception_handler(ClearingError)
    async def clearing_error(_: Request, error: ClearingError) -> JSONResponse:
        status = 404 if error.code in NOT_FOUND_CODES else STATUS_OF_KIND.get(type(error).__name__, 422)
        return error_response(status, error.code, error.message, error.field)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        field = str(first["loc"][-1]) if first.get("loc") else None
        code = "missing_field" if first.get("type") == "missing" else "invalid_value"
        message = f"{field}: {first.get('msg', 'invalid')}" if field else str(first.get("msg", "invalid"))
        return error_response(422, code, message, field)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = http_code(error.status_code)
        return error_response(error.status_code, code, str(error.detail), None, getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def internal(_: Request, error: Exception) -> JSONResponse:
        logging.getLogger("clearing.serve").exception("internal error")
        return error_response(500, "internal_error", f"a bug: {type(error).__name__}", None)


def http_code(status: int) -> str:
    """The error code of a refusal by the HTTP layer itself (no route, wrong method, ...).

    >>> http_code(404), http_code(405), http_code(413)
    ('not_found', 'method_not_allowed', 'http_error')
    """
    return {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")


# -- helpers ----------------------------------------------------------------------------------


def csv_response(rows: Iterable[dict[str, Any]], columns: tuple[str, ...] | list[str], filename: str) -> Response:
    """Rows as CSV: a header of ``columns``, then one line each (None as empty)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'inline; filename="{filename}"'})


def _as_of(store: ReadStore, as_of: str | None) -> int | None:
    if as_of is None:
        return None
    from projections.replay import resolve_until

    return resolve_until(store.app, as_of)


def _views_at(store: ReadStore, until: int | None) -> Any:
    """The live tables, or the margin projection replayed in memory up to ``until``."""
    views = store.views()
    if until is None:
        return views
    from projections.replay import replay_views

    return replay_views(store.app, until, ["margin"], live=views)


CSV_ONLY: dict[int | str, dict[str, Any]] = {200: {"content": {"text/csv": {"schema": {"type": "string"}}}}}


def _routes(store: ReadStore) -> Any:  # noqa: PLR0915 - one function per endpoint, registered here
    from fastapi import APIRouter

    from projections import queries as q

    router = APIRouter(prefix=API, responses=ERRORS)

    @router.get("/health", response_model=m.Health, tags=["audit"], summary="Store reachable and projection lag")
    def health() -> dict[str, Any]:
        return {"store": "reachable", "lag": store.lag()}

    @router.get("/accounts", response_model=m.AccountPage, tags=["accounts"], responses=CSV_ONLY,
                summary="Accounts by name with margin totals, paginated")
    def accounts(status: Annotated[AccountStatus | None, Query(description="A risk status, or closed.")] = None,
                 after: Annotated[str | None, Query(max_length=64, description="Start after this account name.")] = None,
                 limit: Limit = 100, format: Format = "json") -> Any:
        lag = store.lag()
        rows = list(islice(q.account_list(store.views(), status, after), limit + 1))
        page, more = rows[:limit], len(rows) > limit
        if format == "csv":
            return csv_response(page, list(m.AccountRow.model_fields), "accounts.csv")
        return {"accounts": page, "next_after": page[-1]["account"] if more else None, "limit": limit, "lag": lag}

    @router.get("/accounts/{name}", response_model=m.AccountView, tags=["accounts"],
                summary="One account: positions, margin figures, open call, ADL rank")
    def account(name: str, as_of: AsOf = None) -> dict[str, Any]:
        until = _as_of(store, as_of)
        lag = store.lag()
        policies = store.policies() if until is None else q.LossPolicies(store.app)
        view = q.account_view(_views_at(store, until), name, policies)
        return {**view, "as_of_position": until, "lag": lag}

    @router.get("/markets", response_model=m.MarketList, tags=["markets"], responses=CSV_ONLY, summary="Every market")
    def markets(format: Format = "json") -> Any:
        rows = q.market_list(store.views())
        if format == "csv":
            return csv_response(rows, list(m.MarketRow.model_fields), "markets.csv")
        return {"markets": rows, "lag": store.lag()}

    @router.get("/markets/{name}", response_model=m.MarketView, tags=["markets"],
                summary="One market: mark, TWAP, parameters in force, open interest")
    def market(name: str, as_of: AsOf = None) -> dict[str, Any]:
        from projections.controls import parameters_view, read_controls

        until = _as_of(store, as_of)
        lag = store.lag()
        view = q.market_view(_views_at(store, until), name)
        position = until if until is not None else store.head()
        params = parameters_view(read_controls(store.app, position), name)
        terms = {k: v for k, v in view.items() if k not in ("market", "kind", "status", "expiry", "open_interest", "volume",
                                                            "trades")}
        return {"market": name, "kind": view["kind"], "status": view["status"], "expiry": view["expiry"],
                "open_interest": view["open_interest"], "volume": view["volume"], "trades": view["trades"],
                "terms": terms, "twap": _twap_at(store, name, until, params["parameters"]),
                "parameters": params["parameters"], "as_of_position": until,
                "lag": lag}

    @router.get("/insurance-fund", response_model=m.FundPage, tags=["insurance fund"], responses=CSV_ONLY,
                summary="Balance and every movement with its cause, paginated")
    def insurance_fund(as_of: AsOf = None, offset: Offset = 0, limit: Limit = 100, newest_first: bool = False,
                       format: Format = "json") -> Any:
        page = q.fund_page(store.views(), _as_of(store, as_of), offset, limit, newest_first)
        if format == "csv":
            return csv_response(page["movements"], list(m.FundMovement.model_fields), "insurance-fund.csv")
        return {**page, "lag": store.lag()}

    @router.get("/losses", response_model=m.LossPage, tags=["losses"], responses=CSV_ONLY, response_model_exclude_unset=True,
                summary="Loss allocations and deleveraging fills, in log order")
    def losses(market: Annotated[str | None, Query(max_length=64)] = None, as_of: AsOf = None, offset: Offset = 0,
               limit: Limit = 100, format: Format = "json") -> Any:
        rows = q.loss_allocations(store.views(), market, _as_of(store, as_of))
        page = rows[offset:offset + limit]
        if format == "csv":
            return csv_response(page, list(m.LossRow.model_fields), "losses.csv")
        return {"allocations": page, "rows_total": len(rows), "offset": offset, "lag": store.lag()}

    @router.get("/liquidations", response_model=m.RegisterPage, tags=["liquidations"], responses=CSV_ONLY,
                summary="The liquidation register: calls, fills, deleveraging, fund draws, loss cover")
    def liquidations(date: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$", description="Business day.")] = None,
                     account: Annotated[str | None, Query(max_length=64)] = None, offset: Offset = 0, limit: Limit = 100,
                     format: Format = "json") -> Any:
        page = q.liquidation_register(store.views(), date, account, offset, limit)
        if format == "csv":
            return csv_response(page["rows"], q.REGISTER_FIELDS, "liquidations.csv")
        return {**page, "lag": store.lag()}

    @router.get("/reports", response_model=m.ReportList, tags=["reports"], summary="The regulator reports' names")
    def report_names() -> dict[str, Any]:
        from projections.reports.registry import REPORT_NAMES

        return {"reports": list(REPORT_NAMES)}

    @router.get("/reports/{name}", tags=["reports"], summary="A regulator report, byte-identical to `clearing report`",
                responses={200: {"content": {"text/csv": {"schema": {"type": "string"}},
                                             "application/json": {"schema": {"type": "object"}}},
                                 "description": "The report; ETag is the sha256 of its bytes"},
                           304: {"description": "Not modified (If-None-Match matched the ETag)"}})
    def report(request: Request, name: str,
               date: Annotated[str, Query(max_length=10, description="Business day, YYYY-MM-DD.")],
               format: Format = "csv", shock: Annotated[str | None, Query(max_length=200)] = None) -> Response:
        from projections.reports.registry import build_report, check_request
        from projections.reports.rendering import provenance, render

        request_checked = check_request(name, date, shock)

        def built() -> tuple[bytes, dict[str, Any]]:
            report = build_report(store.views(), request_checked)
            data = render(report, format).encode("utf-8")
            return data, provenance(report, format, data)

        data, meta = store.report((name, date, format, shock, store.position()), built)
        etag = f'"{meta["sha256"]}"'
        headers = {"ETag": etag, "X-Clearing-Log-Position": str(meta["as_of_position"]),
                   "X-Clearing-Chain-Hash": str(meta["chain_hash"]),
                   "X-Clearing-Provisional": "true" if meta["provisional"] else "false"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        media = "text/csv; charset=utf-8" if format == "csv" else "application/json"
        return Response(data, media_type=media, headers=headers)

    @router.get("/audit/digest", response_model=m.Digest, tags=["audit"],
                summary="The head of the hash chain (as `clearing audit digest`)")
    def digest() -> dict[str, Any]:
        from clearing.audit.chain import digest as chain_digest

        found = chain_digest(store.app.recorder)
        return {"digest": found.to_text(), "scheme": found.scheme, "position": found.position, "events": found.events,
                "head": found.head}

    @router.get("/audit/verification", response_model=m.LastVerification, tags=["audit"],
                summary="The last recorded `clearing audit verify --record`: result, time and head")
    def verification() -> dict[str, Any]:
        from projections.verifications import last

        return {"last": last(store.projection_store.engine)}

    @router.get("/events", response_model=m.EventList, tags=["audit"], summary="Events of the log from a position")
    def events(start: Annotated[int, Query(ge=1, le=2**62, alias="from")] = 1, limit: Limit = 100) -> dict[str, Any]:
        from projections.event_records import iter_events, plain

        return {"events": [plain(record) for record in iter_events(store.app, start, limit)]}

    @router.get("/events/{position}", response_model=m.EventList, tags=["audit"],
                summary="The event at one log position (a run of fills: one record per fill)")
    def event(position: Annotated[int, Path(ge=1, le=2**62)]) -> dict[str, Any]:
        from projections.event_records import event_at

        found = event_at(store.app, position)
        if not found:
            raise ApiError(404, "event_not_found", f"no event at log position {position} (head {store.head()})", "position")
        return {"events": found}

    @router.get("/tokens", response_model=m.TokenList, tags=["audit"],
                summary="Every token issued and revoked (names, roles, times; never a secret)")
    def token_list() -> dict[str, Any]:
        return {"tokens": [record.document() for record in store.tokens.tokens()]}

    return router


def _twap_at(store: ReadStore, name: str, until: int | None, parameters: list[dict[str, Any]]) -> dict[str, Any]:
    """The TWAP the market's last mark at or before ``until`` recorded (live: the aggregate's),
    and the ``twap_window`` in force."""
    from clearing.domain.ids import market_id
    from clearing.money import fmt

    price: Any = None
    if until is None:
        price = store.app.repository.get(market_id(name)).price_twap
    else:
        from eventsourcing.utils import get_topic

        from clearing.audit.log import read_log
        from clearing.domain.market import Market

        for page in read_log(store.app.recorder, store.app.mapper, start=1, stop=until, topics=[get_topic(Market.MarkPriceSet)]):
            for _, event in page.decoded():
                if isinstance(event, Market.MarkPriceSet) and event.market == name:
                    price = event.price_twap
    window = next((int(row["value"]) for row in parameters if row["name"] == "twap_window"), 0)
    return {"price_twap": None if price is None else fmt(price), "twap_window": window}


