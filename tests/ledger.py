"""Test helpers: post a JSONL script and read balances, so tests read like a ledger."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from clearing.application import ClearingApplication, Outcome
from clearing.composition import Parts
from clearing.posting import post_lines
from tests.margin_state import account_view

T0 = datetime(2025, 1, 1, tzinfo=UTC)


class FixedClock:
    """Deterministic boundary clock: every call is one second after the previous."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


class Ledger:
    """A clearing application plus the helpers scenario tests need."""

    def __init__(self, env: dict[str, str] | None = None, parts: Parts | None = None) -> None:
        self.app = ClearingApplication(env=env or {"PERSISTENCE_MODULE": "eventsourcing.popo"}, parts=parts)
        self.clock = FixedClock()
        self._sequence = 0

    def post(self, script: str | Iterable[dict[str, Any]], batch_size: int = 1000, auto_id: bool = True,
             operator: str = "") -> list[Outcome]:
        """Post a JSONL script (text) or command dicts as ``operator``; ids are filled in when missing.

        A script line may start with ``NAME>`` to be posted as operator NAME instead (an
        officer's approval: ``olga> {"type":"approve","officer":"olga",...}``); each run of
        lines with one operator is posted in turn, in script order.
        """
        lines = script.splitlines() if isinstance(script, str) else [json.dumps(c) for c in script]
        outcomes: list[Outcome] = []
        for posted_as, run in _runs_by_operator(lines, operator):
            posted = [self._with_id(line) for line in run] if auto_id else run
            outcomes.extend(post_lines(self.app, posted, batch_size, self.clock, operator=posted_as))
        return outcomes

    def post_ok(self, script: str | Iterable[dict[str, Any]], operator: str = "") -> list[Outcome]:
        outcomes = self.post(script, operator=operator)
        bad = [o for o in outcomes if o.status == "rejected"]
        assert not bad, [(o.line, o.code, o.field, o.message) for o in bad]
        return outcomes

    def _with_id(self, line: str) -> str:
        text = line.strip()
        if not text.startswith("{") or '"id"' in text:
            return line
        self._sequence += 1
        return f'{{"id": "auto-{self._sequence}", ' + text[1:]

    def account(self, name: str) -> dict[str, Any]:
        return account_view(self.app, name)

    def collateral(self, name: str) -> Decimal:
        return self.app.get_account(name).collateral

    def position(self, name: str, market: str) -> Decimal:
        return self.app.get_account(name).position(market).size

    def head(self) -> int:
        return self.app.recorder.max_notification_id() or 0

    def assert_rejection_wrote_only_its_answer(self, head: int, outcome: Outcome, line: str | None = None) -> None:
        """A boundary rejection writes nothing; a rule rejection writes only its answer record.

        The record (``CommandRecord.Rejected`` with the code, field and message) makes the
        answer final: re-posting ``line`` (the same id and content) is ``already_rejected``
        with the same code and writes nothing, whatever the state is now.
        """
        new = self.app.recorder.select_notifications(start=head + 1, limit=10)
        assert len(new) <= 1, f"a rejected command wrote {len(new)} events"
        if not new:
            return
        record = self.app.mapper.to_domain_event(new[0])
        assert type(record).__qualname__ == "CommandRecord.Rejected", type(record).__qualname__
        assert (record.command_id, record.code, record.field) == (outcome.command_id, outcome.code, outcome.field)
        if line is not None:
            (again,) = self.post(line, auto_id=False)
            assert (again.status, again.code, again.field) == ("already_rejected", outcome.code, outcome.field)
            assert self.head() == head + 1, "a re-posted rejection wrote events"


MARKET_BTC = (
    '{"type":"create_market","id":"m-btc","market":"BTC-PERP","kind":"perpetual","tick_size":"0.1",'
    '"step_size":"0.001","initial_margin_fraction":"0.1","maintenance_margin_fraction":"0.05","price_band":"0.5"}'
)


_OPERATOR_PREFIX = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9_.:@-]{0,63})>\s?(.*)$")


def _runs_by_operator(lines: list[str], default: str) -> list[tuple[str, list[str]]]:
    """``["olga> {..}", "{..}"]`` -> ``[("olga", ["{..}"]), (default, ["{..}"])]``."""
    runs: list[tuple[str, list[str]]] = []
    for line in lines:
        found = _OPERATOR_PREFIX.match(line)
        operator, text = (found.group(1), found.group(2)) if found else (default, line)
        if runs and runs[-1][0] == operator:
            runs[-1][1].append(text)
        else:
            runs.append((operator, [text]))
    return runs


def dated(script: str, at: str) -> str:
    """``script`` with ``"at": at`` on every command line that has no business time.

    A stream posted through the CLI is otherwise stamped with today's clock, and its later
    lines dated 2025 would then be back-dated by more than the log allows (``time_before_log``).
    """
    lines = []
    for line in script.splitlines():
        text = line.strip()
        if text.startswith("{") and '"at"' not in text:
            lines.append(text[:-1] + f',"at":"{at}"}}')
        else:
            lines.append(line)
    return "\n".join(lines) + ("\n" if script.endswith("\n") else "")


def accounts_with(*pairs: tuple[str, str]) -> str:
    """open_account + deposit lines for (name, amount) pairs."""
    lines = []
    for name, amount in pairs:
        lines.append(json.dumps({"type": "open_account", "id": f"open-{name}", "account": name}))
        lines.append(json.dumps({"type": "deposit", "id": f"dep-{name}", "account": name, "amount": amount}))
    return "\n".join(lines)


def trade_order_free_events(app: ClearingApplication) -> list[tuple[str, str]]:
    """(event type, aggregate) of every event but the per-batch ``HoldersChanged`` (``TradingRecorded``
    before ADR 26), with each
    run's fills (``Account.FillsRecorded``, ADR 25) as one ``("fill <trade id>", account)``
    entry per fill, the fills of consecutive runs sorted: how trades group into runs and
    events depends on where batches were cut, which fills were recorded does not."""
    notifications = app.recorder.select_notifications(start=1, limit=10**7)
    entries: list[tuple[str, str]] = []
    stretch: list[tuple[str, str]] = []
    for notification in notifications:
        if notification.topic.endswith(("TradingRecorded", "HoldersChanged")):
            continue
        if notification.topic.endswith(":Account.FillsRecorded"):
            event = app.mapper.to_domain_event(notification)
            stretch.extend((f"fill {wire[0]}", event.account) for wire in event.fills)
            continue
        entries.extend(sorted(stretch))
        stretch = []
        entries.append((notification.topic, str(notification.originator_id)))
    return entries + sorted(stretch)


def unversioned(view: dict[str, Any]) -> dict[str, Any]:
    """An account's view without its version, which counts its stored events: a batch stores
    each account's fills of a run of trades as one event (ADR 25), so it depends on batching."""
    return {key: value for key, value in view.items() if key != "version"}
