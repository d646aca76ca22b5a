"""What publishing flows does to a live system, said before it happens (`flows load [--dry-run]`).

    plans = [plan_load(name, text) for name, (file, text) in report.sources.items()]

A plan compares the file with the flow's live (latest stored) version step by step, and counts the
active conversations waiting on a step that changes or disappears. Those conversations stay on the
version they started with (storage/flowstore.py), so a load never breaks them; the count tells the
author how many customers are mid-way through what they changed. Reads only.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.flow_diff import StepChanges, compare_steps, steps_of
from storage import flowstore

NEW, CHANGED, UNCHANGED = "new", "changed", "unchanged"


@dataclass(frozen=True)
class LoadPlan:
    """What loading one flow's text would do, against the live version."""

    name: str
    status: str  # new | changed | unchanged
    live: int | None  # the live (latest) stored version now, None for a new flow
    changes: StepChanges
    waiting: dict[tuple[int, str], int]  # (version, step) -> active conversations there, touched steps only

    @property
    def affected(self) -> int:
        return sum(self.waiting.values())


def plan_load(name: str, text: str) -> LoadPlan:
    """What storing `text` as flow `name` would change; reads only."""
    live = flowstore.live_source(name)
    if live is None:
        return LoadPlan(name, NEW, None, StepChanges(added=tuple(steps_of(text))), {})
    live_version, live_text = live
    if flowstore.content_hash(live_text) == flowstore.content_hash(text):
        return LoadPlan(name, UNCHANGED, live_version, StepChanges(), {})
    new_steps = steps_of(text)
    touched: dict[int, set[str]] = {}
    waiting: dict[tuple[int, str], int] = {}
    for (version, step), n in sorted(flowstore.waiting_steps(name).items()):
        if version not in touched:
            old_text = live_text if version == live_version else _source_or_empty(name, version)
            touched[version] = compare_steps(steps_of(old_text), new_steps).touched
        if step in touched[version]:
            waiting[(version, step)] = n
    return LoadPlan(name, CHANGED, live_version, compare_steps(steps_of(live_text), new_steps), waiting)


def _source_or_empty(name: str, version: int) -> str:
    try:
        return flowstore.source(name, version)
    except flowstore.FlowVersion.DoesNotExist:
        return ""


def describe(plan: LoadPlan) -> list[str]:
    """The plan's detail lines for a person (indented under the flow's own line): steps and customers."""
    lines: list[str] = []
    changes = plan.changes
    if plan.status == CHANGED:
        lines += [f"    + step {name} (new)" for name in changes.added]
        lines += [f"    - step {name} (removed)" for name in changes.removed]
        for name, diff in changes.changed.items():
            lines.append(f"    ~ step {name}")
            lines += [f"        {line}" for line in diff]
        if not (changes.added or changes.removed or changes.changed):
            lines.append("    (no step changed: only the flow's settings, comments or layout)")
    if plan.affected:
        where = ", ".join(f"{step} (v{version}): {n}" for (version, step), n in sorted(plan.waiting.items()))
        people = "conversation waits" if plan.affected == 1 else "conversations wait"
        lines.append(
            f"    {plan.affected} active {people} on a step that changes or disappears: {where}. "
            "They finish on the version they started with."
        )
    return lines


__all__ = ["LoadPlan", "plan_load", "describe", "NEW", "CHANGED", "UNCHANGED"]
