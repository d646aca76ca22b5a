"""`flow` steps: hand the conversation over to another flow (the menu hands over to the payment flow)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import StepKind, shape

if TYPE_CHECKING:
    from ..model import Step
    from ..runner import Turn
    from ..validate import StepChecker


def run(turn: "Turn", step: Step) -> str:
    """Switch to the target flow's latest version at its start step; saved variables come along."""
    target = turn.flows.latest(step.target_flow or "")
    if target is None:
        raise turn.abort("flow.unknown", f"there is no flow '{step.target_flow}' to hand over to")
    turn.flow = target
    return target.start


def check(checker: "StepChecker", name: str, step: dict) -> None:
    """The other flow may be in another file: check_set looks for it once every file is read."""
    checker.handover(step["flow"])


KIND = StepKind(
    name="flow",
    key="flow",
    order=40,
    schema=shape(
        "Hand the conversation over to another flow (its first step). Saved variables are kept.",
        "flow",
        {"flow": {"$ref": "#/$defs/flow_name"}},
    ),
    build=lambda spec: {"target_flow": spec["flow"]},
    run=run,
    check=check,
    leaves=True,
)
