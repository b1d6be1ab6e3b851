"""The trade fast path (``clearing.commands.fast_trade``) answers exactly as the full path.

For any line, ``parse_line`` (fast path first) and ``parse_line_in_full`` (JSON parser and
pydantic) either raise the same error (code, field, message) or return equal commands (the
same class, fields, fields set and canonical content). Lines are generated around a valid
trade: fields dropped, added, duplicated, values replaced by bad strings, integers, floats,
nulls, objects, escapes and whitespace.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing.commands import fast_trade, parse_line, parse_line_in_full
from clearing.errors import InputError

VALID = {"type": "trade", "id": "t-1", "market": "BTC-PERP", "buyer": "alice", "seller": "bob", "size": "0.5",
         "price": "50000", "at": "2025-01-01T00:00:00Z"}
ODD_STRINGS = ["", "0", "-1", "0.0", "1e3", "+1", " 1", "0.0000000001", "12345678901234567890123456789012345678901",
               "NaN", "2025-01-01T00:00:00", "2025-13-01T00:00:00Z", "9999-12-31T23:59:59+00:00", "a b", "x" * 70,
               "é", "trade", "deposit", "BTC-PERP", "alice", "50000.50", "1.000", "0.5", "a/b", "-a"]
ODD_VALUES = st.one_of(
    st.sampled_from(ODD_STRINGS),
    st.integers(min_value=-5, max_value=10**20), st.floats(allow_nan=False), st.none(), st.booleans(),
    st.just({"nested": "1"}), st.just(["1"]), st.text(max_size=8),
)


@st.composite
def trade_lines(draw: st.DrawFn) -> str:
    fields = dict(VALID)
    if draw(st.booleans()):  # one field changed, the rest valid: each check on its own
        fields[draw(st.sampled_from(sorted(VALID)))] = draw(ODD_VALUES)
    else:
        for key in draw(st.lists(st.sampled_from(sorted(VALID)), max_size=3)):
            fields.pop(key, None)
        for key in draw(st.lists(st.sampled_from([*VALID, "source", "extra", "Type"]), max_size=3)):
            fields[key] = draw(ODD_VALUES)
    pairs = [json.dumps(key) + draw(st.sampled_from([":", " : ", ":\t"])) + json.dumps(value, ensure_ascii=draw(st.booleans()))
             for key, value in fields.items()]
    if draw(st.booleans()) and pairs:  # a key given twice
        pairs.append(draw(st.sampled_from(pairs)))
    return draw(st.sampled_from(["{", " { "])) + draw(st.sampled_from([",", ", "])).join(pairs) + "}"


def outcome(parse, line: str):
    try:
        command = parse(line)
    except InputError as error:
        return ("error", error.code, error.field, error.message)
    return ("command", type(command), command, command.model_fields_set, command.content())


@settings(max_examples=1500, deadline=None)
@given(trade_lines())
def test_the_fast_path_answers_every_line_as_the_full_path(line):
    assert outcome(parse_line, line) == outcome(parse_line_in_full, line)


@pytest.mark.parametrize("key", sorted(VALID))
def test_every_field_with_every_odd_string_is_answered_as_the_full_path(key):
    for value in ODD_STRINGS:
        line = json.dumps({**VALID, key: value})
        assert outcome(parse_line, line) == outcome(parse_line_in_full, line), line


def test_both_paths_are_exercised():
    """The property above is not vacuous: valid lines take the fast path, odd ones do not."""
    valid = json.dumps(VALID)
    assert fast_trade(valid) is not None and fast_trade(valid) == parse_line_in_full(valid)
    without_at = {key: value for key, value in VALID.items() if key != "at"}
    assert fast_trade(json.dumps(without_at)) == parse_line_in_full(json.dumps(without_at))
    for odd in ({**VALID, "size": 0.5}, {**VALID, "size": "1e3"}, {**VALID, "extra": "1"}, {**VALID, "id": "é"}):
        assert fast_trade(json.dumps(odd)) is None
    duplicated = valid[:-1] + ', "size": "2"}'
    assert fast_trade(duplicated) is None
    assert outcome(parse_line, duplicated)[:3] == ("error", "duplicate_key", "size")
