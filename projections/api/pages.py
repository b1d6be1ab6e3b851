"""The dashboard of ``clearing serve``: server-rendered pages (Jinja2) with SVG charts.

No front-end build and nothing from a CDN: every page is HTML from ``templates/`` with its
charts inline as SVG (``projections.charts``), so it works offline and a browser test can
read the series' labels. The pages read through the same functions as the API, and every
number that came from an event links to ``/events/{position}``, where the event itself is
shown. Login: the token is posted once from ``/login`` and kept in an HTTP-only,
same-site cookie; each page checks it exactly as the API checks a bearer token.
"""

from __future__ import annotations

import json
from pathlib import Path
from threading import Lock
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from clearing.domain.roles import READ
from projections.api.store import ReadStore

TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).with_name("templates")),
                        autoescape=select_autoescape(["html"]))
PAGE_ROWS = 50
_CACHE_SIZE = 64


def cell(text: Any, link: str | None = None, num: bool = False) -> dict[str, Any]:
    return {"text": "" if text is None else text, "link": link, "num": num}


def _event(position: int | None) -> dict[str, Any]:
    return cell(position, f"/events/{position}" if position else None, True)


def _account(name: str | None) -> dict[str, Any]:
    return cell(name, f"/accounts/{quote(name)}" if name else None)


def _market(name: str | None) -> dict[str, Any]:
    return cell(name, f"/markets/{quote(name)}" if name else None)


