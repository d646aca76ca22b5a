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

from typing import Callable

from channels.claims import released_on_stop
from channels.turn_save import log_tags
from engine.context import TurnContext
from engine.messages import Inbound, TurnResult
from engine.registry import ActionContext, ActionSpec, Result
from storage import inbox, sessions


class StateMoved(BaseException):
    """An optimistic turn reached an action but the session changed since it was read: the turn is run
    again under a claim. A BaseException so that the engine's guard around an action does not report it."""


class OptimisticTurn:
    """One turn on a peeked session (`claim.read_as` set); `claimed` tells whether it took the claim (it
    reached an action), which a caller handling an error needs to know."""

    def __init__(self, claim: sessions.Claim, inbound: Inbound) -> None:
        self.claim = claim
        self.inbound = inbound
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
        claim, inbound = self.claim, self.inbound
        try:
            with released_on_stop(claim), log_tags(inbound.contact, claim):
                result = turn(_with_invoke(ctx, self._claim_then(ctx.invoke)))
                save_turn(claim, result)
            return result
        except StateMoved:
            sessions.release(claim)
            return None
        except sessions.ClaimLost:
            if self.claimed:
                raise
            return None

    def _claim_then(self, invoke: Callable[[ActionSpec, dict, ActionContext], Result]):
        def claim_then_invoke(spec: ActionSpec, params: dict, actx: ActionContext) -> Result:
            if not self.claimed and not spec.reads_only:  # a read on a moved state is harmless: the CAS fails
                if not sessions.claim_read(self.claim, actx.clock()):
                    raise StateMoved
                self.claimed = True
                if inbox.is_processed(self.inbound.message_id):  # handled before our claim: leave it
                    raise StateMoved
            return invoke(spec, params, actx)

        return claim_then_invoke


def _with_invoke(ctx: TurnContext, invoke: Callable[[ActionSpec, dict, ActionContext], Result]) -> TurnContext:
    """dataclasses.replace(ctx, invoke=invoke) at a sixth of its cost (5 µs of every turn): the frozen
    TurnContext copied field for field, which is all replace does for a class without __post_init__."""
    copy = object.__new__(TurnContext)
    copy.__dict__.update(ctx.__dict__, invoke=invoke)
    return copy
