"""`flow` steps: hand the conversation over to another flow (the menu hands over to the payment flow)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..model import Step

if TYPE_CHECKING:
    from ..runner import Turn


def run(turn: "Turn", step: Step) -> str:
    """Switch to the target flow's latest version at its start step; saved variables come along."""
    target = turn.flows.latest(step.target_flow or "")
    if target is None:
        raise turn.abort("flow.unknown", f"there is no flow '{step.target_flow}' to hand over to")
    turn.flow = target
    return target.start
