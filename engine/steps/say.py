"""`say` steps: send a message (a template), then go on."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..model import Step

if TYPE_CHECKING:
    from ..runner import Turn


def run(turn: "Turn", step: Step) -> str | None:
    """Send the rendered text (with buttons or options when the step has them) and route onwards."""
    text = turn.render(step.text or "")
    if step.buttons or step.options:
        turn.say_choices(step, text)
    else:
        turn.send(text)
    return turn.route(step)
