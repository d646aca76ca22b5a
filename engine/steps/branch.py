"""Branch steps (a step with only `next:`): go to the first route whose `if` condition holds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import StepKind, shape

if TYPE_CHECKING:
    from ..model import Step
    from ..runner import Turn


def run(turn: "Turn", step: Step) -> str | None:
    """Conditions are Jinja expressions over the saved variables, e.g. `amount | float > 100`."""
    return turn.route(step)


KIND = StepKind(
    name="branch",
    key=None,
    order=60,
    schema=shape(
        "Choose the next step by conditions, without sending anything.", "next", {"next": {"$ref": "#/$defs/next"}}
    ),
    build=lambda spec: {},
    run=run,
)
