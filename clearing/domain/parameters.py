"""Risk parameters: clearinghouse defaults, per-market overrides, and their valid ranges.

Parameters are state, changed only by ``set_parameters`` events, and every risk decision
event carries the values it used (``ParameterSet.as_record``), so replay never reads the
parameters in force *today*. A market's effective set is the clearinghouse defaults with
the market's own overrides on top: with default ``liquidation_fee_rate`` 0.01 and a
BTC-PERP override of 0.015, a BTC-PERP liquidation records 0.015.

Names and meanings (fractions are plain decimals, 0.05 = 5 %):

* ``margin_call_grace`` - seconds of business time a margin call stays open before the
  account is liquidated; 0 liquidates at once (the crypto-venue rule).
* ``liquidation_floor`` - fraction of maintenance margin; equity below it liquidates at
  once even inside the grace period.
* ``liquidation_buffer`` - partial liquidation closes enough to reach maintenance x
  (1 + buffer) (Drift's 2 % buffer idea, here relative to maintenance).
* ``max_liquidation_fraction`` - most of a position one liquidation step may close.
* ``liquidation_min_notional`` - positions at or below this notional close in full.
* ``liquidation_spread`` - fill price moves against the account by spread x MMF x mark
  (dYdX's spread-to-maintenance ratio).
* ``liquidation_fee_rate`` - penalty on closed notional, taken only from equity above the
  bankruptcy price; ``liquidator_fee_share`` of it goes to the liquidator, the rest to
  the insurance fund.
* ``backstop_liquidator`` - the liquidator of last resort: an ordinary account funded by
  deposits (opened on first use, with nothing), marked, called and liquidated like any
  other; it takes a liquidated position only when it can carry it (``liquidator_position_cap``).
* ``margin_call_rule`` - ``cme`` (default: a call stands until equity reaches initial
  margin or the called amount is paid in full) or ``maintenance`` (the rule before issue 8:
  equity back at maintenance meets the call); see ``liquidation_math.call_met``.
* ``liquidation_price_rule`` - ``dydx`` (default: the spread is scaled by how close the
  account is to bankruptcy, ABR = clamp(1 - equity / maintenance, 0, 1), dYdX v4's
  fillable price) or ``full_spread`` (the rule before issue 8: always the whole spread).
* ``liquidator_position_cap`` - a takeover is allowed only if the taker (the backstop or an
  operator's liquidator) meets initial margin afterwards and its total position notional
  is at most this multiple of its equity (default 1 = 100 %, Binance's fund rule).
* ``manual_liquidation_band`` - an operator's auction price more than this fraction away
  from the mark needs M-of-N approval of that exact liquidation.
* ``loss_policy`` - queue policies (close opposite positions at the bankruptcy price):
  ``adl`` (BitMEX ranking), ``adl_hyperliquid``, ``waterfill_leverage``; cash policies
  (``LossAllocated`` shares): ``socialize_per_contract``, ``haircut_gains``,
  ``leverage_weighted_gains``. See ``clearing/domain/loss_policies/``.
* ``oracle_sources`` - named price sources; when set, the mark is their median.
* ``twap_window`` / ``twap_max_deviation`` - liquidations are deferred while the mark is
  more than this fraction away from its time-weighted average over the window (0 = off).
* ``approvals_required`` (M) and ``officers_max`` (N) - clearinghouse only: M of N
  registered risk officers must approve a pause, a resume and every governed change.
* ``approval_ttl`` - clearinghouse only: seconds of business time an approval counts for.
* ``governance_timelock`` - clearinghouse only: seconds a change of the governance
  parameters waits after its quorum was reached.

Governance (``clearing/domain/governance.py``, ADR 10): a change is *governed* when it
needs M officers' approvals of that exact change. ``GOVERNED`` gives every name's rule and
reason: ``always``, or the direction that relaxes risk (``up``/``down``), governed only
when the new value moves that way from the value in force at that scope. Example: with
``margin_call_grace`` 0 in force, 3600 is governed (up relaxes) and a later change back to
0 is not. Margin fractions, tiers and price bands are set by ``create_market`` and no
command changes them, so there is nothing to govern there yet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from clearing.errors import InputError, RuleError
from clearing.money import ONE, ZERO, D, MoneyError, float_refused


class LossPolicy(StrEnum):
    """A market's ``loss_policy``: who bears a deficit the insurance fund cannot pay (ADR 14)."""

    ADL = "adl"
    SOCIALIZE_PER_CONTRACT = "socialize_per_contract"
    HAIRCUT_GAINS = "haircut_gains"
    ADL_HYPERLIQUID = "adl_hyperliquid"
    WATERFILL_LEVERAGE = "waterfill_leverage"
    LEVERAGE_WEIGHTED_GAINS = "leverage_weighted_gains"


