"""Commands at the boundary: JSON Lines and CLI options become these pydantic models.

One model per command type, selected by ``type``. Validation here is about the command
alone (shape, types, number format, positivity, the collateral quantum); rules that need
state (tick and step of a market, margin, time order) are checked by the domain.

Numbers are JSON strings or integers, never JSON floats: ``{"amount": "0.1"}`` and
``{"amount": 100}`` are accepted, ``{"amount": 0.1}`` is rejected as ``float_not_allowed``.
Every rejection is a :class:`~clearing.errors.InputError` with a code and the field.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, get_args

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from clearing.business_time import TIME_MAX, TIME_MIN, in_range
from clearing.domain.roles import Role
from clearing.errors import InputError
from clearing.money import USDC, ZERO, D, MoneyError, canonical_text, decimal_places

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$")
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,127}$")
MAX_LINE_BYTES = 64 * 1024
MAX_TIERS = 32


def _decimal(value: Any) -> Decimal:
    try:
        return D(value)
    except MoneyError as error:
        raise PydanticCustomError(error.code, error.message) from None


def _positive(value: Decimal) -> Decimal:
    if value <= ZERO:
        raise PydanticCustomError("not_positive", "must be greater than zero, got {value}", {"value": str(value)})
    return value


def _non_negative(value: Decimal) -> Decimal:
    if value < ZERO:
        raise PydanticCustomError("negative", "must not be negative, got {value}", {"value": str(value)})
    return value


def _collateral_quantum(value: Decimal) -> Decimal:
    places = decimal_places(USDC.quantum)
    if decimal_places(value) > places:
        raise PydanticCustomError(
            "too_many_decimals",
            "{value} has more than {places} decimal places ({asset} quantum {quantum})",
            {"value": str(value), "places": places, "asset": USDC.symbol, "quantum": str(USDC.quantum)},
        )
    return value


def _fraction(value: Decimal) -> Decimal:
    if not ZERO < value <= Decimal(1):
        raise PydanticCustomError("invalid_fraction", "must be a fraction in (0, 1], got {value}", {"value": str(value)})
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise PydanticCustomError(
            "invalid_name", "must be 1-64 characters of letters, digits and _ . : @ -, starting with a letter or digit"
        )
    return value


def _command_id(value: Any) -> str:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise PydanticCustomError(
            "invalid_id", "must be 1-128 characters of letters, digits and _ . : / @ -, starting with a letter or digit"
        )
    return value


def _aware_time(value: Any) -> datetime:
    if not isinstance(value, str) or not value.isascii():  # a lone surrogate would break the message below
        raise PydanticCustomError("invalid_time", "must be an ISO-8601 string with a time zone")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError("invalid_time", "'{value}' is not an ISO-8601 time", {"value": value[:40]}) from None
    if parsed.tzinfo is None:
        raise PydanticCustomError("invalid_time", "'{value}' has no time zone (add Z or +00:00)", {"value": value[:40]})
    try:
        utc = parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 has no UTC equivalent
        utc = None
    if utc is None or not in_range(utc):
        raise PydanticCustomError(
            "time_out_of_range",
            "'{value}' is outside {low} .. {high} (UTC)",
            {"value": value[:40], "low": TIME_MIN.date().isoformat(), "high": TIME_MAX.date().isoformat()},
        )
    return utc


_text = PlainSerializer(canonical_text, return_type=str)
Number = Annotated[Decimal, BeforeValidator(_decimal), _text]
Positive = Annotated[Decimal, BeforeValidator(_decimal), AfterValidator(_positive), _text]
Money = Annotated[Decimal, BeforeValidator(_decimal), AfterValidator(_positive), AfterValidator(_collateral_quantum), _text]
Fraction = Annotated[Decimal, BeforeValidator(_decimal), AfterValidator(_fraction), _text]
Name = Annotated[str, BeforeValidator(_name)]
CommandId = Annotated[str, BeforeValidator(_command_id)]
Time = Annotated[datetime, BeforeValidator(_aware_time), PlainSerializer(lambda v: v.isoformat(), return_type=str)]


class Command(BaseModel):
    """Fields every command has: its type, the client's id, an optional business time.

    ``defer_build``: a model's validator is built on its first use, so a process that
    posts one deposit builds one model, not all seventeen (start-up, issue 11).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    type: str
    id: CommandId
    at: Time | None = None

    def content(self) -> dict[str, Any]:
        """Canonical content for idempotency: what the client sent, normalized."""
        return self.model_dump(mode="json", exclude_none=True, exclude={"id"})


