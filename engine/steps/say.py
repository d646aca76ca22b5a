"""`say` steps: send a message (a template), then go on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import StepKind, shape

if TYPE_CHECKING:
    from ..model import Step
    from ..runner import Turn
    from ..validate import StepChecker


def run(turn: "Turn", step: Step) -> str | None:
    """Send the rendered text (with buttons or options when the step has them) and route onwards."""
    turn.say_choices(step, turn.render(step.text or ""))
    return turn.route(step)


def check(checker: "StepChecker", name: str, step: dict) -> None:
    checker.message("say", step["say"])
    checker.dead_end("the conversation ends after this message")


KIND = StepKind(
    name="say",
    key="say",
    order=10,
    schema=shape(
        "Send a message, then go on.",
        "say",
        {
            "say": {"$ref": "#/$defs/text", "description": "The message (Jinja template)."},
            "next": {"$ref": "#/$defs/next"},
        },
    ),
    build=lambda spec: {"text": spec["say"]},
    run=run,
    check=check,
)