ADL, SOCIALIZE_PER_CONTRACT, HAIRCUT_GAINS = LossPolicy.ADL, LossPolicy.SOCIALIZE_PER_CONTRACT, LossPolicy.HAIRCUT_GAINS
ADL_HYPERLIQUID, WATERFILL_LEVERAGE = LossPolicy.ADL_HYPERLIQUID, LossPolicy.WATERFILL_LEVERAGE
LEVERAGE_WEIGHTED_GAINS = LossPolicy.LEVERAGE_WEIGHTED_GAINS
#: Policies that close opposite positions at the bankruptcy price (deleveraging).
QUEUE_POLICIES: tuple[str, ...] = (ADL, ADL_HYPERLIQUID, WATERFILL_LEVERAGE)
#: Policies that charge cash shares (``LossAllocated``) to holders.
CASH_POLICIES: tuple[str, ...] = (SOCIALIZE_PER_CONTRACT, HAIRCUT_GAINS, LEVERAGE_WEIGHTED_GAINS)
LOSS_POLICIES = QUEUE_POLICIES + CASH_POLICIES


def deleveraging_policy(loss_policy: str) -> str:
    """The queue that closes a position when deleveraging runs: ``loss_policy`` itself when
    it is a queue policy, else ``adl`` (a refused takeover deleverages under every policy,
    ADR 13). Example: ``waterfill_leverage`` -> ``waterfill_leverage``; ``haircut_gains`` -> ``adl``."""
    return loss_policy if loss_policy in QUEUE_POLICIES else ADL

PRICE_RULE_DYDX = "dydx"
PRICE_RULE_FULL_SPREAD = "full_spread"
LIQUIDATION_PRICE_RULES = (PRICE_RULE_DYDX, PRICE_RULE_FULL_SPREAD)
CALL_RULE_CME = "cme"
CALL_RULE_MAINTENANCE = "maintenance"
MARGIN_CALL_RULES = (CALL_RULE_CME, CALL_RULE_MAINTENANCE)


def _decimal_in(low: Decimal, high: Decimal | None, low_open: bool = False) -> Callable[[str, Any], Decimal]:
    def check(name: str, raw: Any) -> Decimal:
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise InputError("invalid_value", f"parameters.{name}", f"parameters.{name} must be a decimal string")
        try:
            if isinstance(raw, float):
                raise float_refused()
            value = D(raw)
        except MoneyError as error:
            raise InputError(error.code, f"parameters.{name}", f"parameters.{name}: {error.message}") from None
        too_low = value <= low if low_open else value < low
        if too_low or (high is not None and value > high):
            bounds = f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'}]"
            raise RuleError("parameter_out_of_range", f"parameters.{name}", f"parameters.{name} {raw} is outside {bounds}")
        return value

    return check


def _int_in(low: int, high: int) -> Callable[[str, Any], int]:
    def check(name: str, raw: Any) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise InputError("invalid_value", f"parameters.{name}", f"parameters.{name} must be a whole number")
        if not low <= raw <= high:
            raise RuleError("parameter_out_of_range", f"parameters.{name}", f"parameters.{name} {raw} is outside [{low}, {high}]")
        return raw

    return check


def _policy(name: str, raw: Any) -> str:
    if raw not in LOSS_POLICIES:
        raise RuleError("parameter_out_of_range", f"parameters.{name}",
                        f"parameters.{name} must be one of {', '.join(LOSS_POLICIES)}")
    return str(raw)


def _price_rule(name: str, raw: Any) -> str:
    if raw not in LIQUIDATION_PRICE_RULES:
        raise RuleError("parameter_out_of_range", f"parameters.{name}",
                        f"parameters.{name} must be one of {', '.join(LIQUIDATION_PRICE_RULES)}")
    return str(raw)


