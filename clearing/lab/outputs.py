"""The lab's outputs: one row per (window, policy), as CSV, JSON, PNG charts and a text table.

Money stays an exact ``Decimal`` up to the files, where it is written as a plain string
(``clearing.money.fmt``); ratios are already rounded to 4 places. The charts are the one
place numbers become floats, for drawing only (matplotlib's Agg backend, no display).
A run whose every metric equals another policy's run on the same window is flagged in
``identical_to``: two policies can legitimately decide alike on a window (for instance when
no deficit reaches the policy, or both rank the same holders first).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from clearing.jsonable import jsonable
from clearing.lab import population as model
from clearing.lab.runner import OK, LabReport, RunResult
from clearing.money import fmt

#: (column, what it is) in file order; the same names are the JSON keys.
COLUMNS = (
    ("window", "crash window of the tape"),
    ("policy", "loss_policy of the market"),
    ("status", "ok, skipped (set-parameters refused the name) or failed"),
    ("deficit_total", "deficits of bankrupt accounts (fund + allocations + deleveraging loss vs mark)"),
    ("fund_used", "insurance fund draws"),
    ("borne_total", "borne by accounts: loss shares + deleveraging loss vs mark"),
    ("borne_backstop", "part of borne_total borne by the backstop"),
    ("accounts_touched", "accounts with borne > 0"),
    ("largest_equity_share", "max borne / equity before the window (after the setup, at the first mark)"),
    ("largest_equity_share_account", "the account with that share"),
    ("gini_borne", "Gini of borne over accounts with borne > 0 only"),
    ("top_winner", "member whose opening position gains most from the first mark to the worst close"),
    ("top_winner_gain_before", "that gain, on the opening position"),
    ("top_winner_gain_after", "its equity gained by the worst close, as run"),
    ("top_winner_survival", "gain after / gain before"),
    ("max_leverage_left", "max notional / equity at the end, members with a position"),
    ("max_leverage_account", "the member with that leverage"),
    ("uncovered", "minus the sum of negative equity at the end (must be 0)"),
    ("conservation_difference", "equity + fund - (deposits - withdrawals + contributions) (must be 0)"),
    ("invariants", "clearing.audit.invariants.check_ledger: ok or the violation"),
    ("bankrupt_accounts", "accounts whose deficit was covered or deleveraged"),
    ("liquidation_fills", "Account.Liquidated events"),
    ("deleveraging_fills", "PositionTaken fills not taken by the backstop"),
    ("loss_allocations", "Account.LossAllocated events"),
    ("fund_seed", "insurance fund contributed at the start"),
    ("penalties_to_fund", "liquidation penalties paid into the fund"),
    ("fund_end", "insurance fund at the end"),
    ("identical_to", "other policies whose run on this window has every metric equal"),
    ("seconds", "wall time of the run"),
    ("message", "why a run was skipped or failed"),
)
TABLE_COLUMNS = ("window", "policy", "deficit_total", "fund_used", "borne_total", "accounts_touched",
                 "largest_equity_share", "gini_borne", "top_winner_survival", "max_leverage_left", "uncovered")
TABLE_HEADERS = ("window", "policy", "deficit", "fund_used", "borne", "touched", "max_share", "gini",
                 "survival", "max_lev_left", "uncovered")
CHARTS = (
    ("borne_total", "amount borne by accounts (USDC)", "amount_borne.png"),
    ("gini_borne", "Gini of amounts borne (accounts that bore > 0)", "gini_borne.png"),
    ("top_winner_survival", "top-winner survival (gain kept / gain at worst close)", "top_winner_survival.png"),
    ("max_leverage_left", "largest leverage left at the end (notional / equity)", "max_leverage_left.png"),
    ("accounts_touched", "accounts that bore a loss", "accounts_touched.png"),
)


def twins(runs: Sequence[RunResult]) -> dict[tuple[str, str], list[str]]:
    """For each ok run, the other policies whose run on the same window measured the same."""
    found: dict[tuple[str, str], list[str]] = {}
    for run in runs:
        if run.status != OK:
            continue
        found[(run.window, run.policy)] = [
            other.policy for other in runs
            if other is not run and other.status == OK and other.window == run.window and other.metrics == run.metrics
        ]
    return found


def rows(report: LabReport) -> list[dict[str, Any]]:
    """One dict per run, keys in ``COLUMNS`` order, values as they are (Decimal, int, str, None)."""
    same = twins(report.runs)
    result = []
    for run in report.runs:
        values: dict[str, Any] = {"window": run.window, "policy": run.policy, "status": run.status, **run.metrics,
                                  "identical_to": ",".join(same.get((run.window, run.policy), [])),
                                  "seconds": Decimal(f"{run.seconds:.2f}"), "message": run.message}
        result.append({name: values.get(name) for name, _ in COLUMNS})
    return result


def text(value: Any) -> str:
    if value is None:
        return ""
    return fmt(value) if isinstance(value, Decimal) else str(value)


def write_csv(report: LabReport, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([name for name, _ in COLUMNS])
        for row in rows(report):
            writer.writerow([text(value) for value in row.values()])


def write_json(report: LabReport, path: Path, tape: Path) -> None:
    document = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tape": str(tape),
        "tape_sha256": hashlib.sha256(tape.read_bytes()).hexdigest(),
        "seed": report.seed,
        "accounts": report.accounts,
        "policies": list(report.policies),
        "seconds": round(report.seconds, 1),
        "model": model_summary(),
        "populations": report.populations,
        "columns": dict(COLUMNS),
        "runs": [{name: jsonable(value) for name, value in row.items()} for row in rows(report)],
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def model_summary() -> dict[str, Any]:
    """The population model's constants (``clearing.lab.population``), for results.json."""
    return {
        "market": model.MARKET, "tick_size": fmt(model.TICK_SIZE), "step_size": fmt(model.STEP_SIZE),
        "initial_margin_fraction": fmt(model.INITIAL_MARGIN_FRACTION),
        "maintenance_margin_fraction": fmt(model.MAINTENANCE_MARGIN_FRACTION), "price_band": fmt(model.PRICE_BAND),
        "leverage_mix": [{"bucket": name, "share": fmt(share), "leverage": f"{low}-{high}x"}
                         for name, share, low, high in model.LEVERAGE_MIX],
        "tail_on_losing_side": fmt(model.TAIL_ON_LOSING_SIDE),
        "trade_price": f"first mark x (1 + u), u uniform on -{fmt(model.ENTRY_SPREAD)}..{fmt(model.ENTRY_SPREAD)}, "
                       "on the tick",
        "pair_notional_usdc": f"log-uniform {fmt(model.NOTIONAL_MIN_USDC)} .. "
                              f"{fmt(model.NOTIONAL_MIN_USDC * 10 ** model.NOTIONAL_DECADES)}",
        "member_deposit": "notional at the first mark / leverage + unrealized loss at the first mark, up to the cent",
        "insurance_fund_seed": f"{fmt(model.FUND_FRACTION)} x open-interest notional at the first mark",
        "backstop_deposit": f"{fmt(model.BACKSTOP_FRACTION)} x open-interest notional at the first mark",
        "marks": "one price per 1-minute candle: its close, at its open_time_utc",
    }


