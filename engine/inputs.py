"""The input checks an `ask` step can `expect`, each one entry of the `checks` registry.

A check is registered where it is defined, with everything the rest of convoflow asks about it: the
arguments it takes (their JSON Schema, which may be templates, which are limits `flows validate` compares),
the words for the docs table and its examples, and whether its answer is a secret. The flow schema, the
validator, the runner and the docs table all read the entry; adding a check touches this file, its tests
and the docs.

A check takes what the user typed, the turn's CheckContext (today in the business's time zone, the mobile
prefixes; None at a turn for a check registered with context=False, which reads none of it) and its
arguments (templated ones already rendered) and returns a Checked: the normalised value to save, or a
problem in plain words, which the runner sends when the step has no `retry` of its own.

A check whose own arguments are broken (a max that renders to "abc", a regex that does not compile)
raises CheckArgsError: that is the flow author's mistake, not the user's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Callable, Iterator, Mapping, NamedTuple

from .named import Registry
from .problems import EngineError
from .templates import CENT, money

DEFAULT_TIMEZONE = "Africa/Harare"
DEFAULT_ZW_PREFIXES = ("71", "73", "77", "78")


class CheckArgsError(EngineError):
    """A check's arguments are unusable (the flow's fault); the message names the argument."""


class Checked(NamedTuple):
    """The outcome of one check: the normalised value, or the problem to tell the user. (A named tuple,
    as CheckContext: every answer makes one, and a frozen dataclass costs twice as much to make.)"""

    value: Any = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


class CheckContext(NamedTuple):
    """What a check may need from the conversation's host: passed in, so the engine stays pure.

    now: the turn's time (naive UTC, the project's convention); time_zone: the business's (an IANA name),
    which says what day `today` is; zw_prefixes: the mobile networks' prefixes after 263. (A named tuple:
    one is made for every answer, and it is the cheapest immutable record to make.)
    """

    now: datetime
    time_zone: str = DEFAULT_TIMEZONE
    zw_prefixes: tuple[str, ...] = DEFAULT_ZW_PREFIXES

    @property
    def today(self) -> date:
        return local_date(self.now, self.time_zone)


def local_date(now_utc: datetime, time_zone: str) -> date:
    """The calendar date at now_utc in time_zone (an IANA name such as Africa/Harare)."""
    from zoneinfo import ZoneInfo

    aware = now_utc.replace(tzinfo=timezone.utc) if now_utc.tzinfo is None else now_utc
    return aware.astimezone(ZoneInfo(time_zone)).date()


@dataclass(frozen=True)
class Limits:
    """Two arguments that bound the answer (min/max, after/before): how `flows validate` reads them."""

    low: str
    high: str
    read: Callable[[Any], Any]  # a literal limit -> a comparable value, or None when it cannot be read
    code: str  # the problem code for a limit that cannot be read
    what: str  # "a number", "a date"
    example: str  # e.g. '"10"', 'today'
    clash: str = "the smallest allowed value is above the largest"  # when no answer fits between them
    exclusive: bool = False  # the answer must lie strictly between the limits

    def empty(self, low: Any, high: Any) -> bool:
        """Whether no answer can lie between two limits read by `read`."""
        return low >= high if self.exclusive else low > high


@dataclass(frozen=True)
class InputCheck:
    """One check, as every layer sees it."""

    name: str
    parse: Callable[..., Checked]  # parse(text, context, **arguments)
    accepts: str  # the docs table's "accepts" column
    saves: str  # the docs table's "saves" column
    hint: str  # what to type, for "Please type your answer: …"
    examples: tuple[str, ...] = ()  # `expect:` values for the docs
    args: Mapping[str, dict] = field(default_factory=dict)  # argument -> JSON Schema of its value
    templates: frozenset[str] = frozenset()  # arguments rendered over the conversation's vars first
    limits: Limits | None = None
    shorthand: str | None = None  # {regex: "^BK-"} stands for {regex: {pattern: "^BK-"}}
    required: tuple[str, ...] = ()
    secret: bool = False  # the answer is kept out of logs (an OTP)
    number: bool = False  # the answer is saved as a number (else as text: compare it with `| int`/`| float`)
    static: Callable[[Mapping[str, Any]], Iterator[tuple[str, str, str]]] | None = None  # more literal checks
    # parse reads its CheckContext. A check that does not says so (context=False) and is passed None at a
    # turn: most answers (text, amount) then make no CheckContext, a record built for nothing.
    context: bool = True

    @property
    def bare(self) -> bool:
        """Whether `expect: <name>` alone is enough (no argument is required)."""
        return not self.required

    def arguments(self, value: Any) -> dict:
        """The arguments as written under `expect: {name: …}` (None, a mapping, or the shorthand)."""
        if value is None:
            return {}
        if isinstance(value, dict):
            return dict(value)
        return {self.shorthand: value} if self.shorthand else {}


class InputChecks(Registry[InputCheck]):
    """The checks by name, in the order they were registered (the docs list them so)."""

    noun = "input check"

    def docs_table(self) -> str:
        """The "Input checks" table and examples of docs/writing-flows.md (schemas/generate.py writes them)."""
        rows = [f"| `{c.name}` | {c.accepts} | {c.saves} |" for c in self]
        examples = [f"    expect: {example}" for c in self for example in c.examples]
        return "\n".join(["| check | accepts | saves |", "|---|---|---|", *rows, "", "```yaml", *examples, "```"])


checks = InputChecks()


def input_check(name: str, **entry: Any) -> Callable[[Callable[..., Checked]], Callable[..., Checked]]:
    """Register the decorated parse function as the check `name` (see InputCheck for the fields)."""

    def register(parse: Callable[..., Checked]) -> Callable[..., Checked]:
        checks.register(InputCheck(name=name, parse=parse, **entry))
        return parse

    return register


def _fail(problem: str) -> Checked:
    return Checked(problem=problem)


def _number(value: Any) -> float | None:
    """A literal numeric limit as written in a flow ("0.01", 10, "$1,000"); None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip().replace(",", "").lstrip("$"))
    except ValueError:
        return None


