"""Fuzz ``clearing post -``: thousands of mutated lines, each one answered with a specific code.

Valid lines of every command type (``COMMAND_CLASSES``) are mutated, seeded: keys dropped,
duplicated (``{"amount":"1","amount":"2"}``) or renamed, wrong types, huge, negative,
NaN/Infinity and exponent numbers, floats, very long strings, unicode, nested objects and
arrays, invalid UTF-8 bytes, control characters, truncated JSON, times out of range, in the
future, before the log or without a zone. Every mutation makes its line invalid (at the
boundary, or by a rule on the store's state: unknown accounts and markets), and every line
has a fresh id, so nothing may be applied. They are posted through the real command line
(stdin, a subprocess, ``--json``) into a store holding a market and a couple of accounts.

Asserted: no Python traceback on stderr; one result line per input line, each a JSON object
``rejected`` with a specific code (never empty, never a generic crash code); exit status 1;
and nothing written but the answers of rule rejections (``CommandRecord.Rejected``, naming
the same id, code and field); every other aggregate is unchanged. And every code met is in
docs/commands.md's error tables.

``CLEARING_FUZZ_LINES`` (default 2,400) and ``CLEARING_FUZZ_SEED`` (default 1) override.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from clearing.commands import COMMAND_CLASSES, COMMAND_TYPES, parse_line
from clearing.errors import InputError
from tests.conftest import REPO
from tests.e2e.test_cli import CLEARING
from tests.killharness import Capture, capture

LINES = int(os.environ.get("CLEARING_FUZZ_LINES", "2400"))
SEED = int(os.environ.get("CLEARING_FUZZ_SEED", "1"))
GENERIC_CODES = {"", "internal_error", "error", "value_error", "assertion_error", "retries_exhausted", "unknown"}

SETUP = [
    {"type": "create_market", "id": "s-m", "market": "BTC-PERP", "kind": "perpetual", "tick_size": "0.1",
     "step_size": "0.001", "initial_margin_fraction": "0.1", "maintenance_margin_fraction": "0.05"},
    {"type": "price", "id": "s-p", "market": "BTC-PERP", "price": "50000"},
    {"type": "open_account", "id": "s-oa", "account": "alice"},
    {"type": "deposit", "id": "s-da", "account": "alice", "amount": "10000"},
    {"type": "open_account", "id": "s-ob", "account": "bob"},
    {"type": "deposit", "id": "s-db", "account": "bob", "amount": "10000"},
    {"type": "trade", "id": "s-t", "market": "BTC-PERP", "buyer": "alice", "seller": "bob", "size": "0.1", "price": "50000"},
]

# One valid line per command type (valid in shape; against the store some would be refused).
BASES: list[dict[str, Any]] = [
    {"type": "create_market", "market": "NEW-PERP", "kind": "perpetual", "tick_size": "0.1", "step_size": "0.001",
     "initial_margin_fraction": "0.1", "maintenance_margin_fraction": "0.05", "price_band": "0.2"},
    {"type": "create_market", "market": "NEW-FUT", "kind": "future", "expiry": "2025-12-26T08:00:00Z", "tick_size": "0.5",
     "step_size": "0.01", "contract_size": "1",
     "tiers": [{"notional_floor": "0", "initial_margin_fraction": "0.05", "maintenance_margin_fraction": "0.03"},
               {"notional_floor": "100000", "initial_margin_fraction": "0.1", "maintenance_margin_fraction": "0.06"}]},
    {"type": "close_market", "market": "BTC-PERP"},
    {"type": "open_account", "account": "carol"},
    {"type": "close_account", "account": "alice"},
    {"type": "deposit", "account": "alice", "amount": "100"},
    {"type": "withdraw", "account": "bob", "amount": "5"},
    {"type": "trade", "market": "BTC-PERP", "buyer": "alice", "seller": "bob", "size": "0.01", "price": "50000"},
    {"type": "price", "market": "BTC-PERP", "price": "50100"},
    {"type": "price", "market": "BTC-PERP", "price": "50100", "source": "feed1"},
    {"type": "fund_insurance", "amount": "1000", "contributor": "ops"},
    {"type": "funding", "market": "BTC-PERP", "rate": "0.0001"},
    {"type": "settle", "market": "BTC-PERP", "price": "50000"},
    {"type": "liquidate", "account": "alice", "market": "BTC-PERP", "price": "50000", "size": "0.05", "liquidator": "bob"},
    {"type": "pause", "operation": "liquidations", "market": "BTC-PERP"},
    {"type": "resume", "operation": "trading"},
    {"type": "approve", "officer": "olga", "action": "pause", "operation": "trading", "market": "BTC-PERP"},
    {"type": "register_officer", "officer": "olga"},
    {"type": "issue_token", "name": "fca", "role": "regulator", "token_sha256": "ab" * 32},
    {"type": "revoke_token", "name": "fca"},
    {"type": "set_parameters", "parameters": {"margin_call_grace": 60, "liquidation_fee_rate": "0.02"}},
    {"type": "set_parameters", "market": "BTC-PERP", "parameters": {"loss_policy": "haircut_gains"}},
]

NAMES = {"market", "account", "buyer", "seller", "source", "liquidator", "contributor", "officer"}
NUMBERS = {"amount", "size", "price", "tick_size", "step_size", "contract_size", "initial_margin_fraction",
           "maintenance_margin_fraction", "price_band", "rate", "notional_floor"}
ENUMS = {"kind", "action", "operation"}
TIMES = {"at", "expiry"}
# names that are valid but unknown to the store, where that makes a rule refuse the command
UNKNOWN_NAME_OK = {("deposit", "account"), ("withdraw", "account"), ("close_account", "account"), ("trade", "market"),
                   ("trade", "buyer"), ("trade", "seller"), ("price", "market"), ("funding", "market"),
                   ("settle", "market"), ("liquidate", "account"), ("liquidate", "market"), ("close_market", "market")}

BAD_NUMBERS: list[Any] = [
    1.5, 0.1, 50000.0, -0.0, 1e300, True, False, [], ["100"], {}, {"value": "100"}, "", " 100", "100 ", "+100", "1e3",
    "1E3", "1e999999", "-1e999999", "NaN", "nan", "Infinity", "-Infinity", "inf", "0x10", "1_000", "1,5", "١٠٠",
    "１００", "0", "00", "-5", "-0.5", "1" + "0" * 45, 10**45, -(10**45), "0." + "0" * 50 + "1", "100\u0000",
    "\u202e100", "1.2.3", ".5", "5.", "--5",
]
RAW_BAD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999999", "-1e999999", "1E400", "1" + "0" * 5000, "01", "1.",
                   ".5", "+1", "0x10", "1e", "--1", "Infinity1"]
BAD_NAMES: list[Any] = ["", " ", "al ice", "a" * 65, "a" * 10_000, "-alice", ".x", "ålice", "名前", "😀", "ali\u200bce",
                        "ali\u0000ce", "alice\n", "\u202ealice", "al/ice", 12, 0, None, True, 1.5, [], ["alice"], {},
                        {"name": "alice"}, "\ud800", "a\udfffb"]
BAD_IDS: list[Any] = ["", " ", "x" * 129, "x" * 20_000, "-x", "é", "id with space", "id\u0000", "😀", 7, -1, None,
                      True, [], {}, ["fz"], "\ud83d", "fz\u2028x"]
BAD_TYPES: list[Any] = ["", "Deposit", "DEPOSIT", "deposit ", "teleport", "transfer", None, 1, True, [], ["deposit"],
                        {"type": "deposit"}, "\ud800", "deposit\u0000", "x" * 5000]
BAD_TIMES: list[Any] = [
    "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00",
    "2205-10-10T00:00:00Z", "1970-01-01T00:00:00Z",
    "1969-12-31T23:59:59Z", "1999-01-01T00:00:00Z", "2025-10-10T00:00:00", "2025-10-10", "2025-13-01T00:00:00Z",
    "2025-10-32T00:00:00Z", "2025-10-10T25:00:00Z", "2025-10-10T00:00:00+25:00", "yesterday", "now", "", " ",
    "2025-10-10T00:00:00Zjunk", "2025-10-10T00:00:00\u0000Z", "\ud800", 1760054400, 1760054400.5, True, [], {},
    ["2025-10-10T00:00:00Z"], {"at": "2025-10-10T00:00:00Z"}, "2025-10-10T00:00:00Z" * 100,
]
FUTURE_TIMES = ["2199-12-31T23:59:59Z", "2100-01-01T00:00:00Z", "2030-01-01T00:00:00+14:00"]  # in range, but ahead of the clock
BAD_ENUMS: list[Any] = ["", "PERPETUAL", "option", "withdrawals", "delete", None, 1, [], {}, "perpetual\u0000", "😀"]
BAD_PARAMETERS: list[Any] = [
    None, [], "grace", 60, {}, {"leverage": "100"}, {"margin_call_grace": -1}, {"margin_call_grace": 1.5},
    {"margin_call_grace": "60"}, {"margin_call_grace": 10**50}, {"liquidation_fee_rate": 0.01},
    {"liquidation_fee_rate": "1e-2"}, {"liquidation_fee_rate": "0.5"}, {"loss_policy": "lottery"},
    {"oracle_sources": "feed1"}, {"oracle_sources": [["feed1"]]}, {"oracle_sources": ["feed"] * 100},
    {"twap_window": {"seconds": 60}}, {"": "1"}, {"x" * 1000: "1"}, {"approvals_required": 99},
    {"margin_call_grace": [[[[[[[[[[60]]]]]]]]]]}, {"margin_call_grace": True},
]
RAW_BAD_PARAMETERS = ['{"margin_call_grace":NaN}', '{"liquidation_fee_rate":Infinity}', '{"a":{"b":{"c":NaN}}}',
                      '{"margin_call_grace":1e999}', '{"margin_call_grace":1' + "0" * 5000 + "}",
                      '{"x":' + "[" * 600 + "]" * 600 + "}", '{"x":' + "[" * 5000 + "]" * 5000 + "}",
                      '{"x":' + '{"y":' * 300 + "1" + "}" * 300 + "}", '{"margin_call_grace":60,"margin_call_grace":61}',
                      '{"oracle_sources":["\\ud800"]}']
BAD_TIERS: list[Any] = [None, [], "tiers", [1, 2], [[]], [{}], [{"notional_floor": "0"}],
                        [{"notional_floor": "10", "initial_margin_fraction": "0.05", "maintenance_margin_fraction": "0.03"}],
                        [{"notional_floor": "0", "initial_margin_fraction": "0.05", "maintenance_margin_fraction": "0.03"}] * 40,
                        [{"notional_floor": "-1", "initial_margin_fraction": "0.05", "maintenance_margin_fraction": "0.03"}],
                        [{"notional_floor": "0", "initial_margin_fraction": 0.05, "maintenance_margin_fraction": "0.03"}]]
WHOLE_LINES = ["[]", "[1,2,3]", '"deposit"', "123", "null", "true", "{}", '{"type":"deposit"}', '{"id":"x"}',
               "{" + "}", '{"type":"deposit","id":"fz"', '{"type":"deposit",}', "{'type':'deposit'}", '{"type" "deposit"}',
               '{"type":"deposit","id":"fz-dup","id":"fz-dup2"}', "{" * 70000, "[" * 3000 + "]" * 3000,
               '{"type":"deposit","account":"alice","amount":"1","id":' + "[" * 2000 + "]" * 2000 + "}",
               "\ufeff{}", "{\u00a0}", '{"type":"deposit"}garbage', '{"type":"deposit"} {"type":"deposit"}']
INVALID_UTF8 = [b"\xff", b"\xfe", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc", b"\xed\xa0\x80",
                b"\xc0\xaf", b"\xf8\x88\x80\x80\x80", b"\x80"]
CONTROL = [chr(c) for c in range(32) if chr(c) not in "\n\r"] + ["\x7f"]


class Mutator:
    """Builds one invalid line (bytes) from a base command; every mutation alone is invalid."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.required = {
            cls.model_fields["type"].annotation.__args__[0]: {n for n, f in cls.model_fields.items() if f.is_required()}
            for cls in COMMAND_CLASSES
        }
        self.used: Counter[str] = Counter()

    def line(self, number: int) -> bytes:
        rng = self.rng
        base = dict(rng.choice(BASES))
        command: dict[str, Any] = {"type": base.pop("type"), "id": f"fz-{SEED}-{number}", **base}
        mutation = rng.choice(MUTATIONS)
        self.used[mutation.__name__] += 1
        return mutation(self, command)

    # -- helpers --------------------------------------------------------------------------

    def dumps(self, command: dict[str, Any], ensure_ascii: bool | None = None) -> str:
        """JSON text; non-ASCII as raw characters or as \\u escapes (lone surrogates then stay escapes)."""
        ascii_only = self.rng.random() < 0.5 if ensure_ascii is None else ensure_ascii
        return json.dumps(command, ensure_ascii=ascii_only, separators=(",", ":"))

    def raw_value(self, command: dict[str, Any], key: str, raw: str) -> bytes:
        """The line with ``key``'s value replaced by raw JSON text."""
        marker = "\u0001MARK\u0001"
        text = self.dumps({**command, key: marker}, ensure_ascii=False)
        return text.replace(json.dumps(marker, ensure_ascii=False), raw).encode("utf-8", "surrogatepass")

    def key_of(self, command: dict[str, Any], kinds: set[str]) -> str | None:
        keys = [key for key in command if key in kinds]
        return self.rng.choice(keys) if keys else None

    def encode(self, text: str) -> bytes:
        return text.encode("utf-8", "surrogatepass")

    # -- mutations --------------------------------------------------------------------------

    def drop_required(self, command: dict[str, Any]) -> bytes:
        keys = sorted(self.required[command["type"]] & set(command))
        del command[self.rng.choice(keys)]
        return self.encode(self.dumps(command))

    def duplicate_key(self, command: dict[str, Any]) -> bytes:
        key = self.rng.choice(list(command))
        text = self.dumps(command)
        same = json.dumps(key) + ":" + json.dumps(command[key], ensure_ascii=False, separators=(",", ":"))
        other = json.dumps(key) + ":" + json.dumps(self.rng.choice(["1", "2", "alice", 5]))
        return self.encode(text[:-1] + "," + self.rng.choice([same, other]) + "}")

    def rename_key(self, command: dict[str, Any]) -> bytes:
        key = self.rng.choice([k for k in command if k != "id"] or ["id"])
        new = self.rng.choice([key.upper(), key + "_", " " + key, key + "\u0000", key[:-1], key + "s", "ⓐ" + key,
                               key.replace("_", "-") if "_" in key else key + "-x", "\ud800" + key])
        command = {new if k == key else k: v for k, v in command.items()}
        return self.encode(self.dumps(command))

    def unknown_key(self, command: dict[str, Any]) -> bytes:
        key = self.rng.choice(["memo", "ID", "Type", "", " ", "__proto__", "constructor", "amount " , "a" * 300,
                               "名前", "\u0000", "_type_", "timestamp", "originator_id"])
        if key in command:
            key += "_x"
        command[key] = self.rng.choice(["x", 1, None, [], {}, {"nested": [1, {"deep": True}]}])
        return self.encode(self.dumps(command))

    def bad_value(self, command: dict[str, Any]) -> bytes:
        rng = self.rng
        key = rng.choice([k for k in command if k in NAMES | NUMBERS | ENUMS | TIMES | {"type", "id", "parameters", "tiers"}])
        if key in NUMBERS:
            if rng.random() < 0.3:
                return self.raw_value(command, key, rng.choice(RAW_BAD_NUMBERS))
            value = rng.choice(BAD_NUMBERS)
        elif key in NAMES:
            value = rng.choice([name for name in BAD_NAMES if name is not None or _required(command, key)])
        elif key in ENUMS:
            value = rng.choice(BAD_ENUMS)
        elif key in TIMES:
            value = rng.choice(BAD_TIMES)
        elif key == "id":
            value = rng.choice(BAD_IDS)
        elif key == "type":
            value = rng.choice(BAD_TYPES)
        elif key == "parameters":
            if rng.random() < 0.4:
                return self.raw_value(command, key, rng.choice(RAW_BAD_PARAMETERS))
            value = rng.choice(BAD_PARAMETERS)
        else:
            value = rng.choice(BAD_TIERS)
        command[key] = value
        return self.encode(self.dumps(command))

    def bad_tier_field(self, command: dict[str, Any]) -> bytes:
        if "tiers" not in command:
            return self.bad_value(command)
        tiers = [dict(t) for t in command["tiers"]]
        key = self.rng.choice(list(tiers[0]))
        tiers[self.rng.randrange(len(tiers))][key] = self.rng.choice(BAD_NUMBERS)
        command["tiers"] = tiers
        return self.encode(self.dumps(command))

    def nest_value(self, command: dict[str, Any]) -> bytes:
        key = self.rng.choice([k for k in command if k not in ("parameters",)])
        value = command[key]
        command[key] = self.rng.choice([[value], {"value": value}, [[value]], {"$": [value]}, [value, value]])
        return self.encode(self.dumps(command))

    def unknown_name(self, command: dict[str, Any]) -> bytes:
        keys = [k for k in command if (command["type"], k) in UNKNOWN_NAME_OK]
        if not keys:
            return self.bad_value(command)
        command[self.rng.choice(keys)] = f"nobody-{self.rng.randrange(10**6)}"
        return self.encode(self.dumps(command))

    def truncate(self, command: dict[str, Any]) -> bytes:
        text = self.encode(self.dumps(command))
        return text[: self.rng.randrange(1, len(text) - 1)]

    def invalid_utf8(self, command: dict[str, Any]) -> bytes:
        text = self.encode(self.dumps(command))
        where = self.rng.randrange(1, len(text))
        return text[:where] + self.rng.choice(INVALID_UTF8) + text[where:]

    def control_character(self, command: dict[str, Any]) -> bytes:
        """A raw control character inside a string (JSON forbids it) or an escaped one in a name or id."""
        rng = self.rng
        key = rng.choice([k for k in command if isinstance(command[k], str) and k in NAMES | {"id", "type"}] or ["id"])
        control = rng.choice(CONTROL)
        value = str(command.get(key, "x"))
        where = rng.randrange(len(value) + 1)
        command[key] = value[:where] + control + value[where:]
        text = self.dumps(command, ensure_ascii=False)
        if rng.random() < 0.5:  # unescaped, as the raw byte
            text = text.replace(json.dumps(command[key], ensure_ascii=False), '"' + command[key] + '"', 1)
        return self.encode(text)

    def long_string(self, command: dict[str, Any]) -> bytes:
        key = self.rng.choice([k for k in command if k in NAMES | {"id"} | NUMBERS])
        command[key] = self.rng.choice(["a", "9", "é", "😀"]) * self.rng.choice([129, 1000, 30_000, 70_000])
        return self.encode(self.dumps(command))

    def whole_line(self, command: dict[str, Any]) -> bytes:
        return self.encode(self.rng.choice(WHOLE_LINES))

    def out_of_range_time(self, command: dict[str, Any]) -> bytes:
        """Outside [1970, 2200) or without a zone, an ``at`` in the future or long before the log."""
        if "expiry" in command and self.rng.random() < 0.5:
            command["expiry"] = self.rng.choice([*BAD_TIMES[:5], "1999-01-01T00:00:00Z", "2025-10-10T00:00:00"])
        else:
            command["at"] = self.rng.choice(BAD_TIMES[:10] + FUTURE_TIMES)
        return self.encode(self.dumps(command))


