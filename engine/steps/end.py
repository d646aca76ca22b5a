"""`end` steps: finish the conversation, optionally with a last message."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import StepKind, shape

if TYPE_CHECKING:
    from ..model import Step
    from ..runner import Turn
    from ..validate import StepChecker


def run(turn: "Turn", step: Step) -> None:
    """Send the step's message when it has one; the conversation ends."""
    if step.text:
        turn.send(turn.render(step.text))
    turn.end()
    return None


def check(checker: "StepChecker", name: str, step: dict) -> None:
    if isinstance(step["end"], str):
        checker.message("end", step["end"])


KIND = StepKind(
    name="end",
    key="end",
    order=50,
    schema=shape(
        "End the conversation, with a message (end: Goodbye!) or without (end: true).",
        "end",
        {
            "end": {
                "type": ["string", "boolean"],
                "errorMessage": "must be a message, or true",
                "if": {"type": "boolean"},
                "then": {"const": True, "errorMessage": "must be a message, or true"},
                "else": {"minLength": 1},
            },
        },
    ),
    build=lambda spec: {"text": spec["end"] if isinstance(spec["end"], str) else None},
    run=run,
    check=check,
    leaves=True,
)
