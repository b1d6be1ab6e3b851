"""``clearing adl rank MARKET``: every holder's standing under the market's loss policy.

Read from the margin projection (or, with ``--as-of``, from the log replayed into memory,
as ``account show --as-of`` does); the policy is the one in force at that log position
(``projections.queries.LossPolicies``), each score is the policy's own
(``loss_policies.scores``) and ``--deficit`` is allocated by ``loss_policies.bear``. Nothing
is written. A bad option prints ``error: [code] field: message`` and exits 1; ``--deficit``
is checked before the store is opened.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import click

from clearing.errors import ClearingError, InputError
from clearing.money import D, MoneyError
from cli import render
from cli.context import Store, echo_view, fail, pass_store
from cli.queries import show, views_as_of
from projections.queries import LossPolicies, adl_rank_view

RANK_COLUMNS = ("rank", "account", "size", "equity", "leverage", "score")
SIDES = (("longs", "shorts"), ("shorts", "longs"))  # (a side, the side whose bankruptcy it would pay for)


def parse_deficit(text: str | None) -> Decimal | None:
    """``--deficit``: a plain decimal string (``D``: no float notation, NaN, infinity or sign).

    Example: ``"250.5"`` -> 250.5; ``"1e3"``, ``"NaN"``, ``"inf"``, ``"+5"`` -> ``invalid_number``.
    Negative amounts and the quantum are checked against the market (``adl_rank_view``).
    """
    if text is None:
        return None
    try:
        return D(text)
    except MoneyError as error:
        raise InputError(error.code, "deficit", f"deficit: {error.message}") from None


@click.group()
def adl() -> None:
    """Auto-deleveraging and loss-allocation standings."""


@adl.command("rank")
@click.argument("market")
@click.option("--as-of", "as_of", metavar="POSITION|TIME",
              help="As of a log position, or an ISO-8601 business time (replayed from the log).")
@click.option("--deficit", metavar="AMOUNT",
              help="Also show what each holder would bear if a deficit of AMOUNT were allocated now.")
@click.option("--json", "as_json", is_flag=True, help="JSON output; every decimal is a string.")
@pass_store
def adl_rank(store: Store, market: str, as_of: str | None, deficit: str | None, as_json: bool) -> None:
    """Every holder of MARKET ranked under the market's loss policy, longs and shorts apart.

    Each row: rank on its side (1 = reached first), account, size, equity, leverage
    (notional / equity) and the policy's score: adl the BitMEX score (PnL% x leverage),
    adl_hyperliquid (mark / entry) x leverage, waterfill_leverage the leverage (equity <= 0
    first), haircut_gains the gain, leverage_weighted_gains leverage x gain,
    socialize_per_contract |size|.

    --deficit AMOUNT adds what each would bear (bears). Under a queue policy (adl,
    adl_hyperliquid, waterfill_leverage) a deficit is left by a bankrupt position on the
    other side, so each side is charged as if the opposite side's bankrupt position left
    AMOUNT; under a cash policy it is one allocation over every holder.

    \b
    Example:
      clearing adl rank BTC-PERP --deficit 1000
      clearing adl rank BTC-PERP --as-of 2025-10-10T21:00:00Z --json
    """
    try:
        amount = parse_deficit(deficit)
    except ClearingError as error:
        fail(error)
    views = views_as_of(store, as_of, ["margin"])
    view = show(adl_rank_view, views, market, LossPolicies(store.existing_app), amount)
    echo_view(view, as_json, rank_text)


def rank_text(view: dict[str, Any]) -> str:
    """The view for a terminal: a header line, then a table per side, then the what-if lines.

    Example header: ``market X-PERP  policy adl (queue)  mark 1100  log position 17``.
    Scores and leverage at 6 significant digits (the JSON keeps every digit).
    """
    header = (f"market {view['market']}  policy {view['policy']} ({view['family']})  "
              f"mark {view['mark_price'] or '-'}  log position {view['position']}")
    lines = [header]
    columns = RANK_COLUMNS + (("bears",) if view["deficit"] is not None else ())
    for side, _ in SIDES:
        rows = view[side]
        lines.append(f"{side} ({len(rows)})")
        if rows:
            lines.append(render.table(columns, [[_cell(row[column], column) for column in columns] for row in rows],
                                      indent="  "))
    lines.extend(_what_if_lines(view))
    return "\n".join(lines)


def _cell(value: Any, column: str) -> str:
    if value is None:
        return "-"
    if column in ("leverage", "score"):
        return f"{Decimal(value):.6g}"
    return str(value)


def _what_if_lines(view: dict[str, Any]) -> list[str]:
    """``if a bankrupt short left 500: longs bear 400, 100 uncovered`` per allocation."""
    deficit = view["deficit"]
    lines = []
    for allocation in view["what_if"]:
        charged = allocation["charged"]
        if charged == "all":
            cause = f"if {deficit} were allocated over every holder"
        else:
            other = dict(SIDES)[charged]
            cause = f"if a bankrupt position of the {other} left {deficit}"
        lines.append(f"{cause}: {charged} bear {allocation['borne']}, {allocation['uncovered']} uncovered")
    return lines


#: The top-level commands and groups this module adds to ``clearing`` (``cli.main``).
COMMANDS = (adl,)
