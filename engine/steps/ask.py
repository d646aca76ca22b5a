"""`ask` steps: send a question, wait, check the answer, save it, go on.

An answer to a step with buttons or options is the choice's id: a button/list reply carries it as
reply_id; typed text may be the id, the title in any case or the choice's number (1-based). Otherwise
the step's `expect` check (default: any non-empty text) turns the answer into the value to save.

A failed answer re-prompts with the step's `retry` (rendered), or the check's own problem in plain words,
re-sending the buttons or options. A message with no text (image, audio, sticker…) is a failed answer too:
the user is told what we need instead of being silently ignored. After `attempts` failures the
conversation goes to `on_fail`, or ends politely.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..inputs import TEMPLATE_ARGUMENTS, CheckArgsError, check
from ..lookups import flow_lookups, normalise
from ..messages import Inbound
from ..model import Step

if TYPE_CHECKING:
    from ..runner import Turn

GAVE_UP = "Sorry, I could not understand your answer, so I have stopped here. Send *{menu}* to start again."
PICK_BUTTON = "Please tap one of the buttons, or send its number."
PICK_OPTION = "Please choose one of the options, or send its number."


def run(turn: "Turn", step: Step) -> None:
    """Send the question (with its buttons or options) and wait for the answer."""
    if turn.closing:
        # A cancel or expiry step is the conversation's last act: nobody would be there to answer.
        turn.event("warning", "ask.while_closing", f"step '{step.name}' asks a question while the conversation closes")
        return None
    text = turn.render(step.text or "")
    if step.buttons or step.options:
        turn.say_choices(step, text)
    else:
        turn.send(text)
    turn.wait(step)
    return None


def answer(turn: "Turn", step: Step, inbound: Inbound) -> str | None:
    """Check inbound as the answer to step; returns the step to walk next, or None (re-prompted or ended)."""
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
    text = turn.render(step.retry) if step.retry else problem
    if step.buttons or step.options:
        turn.say_choices(step, text)
    else:
        turn.send(text)
    turn.wait(step, attempts)
    return None


def _read(turn: "Turn", step: Step, inbound: Inbound) -> tuple[Any, str | None]:
    """(value, None) for a usable answer, (None, problem) otherwise."""
    if step.buttons or step.options:
        lookups = flow_lookups(turn.flow)
        if inbound.kind in ("button", "list") and inbound.reply_id in lookups.choice_ids[step.name]:
            return inbound.reply_id, None
        # A typed answer, or a button from an older message whose title still names a choice here.
        chosen = lookups.choices[step.name].get(normalise(inbound.text)) if inbound.kind != "other" else None
        if chosen is not None:
            return chosen, None
        return None, PICK_BUTTON if step.buttons else PICK_OPTION
    text = inbound.text if inbound.kind != "other" and inbound.text is not None else ""
    if step.expect is None:
        result = check("text", text)
    else:
        args = {k: turn.render_value(v) if k in TEMPLATE_ARGUMENTS else v for k, v in step.expect.args.items()}
        try:
            result = check(step.expect.kind, text, args)
        except CheckArgsError as e:
            raise turn.abort("expect.invalid", str(e)) from None
    return result.value, result.problem
