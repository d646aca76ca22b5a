"""What changed between two versions of a flow, step by step (for `flows load --dry-run`).

Steps are compared as the data the author wrote (comments and layout do not count), and a changed step
is shown as a few lines of unified diff of that step alone, so a reader sees `- ask: …` / `+ ask: …`
rather than the whole file.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import yaml

MAX_DIFF_LINES = 12  # per changed step: enough to see the change, short enough to read a load report


@dataclass(frozen=True)
class StepChanges:
    """Steps added, removed and changed (name -> short diff lines) from one version to the next."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: dict[str, list[str]] = field(default_factory=dict)

    @property
    def touched(self) -> set[str]:
        """Steps a conversation waiting on them would find different or gone."""
        return set(self.removed) | set(self.changed)


def steps_of(text: str) -> dict[str, Any]:
    """The `steps:` mapping of a flow's YAML text ({} when the text is not a flow)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    steps = data.get("steps") if isinstance(data, dict) else None
    return steps if isinstance(steps, dict) else {}


def _lines(step: Any) -> list[str]:
    return yaml.safe_dump(step, allow_unicode=True, sort_keys=False, width=100).splitlines()


def _short_diff(old: Any, new: Any) -> list[str]:
    diff = [
        line
        for line in difflib.unified_diff(_lines(old), _lines(new), lineterm="", n=0)
        if not line.startswith(("---", "+++", "@@"))
    ]
    if len(diff) > MAX_DIFF_LINES:
        diff = diff[:MAX_DIFF_LINES] + [f"… {len(diff) - MAX_DIFF_LINES} more lines"]
    return diff


def compare_steps(old: dict[str, Any], new: dict[str, Any]) -> StepChanges:
    """How the steps mapping `new` differs from `old`."""
    return StepChanges(
        added=tuple(name for name in new if name not in old),
        removed=tuple(name for name in old if name not in new),
        changed={name: _short_diff(old[name], new[name]) for name in old if name in new and old[name] != new[name]},
    )


__all__ = ["StepChanges", "compare_steps", "steps_of"]