def write_charts(report: LabReport, directory: Path) -> list[Path]:
    """One grouped bar chart per metric in ``CHARTS``: windows on x, one bar per policy."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    windows = list(report.populations)
    drawn = [policy for policy in report.policies if any(r.policy == policy and r.status == OK for r in report.runs)]
    skipped = [policy for policy in report.policies if policy not in drawn]
    written = []
    for metric, title, name in CHARTS:
        figure, axes = pyplot.subplots(figsize=(11, 5.5))
        width = 0.8 / max(1, len(drawn))
        for offset, policy in enumerate(drawn):
            heights = [_height(report.runs, window, policy, metric) for window in windows]
            positions = [index + (offset - (len(drawn) - 1) / 2) * width for index in range(len(windows))]
            axes.bar(positions, [height or 0.0 for height in heights], width, label=policy)
        axes.set_xticks(range(len(windows)), windows)
        note = f"; not run (refused by set-parameters or failed): {', '.join(skipped)}" if skipped else ""
        axes.set_title(f"{title}\nseed {report.seed}, {report.accounts} accounts{note}", fontsize="medium")
        if drawn:
            axes.legend(fontsize="small")
        axes.grid(axis="y", alpha=0.3)
        figure.tight_layout()
        path = directory / name
        figure.savefig(path, dpi=100)
        pyplot.close(figure)
        written.append(path)
    return written


def _height(runs: Sequence[RunResult], window: str, policy: str, metric: str) -> float | None:
    for run in runs:
        if run.window == window and run.policy == policy and run.status == OK:
            value = run.metrics.get(metric)
            return None if value is None else float(value)  # drawing only
    return None