def _call_rule(name: str, raw: Any) -> str:
    if raw not in MARGIN_CALL_RULES:
        raise RuleError("parameter_out_of_range", f"parameters.{name}",
                        f"parameters.{name} must be one of {', '.join(MARGIN_CALL_RULES)}")
    return str(raw)


def _account_name(name: str, raw: Any) -> str:
    from clearing.commands import NAME_PATTERN

    if not isinstance(raw, str) or not NAME_PATTERN.fullmatch(raw):
        raise InputError("invalid_name", f"parameters.{name}", f"parameters.{name} must be an account name")
    return raw


def _sources(name: str, raw: Any) -> tuple[str, ...]:
    from clearing.commands import NAME_PATTERN

    if not isinstance(raw, list) or len(raw) > 15 or not all(isinstance(s, str) and NAME_PATTERN.fullmatch(s) for s in raw):
        raise InputError("invalid_value", f"parameters.{name}", f"parameters.{name} must be a list of up to 15 source names")
    if len(set(raw)) != len(raw):
        raise RuleError("parameter_out_of_range", f"parameters.{name}", f"parameters.{name} names a source twice")
    return tuple(sorted(raw))


DAY_SECONDS = 86_400
MARKET_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "margin_call_grace": _int_in(0, 30 * DAY_SECONDS),
    "margin_call_rule": _call_rule,
    "liquidation_floor": _decimal_in(ZERO, ONE),
    "liquidation_buffer": _decimal_in(ZERO, ONE),
    "max_liquidation_fraction": _decimal_in(ZERO, ONE, low_open=True),
    "liquidation_min_notional": _decimal_in(ZERO, None),
    "liquidation_spread": _decimal_in(ZERO, Decimal(5)),
    "liquidation_price_rule": _price_rule,
    "liquidator_position_cap": _decimal_in(ZERO, Decimal(100), low_open=True),
    "manual_liquidation_band": _decimal_in(ZERO, ONE),
    "liquidation_fee_rate": _decimal_in(ZERO, Decimal("0.1")),
    "liquidator_fee_share": _decimal_in(ZERO, ONE),
    "backstop_liquidator": _account_name,
    "loss_policy": _policy,
    "oracle_sources": _sources,
    "twap_window": _int_in(0, DAY_SECONDS),
    "twap_max_deviation": _decimal_in(ZERO, ONE),
}
CLEARINGHOUSE_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    **MARKET_CHECKS,
    "approvals_required": _int_in(1, 15),
    "officers_max": _int_in(1, 15),
    "approval_ttl": _int_in(60, 30 * DAY_SECONDS),
    "governance_timelock": _int_in(0, 7 * DAY_SECONDS),
}

DEFAULTS: dict[str, Any] = {
    "margin_call_grace": 0,
    "margin_call_rule": CALL_RULE_CME,
    "liquidation_floor": Decimal("0.5"),
    "liquidation_buffer": Decimal("0.1"),
    "max_liquidation_fraction": Decimal("0.5"),
    "liquidation_min_notional": Decimal("1000"),
    "liquidation_spread": Decimal("0.5"),
    "liquidation_price_rule": PRICE_RULE_DYDX,
    "liquidator_position_cap": ONE,
    "manual_liquidation_band": Decimal("0.1"),
    "liquidation_fee_rate": Decimal("0.01"),
    "liquidator_fee_share": ZERO,
    "backstop_liquidator": "backstop",
    "loss_policy": ADL,
    "oracle_sources": (),
    "twap_window": 300,
    "twap_max_deviation": ZERO,
    "approvals_required": 1,
    "officers_max": 1,
    "approval_ttl": DAY_SECONDS,
    "governance_timelock": 3600,
}