class Tier(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    notional_floor: Annotated[Decimal, BeforeValidator(_decimal), AfterValidator(_non_negative), _text]
    initial_margin_fraction: Fraction
    maintenance_margin_fraction: Fraction


class CreateMarket(Command):
    type: Literal["create_market"]
    market: Name
    kind: Literal["perpetual", "future"]
    expiry: Time | None = None
    contract_size: Positive = Decimal(1)
    tick_size: Positive
    step_size: Positive
    initial_margin_fraction: Fraction | None = None
    maintenance_margin_fraction: Fraction | None = None
    tiers: Annotated[list[Tier], Field(min_length=1, max_length=MAX_TIERS)] | None = None
    price_band: Fraction = Decimal("0.1")


class CloseMarket(Command):
    type: Literal["close_market"]
    market: Name


class OpenAccount(Command):
    type: Literal["open_account"]
    account: Name


class CloseAccount(Command):
    type: Literal["close_account"]
    account: Name


class Deposit(Command):
    type: Literal["deposit"]
    account: Name
    amount: Money


class Withdraw(Command):
    type: Literal["withdraw"]
    account: Name
    amount: Money


class Trade(Command):
    type: Literal["trade"]
    market: Name
    buyer: Name
    seller: Name
    size: Positive
    price: Positive


class Price(Command):
    type: Literal["price"]
    market: Name
    price: Positive
    source: Name | None = None


def _funding_rate(value: Decimal) -> Decimal:
    if abs(value) >= Decimal(1):
        raise PydanticCustomError("rate_out_of_range", "must be between -1 and 1 (exclusive), got {value}", {"value": str(value)})
    if value == ZERO:
        raise PydanticCustomError("not_positive", "a funding rate of 0 moves nothing; give a non-zero rate")
    return value


Rate = Annotated[Decimal, BeforeValidator(_decimal), AfterValidator(_funding_rate), _text]


class Funding(Command):
    """One funding period of a perpetual: rate > 0 longs pay shorts, < 0 shorts pay longs."""

    type: Literal["funding"]
    market: Name
    rate: Rate


class Settle(Command):
    type: Literal["settle"]
    market: Name
    price: Positive


class Liquidate(Command):
    """An operator's liquidation at an auction price (default: the whole position)."""

    type: Literal["liquidate"]
    account: Name
    market: Name
    price: Positive
    size: Positive | None = None
    liquidator: Name | None = None


Operation = Literal["liquidations", "trading"]


class Pause(Command):
    type: Literal["pause"]
    operation: Operation
    market: Name | None = None


class Resume(Command):
    type: Literal["resume"]
    operation: Operation
    market: Name | None = None


#: What each approvable action needs besides ``officer``: its required field and the
#: optional fields it may carry (the rest of the change's fields are not allowed).
APPROVAL_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "pause": ("operation", ("market",)),
    "resume": ("operation", ("market",)),
    "set_parameters": ("parameters", ("market",)),
    "register_officer": ("candidate", ()),
    "liquidate": ("account", ("market", "price", "size", "liquidator")),
}


class Approve(Command):
    """One officer's approval of one exact change (see ``clearing/domain/governance.py``).

    ``{"action":"pause","operation":"liquidations"}``,
    ``{"action":"set_parameters","parameters":{"approvals_required":2}}`` (``market`` for an
    override), ``{"action":"register_officer","candidate":"otto"}`` or, for an auction price
    outside ``manual_liquidation_band``, ``{"action":"liquidate","account":"bob",
    "market":"BTC-PERP","price":"40","size":"1","liquidator":"carol"}`` (size defaults to the
    whole position and liquidator to the backstop, as ``liquidate`` resolves them); ``officer``
    must be the operator posting it.
    """

    type: Literal["approve"]
    officer: Name
    action: Literal["pause", "resume", "set_parameters", "register_officer", "liquidate"]
    operation: Operation | None = None
    market: Name | None = None
    parameters: dict[str, Any] | None = None
    candidate: Name | None = None
    account: Name | None = None
    price: Positive | None = None
    size: Positive | None = None
    liquidator: Name | None = None

    def check_fields(self) -> None:
        """The fields of the approved action, and only those: ``missing_field``/``unknown_field``."""
        required, optional = APPROVAL_FIELDS[self.action]
        if getattr(self, required) is None:
            raise InputError("missing_field", required, f"field {required!r} is required to approve {self.action}")
        if self.action == "liquidate":
            for name in ("market", "price"):
                if getattr(self, name) is None:
                    raise InputError("missing_field", name, f"field {name!r} is required to approve liquidate")
        for name in ("operation", "market", "parameters", "candidate", "account", "price", "size", "liquidator"):
            if name != required and name not in optional and getattr(self, name) is not None:
                raise InputError("unknown_field", name, f"field {name!r} is not part of an approval of {self.action}")


class RegisterOfficer(Command):
    type: Literal["register_officer"]
    officer: Name


