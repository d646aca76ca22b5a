from decimal import Decimal

import pytest

from storage.money import MoneyError, format_amount, from_minor, parse_amount, to_minor


@pytest.mark.parametrize(
    "amount,minor",
    [
        (Decimal("300"), 30000),
        (Decimal("0.01"), 1),
        (Decimal("50.5"), 5050),
        (Decimal("1250.50"), 125050),
        (Decimal("0"), 0),
    ],
)
def test_to_minor_and_back(amount, minor):
    assert to_minor(amount) == minor
    assert from_minor(minor) == amount
    assert format_amount(from_minor(minor)) == f"{amount:.2f}"


@pytest.mark.parametrize("bad", [Decimal("50.123"), Decimal("NaN"), Decimal("Infinity"), 50.5, "50"])
def test_to_minor_refuses_what_is_not_money(bad):
    with pytest.raises(MoneyError):
        to_minor(bad)


def test_format_amount_always_has_two_decimals():
    assert format_amount(Decimal("300")) == "300.00"
    assert format_amount(from_minor(5)) == "0.05"


@pytest.mark.parametrize("text,amount", [("300", "300.00"), (" 50.5 ", "50.50"), ("1,250.00", "1250.00")])
def test_parse_amount_accepts_operator_input(text, amount):
    assert parse_amount(text) == Decimal(amount)


@pytest.mark.parametrize("text", ["", "abc", "-5", "1e3", "NaN", "50.123", "1,25.00", "Infinity"])
def test_parse_amount_refuses_and_names_the_input(text):
    with pytest.raises(MoneyError, match="not an amount"):
        parse_amount(text)
