"""Rendering for people (aligned text) and machines (JSON, every decimal a string)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import click

from clearing.jsonable import jsonable

if TYPE_CHECKING:
    from clearing.application import Outcome


def to_json_value(value: Any) -> Any:
    """Decimals, times, ids and value objects as JSON-safe values (``clearing.jsonable``)."""
    return jsonable(value)


def text_value(value: Any) -> str:
    """A value for a one-line text listing: scalars plain, structures as compact JSON."""
    converted = to_json_value(value)
    return converted if isinstance(converted, str) else json.dumps(converted, separators=(",", ":"))


def dumps(data: Any) -> str:
    return json.dumps(to_json_value(data), separators=(",", ":"), ensure_ascii=False)


def outcome_json(outcome: Outcome) -> str:
    data: dict[str, Any] = {"line": outcome.line, "id": outcome.command_id, "type": outcome.command_type}
    data["status"] = outcome.status
    if outcome.is_rejection:
        data.update(code=outcome.code, field=outcome.field, message=outcome.message)
    else:
        data["summary"] = outcome.result
        if outcome.positions:
            data["positions"] = outcome.positions
        if outcome.effects:
            data["effects"] = outcome.effects
    return dumps(data)


def outcome_text(outcome: Outcome) -> str:
    where = f"line {outcome.line}: " if outcome.line is not None else ""
    if outcome.is_rejection:
        field = f" [{outcome.field}]" if outcome.field else ""
        status = outcome.status.replace("_", " ")
        return f"{where}{outcome.command_id} {status} {outcome.code}{field}: {outcome.message}"
    return f"{where}{outcome.command_id} {outcome.status.replace('_', ' ')}: {outcome.result}"


def echo_outcome(outcome: Outcome, as_json: bool) -> None:
    click.echo(outcome_json(outcome) if as_json else outcome_text(outcome))


def account_text(view: dict[str, Any]) -> str:
    lines = [f"account {view['account']} ({view['status']})"]
    call = view.get("margin_call")
    if call:
        lines.append(f"  margin call in {call['market']} ({call['rule']} rule): {call['amount_due']} due of "
                     f"{call['amount_to_initial']} called to restore initial margin, deadline {call['deadline']}")
    for key in ("collateral", "equity", "initial_margin", "maintenance_margin", "free_collateral", "margin_ratio",
                "realized_pnl"):
        lines.append(f"  {key:<20} {view[key] if view[key] is not None else '-'}")
    if not view["positions"]:
        lines.append("  no open positions")
        return "\n".join(lines)
    columns = ("market", "size", "entry_price", "mark_price", "unrealized_pnl", "maintenance_margin", "liquidation_price")
    rows = [[str(p[c]) if p[c] is not None else "-" for c in columns] + [_adl_text(p)] for p in view["positions"]]
    lines.append(table((*columns, "adl_rank (score)"), rows, indent="  "))
    return "\n".join(lines)


def _adl_text(position: dict[str, Any]) -> str:
    """``2/3 (0.6)``: second of three same-side holders to be deleveraged, score 0.6."""
    score = position.get("adl_score")
    shown = "-" if score is None else _short(score)
    return f"{position['adl_rank']}/{position['adl_holders']} ({shown})"


def _short(number: str) -> str:
    """A score of up to 60 digits at 6 significant digits for people (JSON keeps them all)."""
    return f"{Decimal(number):.6g}"


ACCOUNT_LIST_COLUMNS = ("account", "status", "collateral", "equity", "initial_margin", "maintenance_margin", "positions")
_LIST_WIDTHS = (16, 11, 16, 16, 16, 18, 9)


def account_list_lines(rows: Any) -> Any:
    """Aligned lines for ``account list``, streamed: a header before the first row, none
    when there are no rows. Columns have fixed minimum widths (a wider value pushes its
    line right), since the rows are never all in memory to measure."""
    for index, row in enumerate(rows):
        if index == 0:
            yield "  ".join(c.ljust(w) for c, w in zip(ACCOUNT_LIST_COLUMNS, _LIST_WIDTHS, strict=True)).rstrip()
        values = [str(row[c]) for c in ACCOUNT_LIST_COLUMNS]
        yield "  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(values, _LIST_WIDTHS, strict=True)).rstrip()


def market_text(view: dict[str, Any]) -> str:
    lines = [f"market {view['market']} ({view['kind']}, {view['status']})"]
    for key in ("mark_price", "mark_time", "open_interest", "volume", "trades", "expiry", "contract_size", "tick_size",
                "step_size", "price_band", "collateral_asset"):
        lines.append(f"  {key:<17} {view[key] if view[key] is not None else '-'}")
    columns = ("notional_floor", "initial_margin_fraction", "maintenance_margin_fraction", "maintenance_margin_deduction")
    lines.append(table(columns, [[t[c] for c in columns] for t in view["tiers"]], indent="  "))
    return "\n".join(lines)


def fund_text(view: dict[str, Any]) -> str:
    lines = [f"insurance fund balance {view['balance']} (in {view['inflows']}, out {view['outflows']})"]
    if view["movements"]:
        columns = ("at", "direction", "cause", "amount", "counterparty", "reference", "balance_after")
        rows = [[str(m[c]) if m[c] is not None else "-" for c in columns] for m in view["movements"]]
        lines.append(table(columns, rows, indent="  "))
    else:
        lines.append("  no movements")
    return "\n".join(lines)


def table(columns: tuple[str, ...], rows: list[list[str]], indent: str = "") -> str:
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    out = [indent + "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    for row in rows:
        cells = (v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(row, widths, strict=True))
        out.append(indent + "  ".join(cells).rstrip())
    return "\n".join(out)


def _numeric(text: str) -> bool:
    return text.lstrip("-").replace(".", "", 1).isdigit()


def losses_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no loss allocations"
    columns = ("at", "loss_id", "market", "account", "policy", "share", "basis", "basis_total")
    return table(columns, [[str(r[c]) if r.get(c) is not None else "-" for c in columns] for r in rows])


def json_array_lines(rows: Any) -> Any:
    """One JSON document (an array) for a listing, streamed a row a line: ``[``, the rows
    with commas, ``]``; an empty listing is ``[]``, never nothing."""
    first = True
    for row in rows:
        yield ("[" if first else ",") + dumps(row)
        first = False
    yield "[]" if first else "]"


MARKET_LIST_COLUMNS = ("market", "kind", "status", "mark_price", "open_interest", "volume", "trades", "expiry")


def market_list_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no markets"
    return table(MARKET_LIST_COLUMNS, [[str(r[c]) if r[c] is not None else "-" for c in MARKET_LIST_COLUMNS] for r in rows])


def parameters_text(view: dict[str, Any]) -> str:
    scope = "clearinghouse defaults" if view["scope"] == "clearinghouse" else f"market {view['scope']}"
    lines = [f"parameters in force for {scope} as of log position {view['as_of_position']}"]
    rows = [[r["name"], text_value(r["value"]), r["source"] if r["set_at_position"] is None
             else f"{r['source']} at {r['set_at_position']}", r["governed"]] for r in view["parameters"]]
    lines.append(table(("name", "value", "source", "governed"), rows, indent="  "))
    return "\n".join(lines)


def controls_text(view: dict[str, Any]) -> str:
    paused = ", ".join(f"{p['operation']} in {'all markets' if p['market'] == '*' else p['market']}"
                       for p in view["paused"]) or "nothing"
    officers = ", ".join(view["officers"]) or "none registered"
    lines = [f"controls as of log position {view['as_of_position']}",
             f"  paused: {paused}",
             f"  officers: {officers} (at most {view['officers_max']}; {view['approvals_required']} approval(s) "
             f"required, each counting {view['approval_ttl']} s; governance timelock {view['governance_timelock']} s)"]
    if not view["pending_approvals"]:
        lines.append("  pending approvals: none")
    for pending in view["pending_approvals"]:
        held = ", ".join(f"{a['officer']} at {a['approved_at']} (counts until {a['counts_until']})"
                         for a in pending["approvals"])
        lines.append(f"  pending: {pending['describe']}: {len(pending['approvals'])} of {pending['approvals_required']} "
                     f"({held}) [{pending['fingerprint']}]")
    if not view["liquidation_queue"]:
        lines.append("  liquidation queue: empty")
    for entry in view["liquidation_queue"]:
        detail = (f" queued at {entry['queued_at']} (position {entry['position']}, mark {entry['price_mark']}, equity "
                  f"{entry['equity']}, maintenance {entry['maintenance_margin']})") if "queued_at" in entry else ""
        lines.append(f"  queued #{entry['sequence']}: {entry['account']} in {entry['market']}{detail}")
    return "\n".join(lines)