class SetParameters(Command):
    """Versioned parameters: of one market when ``market`` is given, else clearinghouse defaults."""

    type: Literal["set_parameters"]
    market: Name | None = None
    parameters: dict[str, Any]


class FundInsurance(Command):
    type: Literal["fund_insurance"]
    amount: Money
    contributor: Name | None = None


def _sha256_hex(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{64}", value):
        raise PydanticCustomError("invalid_sha256", "must be a SHA-256 digest: 64 lowercase hexadecimal digits")
    return value


Sha256 = Annotated[str, BeforeValidator(_sha256_hex)]


class IssueToken(Command):
    """Record a reader's access token: its name, role and SHA-256 (never the secret;
    ``clearing tokens create`` makes the secret and posts this). ADR 29."""

    type: Literal["issue_token"]
    name: Name
    role: Role
    token_sha256: Sha256


class RevokeToken(Command):
    type: Literal["revoke_token"]
    name: Name


COMMAND_CLASSES = (
    CreateMarket,
    CloseMarket,
    OpenAccount,
    CloseAccount,
    Deposit,
    Withdraw,
    Trade,
    Price,
    FundInsurance,
    Funding,
    Settle,
    Liquidate,
    Pause,
    Resume,
    Approve,
    RegisterOfficer,
    SetParameters,
    IssueToken,
    RevokeToken,
)
COMMAND_TYPES = tuple(get_args(cls.model_fields["type"].annotation)[0] for cls in COMMAND_CLASSES)
_CLASS_OF_TYPE: dict[str, type[Command]] = dict(zip(COMMAND_TYPES, COMMAND_CLASSES, strict=True))

_PYDANTIC_CODES = {
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "literal_error": "invalid_value",
    "string_type": "invalid_value",
    "list_type": "invalid_value",
    "model_type": "invalid_value",
    "dict_type": "invalid_value",
    "too_short": "invalid_value",
    "too_long": "invalid_value",
}


class JsonConstant:
    """JSON's NaN / Infinity / -Infinity literals, kept so the field that holds one is named."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def parse_line(line: str) -> Command:
    """Parse one JSON Lines command; raises :class:`InputError` naming the field.

    A well-formed trade line takes the fast path (``fast_trade``); every other line, and
    every line the fast path does not accept, is parsed and validated in full."""
    try:
        size = len(line.encode())
    except UnicodeEncodeError as error:  # the CLI reads bytes that are not UTF-8 as lone surrogates
        raise InputError("invalid_utf8", None, _not_utf8(error)) from None
    if size > MAX_LINE_BYTES:
        raise InputError("line_too_long", None, f"line is longer than {MAX_LINE_BYTES} bytes")
    return fast_trade(line) or parse_line_in_full(line)


_TRADE_REQUIRED = frozenset(("type", "id", "market", "buyer", "seller", "size", "price"))
_TRADE_ALLOWED = _TRADE_REQUIRED | {"at"}


def fast_trade(line: str) -> Trade | None:
    """A trade line validated without pydantic, or None to take the full path.

    Accepted only when the line is a flat object of strings without escapes (parsed once by
    orjson) with exactly a trade's fields, each of which passes the same check the model applies (the id and name
    patterns, ``D`` and positivity, ``_aware_time``); anything else (an integer size, an
    escape, a missing or unknown field, a bad value) returns None, and the full path gives
    the error with its code and field. The model is built with ``model_construct`` and the
    fields the line set, so it equals what validation builds (``tests/unit/test_fast_trade.py``).
    Example: ``{"type":"trade","id":"t1","market":"BTC-PERP","buyer":"a","seller":"b",
    "size":"0.5","price":"50000"}`` is accepted; with ``"size":0.5`` it is not.
    """
    raw = _flat_trade_fields(line)
    if raw is None:
        return None
    if not ID_PATTERN.fullmatch(raw["id"]) or not all(NAME_PATTERN.fullmatch(raw[key]) for key in ("market", "buyer", "seller")):
        return None
    try:
        size, price = D(raw["size"]), D(raw["price"])
        at = _aware_time(raw["at"]) if "at" in raw else None
    except (MoneyError, PydanticCustomError):
        return None
    if size <= ZERO or price <= ZERO:
        return None
    return Trade.model_construct(_fields_set=set(raw), type="trade", id=raw["id"], at=at, market=raw["market"],
                                 buyer=raw["buyer"], seller=raw["seller"], size=size, price=price)


def _flat_trade_fields(line: str) -> dict[str, str] | None:
    """The line's fields when it is a flat object of a trade's fields, all strings without
    escapes; else None. A flat object of n such strings has exactly 4n quotes: fewer keys
    than that means a key was given twice (orjson keeps the last; the full path names it)."""
    if '"trade"' not in line or "\\" in line:
        return None
    try:
        raw = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if type(raw) is not dict or line.count('"') != 4 * len(raw) or raw.get("type") != "trade":
        return None
    if not _TRADE_REQUIRED <= raw.keys() <= _TRADE_ALLOWED or not all(type(value) is str for value in raw.values()):
        return None
    return raw


def parse_line_in_full(line: str) -> Command:
    """Parse and validate one line (its size already checked) with the JSON parser and pydantic."""
    try:
        raw = json.loads(line, parse_constant=JsonConstant, parse_int=_json_int, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as error:
        raise InputError("malformed_json", None, f"not valid JSON: {error.msg} at column {error.colno}") from None
    except RecursionError:
        raise InputError("nesting_too_deep", None, "objects and arrays nest too deeply to parse") from None
    if not isinstance(raw, dict):
        raise InputError("not_an_object", None, "each line must be a JSON object")
    if _SURROGATE_ESCAPE.search(line) or any(isinstance(value, (dict, list)) for value in raw.values()):
        _check_values(raw, "", 0)
    return parse_command(raw)


MAX_DEPTH = 8  # a line's objects and arrays (tiers and parameters need 2)
#: Keys the library's JSON transcoder reads as a typed value (``{"_type_": "decimal_str",
#: "_data_": "2"}`` decodes as a Decimal): inside a command's objects they would not read
#: back as posted, so a re-post or an import would not find the content it stored.
RESERVED_KEYS = frozenset({"_type_", "_data_"})
_INT_LIMIT = 2**63  # integers inside objects and arrays are stored as JSON numbers: 64 bits
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _not_utf8(error: UnicodeEncodeError) -> str:
    code = ord(error.object[error.start])
    what = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"character U+{code:04X}"
    return f"line is not valid UTF-8: {what} at character {error.start + 1}"


def _json_int(text: str) -> int | JsonConstant:
    """An integer literal; one too long for Python to convert is kept, so its field is named."""
    return int(text) if len(text) <= 4000 else JsonConstant(f"<an integer of {len(text)} digits>")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object; a key given twice is refused, never last-one-wins."""
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InputError("duplicate_key", key, f"key {key!r} appears more than once in one object")
            seen.add(key)
    return found