ALWAYS = "always"
UP = "up"  # raising the value relaxes risk
DOWN = "down"  # lowering the value relaxes risk
#: Each parameter's governance rule and why (ADR 10). ``always``: every change needs M
#: approvals; ``up``/``down``: only a change in that direction (it relaxes risk) does.
GOVERNED: dict[str, tuple[str, str]] = {
    "approvals_required": (ALWAYS, "M decides who decides: lowering it hands control to fewer officers"),
    "officers_max": (ALWAYS, "N bounds who may become an officer: raising it makes room for new approvers"),
    "approval_ttl": (ALWAYS, "longer lets stale approvals count; shorter can starve every governed change"),
    "governance_timelock": (ALWAYS, "shorter removes the warning time before a threshold change"),
    "backstop_liquidator": (ALWAYS, "that account receives every liquidated position at the spread: it moves money"),
    "liquidator_fee_share": (ALWAYS, "decides who receives the liquidation penalty: fund or liquidator"),
    "liquidation_fee_rate": (ALWAYS, "the penalty taken from liquidated accounts: it moves money"),
    "liquidation_spread": (ALWAYS, "the discount given to the backstop on every fill: it moves money"),
    "loss_policy": (ALWAYS, "decides who pays a deficit the fund cannot cover"),
    "liquidation_price_rule": (ALWAYS, "decides the discount every liquidated account pays: it moves money"),
    "liquidator_position_cap": (UP, "a higher cap lets a liquidator carry more exposure per unit of capital"),
    "manual_liquidation_band": (UP, "a wider band lets an operator's auction price sit further from the mark"),
    "oracle_sources": (ALWAYS, "whoever sets the mark decides every liquidation"),
    "twap_max_deviation": (ALWAYS, "up (or 0 = off) weakens the guard against a manipulated mark; "
                                   "down defers liquidations on ordinary moves, a pause without a quorum"),
    "twap_window": (ALWAYS, "shorter weakens the guard against a manipulated mark; "
                            "longer keeps the average stale and defers liquidations, a pause without a quorum"),
    "margin_call_rule": (ALWAYS, "maintenance lets a member roll a call for ever by topping up to maintenance"),
    "margin_call_grace": (UP, "a longer grace leaves an account below maintenance unliquidated for longer"),
    "liquidation_floor": (DOWN, "a lower floor lets equity sink further below maintenance inside the grace"),
    "liquidation_buffer": (DOWN, "a smaller buffer leaves a partly liquidated account closer to the next call"),
    "max_liquidation_fraction": (DOWN, "a smaller step de-risks a failing account more slowly"),
    "liquidation_min_notional": (DOWN, "a lower threshold closes fewer positions in full, leaving exposure open"),
}
assert set(GOVERNED) == set(CLEARINGHOUSE_CHECKS), "every parameter has a governance rule"
#: Governance parameters: a change to any of them also waits ``governance_timelock``.
TIMELOCKED = ("approvals_required", "officers_max", "approval_ttl", "governance_timelock")


def governs(name: str, before: Any, after: Any) -> bool:
    """Does changing ``name`` from ``before`` to ``after`` need M approvals?

    ``governs("margin_call_grace", 0, 3600)`` is True (up relaxes); ``(3600, 0)`` is False;
    ``governs("loss_policy", "adl", "adl")`` is True (always governed, even unchanged).
    A tightening change can make liquidations sooner or larger, but every contract closed
    still moves at most the always-governed spread and fee.
    """
    rule = GOVERNED[name][0]
    if rule == ALWAYS:
        return True
    governed: bool = after > before if rule == UP else after < before  # numbers compare to a bool
    return governed


def governed_names(changes: Mapping[str, Any], in_force: Mapping[str, Any]) -> list[str]:
    """Names in ``changes`` (typed, see ``validate``) that need approval, in the order given."""
    return [name for name, value in changes.items() if governs(name, in_force[name], value)]


