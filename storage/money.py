"""Money: `Decimal` in Python, integer minor units (cents) in the database. Never a float.

Every currency we take (USD, ZWG) has two decimal places, so one cent is 1/100 of a unit.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

CURRENCIES = ("USD", "ZWG")
CENT = Decimal("0.01")

# Digits, optionally grouped by commas in threes, and at most two decimals: "50", "50.5", "1,250.50".
_AMOUNT = re.compile(r"^(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d{1,2})?$")


class MoneyError(ValueError):
    """An amount that cannot be money: a float, not finite, negative where it must not be, > 2 decimals."""


def to_minor(amount: Decimal) -> int:
    """Decimal units -> integer cents. Refuses floats and amounts with more than two decimals."""
    if isinstance(amount, float) or not isinstance(amount, (Decimal, int)) or isinstance(amount, bool):
        raise MoneyError(f"an amount must be a Decimal, not {type(amount).__name__}")
    amount = Decimal(amount)
    if not amount.is_finite():
        raise MoneyError(f"'{amount}' is not an amount")
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise MoneyError(f"'{amount}' has more than two decimal places")
    return int(cents)


def from_minor(minor: int) -> Decimal:
    """Integer cents -> Decimal units with exactly two decimals (300 -> Decimal('3.00'))."""
    return (Decimal(int(minor)) / 100).quantize(CENT)


def format_amount(amount: Decimal) -> str:
    """Two decimals, no grouping, no currency: the form JSON and CSV carry ("300.00")."""
    return f"{Decimal(amount).quantize(CENT):.2f}"


def parse_amount(text: str, *, allow_zero: bool = True) -> Decimal:
    """An amount typed by an operator (CLI, CSV): "300", "300.5", "1,250.00". Refuses negatives,
    exponents, NaN and more than two decimals, naming what was given.
    """
    cleaned = (text or "").strip()
    if not _AMOUNT.match(cleaned):
        raise MoneyError(f"'{text}' is not an amount like 300 or 300.00 (at most two decimals, not negative)")
    try:
        amount = Decimal(cleaned.replace(",", ""))
    except InvalidOperation:
        raise MoneyError(f"'{text}' is not an amount like 300 or 300.00") from None
    if amount == 0 and not allow_zero:
        raise MoneyError("the amount must be more than 0")
    return amount.quantize(CENT)
