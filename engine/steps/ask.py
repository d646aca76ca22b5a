"""`ask` steps: send a question, wait, check the answer, save it, go on.

An answer to a step with buttons or options is the choice's id: a button/list reply carries it as
reply_id; typed text may be the id, the title in any case or the choice's number (1-based). Otherwise
the step's `expect` check (default: any non-empty text) turns the answer into the value to save.

A failed answer re-prompts with the step's `retry` (rendered), or the check's own problem in plain words,
re-sending the buttons or options. After `attempts` failures the conversation goes to `on_fail`, or ends
politely. A message that cannot be an answer at all (an image, a sticker, a location…) is not a try: it
gets one short hint of what to send and uses no attempt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..inputs import CheckArgsError, CheckContext, checks
from ..lookups import normalise
from ..template_check import is_template
from ..whatsapp_limits import MAX_INTERACTIVE_BODY, MAX_TEXT_BODY, check_step_limits, choices_of
from . import StepKind, shape

if TYPE_CHECKING:
    from ..messages import Choice, Inbound
    from ..model import Expect, Step
    from ..runner import Turn
    from ..validate import StepChecker

GAVE_UP = "Sorry, I could not understand your answer, so I have stopped here. Send *{menu}* to start again."
PICK_BUTTON = "Please tap one of the buttons, or send its number."
PICK_OPTION = "Please choose one of the options, or send its number."
TYPE_ANSWER = "Please type your answer: {hint}."


def run(turn: "Turn", step: Step) -> None:
    """Send the question (with its buttons or options) and wait for the answer."""
    if turn.closing:
        # A cancel or expiry step is the conversation's last act: nobody would be there to answer.
        turn.event("warning", "ask.while_closing", f"step '{step.name}' asks a question while the conversation closes")
        return None
    turn.say_choices(step, turn.render(step.text or ""))
    turn.wait(step)
    return None


def answer(turn: "Turn", step: Step, inbound: Inbound) -> str | None:
    """Check inbound as the answer to step; returns the step to walk next, or None (re-prompted or ended)."""
    if inbound.kind == "other":
        turn.say_choices(step, _hint(step))
        turn.wait(step, turn.attempts)
        return None
    value, problem = _read(turn, step, inbound)
    if problem is None:
        if step.save:
            turn.vars[step.save] = value
        turn.attempts = 0
        return turn.route(step)
    attempts = turn.attempts + 1
    if attempts >= step.attempts:
        turn.event("info", "ask.gave_up", f"step '{step.name}': no usable answer after {attempts} attempts")
        if step.on_fail:
            turn.attempts = 0
            return step.on_fail
        turn.send(GAVE_UP.format(menu=turn.menu_word))
        turn.end()
        return None
    turn.say_choices(step, turn.render(step.retry) if step.retry else problem)
    turn.wait(step, attempts)
    return None


def _hint(step: Step) -> str:
    """What to send instead of a picture, a sticker, a location…"""
    if step.buttons:
        return PICK_BUTTON
    if step.options:
        return PICK_OPTION
    entry = checks.get(step.expect.kind if step.expect else "text")
    return TYPE_ANSWER.format(hint=entry.hint if entry else "in words")


def _read(turn: "Turn", step: Step, inbound: Inbound) -> tuple[Any, str | None]:
    """(value, None) for a usable answer, (None, problem) otherwise."""
    if step.buttons or step.options:
        lookups = turn.flow.lookups
        if inbound.kind in ("button", "list") and inbound.reply_id in lookups.choice_ids[step.name]:
            return inbound.reply_id, None
        # A typed answer, or a button from an older message whose title still names a choice here.
        chosen = lookups.choices[step.name].get(normalise(inbound.text))
        if chosen is not None:
            return chosen, None
        return None, PICK_BUTTON if step.buttons else PICK_OPTION
    expect = step.expect
    kind, written, rendered = (expect.kind, expect.args, expect.rendered) if expect is not None else ("text", {}, ())
    entry = checks.get(kind)
    if entry is None:
        raise turn.abort("expect.invalid", f"unknown check '{kind}'")
    args = {**written, **{k: turn.render_value(written[k]) for k in rendered}} if rendered else written
    context = CheckContext(turn.now, turn.ctx.business_timezone, turn.ctx.zw_mobile_prefixes) if entry.context else None
    try:
        result = entry.parse(inbound.text or "", context, **args)
    except (CheckArgsError, TypeError) as e:
        raise turn.abort("expect.invalid", f"{kind}: {e}") from None
    return result.value, result.problem


# ── loading and checking ─────────────────────────────────────────────────────────────────────────────


def build(spec: dict) -> dict:
    """The Step fields of a checked ask mapping."""
    from ..model import DEFAULT_ATTEMPTS  # engine.model here and below: `flows validate` builds no step

    return {
        "text": spec["ask"],
        "save": spec.get("save"),
        "expect": _expect(spec.get("expect")),
        "buttons": _choices(spec.get("buttons")),
        "options": _choices(spec.get("options")),
        "list_button": spec.get("list_button"),
        "retry": spec.get("retry"),
        "attempts": spec.get("attempts", DEFAULT_ATTEMPTS),
        "on_fail": spec.get("on_fail"),
    }


def _choices(value: Any) -> tuple[Choice, ...]:
    from ..messages import Choice

    return tuple(
        Choice(id=cid, title=title, description=description) for _, cid, title, description in choices_of(value)
    )


def _expect(value: Any) -> Expect | None:
    """The check with its arguments by name: {regex: "^BK"} -> Expect("regex", {"pattern": "^BK"})."""
    from ..model import Expect

    if value is None:
        return None
    if isinstance(value, str):
        return Expect(kind=value)
    ((kind, args),) = value.items()
    arguments = checks.get(kind).arguments(args)
    return Expect(kind, {k: tuple(v) if isinstance(v, list) else v for k, v in arguments.items()})


def check(checker: "StepChecker", name: str, step: dict) -> None:
    has_choices = "buttons" in step or "options" in step
    limit = MAX_INTERACTIVE_BODY if has_choices else MAX_TEXT_BODY
    checker.message("ask", step["ask"], limit)
    if isinstance(step.get("retry"), str):
        checker.message("retry", step["retry"], limit)
    if "buttons" in step and "options" in step:
        checker.add(
            ("options",),
            "error",
            "ask.buttons_and_options",
            f"{checker.label} has both 'buttons' and 'options': WhatsApp shows one or the other, keep one",
            key=True,
        )
    for path, text in _choice_texts(step):
        checker.message(path, text, None)
    if isinstance(step.get("list_button"), str):
        checker.message("list_button", step["list_button"], None)
    for path, severity, code, message in check_step_limits(step, checker.base, checker.label):
        checker.add(path[len(checker.base) :], severity, code, message)
    if "expect" in step:
        _check_expect(checker, step["expect"])
        if has_choices:
            checker.add(
                ("expect",),
                "warning",
                "ask.expect_with_choices",
                f"{checker.label}: with buttons or options the answer is one of them, so 'expect' is never "
                f"used; remove it",
                key=True,
            )
    _numbered_ids(checker, step)
    if isinstance(step.get("save"), str):
        _saves(checker, step, has_choices)
    checker.dead_end("the conversation ends once the answer is saved")


def _numbered_ids(checker: "StepChecker", step: dict) -> None:
    """Warn about an id that is a number other than its row's: typing that number picks this choice."""
    for field_, noun in (("buttons", "button"), ("options", "option")):
        rows = choices_of(step.get(field_)) if isinstance(step.get(field_), dict | list) else []
        for row, (key, cid, title, _) in enumerate(rows, start=1):
            if cid.isdigit() and int(cid) != row and int(cid) <= len(rows):
                checker.add(
                    (field_, key),
                    "warning",
                    "ask.numbered_option_ids",
                    f"{checker.label}: the {noun} '{title}' has the id {cid} but is number {row} in the "
                    f"list: a customer who types {cid} for the {noun} numbered {cid} gets this one. Use a "
                    f"word as its id, or put the {noun}s in the order of their numbers",
                    key=isinstance(key, str),
                )


