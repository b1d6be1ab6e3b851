"""Test helpers: post a JSONL script and read balances, so tests read like a ledger."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable

from clearing.application import ClearingApplication, Outcome
from clearing.posting import post_lines
from projections.margin_state import account_view

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


class FixedClock:
    """Deterministic boundary clock: every call is one second after the previous."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


class Ledger:
    """A clearing application plus the helpers scenario tests need."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.app = ClearingApplication(env=env or {"PERSISTENCE_MODULE": "eventsourcing.popo"})
        self.clock = FixedClock()
        self._sequence = 0

    def post(self, script: str | Iterable[dict[str, Any]], batch_size: int = 1000, auto_id: bool = True) -> list[Outcome]:
        """Post a JSONL script (text) or command dicts; ids are filled in when missing."""
        lines = script.splitlines() if isinstance(script, str) else [json.dumps(c) for c in script]
        if auto_id:
            lines = [self._with_id(line) for line in lines]
        return list(post_lines(self.app, lines, batch_size, self.clock))

    def post_ok(self, script: str | Iterable[dict[str, Any]]) -> list[Outcome]:
        outcomes = self.post(script)
        bad = [o for o in outcomes if o.status == "rejected"]
        assert not bad, [(o.line, o.code, o.field, o.message) for o in bad]
        return outcomes

    def _with_id(self, line: str) -> str:
        text = line.strip()
        if not text.startswith("{") or '"id"' in text:
            return line
        self._sequence += 1
        return '{"id": "auto-%d", ' % self._sequence + text[1:]

    def account(self, name: str) -> dict[str, Any]:
        return account_view(self.app, name)

    def collateral(self, name: str) -> Decimal:
        return self.app.get_account(name).collateral

    def position(self, name: str, market: str) -> Decimal:
        return self.app.get_account(name).position(market).size

    def head(self) -> int:
        return self.app.recorder.max_notification_id() or 0


MARKET_BTC = (
    '{"type":"create_market","id":"m-btc","market":"BTC-PERP","kind":"perpetual","tick_size":"0.1",'
    '"step_size":"0.001","initial_margin_fraction":"0.1","maintenance_margin_fraction":"0.05","price_band":"0.5"}'
)


def accounts_with(*pairs: tuple[str, str]) -> str:
    """open_account + deposit lines for (name, amount) pairs."""
    lines = []
    for name, amount in pairs:
        lines.append(json.dumps({"type": "open_account", "id": f"open-{name}", "account": name}))
        lines.append(json.dumps({"type": "deposit", "id": f"dep-{name}", "account": name, "amount": amount}))
    return "\n".join(lines)
