"""Every built-in input check, table-driven: what a user types -> the value saved or the re-prompt."""

from __future__ import annotations

import pytest

from datetime import date, datetime

from engine.inputs import DEFAULT_TIMEZONE, DEFAULT_ZW_PREFIXES, CheckArgsError, CheckContext, check, checks
from engine.templates import render

# 09:00 UTC on 26 Nov 2026: 11:00 in Harare. The tables below run every check at this moment.
AT = CheckContext(datetime(2026, 11, 26, 9, 0))

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
    ("amount", "0050", {}, "50.00"),
    ("amount", "999999999999999.99", {}, "999999999999999.99"),
    ("amount", "0000000000000000001", {}, "1.00"),
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
    # phone_zw: every network's prefix
    *[("phone_zw", f"263{prefix}1234567", {}, f"263{prefix}1234567") for prefix in ("71", "73", "77", "78")],
    # date: the forms people type, saved as ISO; today and tomorrow in the business's time zone
    ("date", "25/12/2026", {}, "2026-12-25"),
    ("date", "5/1/2027", {}, "2027-01-05"),
    ("date", "25 Dec 2026", {}, "2026-12-25"),
    ("date", "25 december 2026", {}, "2026-12-25"),
    ("date", "2026-12-25", {}, "2026-12-25"),
    ("date", " Today ", {}, "2026-11-26"),
    ("date", "tomorrow", {}, "2026-11-27"),
    ("date", "tomorrow", {"after": "today"}, "2026-11-27"),
    ("date", "30/11/2026", {"after": "today", "before": "2026-12-01"}, "2026-11-30"),
    ("date", "2027-01-01", {"after": "25 Dec 2026"}, "2027-01-01"),
    # email: its form only, lower-cased
    ("email", "Tino.Moyo@Example.COM", {}, "tino.moyo@example.com"),
    ("email", "  rudo+safari@mail.co.zw ", {}, "rudo+safari@mail.co.zw"),
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
    ("amount", "5²", {}, "Please send an amount in numbers"),
    ("amount", "NaN", {}, "Please send an amount in numbers"),
    ("amount", "Infinity", {}, "Please send an amount in numbers"),
    ("amount", "50.123", {}, "at most 2 decimal places"),
    ("amount", "1000000000000000", {}, "That amount is too large"),
    ("amount", "9" * 30, {}, "That amount is too large"),
    ("amount", "9" * 30 + ".50", {"max": "300"}, "That amount is too large"),
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
    # phone_zw: a prefix no mobile network uses is refused, and the refusal names the networks' prefixes
    *[
        (
            "phone_zw",
            number,
            {},
            "Please send a number on a Zimbabwe mobile network: starting 26371, 26373, 26377 "
            "or 26378, e.g. 263711234567.",
        )
        for number in ("263741234567", "263791234567", "0761234567")
    ],
    ("date", "31/02/2027", {}, "Please send a date like 25/12/2026, 25 Dec 2026 or 2026-12-25."),
    ("date", "next week", {}, "Please send a date like 25/12/2026"),
    ("date", "12/25/2026", {}, "Please send a date like 25/12/2026"),
    ("date", "", {}, "Please send a date like 25/12/2026"),
    ("date", "today", {"after": "today"}, "Please send a date after 26 Nov 2026."),
    ("date", "2026-12-01", {"before": "1 Dec 2026"}, "Please send a date before 1 Dec 2026."),
    (
        "date",
        "yesterday",
        {"after": "today", "before": "2026-12-01"},
        "Please send a date after 26 Nov 2026 and before 1 Dec 2026.",
    ),
    ("email", "tino", {}, "Please send an email address like name@example.com."),
    ("email", "tino@localhost", {}, "Please send an email address like name@example.com."),
    ("email", "tino moyo@example.com", {}, "Please send an email address like name@example.com."),
    ("email", "", {}, "Please send an email address like name@example.com."),
]


