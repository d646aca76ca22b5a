"""The built-in input checks an `ask` step can `expect`.

Each check takes what the user typed and the check's arguments (templated arguments already rendered by
the runner) and returns a Checked: either the normalised value to save or a problem in plain words, which
the runner sends as the re-prompt when the step has no `retry` of its own.

    kind      arguments                                   value saved
    phone_zw  -                                           "263771234567" (12 digits)
    amount    min, max (numbers as strings, may be        "50.00" (a Decimal string, 2 decimals)
              templates such as "{{ booking.balance_due }}")
    otp       min_length (4), max_length (8)              "123456" (digits only)
    integer   min, max                                    42 (an int)
    yes_no    -                                           "yes" | "no"
    regex     pattern, ignore_case (false)                the text as typed, surrounding space removed
    choice    choices (a list of words)                   the word as the flow wrote it
    text      max_length                                  the text, surrounding space removed

A check whose own arguments are broken (a max that renders to "abc", a regex that does not compile)
raises CheckArgsError: that is the flow author's mistake, not the user's.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Callable, Mapping

from .problems import EngineError
from .templates import money


class CheckArgsError(EngineError):
    """A check's arguments are unusable (the flow's fault); the message names the argument."""


@dataclass(frozen=True)
class Checked:
    """The outcome of one check: the normalised value, or the problem to tell the user."""

    value: Any = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _fail(problem: str) -> Checked:
    return Checked(problem=problem)


# ── phone_zw ──────────────────────────────────────────────────────────────────────────────────────

_PHONE_NOISE = re.compile(r"[\s\-.()]+")
_PHONE_OK = re.compile(r"2637\d{8}", re.ASCII)
_PHONE_LOCAL = re.compile(r"0?(7\d{8})", re.ASCII)
PHONE_FORM = "Please send the number in the form 2637XXXXXXXX, e.g. 263771234567."


def phone_zw(text: str) -> Checked:
    """A Zimbabwe mobile number as 12 digits: 2637 then 8 digits."""
    digits = _PHONE_NOISE.sub("", text.strip())
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        # 00 is the international prefix people dial in place of +.
        digits = digits[2:]
    if _PHONE_OK.fullmatch(digits):
        return Checked(digits)
    local = _PHONE_LOCAL.fullmatch(digits)
    if local:
        # Show their own number in the form we need: they only have to drop the 0 and add 263.
        return _fail(f"Please send the number in the form 2637XXXXXXXX, e.g. 263{local.group(1)}.")
    return _fail(PHONE_FORM)


# ── amount ────────────────────────────────────────────────────────────────────────────────────────

_AMOUNT = re.compile(r"(?:US\$|USD|\$)?\s*(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?", re.IGNORECASE | re.ASCII)
AMOUNT_FORM = "Please send an amount in numbers, like 50 or 50.00."
_CENT = Decimal("0.01")


def _decimal_arg(name: str, value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value).strip().replace(",", ""))
    except InvalidOperation:
        raise CheckArgsError(f"amount {name} '{value}' is not a number") from None
    if not number.is_finite():
        raise CheckArgsError(f"amount {name} '{value}' is not a number")
    return number


def amount(text: str, min: Any = None, max: Any = None) -> Checked:
    """A positive amount of money with at most 2 decimal places, optionally within [min, max]."""
    low, high = _decimal_arg("min", min), _decimal_arg("max", max)
    stripped = text.strip()
    if stripped.startswith("-"):
        return _fail("Please send an amount above zero, like 50 or 50.00.")
    match = _AMOUNT.fullmatch(stripped)
    if not match:
        return _fail(AMOUNT_FORM)
    whole, cents = match.group(1).replace(",", ""), match.group(2) or ""
    if len(cents) > 2:
        return _fail("Please send an amount with at most 2 decimal places, like 50 or 50.25.")
    value = Decimal(f"{whole}.{cents or '0'}").quantize(_CENT)
    if value <= 0:
        return _fail("Please send an amount above zero, like 50 or 50.00.")
    if (low is not None and value < low) or (high is not None and value > high):
        return _fail(_range_problem(low, high))
    return Checked(str(value))


def _range_problem(low: Decimal | None, high: Decimal | None) -> str:
    if low is not None and high is not None:
        return f"Please send an amount between {money(low)} and {money(high)}."
    if low is not None:
        return f"Please send an amount of at least {money(low)}."
    return f"Please send an amount of at most {money(high)}."


# ── otp ───────────────────────────────────────────────────────────────────────────────────────────


def _int_arg(check: str, name: str, value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise CheckArgsError(f"{check} {name} '{value}' is not a whole number")
    try:
        return int(str(value).strip())
    except ValueError:
        raise CheckArgsError(f"{check} {name} '{value}' is not a whole number") from None


def otp(text: str, min_length: Any = 4, max_length: Any = 8) -> Checked:
    """A one-time code: digits only (spaces ignored), min_length to max_length of them.

    The problem never repeats what was typed: a code is a secret.
    """
    low = _int_arg("otp", "min_length", min_length) or 4
    high = _int_arg("otp", "max_length", max_length) or 8
    code = "".join(text.split())
    if code.isascii() and code.isdigit() and low <= len(code) <= high:
        return Checked(code)
    size = f"{low} digits" if low == high else f"{low} to {high} digits"
    return _fail(f"Please send the code from your SMS: {size}.")


# ── integer ───────────────────────────────────────────────────────────────────────────────────────

_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)


def integer(text: str, min: Any = None, max: Any = None) -> Checked:
    """A whole number, optionally within [min, max]."""
    low, high = _int_arg("integer", "min", min), _int_arg("integer", "max", max)
    stripped = text.strip()
    if not _INTEGER.fullmatch(stripped):
        if low is None and high is None:
            return _fail("Please send a whole number, like 3.")
        return _fail(_integer_problem(low, high))
    value = int(stripped)
    if (low is not None and value < low) or (high is not None and value > high):
        return _fail(_integer_problem(low, high))
    return Checked(value)


def _integer_problem(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"Please send a whole number from {low} to {high}."
    if low is not None:
        return f"Please send a whole number of at least {low}."
    return f"Please send a whole number of at most {high}."


# ── yes_no ────────────────────────────────────────────────────────────────────────────────────────

YES = frozenset({"yes", "y", "yeah", "yep", "yup", "ok", "okay", "sure", "1"})
NO = frozenset({"no", "n", "nope", "nah", "2"})


def yes_no(text: str) -> Checked:
    """yes/y/yeah/ok/1 or no/n/nope/2 in any case, with surrounding punctuation ignored."""
    word = text.strip().strip(".!?,").strip().casefold()
    if word in YES:
        return Checked("yes")
    if word in NO:
        return Checked("no")
    return _fail("Please answer yes or no.")


# ── regex ─────────────────────────────────────────────────────────────────────────────────────────


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str, ignore_case: bool = False) -> re.Pattern:
    """Compile a flow's pattern once; raises CheckArgsError when it is not a valid regex."""
    try:
        return re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as e:
        raise CheckArgsError(f"regex '{pattern}' is invalid: {e}") from None


