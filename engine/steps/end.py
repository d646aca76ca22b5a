"""`end` steps: finish the conversation, optionally with a last message."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..model import Step

if TYPE_CHECKING:
    from ..runner import Turn


def run(turn: "Turn", step: Step) -> None:
    """Send the step's message when it has one; the conversation ends."""
    if step.text:
        turn.send(turn.render(step.text))
    turn.end()
    return None
