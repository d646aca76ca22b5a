"""Small builders for runner tests: flows as dataclasses, a fake clock, a chat helper.

Flows are built directly from engine.model so the runner's tests do not depend on the YAML loader.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.context import TurnContext
from engine.messages import Choice, Conversation, Inbound, TurnResult
from engine.model import Expect, Flow, FlowSet, Route, Step
from engine.registry import ActionRegistry
from engine.runner import run_turn
from clock import START, Clock  # noqa: F401  (re-exported for the tests that use this kit)



def routes(next: Any) -> tuple[Route, ...]:
    """'b' -> always b; [("x > 1", "a"), (None, "b")] -> conditions then a default."""
    if next is None:
        return ()
    if isinstance(next, str):
        return (Route(next),)
    return tuple(Route(goto, when) for when, goto in next)


def choices(spec: Any) -> tuple[Choice, ...]:
    if isinstance(spec, dict):
        return tuple(Choice(k, v) for k, v in spec.items())
    return tuple(Choice(t.lower(), t) for t in spec or ())


def step(name: str, kind: str, next: Any = None, expect: Any = None, buttons: Any = None,
         options: Any = None, **kw: Any) -> Step:
    if isinstance(expect, str):
        expect = Expect(expect)
    elif isinstance(expect, tuple):
        expect = Expect(expect[0], expect[1])
    return Step(name=name, kind=kind, next=routes(next), expect=expect, buttons=choices(buttons),
                options=choices(options), **kw)


def flow(name: str, *steps: Step, **kw: Any) -> Flow:
    kw.setdefault("title", name.replace("_", " ").title())
    kw.setdefault("start", steps[0].name)
    return Flow(name=name, steps={s.name: s for s in steps}, **kw)




@dataclass
class Chat:
    """One contact talking to a flow set: keeps the conversation between turns like a host would."""

    flows: FlowSet
    registry: ActionRegistry = field(default_factory=ActionRegistry)
    contact: str = "263771234567"
    clock: Clock = field(default_factory=Clock)
    conversation: Conversation | None = None
    max_steps: int = 50
    services: dict = field(default_factory=dict)
    sent: int = 0
    results: list[TurnResult] = field(default_factory=list)

    @property
    def ctx(self) -> TurnContext:
        return TurnContext(registry=self.registry, clock=self.clock, new_id=lambda: "id-1",
                           max_steps=self.max_steps, services=self.services)

    def send(self, text: str | None = None, kind: str = "text", reply_id: str | None = None) -> TurnResult:
        self.sent += 1
        inbound = Inbound(self.contact, f"wamid.{self.sent}", text, kind, reply_id)
        result = run_turn(self.flows, self.conversation, inbound, self.ctx)
        self.conversation = result.conversation
        self.results.append(result)
        return result

    def say(self, text: str | None = None, **kw: Any) -> list[str]:
        """Send and return the texts of the replies."""
        return [o.text for o in self.send(text, **kw).outbound]


def texts(result: TurnResult) -> list[str]:
    return [o.text for o in result.outbound]


def codes(result: TurnResult) -> list[str]:
    return [e.code for e in result.events]
