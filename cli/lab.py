"""``clearing lab``: experiments on scratch stores, never on the operator's store.

    clearing lab loss-policies --tape ../shared/data/binance_um_btcusdt_perp_1m_crash_windows.csv

drives the lab's seeded population through every crash window of the tape once per loss
policy (``clearing.lab``), each run in its own SQLite file in a temporary directory, and
writes results.csv, results.json and PNG charts to --output.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from clearing.errors import ClearingError
from clearing.lab.outputs import (
    TABLE_COLUMNS,
    TABLE_HEADERS,
    rows,
    text,
    write_charts,
    write_csv,
    write_json,
)
from clearing.lab.population import ACCOUNTS_MAX, ACCOUNTS_MIN, check_accounts
from clearing.lab.runner import FAILED, OK, POLICIES, LabReport, run_lab
from clearing.lab.tape import Window, load_tape
from cli import render
from cli.context import fail


@click.group()
def lab() -> None:
    """Experiments on scratch stores (the configured --db / CLEARING_DB is never used)."""


def _accounts(ctx: click.Context, param: click.Parameter, value: int) -> int:
    try:
        check_accounts(value)
    except ValueError as error:
        raise click.BadParameter(str(error).removeprefix("--accounts "), ctx, param) from None
    return value


def _policies(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(name.strip() for name in value.split(",") if name.strip()))
    unknown = [name for name in names if name not in POLICIES]
    if not names or unknown:
        what = f"unknown policy {', '.join(map(repr, unknown))}" if unknown else "no policy given"
        raise click.BadParameter(f"{what}; known: {', '.join(POLICIES)}", ctx, param)
    return names


@lab.command("loss-policies")
@click.option("--tape", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="CSV of 1-minute candles with a `window` column, e.g. "
                   "../shared/data/binance_um_btcusdt_perp_1m_crash_windows.csv")
@click.option("--accounts", type=int, metavar="N", default=300, show_default=True, callback=_accounts,
              help=f"Members in the population: even, {ACCOUNTS_MIN}..{ACCOUNTS_MAX}.")
@click.option("--seed", type=int, metavar="S", default=7, show_default=True, help="Seed of the population generator.")
@click.option("--policies", metavar="P1,P2,...", default=",".join(POLICIES), show_default=True, callback=_policies,
              help="Comma-separated loss policies to compare.")
@click.option("--windows", "window_names", default=None, metavar="W1,W2",
              help="Only these windows of the tape. [default: every window]")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), metavar="DIR", default=Path("lab-output"),
              show_default=True, help="Directory for results.csv, results.json and the charts.")
def loss_policies(tape: Path, accounts: int, seed: int, policies: tuple[str, ...], window_names: str | None,
                  output: Path) -> None:
    """Compare loss policies on a seeded population driven through real crash windows.

    For each window of the tape and each policy, a fresh SQLite store in a temporary
    directory gets the population (paired longs and shorts opened within 5 % of the
    window's first price, which is the first mark; high-leverage tail on the losing side;
    a funded backstop; a small insurance fund), the policy as the market's loss_policy,
    then one mark price per minute (the candle's close). The operator's store (--db /
    CLEARING_DB) is ignored: nothing is written there.

    Reports per policy and window: total deficit, fund used, amount borne by accounts
    (loss shares + deleveraging loss vs mark), accounts touched, largest share of one
    account's equity taken, Gini of the amounts borne (accounts that bore anything),
    top-winner survival, largest leverage left, and what is left uncovered (must be 0).
    Runs whose every metric is equal are noted. Model and definitions:
    docs/loss-policies.md. Exit status 1 when a run failed or a run's money checks failed.
    """
    try:
        windows = _chosen(load_tape(tape), window_names)
    except ClearingError as error:
        fail(error, 2)
    output.mkdir(parents=True, exist_ok=True)
    total = sum(len(window.candles) for window in windows) * len(policies)
    with click.progressbar(length=total, label=f"{len(windows) * len(policies)} runs", file=sys.stderr,
                           show_eta=True) as bar:
        report = run_lab(windows, accounts, seed, policies, on_candles=bar.update)
    write_csv(report, output / "results.csv")
    write_json(report, output / "results.json", tape)
    charts = write_charts(report, output)
    click.echo(_table(report))
    click.echo(f"\nseed {seed}, {accounts} accounts, {len(report.runs)} runs in {report.seconds:.1f}s; wrote "
               f"{output / 'results.csv'}, {output / 'results.json'} and {len(charts)} charts in {output}/")
    _exit_on_findings(report)


def _chosen(windows: list[Window], names: str | None) -> list[Window]:
    if names is None:
        return windows
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    known = {window.name for window in windows}
    unknown = [name for name in wanted if name not in known]
    if unknown or not wanted:
        raise click.BadParameter(f"not in the tape: {', '.join(unknown) or '(none given)'}; "
                                 f"windows: {', '.join(known)}",
                                 param_hint="--windows")
    return [window for window in windows if window.name in wanted]


def _table(report: LabReport) -> str:
    """The results table, then why runs were skipped or failed (once per policy and reason)."""
    lines: list[list[str]] = []
    reasons: dict[tuple[str, str, str], list[str]] = {}
    for row in rows(report):
        if row["status"] == OK:
            lines.append([text(row[name]) or "-" for name in TABLE_COLUMNS])
            continue
        lines.append([row["window"], row["policy"], row["status"]] + ["-"] * (len(TABLE_COLUMNS) - 3))
        reasons.setdefault((row["policy"], row["status"], row["message"]), []).append(row["window"])
    notes = [f"  {policy} {status}: {message}" for (policy, status, message) in reasons]
    notes += [f"  {row['window']} {row['policy']}: every metric equals {row['identical_to']} on this window"
              for row in rows(report) if row["identical_to"]]
    return render.table(TABLE_HEADERS, lines) + ("\n\n" + "\n".join(notes) if notes else "")


def _exit_on_findings(report: LabReport) -> None:
    findings = []
    for row in rows(report):
        if row["status"] == FAILED:
            findings.append(f"{row['window']} {row['policy']}: run failed: {row['message']}")
        elif row["status"] == OK and (row["uncovered"] or row["conservation_difference"] or row["invariants"] != OK):
            findings.append(f"{row['window']} {row['policy']}: uncovered {text(row['uncovered'])}, conservation "
                            f"difference {text(row['conservation_difference'])}, invariants {row['invariants']}")
    for finding in findings:
        click.echo(f"error: {finding}", err=True)
    if findings:
        sys.exit(1)


#: The top-level commands and groups this module adds to ``clearing`` (``cli.main``).
COMMANDS = (lab,)
