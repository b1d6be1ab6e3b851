"""What an operator has set, read back: parameters in force and the risk officers' controls.

No projection holds these; they are the state of the clearinghouse aggregate and of each
market's overrides, so they are read from the log, at the head or as of a position: the
clearinghouse is the library's aggregate at its last version at or before the position
(``repository.get(id, version=...)``, from a snapshot when one exists), and only the few
event kinds that matter are read (the recorder's topic filter), never a trade.

Example: defaults set ``liquidation_fee_rate=0.02`` at position 7 and a BTC-PERP override
``0.015`` at 9. ``parameters_view(app, 8, "BTC-PERP")`` gives 0.02 (``set`` at 7);
``parameters_view(app, 9, "BTC-PERP")`` gives 0.015 (``market`` at 9).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from eventsourcing.domain import DomainEvent
from eventsourcing.utils import get_topic

from clearing.audit.log import read_log
from clearing.domain.clearinghouse import Clearinghouse
from clearing.domain.governance import EVERYWHERE, Change, canonical
from clearing.domain.ids import clearinghouse_id
from clearing.domain.market import Market
from clearing.domain.parameters import CLEARINGHOUSE_CHECKS, DEFAULTS, GOVERNED, MARKET_CHECKS
from clearing.errors import NotFoundError
from clearing.money import fmt

PAGE = 1000
CLEARINGHOUSE_TOPICS = tuple(sorted(
    get_topic(kind) for kind in vars(Clearinghouse).values()
    if isinstance(kind, type) and issubclass(kind, DomainEvent)))
MARKET_TOPICS = (get_topic(Market.Listed), get_topic(Market.ParametersSet))


@dataclass
class ControlState:
    """What the log says up to ``position``: the clearinghouse, each market's overrides, and
    where each value and each pending approval came from."""

    position: int
    clearinghouse: Clearinghouse | None = None
    markets: set[str] = field(default_factory=set)
    defaults_set_at: dict[str, int] = field(default_factory=dict)  # name -> position of its last change
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # market -> overrides in force
    overrides_set_at: dict[str, dict[str, int]] = field(default_factory=dict)
    changes: dict[str, Change] = field(default_factory=dict)  # fingerprint -> the change approved
    queued: dict[int, tuple[int, Clearinghouse.LiquidationQueued]] = field(default_factory=dict)


def read_controls(app: Any, position: int) -> ControlState:
    """The control state just after log ``position`` (``position`` >= the head: now)."""
    state = ControlState(position)
    last_version = 0
    for page in read_log(app.recorder, app.mapper, stop=position, page=PAGE, topics=CLEARINGHOUSE_TOPICS + MARKET_TOPICS):
        for note, event in page.decoded():
            if isinstance(event, Market.Listed):
                state.markets.add(event.market)
            elif isinstance(event, Market.ParametersSet):
                state.overrides[event.market] = dict(event.overrides_after)
                state.overrides_set_at.setdefault(event.market, {}).update(dict.fromkeys(event.changes, note.id))
            elif event is not None and event.originator_id == clearinghouse_id():
                last_version = event.originator_version
                _note_clearinghouse_event(state, note.id, event)
    if last_version:
        state.clearinghouse = app.repository.get(clearinghouse_id(), version=last_version)
    return state


def _note_clearinghouse_event(state: ControlState, position: int, event: Any) -> None:
    if isinstance(event, Clearinghouse.ParametersSet):
        state.defaults_set_at.update(dict.fromkeys(event.changes, position))
    elif isinstance(event, Clearinghouse.ChangeApproved):
        state.changes[event.key] = Change(event.action, event.scope, event.content)
    elif isinstance(event, Clearinghouse.LiquidationQueued):
        state.queued[event.sequence] = (position, event)


def parameters_view(state: ControlState, market: str | None = None) -> dict[str, Any]:
    """Every parameter in force for ``market`` (or the clearinghouse defaults), with its
    source: ``built-in`` (never set), ``set`` (a default set at ``set_at``) or ``market`` (this
    market's override set at ``set_at``), and its governance rule (ADR 10)."""
    if market is not None and market not in state.markets:
        raise NotFoundError("market_not_found", "market", f"market {market} does not exist")
    ch = state.clearinghouse
    defaults = ch.in_force() if ch is not None else dict(DEFAULTS)
    names = MARKET_CHECKS if market is not None else CLEARINGHOUSE_CHECKS
    overrides = state.overrides.get(market, {}) if market is not None else {}
    rows = []
    for name in names:
        if name in overrides:
            value, source, set_at = overrides[name], "market", state.overrides_set_at[market or ""].get(name)
        elif name in state.defaults_set_at:
            value, source, set_at = defaults[name], "set", state.defaults_set_at[name]
        else:
            value, source, set_at = defaults.get(name, DEFAULTS[name]), "built-in", None
        rows.append({"name": name, "value": _text(value), "source": source, "set_at_position": set_at,
                     "governed": GOVERNED[name][0]})
    return {"scope": market or "clearinghouse", "as_of_position": state.position,
            "clearinghouse_version": ch.parameters_version if ch is not None else 0, "parameters": rows}


def controls_view(state: ControlState) -> dict[str, Any]:
    """Pauses, officers, governance parameters, pending approvals (each with the exact change
    and when each approval stops counting) and the liquidation queue, in that order."""
    ch = state.clearinghouse
    if ch is None:
        return {"as_of_position": state.position, "paused": [], "officers": [], **_governance(dict(DEFAULTS)),
                "pending_approvals": [], "liquidation_queue": []}
    in_force = ch.in_force()
    ttl = timedelta(seconds=int(in_force["approval_ttl"]))
    return {
        "as_of_position": state.position,
        "paused": [_pause(entry) for entry in sorted(ch.paused)],
        "officers": list(ch.officers),
        **_governance(in_force),
        "pending_approvals": [_pending(state, key, held, ttl, in_force) for key, held in sorted(ch.approvals.items()) if held],
        "liquidation_queue": [_queued(state, entry) for entry in ch.queue],
    }


def _governance(in_force: dict[str, Any]) -> dict[str, Any]:
    return {name: in_force[name] for name in ("approvals_required", "officers_max", "approval_ttl", "governance_timelock")}


def _pause(entry: str) -> dict[str, str]:
    operation, _, market = entry.partition(":")
    return {"operation": operation, "market": market or EVERYWHERE}


def _pending(state: ControlState, key: str, held: dict[str, datetime], ttl: timedelta,
             in_force: dict[str, Any]) -> dict[str, Any]:
    change = state.changes.get(key)
    described = change.describe() if change is not None else key  # an approval recorded before governance
    return {
        "fingerprint": key,
        "action": change.action if change is not None else key.split(":", 1)[0],
        "scope": change.scope if change is not None else None,
        "content": canonical(change.content) if change is not None else None,
        "describe": described,
        "approvals": [{"officer": officer, "approved_at": at.isoformat(), "counts_until": (at + ttl).isoformat()}
                      for officer, at in sorted(held.items(), key=lambda item: item[1])],
        "approvals_required": in_force["approvals_required"],
    }


def _queued(state: ControlState, entry: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"sequence": entry["sequence"], "account": entry["account"], "market": entry["market"]}
    if entry["sequence"] in state.queued:
        position, event = state.queued[entry["sequence"]]
        row.update(queued_at=event.at.isoformat(), position=position, price_mark=fmt(event.price_mark),
                   equity=fmt(event.equity), maintenance_margin=fmt(event.maintenance_margin))
    return row


def _text(value: Any) -> Any:
    """A parameter as JSON shows it: decimals as canonical strings, tuples as lists."""
    return canonical(value)
