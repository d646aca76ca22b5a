"""Branch steps (a step with only `next:`): go to the first route whose `if` condition holds."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..model import Step

if TYPE_CHECKING:
    from ..runner import Turn


def run(turn: "Turn", step: Step) -> str | None:
    """Conditions are Jinja expressions over the saved variables, e.g. `amount | float > 100`."""
    return turn.route(step)
