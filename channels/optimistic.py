"""The optimistic turn: run a turn on a session read without a claim and save it in one commit if the state
is still as read (see storage/sessions.py, peek and the compare-and-set save). Shared by handle_message
(channels/turns.py) and the inbox workers (channels/inbox_turns.py).

A turn that reaches an action claims the state it read first (sessions.claim_read) and checks the message
was not handled meanwhile, so an action never runs on a state that moved on; from then on it is a claimed
turn. An action that only reads (ActionSpec.reads_only) runs without the claim: the save's compare-and-set
still refuses a moved state. When the state moved before that, nothing is saved and the caller runs the turn again under a claim
(the engine is pure: running it twice changes nothing outside).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Callable

from channels.claims import STOPS, token
from channels.turn_save import log_tags
from engine.context import TurnContext
from engine.messages import Inbound, TurnResult
from engine.registry import ActionContext, ActionSpec, Result
from storage import inbox, sessions


class StateMoved(BaseException):
    """An optimistic turn reached an action but the session changed since it was read: the turn is run
    again under a claim. A BaseException so that the engine's guard around an action does not report it."""


# The optimistic turn running in this context (thread), which an action must claim for first (see
# _claiming); None outside one, and inside a turn run under a claim from an optimistic turn's engine.
_running: ContextVar[OptimisticTurn | None] = ContextVar("convoflow_optimistic_turn", default=None)


class OptimisticTurn:
    """One turn on a peeked session (`claim.read_as` set); `claimed` tells whether it took the claim (it
    reached an action), which a caller handling an error needs to know, and `claim` is then the claim taken.

    A read whose token is None (handle_message's) gets one only when it claims, for `worker_id`: most turns
    never claim, and making a token costs about 2k instructions; its save compares `"claimed_by" = NULL`,
    which no session matches, so only the compare-and-set on the state read can save it."""

    def __init__(self, claim: sessions.Claim, inbound: Inbound, worker_id: str | None = None) -> None:
        self.claim = claim
        self.inbound = inbound
        self.worker_id = worker_id
        self.claimed = False

    def run(
        self,
        ctx: TurnContext,
        turn: Callable[[TurnContext], TurnResult],
        save_turn: Callable[[sessions.Claim, TurnResult], None],
    ) -> TurnResult | None:
        """`turn(ctx)` (the engine's turn on the read state), saved by `save_turn(claim, result)` (the caller's
        save, a compare-and-set on the read state); None when the state moved on (nothing saved: run the
        turn under a claim). A lost claim after the turn claimed raises ClaimLost as usual; other errors
        propagate (see `claimed`)."""
        running = _running.set(self)
        try:
            with log_tags(self.inbound.contact, self.claim):
                result = turn(_claiming(ctx))
                save_turn(self.claim, result)  # the claim taken before an action, if the turn took one
            return result
        except StateMoved:
            sessions.release(self.claim)
            return None
        except STOPS:  # released_on_stop's rule, in the try this turn has anyway (its with cost 3.8k instructions)
            sessions.release(self.claim)
            raise
        except sessions.ClaimLost:
            if self.claimed:
                raise
            return None
        finally:
            _running.reset(running)

    def before_action(self, spec: ActionSpec, actx: ActionContext) -> None:
        """Claim the session read before the turn's first action that writes (raise StateMoved when it moved
        on, or the message was handled meanwhile)."""
        if not self.claimed and not spec.reads_only:  # a read on a moved state is harmless: the CAS fails
            if self.claim.token is None:
                self.claim = self.claim._replace(token=token(self.worker_id))
            if not sessions.claim_read(self.claim, actx.clock()):
                raise StateMoved
            self.claimed = True
            if inbox.is_processed(self.inbound.message_id):  # handled before our claim: leave it
                raise StateMoved


# _claiming's memo: the last host context and its claiming copy, replaced whole (so a thread never reads one
# context's copy for another's).
_last_claiming: list[tuple[TurnContext | None, TurnContext | None]] = [(None, None)]


def _claiming(ctx: TurnContext) -> TurnContext:
    """ctx with an invoke that first lets the optimistic turn running in this context claim (before_action),
    made once per host context rather than copied for every turn (the copy and its closure cost about 8.5k
    instructions a turn). A turn run under a claim gets the host's ctx itself, so nothing claims for it."""
    known, claiming = _last_claiming[0]
    if known is not ctx:
        invoke = ctx.invoke

        def claim_then_invoke(spec: ActionSpec, params: dict, actx: ActionContext) -> Result:
            running = _running.get()
            if running is not None:
                running.before_action(spec, actx)
            return invoke(spec, params, actx)

        claiming = _with_invoke(ctx, claim_then_invoke)
        _last_claiming[0] = (ctx, claiming)
    return claiming


def _with_invoke(ctx: TurnContext, invoke: Callable[[ActionSpec, dict, ActionContext], Result]) -> TurnContext:
    """dataclasses.replace(ctx, invoke=invoke) at a sixth of its cost (5 µs of every turn): the frozen
    TurnContext copied field for field, which is all replace does for a class without __post_init__."""
    copy = object.__new__(TurnContext)
    copy.__dict__.update(ctx.__dict__, invoke=invoke)
    return copy
