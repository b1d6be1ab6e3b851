"""The one constructor and the rounding rules."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearing.money import LEDGER_CONTEXT, D, MoneyError, decimal_places, fmt, is_multiple, round_down, round_up


@pytest.mark.parametrize("text", ["0", "1", "-1", "0.000001", "123456789012345678901234567890.1234567"])
def test_plain_decimals_are_accepted_exactly(text):
    assert str(D(text)) == text


@pytest.mark.parametrize(
    ("value", "code"),
    [(0.1, "float_not_allowed"), (1.0, "float_not_allowed"), ("NaN", "invalid_number"), ("Infinity", "invalid_number"),
     ("1e5", "invalid_number"), ("+1", "invalid_number"), (" 1", "invalid_number"), ("1.", "invalid_number"),
     (".5", "invalid_number"), ("01", "invalid_number"), (True, "invalid_number"), (Decimal("NaN"), "invalid_number"),
     ("1" * 45, "invalid_number"), (None, "invalid_number")],
)
def test_everything_inexact_or_ambiguous_is_refused(value, code):
    with pytest.raises(MoneyError) as caught:
        D(value)
    assert caught.value.code == code


def test_rounding_directions_favour_the_clearinghouse():
    quantum = D("0.01")
    assert round_up(D("1.001"), quantum) == D("1.01")
    assert round_up(D("-1.009"), quantum) == D("-1.00")
    assert round_down(D("1.009"), quantum) == D("1.00")
    assert round_down(D("-1.001"), quantum) == D("-1.01")
    assert round_up(D("1.01"), quantum) == D("1.01")


def test_multiples_places_and_formatting():
    assert is_multiple(D("50000.5"), D("0.5")) and not is_multiple(D("0.3"), D("0.2"))
    assert decimal_places(D("1.2500")) == 2 and decimal_places(D("100")) == 0
    assert [fmt(Decimal(x)) for x in ("1E+3", "1.500", "-0.0", "0.000001")] == ["1000", "1.5", "0", "0.000001"]


@given(st.decimals(min_value=-10**12, max_value=10**12, places=9),
       st.sampled_from(["0.000001", "0.01", "1", "0.5", "0.25", "0.000005", "2.5"]))
def test_rounding_lands_on_the_grid_in_the_right_direction(value, quantum_text):
    quantum = D(quantum_text)
    up, down = round_up(value, quantum), round_down(value, quantum)
    for rounded in (up, down):
        assert LEDGER_CONTEXT.remainder(rounded, quantum) == 0
    assert down <= value <= up and up - down in (0, quantum)
