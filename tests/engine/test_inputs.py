"""Every built-in input check, table-driven: what a user types -> the value saved or the re-prompt."""
from __future__ import annotations

import pytest

from engine.inputs import CheckArgsError, check

OK = [
    # phone_zw: 12 digits; spaces, dashes, dots, parentheses and a leading + are ignored
    ("phone_zw", "263771234567", {}, "263771234567"),
    ("phone_zw", "+263771234567", {}, "263771234567"),
    ("phone_zw", "+263 77 123 4567", {}, "263771234567"),
    ("phone_zw", "263-77-123-4567", {}, "263771234567"),
    ("phone_zw", "(263) 77.123.4567", {}, "263771234567"),
    ("phone_zw", " 00263771234567 ", {}, "263771234567"),
    # amount: a Decimal string with 2 decimals
    ("amount", "50", {}, "50.00"),
    ("amount", "50.00", {}, "50.00"),
    ("amount", "50.5", {}, "50.50"),
    ("amount", "$50", {}, "50.00"),
    ("amount", "US$50", {}, "50.00"),
    ("amount", "us$ 50", {}, "50.00"),
    ("amount", "1,250.50", {}, "1250.50"),
    ("amount", "1,000,000", {}, "1000000.00"),
    ("amount", " 50 ", {}, "50.00"),
    ("amount", "0.01", {"min": "0.01", "max": "300.00"}, "0.01"),
    ("amount", "300", {"min": "0.01", "max": "300.00"}, "300.00"),
    ("amount", "20", {"min": "10"}, "20.00"),
    # otp
    ("otp", "1234", {}, "1234"),
    ("otp", "12 34 56", {}, "123456"),
    ("otp", "12345678", {}, "12345678"),
    ("otp", "123456", {"min_length": 6, "max_length": 6}, "123456"),
    # integer
    ("integer", "3", {}, 3),
    ("integer", " -7 ", {}, -7),
    ("integer", "10", {"min": 1, "max": "10"}, 10),
    # yes_no
    *[("yes_no", word, {}, "yes") for word in ("yes", "Y", "YEAH", "ok", "Ok!", "1")],
    *[("yes_no", word, {}, "no") for word in ("no", "N", "Nope", "2", "no.")],
    # regex: fullmatch, optionally ignoring case
    ("regex", " BK-123 ", {"pattern": r"BK-\d+"}, "BK-123"),
    ("regex", "bk-123", {"pattern": r"BK-\d+", "ignore_case": True}, "bk-123"),
    # choice: any case, saved as the flow wrote it
    ("choice", "ECOCASH", {"choices": ["Ecocash", "OneMoney"]}, "Ecocash"),
    ("choice", " onemoney ", {"choices": ["Ecocash", "OneMoney"]}, "OneMoney"),
    # text
    ("text", "  hello there ", {}, "hello there"),
    ("text", "{{ 7*7 }}", {}, "{{ 7*7 }}"),
    ("text", "abc", {"max_length": 3}, "abc"),
]