NUMBER_OR_TEMPLATE = {"$ref": "#/$defs/number_or_template"}
# min/max of amount and integer: numbers or templates, compared by `flows validate` when written as numbers.
NUMBER_RANGE: dict[str, Any] = {
    "args": {"min": NUMBER_OR_TEMPLATE, "max": NUMBER_OR_TEMPLATE},
    "templates": frozenset({"min", "max"}),
    "limits": Limits("min", "max", _number, "expect.bad_number", "a number", '"10"'),
}


# ── phone_zw ──────────────────────────────────────────────────────────────────────────────────────

_PHONE_NOISE = re.compile(r"[\s\-.()]+")
_PHONE_FULL = re.compile(r"263(\d{9})", re.ASCII)
_PHONE_LOCAL = re.compile(r"0?(\d{9})", re.ASCII)
PHONE_FORM = "Please send the number in the form 2637XXXXXXXX, e.g. 263771234567."


def _networks(prefixes: tuple[str, ...]) -> str:
    starts = [f"263{p}" for p in prefixes]
    return starts[0] if len(starts) == 1 else ", ".join(starts[:-1]) + " or " + starts[-1]


@input_check(
    "phone_zw",
    accepts="a Zimbabwe mobile number: `263` then 9 digits on a mobile network's prefix (`26371`, `26373`, "
    "`26377`, `26378`: setting `ZW_MOBILE_PREFIXES`); spaces, dashes and a leading `+` are ignored. "
    "`0771234567` is refused with a hint to send `263771234567`.",
    saves='`"263771234567"`',
    hint="a mobile number like 263771234567",
    examples=("phone_zw",),
)
def phone_zw(text: str, context: CheckContext) -> Checked:
    """A Zimbabwe mobile number as 12 digits: 263, a mobile network's prefix (71, 73, 77, 78), 7 digits."""
    digits = _PHONE_NOISE.sub("", text.strip())
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        # 00 is the international prefix people dial in place of +.
        digits = digits[2:]
    prefixes = context.zw_prefixes
    full = _PHONE_FULL.fullmatch(digits)
    national = full.group(1) if full else None
    local = None if full else _PHONE_LOCAL.fullmatch(digits)
    number = national or (local.group(1) if local else None)
    if number is not None and number[:2] not in prefixes and number[0] in {p[0] for p in prefixes}:
        return _fail(
            f"Please send a number on a Zimbabwe mobile network: starting {_networks(prefixes)}, "
            f"e.g. 263{prefixes[0]}1234567."
        )
    if national is not None and national[:2] in prefixes:
        return Checked("263" + national)
    if local is not None and number[:2] in prefixes:
        # Show their own number in the form we need: they only have to drop the 0 and add 263.
        return _fail(f"Please send the number in the form 2637XXXXXXXX, e.g. 263{number}.")
    return _fail(PHONE_FORM)


