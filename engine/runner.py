"""The turn runner: one inbound message in, the new conversation state and the replies out.

    result = run_turn(flows, conversation, inbound, ctx)   # a message arrived
    result = expire(flows, conversation, ctx)              # nobody answered in time
    result = start(flows, contact, "omari_payment", ctx)   # open a flow directly (`flows chat FLOW`)

Pure: no I/O except through ctx (clock, ids, the action invoker). A turn never raises for a bad flow or
a bad message: a template error, an action that crashes or a loop ends the conversation politely and
adds an error Event for the logs.

How a message is handled:
- No active conversation (none, ended, expired, or past expires_at): a message that matches a flow's
  trigger (or the menu word) starts that flow with fresh vars; any other message gets the flow set's
  default reply. A conversation found past its expires_at first runs its expiry (step and message).
- Waiting at an ask step: a typed cancel word cancels (the flow's cancel step, then its cancel message),
  the menu word hands over to the menu flow. An answer that is one of the step's own buttons or options
  wins over both words. Another flow's trigger does not jump: "pay" may be a real answer. Anything else
  is the answer, checked by the step; a message that cannot be an answer (image, sticker, location, …)
  gets a hint of what to send and uses no attempt.
- Then the steps are walked from there until an ask step (status active), an end (ended) or an error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .context import TurnContext
from .inputs import checks
from .lookups import normalise
from .messages import ACTIVE, ENDED, EXPIRED, ActionCall, Choice, Conversation, Event, Inbound, Outbound, TurnResult
from .model import Flow, FlowSet, Step
from .steps import StepKind, kinds
from .templates import evaluate, render

NO_MENU = "There is no *{menu}* here. Please answer the question, or send *{cancel}* to stop.\n\n{question}"
SORRY = "Sorry, something went wrong on our side. Send *{menu}* to start again."

# One module per step kind (engine/steps); each `run(turn, step)` returns the next step's name, or None.


class Abort(Exception):
    """Ends the turn politely: the user gets SORRY, the logs get an error Event with this code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Turn:
    """The working state of one turn. Steps read and change it; run_turn freezes it into a TurnResult."""

    __slots__ = (
        "flows",
        "ctx",
        "contact",
        "message_id",
        "now",
        "flow",
        "vars",
        "step",
        "attempts",
        "status",
        "started_at",
        "outbound",
        "actions",
        "events",
        "calls",
        "trail",
        "closing",
    )

    def __init__(self, flows: FlowSet, ctx: TurnContext, contact: str, message_id: str, now: datetime) -> None:
        self.flows = flows
        self.ctx = ctx
        self.contact = contact
        self.message_id = message_id
        self.now = now
        self.flow: Flow | None = None
        self.vars: dict[str, Any] = {}
        self.step = ""
        self.attempts = 0
        self.status = ACTIVE
        self.started_at: datetime | None = None
        self.outbound: list[Outbound] = []
        self.actions: list[ActionCall] = []
        self.events: list[Event] = []
        self.calls: dict[str, int] = {}  # action calls per step in this turn: the n of the idempotency key
        self.trail: list[str] = []  # steps walked, to name the loop when the step limit is hit
        self.closing = False  # walking a cancel or expiry step: an ask step cannot wait for an answer

    # ── state ──────────────────────────────────────────────────────────────────────────────────────

    def resume(self, flow: Flow, conversation: Conversation) -> None:
        self.flow = flow
        self.vars = dict(conversation.vars)
        self.vars["contact"] = self.contact
        self.step = conversation.step
        self.attempts = conversation.attempts
        self.status = conversation.status
        self.started_at = conversation.started_at

    def begin(self, flow: Flow) -> str:
        """Start flow afresh (new vars); returns the step to walk from."""
        self.flow = flow
        self.vars = {"contact": self.contact}
        self.step = flow.start
        self.attempts = 0
        self.status = ACTIVE
        self.started_at = self.now
        return flow.start

    def wait(self, step: Step, attempts: int = 0) -> None:
        """Stop the walk at an ask step, waiting for its answer."""
        self.step = step.name
        self.attempts = attempts
        self.status = ACTIVE

    def end(self, status: str = ENDED) -> None:
        self.status = status

    def event(self, level: str, code: str, message: str) -> None:
        self.events.append(Event(level, code, message))

    def abort(self, code: str, message: str) -> Abort:
        return Abort(code, f"flow '{self.flow.name if self.flow else '?'}' step '{self.step}': {message}")

    @property
    def menu_word(self) -> str:
        return self.flow.menu_word if self.flow else "menu"

    # ── templates and messages ─────────────────────────────────────────────────────────────────────

    def render(self, source: str) -> str:
        """Render an author's template over vars; any failure aborts the turn with a template.* event."""
        try:
            return render(source, self.vars)
        except Exception as e:  # the sandbox, an undefined name, a filter fed the wrong type: all the flow's fault
            raise self._template_abort(e, source) from None

    def render_value(self, value: Any) -> Any:
        """Render every string inside a parameter value (strings in lists and mappings too)."""
        if isinstance(value, str):
            return self.render(value) if "{" in value else value
        if isinstance(value, list | tuple):
            return [self.render_value(v) for v in value]
        if isinstance(value, dict):
            return {k: self.render_value(v) for k, v in value.items()}
        return value

    def evaluate(self, expression: str) -> Any:
        try:
            return evaluate(expression, self.vars)
        except Exception as e:  # as in render: a condition that cannot be evaluated is the flow's fault
            raise self._template_abort(e, expression) from None

    def _template_abort(self, error: Exception, source: str) -> Abort:
        from jinja2 import UndefinedError

        if isinstance(error, UndefinedError):
            return self.abort("template.undefined", f"{error.message} in {source!r}")
        return self.abort("template.error", f"{type(error).__name__}: {error} in {source!r}")

    def send(
        self,
        text: str,
        buttons: tuple[Choice, ...] = (),
        options: tuple[Choice, ...] = (),
        list_button: str | None = None,
    ) -> None:
        self.outbound.append(Outbound(self.contact, text, buttons, options, list_button))

    def say_choices(self, step: Step, text: str) -> None:
        """Send text with the step's buttons or options (titles may be templates), if it has any."""
        if not step.buttons and not step.options:
            self.send(text)
            return
        buttons = tuple(self._render_choice(c) for c in step.buttons)
        options = tuple(self._render_choice(c) for c in step.options)
        list_button = self.render(step.list_button) if step.list_button else ("Choose" if options else None)
        self.send(text, buttons, options, list_button)

    def _render_choice(self, c: Choice) -> Choice:
        if "{" not in c.title and not (c.description and "{" in c.description):
            return c
        return Choice(c.id, self.render(c.title), self.render(c.description) if c.description else None)

    # ── walking ────────────────────────────────────────────────────────────────────────────────────

    def route(self, step: Step) -> str | None:
        """The step after this one: the first `next` route whose condition holds. No `next` at all ends
        the conversation; conditions that all fail with no default abort (step.no_route).
        """
        if not step.next:
            self.end()
            return None
        for r in step.next:
            if r.when is None or self.evaluate(r.when):
                return r.goto
        raise self.abort("step.no_route", "no condition in `next` holds and there is no default")

    def walk(self, name: str | None) -> None:
        """Run steps from name until one stops (an ask waiting, an end) or the step limit is hit."""
        limit = self.ctx.max_steps
        steps = self.flow.steps
        while name is not None:
            if len(self.trail) >= limit:
                raise self.abort("turn.step_limit", f"more than {limit} steps in one turn: {_loop(self.trail)}")
            step = steps.get(name)
            if step is None:
                raise self.abort("step.unknown", f"there is no step '{name}'")
            self.step = name
            self.trail.append(name)
            name = kinds.get(step.kind).run(self, step)  # asked each time: a kind registered later runs too
            steps = self.flow.steps  # a `flow` step switches flows

    def closing_walk(self, name: str | None) -> None:
        """Walk a cancel or expiry step: it may call actions and send messages, but cannot ask."""
        self.closing = True
        self.walk(name)

    def sorry(self, error: Abort) -> None:
        self.event("error", error.code, error.message)
        self.send(SORRY.format(menu=self.menu_word))
        self.end()

    # ── result ─────────────────────────────────────────────────────────────────────────────────────

    def conversation(self) -> Conversation:
        flow = self.flow
        expires_at = None
        if self.status == ACTIVE and flow.expire_after is not None:
            expires_at = self.now + flow.expire_after
        # Positional, in Conversation's field order: every turn builds one, and keywords cost a third more.
        return Conversation(
            self.contact,
            flow.name,
            flow.version,
            self.step,
            self.vars,
            self.attempts,
            self.status,
            self.started_at,
            self.now,
            expires_at,
        )

    def result(self, conversation: Conversation | None = None, secret_answer: bool = False) -> TurnResult:
        state = self.conversation() if self.flow is not None else conversation
        return TurnResult(state, self.outbound, self.actions, self.events, secret_answer, self.now)


