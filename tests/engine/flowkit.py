"""Small builders for runner tests: flows as dataclasses, a fake clock, a chat helper.

Flows are built directly from engine.model so the runner's tests do not depend on the YAML loader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.context import TurnContext
from engine.messages import Choice, Conversation, Inbound, TurnResult
from engine.model import Expect, Flow, FlowSet, Route, Step
from engine.registry import ActionRegistry, Result
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


def step(
    name: str, kind: str, next: Any = None, expect: Any = None, buttons: Any = None, options: Any = None, **kw: Any
) -> Step:
    if isinstance(expect, str):
        expect = Expect(expect)
    elif isinstance(expect, tuple):
        expect = Expect(expect[0], expect[1])
    return Step(
        name=name, kind=kind, next=routes(next), expect=expect, buttons=choices(buttons), options=choices(options), **kw
    )


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
        return TurnContext(
            registry=self.registry,
            clock=self.clock,
            new_id=lambda: "id-1",
            max_steps=self.max_steps,
            services=self.services,
        )

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


def make_registry(calls: list | None = None) -> ActionRegistry:
    """A fresh registry with booking.lookup (BK-1 is found) and pay.void, each call appended to calls."""
    reg = ActionRegistry()
    calls = calls if calls is not None else []

    @reg.action(
        "booking.lookup",
        params={"type": "object", "properties": {"reference": {"type": "string"}}, "required": ["reference"]},
        outcomes=["found", "not_found"],
    )
    def lookup(ctx, params):
        calls.append(("lookup", params, ctx.idempotency_key))
        if params["reference"].upper() == "BK-1":
            return Result("found", {"reference": "BK-1", "balance_due": "300.00"})
        return Result("not_found")

    @reg.action("pay.void", outcomes=["ok"])
    def void(ctx, params):
        calls.append(("void", params, ctx.idempotency_key))
        return Result("ok")

    return reg


def payment_flows(**kw) -> FlowSet:
    """A menu handing over to a payment flow that looks the booking up, asks an amount and a wallet."""
    menu = flow(
        "main_menu",
        step(
            "welcome",
            "ask",
            text="Hello! What would you like to do?",
            buttons={"pay": "Make a payment"},
            save="choice",
            next="to_pay",
        ),
        step("to_pay", "flow", target_flow="payment"),
        triggers=("hi", "hello 👋"),
    )
    payment = flow(
        "payment",
        step("ask_reference", "ask", text="Your booking reference?", save="reference", next="find"),
        step(
            "find",
            "action",
            action="booking.lookup",
            params={"reference": "{{ reference }}"},
            save="booking",
            on={"found": "ask_amount", "not_found": "no_booking"},
        ),
        step("no_booking", "end", text="I could not find {{ reference }}."),
        step(
            "ask_amount",
            "ask",
            text="Balance due: {{ booking.balance_due | money }}. How much?",
            expect=("amount", {"min": "0.01", "max": "{{ booking.balance_due }}"}),
            save="amount",
            next="ask_channel",
        ),
        step(
            "ask_channel",
            "ask",
            text="Choose how you will pay.",
            buttons={"ecocash": "Ecocash", "onemoney": "OneMoney", "zimswitch": "ZimSwitch"},
            save="channel",
            next="big_or_small",
        ),
        step("big_or_small", "branch", next=[("amount | float >= 100", "big"), (None, "small")]),
        step("big", "end", text="Paying {{ amount | money }} by {{ channel }}: a big one."),
        step("small", "end", text="Paying {{ amount | money }} by {{ channel }}."),
        step("void", "action", action="pay.void", next="voided"),
        step("voided", "say", text="(payment voided)"),
        triggers=("pay", "make payment"),
        cancel_step="void",
        **kw,
    )
    return FlowSet.of([menu, payment])