def pages(store: ReadStore) -> APIRouter:  # noqa: PLR0915 - one function per page, registered here
    from projections import queries as q
    from projections.api.app import ApiError, authorize
    from projections.charts import CHART_NAMES, Window, log_days, render_chart, window

    router = APIRouter(include_in_schema=False)
    charts_cache: dict[tuple[Any, ...], bytes] = {}
    cache_lock = Lock()

    def html(request: Request, title: str, status: int = 200, **context: Any) -> HTMLResponse:
        token = request.scope.get("clearing.access", {}).get("token")
        body = TEMPLATES.get_template(context.pop("template", "page.html")).render(title=title, token=token, **context)
        return HTMLResponse(body, status_code=status)

    def login_required(request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        bearer = header[7:].strip() if header.lower().startswith("bearer ") else None
        try:
            authorize(request, bearer, READ)  # a bearer token, else the login cookie
        except ApiError as error:
            if error.status == 401:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
            return html(request, "Not permitted", status=error.status, raw=error.message)
        return None

    def chart(name: str, span: Window, caption: str) -> dict[str, Any]:
        lag = store.lag()
        key = (name, span.first, span.last, "svg", lag["position"])
        with cache_lock:
            data = charts_cache.get(key)
        if data is None:
            data = render_chart(store.views(), name, span, "svg")
            with cache_lock:
                if len(charts_cache) >= _CACHE_SIZE:
                    charts_cache.pop(next(iter(charts_cache)))
                charts_cache[key] = data
        svg = data.decode("utf-8")
        svg = svg[svg.index("<svg"):]  # inline: no XML declaration or doctype inside HTML
        return {"name": name, "svg": Markup(svg), "caption": caption, "first": span.first, "last": span.last}

    def span_of(first: str | None, last: str | None) -> Window | None:
        whole = log_days(store.views())
        if first is None and last is None:
            return whole
        return window(None, first or (whole.first if whole else last), last or (whole.last if whole else first))

    @router.get("/login")
    def login_page(request: Request, next: str = "/") -> Response:
        return html(request, "Log in", template="login.html", next=next if next.startswith("/") else "/")

    @router.post("/login")
    def login(request: Request, token: str = Form(...), next: str = Form("/")) -> Response:
        try:
            authorize(request, token, READ)
        except ApiError as error:
            return html(request, "Log in", status=error.status, template="login.html", next=next, error=error.message)
        target = next if next.startswith("/") and not next.startswith("//") else "/"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie("clearing_token", token, httponly=True, samesite="strict", path="/")
        return response

    @router.get("/logout")
    def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie("clearing_token", path="/")
        return response

    @router.get("/")
    def overview(request: Request) -> Response:
        if (refused := login_required(request)) is not None:
            return refused
        from clearing.audit.chain import digest
        from projections.verifications import last

        views = store.views()
        fund = q.fund_page(views, None, 0, 1, True)
        found = digest(store.app.recorder)
        verified = last(store.projection_store.engine)
        markets = q.market_list(views)
        span = log_days(views)
        facts = [("insurance fund balance", fund["balance"], "/fund"),
                 ("fund movements", fund["movements_total"], "/fund"),
                 ("markets", len(markets), "/markets"),
                 ("log head", found.position, f"/events/{found.position}" if found.position else None),
                 ("chain head", found.head, None),
                 ("business days", span.label if span else "none", None),
                 ("last audit verify", "never recorded" if verified is None else
                  f"{'verified' if verified['verified'] else 'FAILED'} at head {verified['head']}, "
                  f"{verified['finished_at']}", None)]
        charts = [chart("insurance-fund", span, "Insurance fund balance and flows by cause"),
                  chart("open-interest", span, "Open interest and volume at each close")] if span else []
        return html(request, "Overview", lag=store.lag(), facts=facts, charts=charts)

    @router.get("/fund")
    def fund_page(request: Request, offset: int = 0) -> Response:
        if (refused := login_required(request)) is not None:
            return refused
        offset = max(0, offset)
        page = q.fund_page(store.views(), None, offset, PAGE_ROWS, True)
        span = log_days(store.views())
        rows = [[_event(r["position"]), cell(r["at"]), cell(r["direction"]), cell(r["cause"]), cell(r["amount"], num=True),
                 _account(r["counterparty"]), cell(r["reference"]), cell(r["balance_after"], num=True)]
                for r in page["movements"]]
        pager = _pager("/fund?", offset, page["movements_total"])
        return html(request, "Insurance fund", lag=store.lag(),
                    facts=[("balance", page["balance"], None), ("movements", page["movements_total"], None)],
                    charts=[chart("insurance-fund", span, "Balance after each movement; flows per day by cause")]
                    if span else [],
                    tables=[{"id": "movements", "title": "Movements, newest first", "rows": rows, "pager": pager,
                             "columns": ["position", "at", "direction", "cause", "amount", "counterparty", "reference",
                                         "balance after"]}])

    @router.get("/accounts")
    def accounts_page(request: Request, after: str | None = None, status: str | None = None) -> Response:
        if (refused := login_required(request)) is not None:
            return refused
        from itertools import islice

        views = store.views()
        listed = list(islice(q.account_list(views, status if status in q.ACCOUNT_STATUSES else None, after),
                             PAGE_ROWS + 1))
        rows = [[_account(r["account"]), cell(r["status"]), cell(r["collateral"], num=True), cell(r["equity"], num=True),
                 cell(r["initial_margin"], num=True), cell(r["maintenance_margin"], num=True),
                 cell(r["positions"], num=True)] for r in listed[:PAGE_ROWS]]
        pager = [("next page", f"/accounts?after={quote(listed[PAGE_ROWS - 1]['account'])}")] if len(listed) > PAGE_ROWS else []
        span = log_days(views)
        return html(request, "Accounts", lag=store.lag(),
                    charts=[chart("coverage", span, "Equity / maintenance margin at each close, accounts with positions")]
                    if span else [],
                    tables=[{"id": "accounts", "title": "Accounts by name", "rows": rows, "pager": pager,
                             "columns": ["account", "status", "collateral", "equity", "initial margin",
                                         "maintenance margin", "positions"]}])

    @router.get("/accounts/{name}")
    def account_page(request: Request, name: str) -> Response:
        if (refused := login_required(request)) is not None:
            return refused
        from clearing.errors import ClearingError

        try:
            view = q.account_view(store.views(), name, q.LossPolicies(store.app))
        except ClearingError as error:
            return html(request, f"Account {name}", status=404, raw=error.message)
        facts = [(key.replace("_", " "), view[key], None) for key in
                 ("status", "collateral", "equity", "initial_margin", "maintenance_margin", "free_collateral",
                  "margin_ratio", "realized_pnl")]
        if view["margin_call"]:
            facts.append(("open margin call", f"{view['margin_call']['amount_due']} due by {view['margin_call']['deadline']}",
                          None))
        rows = [[_market(p["market"]), cell(p["size"], num=True), cell(p["entry_price"], num=True),
                 cell(p["mark_price"], num=True), cell(p["unrealized_pnl"], num=True), cell(p["maintenance_margin"], num=True),
                 cell(p["liquidation_price"], num=True), cell(f"{p['adl_rank']} of {p['adl_holders']} ({p['adl_policy']})")]
                for p in view["positions"]]
        register = q.liquidation_register(store.views(), None, name, 0, PAGE_ROWS)
        history = [[_event(r["position"]), cell(r["at"]), cell(r["kind"]), _market(r["market"]),
                    cell(r["amount"], num=True), cell(r["price"], num=True)] for r in register["rows"]]
        return html(request, f"Account {name}", lag=store.lag(), facts=facts, tables=[
            {"id": "positions", "title": "Open positions", "rows": rows,
             "columns": ["market", "size", "entry", "mark", "unrealized PnL", "maintenance", "liquidation price", "ADL rank"]},
            {"id": "register", "title": "Margin calls and liquidations", "rows": history,
             "columns": ["position", "at", "kind", "market", "amount", "price"]}])

    @router.get("/markets")
    def markets_page(request: Request) -> Response:
        if (refused := login_required(request)) is not None:
            return refused
        rows = [[_market(r["market"]), cell(r["kind"]), cell(r["status"]), cell(r["mark_price"], num=True),
                 cell(r["mark_time"]), cell(r["open_interest"], num=True), cell(r["volume"], num=True),
                 cell(r["trades"], num=True)] for r in q.market_list(store.views())]
        span = log_days(store.views())
        return html(request, "Markets", lag=store.lag(),
                    charts=[chart("open-interest", span, "Open interest and volume at each close")] if span else [],
                    tables=[{"id": "markets", "title": "Markets", "rows": rows,
                             "columns": ["market", "kind", "status", "mark", "mark time", "open interest", "volume",
                                         "trades"]}])

    @router.get("/markets/{name}")
    def market_page(request: Request, name: str) -> Response:
        if (refused := login_required(request)) is not None:
            return refused
        from clearing.errors import ClearingError

        try:
            view = q.market_view(store.views(), name)
        except ClearingError as error:
            return html(request, f"Market {name}", status=404, raw=error.message)
        facts = [(key.replace("_", " "), view[key], None) for key in view if key not in ("market", "tiers")]
        tiers = [[cell(t[k], num=True) for k in t] for t in view["tiers"]]
        return html(request, f"Market {name}", lag=store.lag(), facts=facts, tables=[
            {"id": "tiers", "title": "Margin tiers", "rows": tiers,
             "columns": ["notional floor", "IMF", "MMF", "IM deduction", "MM deduction"]}])

    @router.get("/liquidations")
    def liquidations_page(request: Request, date: str | None = None, offset: int = 0) -> Response:
        if (refused := login_required(request)) is not None:
            return refused
        offset = max(0, offset)
        page = q.liquidation_register(store.views(), date, None, offset, PAGE_ROWS)
        span = span_of(date, date) if date else log_days(store.views())
        rows = [[_event(r["position"]), cell(r["at"]), cell(r["kind"]), _account(r["account"]), _market(r["market"]),
                 cell(r["size_delta"], num=True), cell(r["price"], num=True), cell(r["amount"], num=True),
                 _account(r["counterparty"])] for r in page["rows"]]
        pager = _pager(f"/liquidations?date={date}&" if date else "/liquidations?", offset, page["rows_total"])
        return html(request, "Liquidations", lag=store.lag(),
                    charts=[chart("liquidations", span, "Liquidation fills and deficits per hour")] if span else [],
                    tables=[{"id": "register", "title": "Liquidation register", "rows": rows, "pager": pager,
                             "columns": ["position", "at", "kind", "account", "market", "size", "price", "amount",
                                         "counterparty"]}])

    @router.get("/losses")
    def losses_page(request: Request) -> Response:
        if (refused := login_required(request)) is not None:
            return refused
        found = q.loss_allocations(store.views())
        rows = [[cell(r["at"]), cell(r["loss_id"]), _market(r["market"]), _account(r["account"]), cell(r["policy"]),
                 cell(r["share"], num=True), cell(r["basis"], num=True)] for r in found[:500]]
        span = log_days(store.views())
        return html(request, "Loss allocations", lag=store.lag(),
                    charts=[chart("losses", span, "Shares allocated per market and policy")] if span else [],
                    tables=[{"id": "losses", "title": f"Allocations ({len(found)}; the first 500)", "rows": rows,
                             "columns": ["at", "loss", "market", "account", "policy", "share", "basis"]}])

    @router.get("/reports")
    def reports_page(request: Request) -> Response:
        if (refused := login_required(request)) is not None:
            return refused
        from projections.reports.registry import REPORT_NAMES

        span = log_days(store.views())
        day = span.last if span else ""
        rows = [[cell(name), cell("CSV", f"/api/v1/reports/{name}?date={day}&format=csv"),
                 cell("JSON", f"/api/v1/reports/{name}?date={day}&format=json")] for name in REPORT_NAMES]
        form = Markup('<form method="get" action="/reports/open"><label>report <select name="name">'
                      + "".join(f"<option>{n}</option>" for n in REPORT_NAMES)
                      + f'</select></label> <label>date <input name="date" value="{day}" size="10"></label> '
                      '<select name="format"><option>csv</option><option>json</option></select> '
                      '<button type="submit">open</button></form>')
        return html(request, "Reports", lag=store.lag(), form=form,
                    facts=[("business days", span.label if span else "none", None)],
                    tables=[{"id": "reports", "title": f"Reports for {day or 'no day yet'}", "rows": rows,
                             "columns": ["report", "", ""]}])

    @router.get("/reports/open")
    def open_report(request: Request, name: str, date: str, format: str = "csv") -> Response:
        if (refused := login_required(request)) is not None:
            return refused
        return RedirectResponse(f"/api/v1/reports/{quote(name)}?date={quote(date)}&format={quote(format)}", status_code=303)

    @router.get("/events/{position}")
    def event_page(request: Request, position: int) -> Response:
        if (refused := login_required(request)) is not None:
            return refused
        from projections.event_records import event_at

        found = event_at(store.app, max(1, position))
        if not found:
            return html(request, f"Event {position}", status=404, raw=f"no event at log position {position}")
        first = found[0]
        facts = [("position", first["position"], None), ("type", first["type"], None),
                 ("aggregate", first["aggregate_id"], None), ("version", first["aggregate_version"], None),
                 ("recorded at", first["recorded_at"], None)]
        return html(request, f"Event {position}", facts=facts,
                    raw="\n".join(json.dumps(r["data"], indent=2, sort_keys=True) for r in found))

    @router.get("/charts/{file}")
    def chart_file(request: Request, file: str, start: str | None = None, end: str | None = None) -> Response:
        if (refused := login_required(request)) is not None:
            return refused
        name, _, fmt = file.rpartition(".")
        if name not in CHART_NAMES or fmt not in ("svg", "png"):
            raise ApiError(404, "not_found", f"no chart {file}", "name")
        first, last = request.query_params.get("from", start), request.query_params.get("to", end)
        span = span_of(first, last)
        if span is None:
            raise ApiError(404, "date_outside_log", "the log holds no business day yet", "date")
        data = render_chart(store.views(), name, span, fmt)
        return Response(data, media_type="image/svg+xml" if fmt == "svg" else "image/png")

    return router


def _pager(base: str, offset: int, total: int) -> list[tuple[str, str]]:
    links = []
    if offset > 0:
        links.append(("previous page", f"{base}offset={max(0, offset - PAGE_ROWS)}"))
    if offset + PAGE_ROWS < total:
        links.append(("next page", f"{base}offset={offset + PAGE_ROWS}"))
    return links