def _saves(checker: "StepChecker", step: dict, has_choices: bool) -> None:
    """Whether the answer is kept as a number or as text (for the checks of how later steps use it)."""
    expect = step.get("expect")
    kind = next(iter(expect)) if isinstance(expect, dict) else expect if isinstance(expect, str) else "text"
    if has_choices:
        checker.saves("text", f"the answer to {checker.label} is the chosen button's or option's id, which is text")
    elif checks.get(kind) is not None and checks.get(kind).number:
        checker.saves("number")
    else:
        checker.saves("text", f"the answer to {checker.label} ({kind}) is kept as text")


def _check_expect(checker: "StepChecker", expect: Any) -> None:
    """The check's literal arguments: templates parse, limits read, the low limit below the high one."""
    if not isinstance(expect, dict):
        return
    ((kind, written),) = expect.items()
    entry = checks.get(kind)
    args = entry.arguments(written)
    at = ("expect", kind)

    def where(arg: str) -> tuple:
        return at + (arg,) if isinstance(written, dict) else at

    for arg, code, message in entry.static(args) if entry.static else ():
        checker.add(where(arg), "error", code, f"{checker.label}: {message}")
    limits, read = entry.limits, {}
    for arg, value in args.items():
        if arg in entry.templates and isinstance(value, str) and is_template(value):
            checker.message(where(arg), value, None)
        elif limits is not None and arg in (limits.low, limits.high) and value is not None:
            read[arg] = limits.read(value)
            if read[arg] is None:
                checker.add(
                    where(arg),
                    "error",
                    limits.code,
                    f"{checker.label}: '{arg}: {value}' is not {limits.what} (write e.g. {arg}: "
                    f"{limits.example}, or a template)",
                )
    low, high = (read.get(limits.low), read.get(limits.high)) if limits else (None, None)
    if low is not None and high is not None and limits.empty(low, high):
        checker.add(at, "error", "expect.bad_range", f"{checker.label}: {limits.clash}, so no answer can pass")