def _loop(trail: list[str]) -> str:
    """Name the loop at the end of trail: 'a → b → a', or the last steps when nothing repeats."""
    last = trail[-1]
    for i in range(len(trail) - 2, -1, -1):
        if trail[i] == last:
            return "the loop goes " + " → ".join(trail[i:])
    return "the last steps were " + " → ".join(trail[-5:])


# ── the public entry points ────────────────────────────────────────────────────────────────────────


def run_turn(flows: FlowSet, conversation: Conversation | None, inbound: Inbound, ctx: TurnContext) -> TurnResult:
    """Handle one inbound message for conversation (None when the contact has none)."""
    now = ctx.clock()
    turn = Turn(flows, ctx, inbound.contact, inbound.message_id, now)
    waiting = conversation is not None and conversation.status == ACTIVE
    if waiting and conversation.expires_at is not None and conversation.expires_at <= now:
        # Expired but not yet swept: close it properly (its expiry step may cancel a payment) first.
        conversation = _expire_into(turn, conversation)
        turn.flow = None
        waiting = False
    if waiting:
        flow = flows.get(conversation.flow, conversation.version)
        step = flow.steps.get(conversation.step) if flow is not None else None
        kind = kinds.get(step.kind) if step is not None else None  # asked once: it takes the answer below
        if kind is None or not kind.waits:
            turn.event(
                "warning",
                "conversation.lost",
                f"conversation at flow '{conversation.flow}' step '{conversation.step}' cannot go on: "
                "the flow changed under it",
            )
            conversation = conversation.evolve(status=ENDED, updated_at=now)
            waiting = False
    try:
        if waiting:
            turn.resume(flow, conversation)
            turn.walk(_answer(turn, step, kind, inbound))
        else:
            target = _triggered(flows, inbound)
            if target is None:
                turn.send(flows.default_reply)
                return turn.result(conversation)
            turn.walk(turn.begin(target))
    except Abort as error:
        turn.sorry(error)
    # Tell the store the message was a one-time code (it redacts it with the turn's save: issue 10.6).
    return turn.result(conversation, secret_answer=waiting and _asks_secret(step))