def _check_values(value: Any, path: str, depth: int) -> None:
    """What JSON allows but a command may not hold: lone surrogates (``"\\ud800"``), deep
    nesting, and inside objects and arrays (kept as given, e.g. ``parameters``) NaN/Infinity
    and integers beyond 64 bits; top-level values are left to their fields' validators."""
    if isinstance(value, str):
        found = _SURROGATE.search(value)
        if found:
            where = path or "a key"
            raise InputError("invalid_unicode", path or None, f"{where}: lone UTF-16 surrogate \\u{ord(found[0]):04x}")
        return
    if depth > 1 and (isinstance(value, JsonConstant) or (type(value) is int and not -_INT_LIMIT <= value < _INT_LIMIT)):
        raise InputError("invalid_number", path, f"{path}: {value!r:.40} is not a number a command can hold")
    if isinstance(value, (dict, list)):
        if depth >= MAX_DEPTH:
            raise InputError("nesting_too_deep", path, f"{path}: objects and arrays nest deeper than {MAX_DEPTH} levels")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str):
                if depth > 0 and key in RESERVED_KEYS:  # inside a field's value (top-level keys are fields)
                    raise InputError("invalid_value", where, f"{where}: the key {key!r} is reserved by the event "
                                     "store's encoding of typed values and cannot be stored as given")
                _check_values(key, where, depth + 1)
            _check_values(item, where, depth + 1)


def parse_command(raw: dict[str, Any]) -> Command:
    """Validate a command given as a dict (from JSON or from CLI options)."""
    if "type" not in raw:
        raise InputError("missing_field", "type", f"field 'type' is required; one of: {', '.join(COMMAND_TYPES)}")
    if raw["type"] not in COMMAND_TYPES:
        raise InputError("unknown_type", "type",
                         f"unknown command type {str(raw['type'])[:40]!r}; one of: {', '.join(COMMAND_TYPES)}")
    try:
        command = _CLASS_OF_TYPE[raw["type"]].model_validate(raw)
    except ValidationError as error:
        raise _input_error(error, raw["type"]) from None
    if isinstance(command, Approve):
        command.check_fields()
    return command


def _input_error(error: ValidationError, command_type: str) -> InputError:
    first = error.errors(include_url=False)[0]
    location = [str(part) for part in first["loc"]]
    field = ".".join(location) or None
    code = _PYDANTIC_CODES.get(first["type"], first["type"])
    if code == "missing_field":
        return InputError(code, field, f"field {field!r} is required")
    if code == "unknown_field":
        return InputError(code, field, f"field {field!r} is not part of a {command_type} command")
    message = first["msg"]
    return InputError(code, field, f"{field}: {message}" if field else message)