def regex(text: str, pattern: Any = None, ignore_case: Any = False) -> Checked:
    """The whole answer (surrounding space removed) must match pattern."""
    if not isinstance(pattern, str) or not pattern:
        raise CheckArgsError("regex needs a pattern")
    stripped = text.strip()
    if compile_pattern(pattern, bool(ignore_case)).fullmatch(stripped):
        return Checked(stripped)
    return _fail("Sorry, that does not look right. Please check it and send it again.")


# ── choice ────────────────────────────────────────────────────────────────────────────────────────


def choice(text: str, choices: Any = ()) -> Checked:
    """One of the allowed words, in any case; the value is the word as the flow wrote it."""
    if isinstance(choices, str) or not choices:
        raise CheckArgsError("choice needs a list of words")
    wanted = text.strip().casefold()
    for word in choices:
        if str(word).casefold() == wanted:
            return Checked(str(word))
    return _fail(f"Please send one of: {', '.join(str(w) for w in choices)}.")


# ── text ──────────────────────────────────────────────────────────────────────────────────────────


def text(text: str, max_length: Any = None) -> Checked:
    """Any non-empty text, optionally at most max_length characters."""
    limit = _int_arg("text", "max_length", max_length)
    stripped = text.strip()
    if not stripped:
        return _fail("Please send a reply in words.")
    if limit is not None and len(stripped) > limit:
        return _fail(f"Please keep it to {limit} characters or fewer.")
    return Checked(stripped)


CHECKS: Mapping[str, Callable[..., Checked]] = {
    "phone_zw": phone_zw,
    "amount": amount,
    "otp": otp,
    "integer": integer,
    "yes_no": yes_no,
    "regex": regex,
    "choice": choice,
    "text": text,
}

# Argument names each check takes.
ARGUMENTS: Mapping[str, tuple[str, ...]] = {
    "phone_zw": (),
    "amount": ("min", "max"),
    "otp": ("min_length", "max_length"),
    "integer": ("min", "max"),
    "yes_no": (),
    "regex": ("pattern", "ignore_case"),
    "choice": ("choices",),
    "text": ("max_length",),
}

# Arguments that may be templates, rendered over the conversation's vars before the check runs
# (e.g. max: "{{ booking.balance_due }}"). A regex pattern is never rendered: `\d{4}` is not a template.
TEMPLATE_ARGUMENTS = frozenset({"min", "max", "min_length", "max_length"})


def check(kind: str, answer: str, args: Mapping[str, Any] | None = None) -> Checked:
    """Run the check named kind on answer with its (rendered) arguments."""
    try:
        fn = CHECKS[kind]
    except KeyError:
        raise CheckArgsError(f"unknown check '{kind}'") from None
    try:
        return fn(answer, **(args or {}))
    except TypeError as e:
        raise CheckArgsError(f"{kind}: {e}") from None


__all__ = ["Checked", "CheckArgsError", "CHECKS", "ARGUMENTS", "TEMPLATE_ARGUMENTS", "check", *CHECKS]