def awaits_secret(flows: FlowSet, conversation: Conversation | None) -> bool:
    """Whether the conversation waits at a question whose answer is a secret (`expect: otp`): a message
    sent to it is kept out of storage — redacted with the turn's save, or when it is set aside unhandled."""
    if conversation is None or conversation.status != ACTIVE:
        return False
    flow = flows.get(conversation.flow, conversation.version)
    return flow is not None and _asks_secret(flow.steps.get(conversation.step))


def _asks_secret(step: Step | None) -> bool:
    if step is None or step.expect is None:
        return False
    check = checks.get(step.expect.kind)
    return check is not None and check.secret


def _answer(turn: Turn, step: Step, kind: StepKind, inbound: Inbound) -> str | None:
    """Handle the message while waiting at step (of kind): cancel, menu, or the answer; returns where to walk next."""
    if inbound.kind == "text" and inbound.text:
        typed = normalise(inbound.text)
        lookups = turn.flow.lookups
        if typed not in lookups.choices.get(step.name, ()):
            if typed in lookups.cancel_words:
                return _cancel(turn)
            if typed == lookups.menu_word:
                return _menu(turn, step)
    return kind.answer(turn, step, inbound)


def _menu(turn: Turn, step: Step) -> str | None:
    """The menu word at a question: the menu flow (or the flow it triggers); with neither, say so and wait on."""
    menu = turn.flows.latest(turn.flows.menu_flow) if turn.flows.menu_flow else None
    flow = menu or turn.flows.lookups.triggers.get(turn.flow.lookups.menu_word)
    if flow is not None:
        return turn.begin(flow)
    turn.say_choices(
        step,
        NO_MENU.format(
            menu=turn.menu_word,
            cancel=(turn.flow.cancel_words or ("cancel",))[0],
            question=turn.render(step.text or ""),
        ),
    )
    turn.wait(step, turn.attempts)
    return None