MUTATIONS = [
    Mutator.drop_required, Mutator.duplicate_key, Mutator.rename_key, Mutator.unknown_key, Mutator.bad_value,
    Mutator.bad_value, Mutator.bad_value, Mutator.bad_tier_field, Mutator.nest_value, Mutator.unknown_name,
    Mutator.truncate, Mutator.invalid_utf8, Mutator.control_character, Mutator.long_string, Mutator.whole_line,
    Mutator.out_of_range_time, Mutator.out_of_range_time,
]


def _required(command: dict[str, Any], key: str) -> bool:
    """Whether ``key`` is required in ``command``'s type: null for an optional name (a
    ``market`` of ``set_parameters``) means absent, which is valid, so it is no bad value."""
    from clearing.commands import COMMAND_CLASSES

    kind = next(cls for cls in COMMAND_CLASSES if cls.model_fields["type"].annotation.__args__[0] == command["type"])
    field = kind.model_fields.get(key)
    return field is None or field.is_required()


def mutated_lines(count: int = LINES, seed: int = SEED) -> tuple[list[bytes], Counter[str]]:
    mutator = Mutator(random.Random(seed))
    lines = [mutator.line(number) for number in range(1, count + 1)]
    for line in lines:
        assert b"\n" not in line and b"\r" not in line
    return lines, mutator.used