def _choice_texts(step: dict) -> list[tuple[tuple, str]]:
    texts = []
    for field_ in ("buttons", "options"):
        choices = step.get(field_)
        items = choices.items() if isinstance(choices, dict) else enumerate(choices or ())
        for key, choice in items:
            if isinstance(choice, str):
                texts.append(((field_, key), choice))
            elif isinstance(choice, dict):
                texts.extend(
                    ((field_, key, part), choice[part])
                    for part in ("title", "description")
                    if isinstance(choice.get(part), str)
                )
    return texts


def _choice_list(description: str, item: str) -> dict:
    """The schema of buttons or options: a mapping id -> item, or a list of items."""
    ref = {"$ref": f"#/$defs/{item}"}
    return {
        "description": description,
        "type": ["object", "array"],
        "if": {"type": "array"},
        "then": {"minItems": 1, "items": ref},
        "else": {"minProperties": 1, "additionalProperties": ref},
    }


KIND = StepKind(
    name="ask",
    key="ask",
    order=20,
    schema=shape(
        "Send a question, wait for the answer, check it and save it.",
        "ask",
        {
            "ask": {"$ref": "#/$defs/text", "description": "The question (Jinja template)."},
            "save": {"$ref": "#/$defs/variable", "description": "The variable that keeps the answer."},
            "expect": {"$ref": "#/$defs/expect"},
            "buttons": {"$ref": "#/$defs/buttons"},
            "options": {"$ref": "#/$defs/options"},
            "list_button": {
                "$ref": "#/$defs/text",
                "description": "The label of the button that opens the options list. Default: Choose.",
            },
            "retry": {
                "$ref": "#/$defs/text",
                "description": "The message sent when the answer does not pass the check.",
            },
            "attempts": {
                "type": "integer",
                "minimum": 1,
                "maximum": 20,
                "description": "How many answers to try before on_fail. Default: 3.",
            },
            "on_fail": {
                "$ref": "#/$defs/step_name",
                "description": "The step to go to when the attempts run out. Default: end politely.",
            },
            "next": {"$ref": "#/$defs/next"},
        },
        dependentRequired={"list_button": ["options"]},
    ),
    defs={
        "buttons": _choice_list("Up to 3 reply buttons: a mapping id -> title, or a list of titles.", "text"),
        "options": _choice_list(
            "Up to 10 list rows: a mapping id -> title (or {title, description}), or a list of titles.", "option"
        ),
        "option": {
            "type": ["string", "object"],
            "if": {"type": "string"},
            "then": {"minLength": 1},
            "else": {
                "required": ["title"],
                "additionalProperties": False,
                "properties": {
                    "id": {"$ref": "#/$defs/text"},
                    "title": {"$ref": "#/$defs/text"},
                    "description": {"$ref": "#/$defs/text"},
                },
            },
        },
    },
    build=build,
    run=run,
    check=check,
    answer=answer,
)