def _cancel(turn: Turn) -> None:
    flow = turn.flow
    if flow.cancel_step:
        turn.closing_walk(flow.cancel_step)
    if flow.cancel_message:
        turn.send(turn.render(flow.cancel_message))
    turn.end()
    return None


def _triggered(flows: FlowSet, inbound: Inbound) -> Flow | None:
    if inbound.kind == "other" or not inbound.text:
        return None
    return flows.lookups.triggers.get(normalise(inbound.text))


def start(flows: FlowSet, contact: str, flow_name: str, ctx: TurnContext, message_id: str = "start") -> TurnResult:
    """Open flow_name at its start step for contact, as if one of its triggers had been sent.

    Raises KeyError when the flow set has no such flow (the caller names it to the user).
    """
    flow = flows.latest(flow_name)
    if flow is None:
        raise KeyError(flow_name)
    turn = Turn(flows, ctx, contact, message_id, ctx.clock())
    try:
        turn.walk(turn.begin(flow))
    except Abort as error:
        turn.sorry(error)
    return turn.result()


def expire(flows: FlowSet, conversation: Conversation, ctx: TurnContext) -> TurnResult:
    """Close a conversation nobody answered in time: its expiry step, its expiry message, status EXPIRED.

    Actions get the idempotency key f"{contact}:expire-{expires_at}:{step}:{n}", so expiring the same
    conversation twice (two sweepers, or a sweep racing a late message) acts once.
    """
    if conversation.status != ACTIVE:
        return TurnResult(conversation, [])
    turn = Turn(flows, ctx, conversation.contact, "", ctx.clock())
    closed = _expire_into(turn, conversation)
    return TurnResult(closed, turn.outbound, turn.actions, turn.events, at=turn.now)


def _expire_into(turn: Turn, conversation: Conversation) -> Conversation:
    """Run conversation's expiry inside turn; returns the expired conversation."""
    flow = turn.flows.get(conversation.flow, conversation.version)
    if flow is None:
        turn.event("warning", "conversation.lost", f"flow '{conversation.flow}' no longer exists")
        return conversation.evolve(status=EXPIRED, updated_at=turn.now, expires_at=None)
    stamp = (conversation.expires_at or conversation.updated_at or turn.now).isoformat()
    message_id, turn.message_id = turn.message_id, f"expire-{stamp}"
    turn.resume(flow, conversation)
    try:
        if flow.expire_step:
            turn.closing_walk(flow.expire_step)
        if flow.expire_message:
            turn.send(turn.render(flow.expire_message))
    except Abort as error:
        turn.event("error", error.code, error.message)
    turn.end(EXPIRED)
    closed = turn.conversation()
    turn.message_id = message_id
    turn.closing = False
    turn.calls.clear()
    turn.trail.clear()
    return closed


__all__ = ["run_turn", "expire", "start", "Turn", "Abort", "SORRY"]