def validate(scope_is_market: bool, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Check names and ranges of a ``set_parameters`` change; returns typed values."""
    checks = MARKET_CHECKS if scope_is_market else CLEARINGHOUSE_CHECKS
    if not changes:
        raise InputError("missing_field", "parameters", "parameters must name at least one parameter")
    typed: dict[str, Any] = {}
    for name, raw in changes.items():
        if name not in checks:
            scope = "a market" if scope_is_market else "the clearinghouse"
            raise InputError("unknown_parameter", f"parameters.{name}", f"parameters.{name} is not a parameter of {scope}")
        typed[name] = checks[name](name, raw)
    return typed


#: What a parameter set recorded before a parameter existed was decided under: the full
#: spread, no position cap on liquidators (1 then meant nothing; 1 is also today's
#: default), no band on auction prices.
LEGACY: dict[str, Any] = {
    "liquidation_price_rule": PRICE_RULE_FULL_SPREAD,
    "liquidator_position_cap": ONE,
    "manual_liquidation_band": ONE,
}


@dataclass(frozen=True)
class ParameterSet:
    """The effective parameters of one market (defaults + overrides) and their versions.

    Each parameter is a typed property (``MARKET_CHECKS`` names them and checks the values
    when they are set), so the type checker sees what every rule reads.
    """

    values: Mapping[str, Any]
    clearinghouse_version: int
    market_version: int

    def _value(self, name: str) -> Any:
        """A value in force; one absent from a set recorded before it existed has its
        ``LEGACY`` value (the rule that set was decided under)."""
        try:
            return self.values[name]
        except KeyError:
            if name in LEGACY:
                return LEGACY[name]
            raise AttributeError(name) from None

    @property
    def margin_call_grace(self) -> int:
        """Seconds a called account has before it is liquidated."""
        value: int = self._value("margin_call_grace")
        return value

    @property
    def margin_call_rule(self) -> str:
        """``cme`` (met at IM or when paid) or ``maintenance`` (met at MM)."""
        value: str = self._value("margin_call_rule")
        return value

    @property
    def liquidation_floor(self) -> Decimal:
        """Equity below this x MM is liquidated before the deadline."""
        value: Decimal = self._value("liquidation_floor")
        return value

    @property
    def liquidation_buffer(self) -> Decimal:
        """A step restores MM x (1 + buffer)."""
        value: Decimal = self._value("liquidation_buffer")
        return value

    @property
    def max_liquidation_fraction(self) -> Decimal:
        """The largest share of a position one step closes."""
        value: Decimal = self._value("max_liquidation_fraction")
        return value

    @property
    def liquidation_min_notional(self) -> Decimal:
        """A position this small closes whole."""
        value: Decimal = self._value("liquidation_min_notional")
        return value

    @property
    def liquidation_spread(self) -> Decimal:
        """The backstop's spread, in MMF x mark."""
        value: Decimal = self._value("liquidation_spread")
        return value

    @property
    def liquidation_price_rule(self) -> str:
        """``dydx`` (ABR x spread) or ``full_spread``."""
        value: str = self._value("liquidation_price_rule")
        return value

    @property
    def liquidator_position_cap(self) -> Decimal:
        """A taker's total notional at most this x its equity."""
        value: Decimal = self._value("liquidator_position_cap")
        return value

    @property
    def manual_liquidation_band(self) -> Decimal:
        """An auction price further than this x mark needs approval."""
        value: Decimal = self._value("manual_liquidation_band")
        return value

    @property
    def liquidation_fee_rate(self) -> Decimal:
        """The penalty's cap, as a share of |q_f|."""
        value: Decimal = self._value("liquidation_fee_rate")
        return value

    @property
    def liquidator_fee_share(self) -> Decimal:
        """The liquidator's share of the penalty."""
        value: Decimal = self._value("liquidator_fee_share")
        return value

    @property
    def backstop_liquidator(self) -> str:
        """The account that takes engine steps."""
        value: str = self._value("backstop_liquidator")
        return value

    @property
    def loss_policy(self) -> str:
        """Who bears a deficit the fund cannot pay (ADR 14)."""
        value: str = self._value("loss_policy")
        return value

    @property
    def oracle_sources(self) -> tuple[str, ...]:
        """The sources a mark is accepted from (empty: any)."""
        value: tuple[str, ...] = self._value("oracle_sources")
        return value

    @property
    def twap_window(self) -> int:
        """Seconds of marks in the TWAP."""
        value: int = self._value("twap_window")
        return value

    @property
    def twap_max_deviation(self) -> Decimal:
        """A mark further than this from its TWAP defers liquidation (0: off)."""
        value: Decimal = self._value("twap_max_deviation")
        return value

    def as_record(self) -> dict[str, Any]:
        """What decision events carry: every value (lists as lists) and both versions."""
        record = {name: list(value) if isinstance(value, tuple) else value for name, value in self.values.items()}
        record["clearinghouse_parameters_version"] = self.clearinghouse_version
        record["market_parameters_version"] = self.market_version
        return record


def effective(defaults: Mapping[str, Any], overrides: Mapping[str, Any], ch_version: int, m_version: int) -> ParameterSet:
    values = {name: value for name, value in defaults.items() if name in MARKET_CHECKS}
    values.update(overrides)
    return ParameterSet(values, ch_version, m_version)