# ── amount ────────────────────────────────────────────────────────────────────────────────────────

_AMOUNT = re.compile(r"(?:US\$|USD|\$)?\s*(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?", re.IGNORECASE | re.ASCII)
AMOUNT_FORM = "Please send an amount in numbers, like 50 or 50.00."
# The most whole digits an amount may have: 15 (under a quadrillion) keeps its minor units inside the
# 64-bit integer columns money is stored in, and far inside Decimal's 28 digits, whose quantize raises on
# a longer number (a 30-digit answer crashed the turn instead of re-prompting).
AMOUNT_DIGITS = 15


def _decimal_arg(name: str, value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    number = _finite_decimal(str(value))
    if number is None:
        raise CheckArgsError(f"amount {name} '{value}' is not a number")
    return number


@lru_cache(maxsize=1024)
def _finite_decimal(text: str) -> Decimal | None:
    """text as a finite Decimal (thousands commas dropped), else None. Read once per distinct text: a step's
    min and max are the same few texts on every answer."""
    try:
        number = Decimal(text.strip().replace(",", ""))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


@input_check(
    "amount",
    context=False,
    accepts="a positive amount with at most 2 decimals: `50`, `50.00`, `$50`, `1,250.50`. Refuses `abc`, `-5`, "
    "`0`, `1e3`, `50.123`. Settings `min`, `max` (may be templates).",
    saves='`"50.00"`',
    hint="an amount like 50 or 50.00",
    examples=('{amount: {min: "0.01", max: "{{ booking.balance_due }}"}}',),
    **NUMBER_RANGE,
)
def amount(text: str, context: CheckContext | None, min: Any = None, max: Any = None) -> Checked:
    """A positive amount of money with at most 2 decimal places, optionally within [min, max]."""
    low, high = _decimal_arg("min", min), _decimal_arg("max", max)
    stripped = text.strip()
    if stripped.startswith("-"):
        return _fail("Please send an amount above zero, like 50 or 50.00.")
    if stripped.isascii() and stripped.isdigit():
        whole, cents = stripped, ""  # digits alone, the usual answer: what the pattern's `\d+` reads, without it
    else:
        match = _AMOUNT.fullmatch(stripped)
        if not match:
            return _fail(AMOUNT_FORM)
        whole, cents = match.group(1).replace(",", ""), match.group(2) or ""
    if len(cents) > 2:
        return _fail("Please send an amount with at most 2 decimal places, like 50 or 50.25.")
    if len(whole.lstrip("0")) > AMOUNT_DIGITS:
        return _fail("That amount is too large. Please send an amount like 50 or 50.00.")
    value = Decimal(f"{whole}.{cents or '0'}").quantize(CENT)
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


def _int_arg(check_: str, name: str, value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise CheckArgsError(f"{check_} {name} '{value}' is not a whole number")
    try:
        return int(str(value).strip())
    except ValueError:
        raise CheckArgsError(f"{check_} {name} '{value}' is not a whole number") from None


_CODE_LENGTH = {"type": "integer", "minimum": 1, "maximum": 12}


@input_check(
    "otp",
    context=False,
    accepts="a one-time code of 4 to 8 digits. Settings `min_length`, `max_length`. The code is a secret: it "
    "never reaches a log.",
    saves='`"123456"`',
    hint="the code from your SMS, in digits",
    examples=("{otp: {min_length: 4, max_length: 8}}",),
    args={"min_length": _CODE_LENGTH, "max_length": _CODE_LENGTH},
    templates=frozenset({"min_length", "max_length"}),
    limits=Limits("min_length", "max_length", _number, "expect.bad_number", "a number", '"10"'),
    secret=True,
)
def otp(text: str, context: CheckContext | None, min_length: Any = 4, max_length: Any = 8) -> Checked:
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


@input_check(
    "integer",
    context=False,
    accepts="a whole number. Settings `min`, `max`.",
    saves="`42`",
    hint="a whole number like 3",
    number=True,
    examples=("{integer: {min: 1, max: 10}}",),
    **NUMBER_RANGE,
)
def integer(text: str, context: CheckContext | None, min: Any = None, max: Any = None) -> Checked:
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


@input_check(
    "yes_no",
    context=False,
    accepts="yes / y / ok / 1, or no / n / nope / 2, in any case",
    saves='`"yes"` or `"no"`',
    hint="yes or no",
    examples=("yes_no",),
)
def yes_no(text: str, context: CheckContext | None) -> Checked:
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


def _pattern_compiles(args: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    pattern = args.get("pattern")
    if isinstance(pattern, str):
        try:
            re.compile(pattern)
        except re.error as e:
            yield "pattern", "expect.bad_regex", f"the regex '{pattern}' is not valid: {e}"


@input_check(
    "regex",
    context=False,
    accepts="text that matches a pattern (the whole answer). Setting `ignore_case`.",
    saves="the text",
    hint="the text in the form asked for",
    examples=('{regex: "^BK-[A-Z0-9-]+$"}', '{regex: {pattern: "^bk-", ignore_case: true}}'),
    args={"pattern": {"type": "string", "minLength": 1}, "ignore_case": {"type": "boolean"}},
    shorthand="pattern",
    required=("pattern",),
    static=_pattern_compiles,
)
def regex(text: str, context: CheckContext | None, pattern: Any = None, ignore_case: Any = False) -> Checked:
    """The whole answer (surrounding space removed) must match pattern."""
    if not isinstance(pattern, str) or not pattern:
        raise CheckArgsError("regex needs a pattern")
    stripped = text.strip()
    if compile_pattern(pattern, bool(ignore_case)).fullmatch(stripped):
        return Checked(stripped)
    return _fail("Sorry, that does not look right. Please check it and send it again.")


# ── choice ────────────────────────────────────────────────────────────────────────────────────────


@input_check(
    "choice",
    context=False,
    accepts="one of a list of words, in any case",
    saves="the word as you wrote it",
    hint="one of the words offered",
    examples=("{choice: [small, medium, large]}",),
    args={"choices": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/text"}}},
    shorthand="choices",
    required=("choices",),
)
def choice(text: str, context: CheckContext | None, choices: Any = ()) -> Checked:
    """One of the allowed words, in any case; the value is the word as the flow wrote it."""
    if isinstance(choices, str) or not choices:
        raise CheckArgsError("choice needs a list of words")
    wanted = text.strip().casefold()
    for word in choices:
        if str(word).casefold() == wanted:
            return Checked(str(word))
    return _fail(f"Please send one of: {', '.join(str(w) for w in choices)}.")


# ── text ──────────────────────────────────────────────────────────────────────────────────────────


@input_check(
    "text",
    context=False,
    accepts="any text. Setting `max_length`.",
    saves="the text",
    hint="a reply in words",
    examples=("{text: {max_length: 200}}",),
    args={"max_length": {"type": "integer", "minimum": 1}},
    templates=frozenset({"max_length"}),
)
def text(text: str, context: CheckContext | None, max_length: Any = None) -> Checked:
    """Any non-empty text, optionally at most max_length characters."""
    limit = _int_arg("text", "max_length", max_length)
    stripped = text.strip()
    if not stripped:
        return _fail("Please send a reply in words.")
    if limit is not None and len(stripped) > limit:
        return _fail(f"Please keep it to {limit} characters or fewer.")
    return Checked(stripped)


# ── date ──────────────────────────────────────────────────────────────────────────────────────────

_DMY = re.compile(r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})", re.ASCII)
_ISO = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})", re.ASCII)
_NAMED = re.compile(r"(\d{1,2})(?:st|nd|rd|th)?\s+([a-z]{3,9})\.?,?\s+(\d{4})", re.ASCII)
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_RELATIVE = {"yesterday": -1, "today": 0, "tomorrow": 1}
DATE_FORM = "Please send a date like 25/12/2026, 25 Dec 2026 or 2026-12-25."


def read_date(written: str, today: date) -> date | None:
    """The calendar day written as 25/12/2026, 25 Dec 2026, 2026-12-25, today, tomorrow or yesterday."""
    word = " ".join(written.strip().casefold().split())
    if word in _RELATIVE:
        return today + timedelta(days=_RELATIVE[word])
    parts = None
    if match := _DMY.fullmatch(word):
        parts = int(match.group(3)), int(match.group(2)), int(match.group(1))
    elif match := _ISO.fullmatch(word):
        parts = int(match.group(1)), int(match.group(2)), int(match.group(3))
    elif (match := _NAMED.fullmatch(word)) and match.group(2)[:3] in _MONTHS:
        month = _MONTHS.index(match.group(2)[:3]) + 1
        parts = int(match.group(3)), month, int(match.group(1))
    if parts is None:
        return None
    try:
        return date(*parts)
    except ValueError:
        return None


def _date_limit(value: Any) -> date | str | None:
    """A literal after/before as `flows validate` reads it: a date, or the word when relative to today."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        return None
    word = value.strip().casefold()
    return word if word in _RELATIVE else read_date(value, date.today())


def _comparable_date(value: Any) -> date | None:
    limit = _date_limit(value)
    return None if limit is None else limit if isinstance(limit, date) else date.today() + timedelta(_RELATIVE[limit])


def _date_arg(name: str, value: Any, today: date) -> date | None:
    if value is None or value == "":
        return None
    day = value if isinstance(value, date) else read_date(str(value), today)
    if day is None:
        raise CheckArgsError(f"date {name} '{value}' is not a date")
    return day


def day_text(day: date) -> str:
    """25 Dec 2026: a date as people read it in a message."""
    return f"{day.day} {day.strftime('%b %Y')}"


_DATE_LIMIT = {"type": "string", "minLength": 1}


@input_check(
    "date",
    accepts="a day: `25/12/2026`, `25 Dec 2026`, `2026-12-25`, `today`, `tomorrow` (in the business's time "
    "zone, setting `BUSINESS_TIMEZONE`). Settings `after`, `before`: the answer must be later / earlier "
    "than that day; `today`, `tomorrow`, a date or a template.",
    saves='`"2026-12-25"`',
    hint="a date like 25/12/2026",
    examples=("date", '{date: {after: today, before: "{{ booking.end_date }}"}}'),
    args={"after": _DATE_LIMIT, "before": _DATE_LIMIT},
    templates=frozenset({"after", "before"}),
    limits=Limits(
        "after",
        "before",
        _comparable_date,
        "expect.bad_date",
        "a date",
        "today or 2026-12-25",
        "the 'after' day is not before the 'before' day",
        exclusive=True,
    ),
)
def date_(text: str, context: CheckContext, after: Any = None, before: Any = None) -> Checked:
    """A calendar day, optionally strictly after `after` and before `before`; saved as ISO 2026-12-25."""
    today = context.today
    low, high = _date_arg("after", after, today), _date_arg("before", before, today)
    day = read_date(text, today)
    if day is None:
        return _fail(DATE_FORM)
    if low is not None and day <= low:
        return _fail(f"Please send a date after {day_text(low)}." if high is None else _between(low, high))
    if high is not None and day >= high:
        return _fail(f"Please send a date before {day_text(high)}." if low is None else _between(low, high))
    return Checked(day.isoformat())


def _between(low: date, high: date) -> str:
    return f"Please send a date after {day_text(low)} and before {day_text(high)}."


# ── email ─────────────────────────────────────────────────────────────────────────────────────────


@input_check(
    "email",
    context=False,
    accepts="an email address, checked for its form only (no mail is sent, no domain looked up): `Tino@Example.com`.",
    saves='`"tino@example.com"` (lower-cased)',
    hint="an email address like name@example.com",
    examples=("email",),
)
def email(text: str, context: CheckContext | None) -> Checked:
    """An email address of a valid form, lower-cased; its domain is not looked up."""
    from email_validator import EmailNotValidError, validate_email  # only turns that check one pay the import

    try:
        checked = validate_email(text.strip(), check_deliverability=False)
    except EmailNotValidError:
        return _fail("Please send an email address like name@example.com.")
    return Checked(checked.normalized.lower())


def check(
    kind: str, answer: str, args: Mapping[str, Any] | None = None, context: CheckContext | None = None
) -> Checked:
    """Run the check named kind on answer with its (rendered) arguments.

    Without a context, today is the date in the default time zone and the default prefixes apply.
    """
    entry = checks.get(kind)
    if entry is None:
        raise CheckArgsError(f"unknown check '{kind}'")
    context = context or CheckContext(datetime.now(timezone.utc).replace(tzinfo=None))
    try:
        return entry.parse(answer, context, **(args or {}))
    except TypeError as e:
        raise CheckArgsError(f"{kind}: {e}") from None


__all__ = [
    "Checked",
    "CheckArgsError",
    "CheckContext",
    "InputCheck",
    "InputChecks",
    "Limits",
    "checks",
    "input_check",
    "check",
    "read_date",
    "day_text",
    "DEFAULT_TIMEZONE",
    "DEFAULT_ZW_PREFIXES",
]
