from decimal import Decimal

import pytest

from core.money import InvalidAmount, quantize, to_decimal, whole_shillings


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (10, "10.00"),
        ("10", "10.00"),
        ("10.00", "10.00"),
        (Decimal("250000"), "250000.00"),
        (" 7 ", "7.00"),
    ],
)
def test_whole_shillings_accepts_whole_numbers_in_any_json_form(value, expected):
    assert whole_shillings(value) == Decimal(expected)


@pytest.mark.parametrize(
    "value",
    ["10.5", Decimal("0.01"), "1e-2", "abc", "", None, True, 10.0, "NaN", "Infinity", [], {}],
)
def test_malformed_or_fractional_amounts_are_refused_not_coerced(value):
    with pytest.raises(InvalidAmount):
        whole_shillings(value)


def test_to_decimal_keeps_exact_value():
    assert to_decimal("0.1") + to_decimal("0.2") == Decimal("0.3")


def test_quantize_rounds_half_up_to_cents():
    assert quantize(Decimal("1.005")) == Decimal("1.01")
    assert str(quantize(Decimal("5"))) == "5.00"


@pytest.mark.parametrize("text", ["1e999999999", "-1E+999999999"])
def test_an_amount_beyond_the_decimal_context_is_refused_not_overflowed(text):
    with pytest.raises(InvalidAmount, match="larger than"):
        whole_shillings(Decimal(text))
