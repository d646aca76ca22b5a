"""Step kinds: one module each in this package, holding its shape, its load, its checks and how it runs.

Each module defines `KIND = StepKind(...)`; the package registers every module's KIND on import, so a new
kind is a new module here (plus its tests and its docs). The flow schema, the loader, `flows validate`
and the runner all ask `kinds` instead of naming kinds themselves:

    kinds.of(step_dict)      -> (kind or None, every kind key the step carries)
    kinds.get("ask").run     -> how an ask step runs
    kinds.keys()             -> ("say", "ask", "action", "flow", "end"): the keys that name a kind
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field

from ..named import Registry
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    from ..messages import Inbound
    from ..model import Step
    from ..runner import Turn
    from ..validate import StepChecker


@dataclass(frozen=True)
class StepKind:
    """Everything convoflow knows about one kind of step.

    key: the field that marks a step as this kind (`say: Hello`); None for the branch, which has no key
    and is told by carrying only `next`. schema: the JSON Schema of the step (its fields), which the flow
    schema file shows editors and `flows validate` checks. defs: schema definitions the fields refer to.
    build: the checked YAML mapping -> Step field values. check: the semantic checks of a sound step.
    run: walk the step, returning the next step's name or None to stop. answer: for a kind that waits
    for the user, take their message. leaves: the walk leaves the flow here (an end, a hand-over), so
    the step is never part of an endless loop; may_stop(step, registry): whether the walk can stop at
    this step for a reason of its own (an action outcome nothing routes).
    """

    name: str
    key: str | None
    order: int
    schema: Mapping[str, Any]
    build: Callable[[dict], dict]
    run: Callable[["Turn", "Step"], str | None]
    check: Callable[["StepChecker", str, dict], None] | None = None
    answer: Callable[["Turn", "Step", "Inbound"], str | None] | None = None
    leaves: bool = False
    may_stop: Callable[[dict, Any], bool] | None = None
    defs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # waits: whether a conversation can wait at this step for the user's answer (the kind takes one).
        # Worked out with the kind, not a property: the runner asks at every answer, and a property read
        # costs 0.9k instructions against an attribute's 0.3k. Set as Flow sets its lookups.
        object.__setattr__(self, "waits", self.answer is not None)

    def fields(self) -> tuple[str, ...]:
        return tuple(self.schema.get("properties", {}))


class StepKinds(Registry[StepKind]):
    """The step kinds by name, in their `order` (the order docs and messages list them)."""

    noun = "step kind"

    def __init__(self) -> None:
        super().__init__(order_by=lambda kind: kind.order)
        # get(name): the kind named name, KeyError for none (every step of a loaded flow has one). The
        # dict's own __getitem__, bound as Registry binds its `get`: the runner asks at every step it walks.
        self.get: Callable[[str], StepKind] = self._entries.__getitem__

    def keys(self) -> tuple[str, ...]:
        """The fields that name a kind, e.g. ('say', 'ask', 'action', 'flow', 'end')."""
        return tuple(k.key for k in self if k.key)

    def keyless(self) -> StepKind:
        """The kind of a step that carries no kind key, only `next` (the branch)."""
        return next(k for k in self if k.key is None)

    def of(self, step: Mapping[str, Any]) -> tuple[str | None, list[str]]:
        """The kind a step's keys say it is, and every kind key it carries (more than one is a mistake)."""
        found = [key for key in self.keys() if key in step]
        if len(found) == 1:
            return next(k.name for k in self if k.key == found[0]), found
        if not found and "next" in step:
            return self.keyless().name, found
        return None, found

    def docs_table(self) -> str:
        """The table of step kinds in docs/writing-flows.md (schemas/generate.py writes it)."""
        rows = [
            f"| {f'`{k.key}`' if k.key else 'only `next`'} | {k.schema.get('description', '')} | "
            f"{', '.join(f'`{f}`' for f in k.fields() if f != (k.key or 'next')) or '—'} |"
            for k in self
        ]
        return "\n".join(["| the step carries | what it does | its other fields |", "|---|---|---|", *rows])


def shape(description: str, key: str, properties: Mapping[str, Any], **more: Any) -> dict:
    """The JSON Schema of a step kind: a mapping that must carry key and may carry only properties."""
    return {
        "description": description,
        "type": "object",
        "required": [key],
        "additionalProperties": False,
        **more,
        "properties": dict(properties),
    }


def discover(into: StepKinds) -> StepKinds:
    """Register the KIND of every module of this package."""
    for module in pkgutil.iter_modules(__path__):
        into.register(importlib.import_module(f"{__name__}.{module.name}").KIND)
    return into


kinds = discover(StepKinds())

__all__ = ["StepKind", "StepKinds", "kinds", "discover", "shape"]