@pytest.mark.parametrize("kind, typed, args, value", OK)
def test_accepted_answers_are_normalised(kind, typed, args, value):
    result = check(kind, typed, args, AT)
    assert result.ok, result.problem
    assert result.value == value


@pytest.mark.parametrize("kind, typed, args, problem", PROBLEMS)
def test_refused_answers_explain_what_to_send(kind, typed, args, problem):
    result = check(kind, typed, args, AT)
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
        ("date", {"after": "soon"}, "after"),
        ("nonsense", {}, "nonsense"),
    ],
)
def test_broken_check_arguments_are_the_flows_fault(kind, args, named):
    with pytest.raises(CheckArgsError, match=named):
        check(kind, "50", args)


def test_every_registered_check_has_cases_that_pass_and_fail():
    """A new check without rows in OK and PROBLEMS fails the suite."""
    assert {c.name for c in checks} == {row[0] for row in OK} == {row[0] for row in PROBLEMS}


def test_only_the_otp_answer_is_a_secret():
    assert [c.name for c in checks if c.secret] == ["otp"]


@pytest.mark.parametrize(
    "now, today",
    [
        (datetime(2026, 12, 1, 21, 59), date(2026, 12, 1)),  # 23:59 in Harare
        (datetime(2026, 12, 1, 22, 0), date(2026, 12, 2)),  # midnight in Harare, still 1 Dec in UTC
    ],
)
def test_today_is_the_day_in_the_business_time_zone(now, today):
    context = CheckContext(now, "Africa/Harare")
    assert check("date", "today", {}, context).value == today.isoformat()
    assert CheckContext(now, "UTC").today == date(2026, 12, 1)


def test_the_mobile_prefixes_come_from_the_context():
    only_77 = CheckContext(AT.now, zw_prefixes=("77",))
    assert check("phone_zw", "263781234567", {}, only_77).problem == (
        "Please send a number on a Zimbabwe mobile network: starting 26377, e.g. 263771234567."
    )
    assert check("phone_zw", "263771234567", {}, only_77).value == "263771234567"


def test_the_settings_defaults_are_the_engines():
    from storage.settings import Settings

    settings = Settings.from_env({})
    assert settings.business_timezone == DEFAULT_TIMEZONE
    assert tuple(settings.zw_mobile_prefixes.split(",")) == DEFAULT_ZW_PREFIXES
    assert Settings.from_env({"ZW_MOBILE_PREFIXES": "77, 78"}).zw_mobile_prefixes == "77,78"


@pytest.mark.parametrize("variable, value", [("ZW_MOBILE_PREFIXES", "7a,78"), ("BUSINESS_TIMEZONE", "Mars/Olympus")])
def test_bad_settings_are_named(variable, value):
    from storage.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: value})


@pytest.mark.parametrize(
    "template, vars, shown",
    [
        ('{{ d | date("%d %b %Y") }}', {"d": "2026-12-25"}, "25 Dec 2026"),
        ("{{ d | date }}", {"d": "2026-12-25"}, "25 Dec 2026"),
        ('{{ d | date("%A %d %B") }}', {"d": "2026-12-25"}, "Friday 25 December"),
        ("{{ d | date }}", {"d": "soon"}, "soon"),
    ],
)
def test_the_date_filter_formats_a_saved_date(template, vars, shown):
    assert render(template, vars) == shown


def test_an_amount_limit_reads_the_same_every_time():
    """A limit's text is read once and remembered (the same few texts come with every answer): a second
    answer gets the same result, and a bad text names the argument it was given as, each time."""
    for _ in range(2):
        assert check("amount", "1,500", {"max": "1,000"}).problem == "Please send an amount of at most $1,000.00."
        assert check("amount", "999.99", {"max": "1,000"}).value == "999.99"
        with pytest.raises(CheckArgsError, match="max 'abc'"):
            check("amount", "5", {"max": "abc"})
        with pytest.raises(CheckArgsError, match="min 'abc'"):
            check("amount", "5", {"min": "abc"})
        with pytest.raises(CheckArgsError, match="min 'Infinity'"):
            check("amount", "5", {"min": "Infinity"})