PROBLEMS = [
    ("phone_zw", "0771234567", {}, "Please send the number in the form 2637XXXXXXXX, e.g. 263771234567."),
    ("phone_zw", "077 123 4567", {}, "Please send the number in the form 2637XXXXXXXX, e.g. 263771234567."),
    ("phone_zw", "0782223333", {}, "Please send the number in the form 2637XXXXXXXX, e.g. 263782223333."),
    ("phone_zw", "78 222 3333", {}, "Please send the number in the form 2637XXXXXXXX, e.g. 263782223333."),
    ("phone_zw", "26377123456", {}, "Please send the number in the form 2637XXXXXXXX, e.g. 263771234567."),
    ("phone_zw", "2637712345678", {}, "2637XXXXXXXX"),
    ("phone_zw", "263241234567", {}, "2637XXXXXXXX"),
    ("phone_zw", "my number", {}, "2637XXXXXXXX"),
    ("phone_zw", "", {}, "2637XXXXXXXX"),
    ("amount", "abc", {}, "Please send an amount in numbers, like 50 or 50.00."),
    ("amount", "-5", {}, "Please send an amount above zero"),
    ("amount", "0", {}, "Please send an amount above zero"),
    ("amount", "0.00", {}, "Please send an amount above zero"),
    ("amount", "1e3", {}, "Please send an amount in numbers"),
    ("amount", "NaN", {}, "Please send an amount in numbers"),
    ("amount", "Infinity", {}, "Please send an amount in numbers"),
    ("amount", "50.123", {}, "at most 2 decimal places"),
    ("amount", "", {}, "Please send an amount in numbers"),
    ("amount", "   ", {}, "Please send an amount in numbers"),
    ("amount", "12,50", {}, "Please send an amount in numbers"),
    ("amount", "1,2500", {}, "Please send an amount in numbers"),
    ("amount", "50 dollars", {}, "Please send an amount in numbers"),
    ("amount", "٥٠", {}, "Please send an amount in numbers"),
    ("amount", "301", {"min": "0.01", "max": "300"}, "Please send an amount between $0.01 and $300.00."),
    ("amount", "2500", {"min": "0.01", "max": "1250.5"}, "between $0.01 and $1,250.50."),
    ("amount", "5", {"min": "10"}, "Please send an amount of at least $10.00."),
    ("amount", "500", {"max": "300"}, "Please send an amount of at most $300.00."),
    ("otp", "123", {}, "Please send the code from your SMS: 4 to 8 digits."),
    ("otp", "123456789", {}, "4 to 8 digits"),
    ("otp", "12a4", {}, "4 to 8 digits"),
    ("otp", "", {}, "4 to 8 digits"),
    ("otp", "12345", {"min_length": 6, "max_length": 6}, "Please send the code from your SMS: 6 digits."),
    ("integer", "three", {}, "Please send a whole number, like 3."),
    ("integer", "2.5", {}, "Please send a whole number"),
    ("integer", "11", {"min": 1, "max": 10}, "Please send a whole number from 1 to 10."),
    ("integer", "0", {"min": 1}, "Please send a whole number of at least 1."),
    ("integer", "99", {"max": 10}, "Please send a whole number of at most 10."),
    ("yes_no", "maybe", {}, "Please answer yes or no."),
    ("yes_no", "", {}, "Please answer yes or no."),
    ("regex", "XX-123", {"pattern": r"BK-\d+"}, "does not look right"),
    ("regex", "bk-123", {"pattern": r"BK-\d+"}, "does not look right"),
    ("regex", "BK-123 and more", {"pattern": r"BK-\d+"}, "does not look right"),
    ("choice", "visa", {"choices": ["Ecocash", "OneMoney"]}, "Please send one of: Ecocash, OneMoney."),
    ("text", "   ", {}, "Please send a reply in words."),
    ("text", "abcd", {"max_length": 3}, "Please keep it to 3 characters or fewer."),
]


@pytest.mark.parametrize("kind, typed, args, value", OK)
def test_accepted_answers_are_normalised(kind, typed, args, value):
    result = check(kind, typed, args)
    assert result.ok, result.problem
    assert result.value == value


@pytest.mark.parametrize("kind, typed, args, problem", PROBLEMS)
def test_refused_answers_explain_what_to_send(kind, typed, args, problem):
    result = check(kind, typed, args)
    assert not result.ok
    assert problem in result.problem


def test_the_otp_problem_never_repeats_the_code():
    assert "987" not in check("otp", "987", {}).problem


@pytest.mark.parametrize(
    "kind, args, named",
    [
        ("amount", {"max": "abc"}, "max"),
        ("amount", {"min": "NaN"}, "min"),
        ("integer", {"min": "one"}, "min"),
        ("otp", {"max_length": "x"}, "max_length"),
        ("regex", {"pattern": "("}, "invalid"),
        ("regex", {}, "pattern"),
        ("choice", {"choices": []}, "list"),
        ("text", {"colour": "red"}, "colour"),
        ("nonsense", {}, "nonsense"),
    ],
)
def test_broken_check_arguments_are_the_flows_fault(kind, args, named):
    with pytest.raises(CheckArgsError, match=named):
        check(kind, "50", args)