def test_base_lines_are_valid_and_cover_every_command_type():
    for base in BASES:
        parse_line(json.dumps({"id": "base", "at": "2025-10-10T01:00:00Z", **base}))
    assert {base["type"] for base in BASES} == set(COMMAND_TYPES)


@dataclass
class FuzzRun:
    lines: list[bytes]
    used: Counter[str]
    result: subprocess.CompletedProcess[bytes]
    before: Capture
    after: Capture


@pytest.fixture(scope="module")
def fuzz_run(tmp_path_factory: pytest.TempPathFactory) -> FuzzRun:
    """The store (a market, alice and bob, a trade), then every mutated line through ``clearing post -``."""
    db = str(tmp_path_factory.mktemp("fuzz") / "fuzz.db")
    env = {**os.environ, "CLEARING_OPERATOR": "fuzzer"}
    setup = "".join(json.dumps({**command, "at": "2025-10-10T00:00:00Z"}) + "\n" for command in SETUP)
    done = subprocess.run([CLEARING, "--db", db, "post", "-"], input=setup, capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    before = capture(db, subprocess.CompletedProcess([], 0, "", ""))
    lines, used = mutated_lines()
    stream = b"# fuzz\n" + b"\n".join(lines) + b"\n"  # a comment first, so no line starts the file (BOM)
    result = subprocess.run([CLEARING, "--db", db, "post", "-", "--json"], input=stream, capture_output=True, env=env,
                            timeout=600)
    return FuzzRun(lines, used, result, before, capture(db, subprocess.CompletedProcess([], 0, "", "")))


def result_rows(run: FuzzRun) -> list[dict[str, Any]]:
    # JSON Lines: split on \n only (an id may hold U+2028, which str.splitlines would split on)
    return [json.loads(text) for text in run.result.stdout.decode("utf-8").split("\n") if text]


def test_mutated_lines_through_clearing_post_are_each_rejected_with_a_specific_code(fuzz_run):
    lines, result = fuzz_run.lines, fuzz_run.result
    stderr = result.stderr.decode("utf-8", "replace")
    assert "Traceback" not in stderr, stderr[-5000:]
    rows = result_rows(fuzz_run)
    by_line = {row["line"]: row for row in rows}
    assert len(rows) == len(lines) and sorted(by_line) == list(range(2, len(lines) + 2)), (len(rows), len(lines))
    problems = []
    for number, row in sorted(by_line.items()):
        code = row.get("code")
        if not isinstance(row, dict) or row.get("status") != "rejected" or not isinstance(code, str) or code in GENERIC_CODES:
            problems.append(f"line {number}: {row} <- {lines[number - 2][:300]!r}")
    assert not problems, f"{len(problems)} line(s) not rejected with a specific code:\n" + "\n".join(problems[:20])
    assert result.returncode == 1, stderr[-2000:]

    before, after = fuzz_run.before, fuzz_run.after
    assert after.aggregates == before.aggregates, "a rejected line changed an aggregate"
    assert after.events[: len(before.events)] == before.events
    new = after.events[len(before.events):]
    lines_of: dict[str, list[int]] = {}
    for row in rows:
        lines_of.setdefault(row["id"], []).append(row["line"])
    for label, topic, _, state in new:  # only the answers of rule rejections, for lines that passed the boundary
        assert topic == "CommandRecord.Rejected", (label, topic, state)
        (number,) = lines_of[state["command_id"]]
        assert (by_line[number]["code"], by_line[number]["field"]) == (state["code"], state["field"]), state
        try:
            parse_line(lines[number - 2].decode("utf-8"))
        except (InputError, UnicodeDecodeError) as error:
            raise AssertionError(f"line {number}, refused at the boundary ({error}), was recorded: {state}") from None
    codes = Counter(row["code"] for row in rows)
    print(f"\n{len(lines)} mutated lines; mutations {dict(fuzz_run.used)}; {len(new)} rule rejection(s) recorded; "
          f"codes {dict(codes.most_common())}")
    assert len(codes) >= 25, codes


def test_every_code_the_fuzz_meets_is_documented(fuzz_run):
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", (REPO / "docs" / "errors.md").read_text(), re.MULTILINE))
    met = {row.get("code") for row in result_rows(fuzz_run)}
    assert met <= documented, f"codes not in docs/errors.md: {sorted(met - documented)}"
