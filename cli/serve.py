"""``clearing serve`` (the read-only HTTP API and dashboard) and ``clearing chart``."""

from __future__ import annotations

import click

from clearing.errors import ClearingError
from cli.context import CodedChoice, Store, fail, pass_store
from cli.failures import STORE, Failure


def _chart_names() -> tuple[str, ...]:
    from projections.charts import CHART_NAMES

    return CHART_NAMES


def _check_chart(name: str) -> object:
    from projections.charts import check_chart_name

    return check_chart_name(name)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port (0: any free one).")
@click.option("--access-log", "access_log", metavar="FILE", default="-", show_default=True,
              help="Where to write the access log, one JSON line per request (- for standard error).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Server processes sharing the port (one per core serves the most requests; each opens its own "
                   "connections).")
@pass_store
def serve(store: Store, host: str, port: int, access_log: str, workers: int) -> None:
    """Serve the read-only HTTP API and the dashboard over the store.

    Reads only the projection tables and the log, and writes neither (a read-only SQLite
    copy or a PostgreSQL role with SELECT serves). Every request needs a regulator or
    auditor token (`clearing tokens create`): `Authorization: Bearer <token>` for the API
    under /api/v1, the login page for the dashboard at /. The schema is at
    /api/v1/openapi.json; `clearing docs api` has curl examples. Stop with Ctrl-C.

    \b
    Example:
      clearing tokens create --name fca --role regulator
      clearing serve --port 8000
      curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/api/v1/insurance-fund
    """
    import uvicorn

    from projections.api.app import configure_access_log, create_app
    from projections.api.store import ReadStore

    store.require_existing()
    _check_address(host, port)
    try:
        reader = store._opened(lambda: ReadStore(store.db))
        reader.views()  # refuse at start, not on the first request: projection_missing, projection_outdated
    except ClearingError as error:
        fail(error, STORE)
    from cli.failures import redact

    click.echo(f"serving {redact(store.db)} on http://{host}:{port}/ with {workers} worker(s) (API under /api/v1; "
               "Ctrl-C stops)", err=True)
    if workers > 1:  # processes started by uvicorn, each building the application from the environment
        import os

        from projections.api.app import ACCESS_LOG_VAR, DB_VAR

        reader.close()
        os.environ[DB_VAR], os.environ[ACCESS_LOG_VAR] = store.db, access_log
        uvicorn.run("projections.api.app:app_from_environment", factory=True, workers=workers, host=host, port=port,
                    log_level="warning", access_log=False, server_header=False)
        return
    configure_access_log(access_log)
    app = create_app(store.db, reader)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, server_header=False)
    finally:
        reader.close()


def _check_address(host: str, port: int) -> None:
    """``address_in_use`` (or ``address_unusable``) before anything is opened, not uvicorn's
    log line after start-up."""
    import socket

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        code = "address_in_use" if error.errno == 98 else "address_unusable"
        raise Failure(code, f"cannot listen on {host}:{port}: {error.strerror}", STORE, "port") from None


@click.command("chart")
@click.argument("name", metavar="NAME", type=CodedChoice(_chart_names, _check_chart))
@click.option("--date", "day", metavar="YYYY-MM-DD", help="One business day.")
@click.option("--from", "first", metavar="YYYY-MM-DD", help="First business day of a window (with --to).")
@click.option("--to", "last", metavar="YYYY-MM-DD", help="Last business day of a window (with --from).")
@click.option("--output", required=True, metavar="FILE.svg|FILE.png", help="Where to write the chart (atomically).")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as one JSON document.")
@pass_store
def chart(store: Store, name: str, day: str | None, first: str | None, last: str | None, output: str,
          as_json: bool) -> None:
    """Draw chart NAME from the projection tables into an SVG or PNG file.

    \b
    NAME is one of:
      insurance-fund  balance after each movement; inflows and outflows per day by cause
      coverage        equity / maintenance margin of the accounts with positions, per close
      liquidations    liquidation fills and bankruptcy deficits per hour
      losses          loss allocations per market and policy
      open-interest   open interest and volume per market at each close

    The same charts as the dashboard of `clearing serve`. Pictures only: the exact
    figures are in `clearing report`.
    """
    from cli.reports import check_output, write_atomic
    from projections.charts import render_chart, window

    try:
        span = window(day, first, last)
        target = check_output(output)
        data = render_chart(store.views, name, span, target.suffix.lstrip(".").lower())
        write_atomic(target, data)
    except ClearingError as error:
        fail(error)
    if as_json:
        from cli.render import dumps

        click.echo(dumps({"chart": name, "from": span.first, "to": span.last, "output": str(target), "bytes": len(data)}))
    else:
        click.echo(f"wrote chart {name} for {span.label} to {target} ({len(data)} bytes)", err=True)


#: The top-level commands and groups this module adds to ``clearing`` (``cli.main``).
COMMANDS = (serve, chart)
