"""The persisted turn for a message handled as it arrives (`flows chat`, the demo, tests): handle_message,
start_flow and close_conversation.

One turn, whatever the channel (the WhatsApp workers' path, channels/inbox_turns.py, takes the same steps):

1. claim: one statement (its own short transaction) that creates the contact's session row if missing,
   claims it and returns its state — see storage/sessions.py for the claim/lease design; a worker
   claims inside the transaction that picks its inbox row. handle_message first reads the state without
   a claim (sessions.peek) and saves with a compare-and-set, so an uncontended turn without an action is
   one commit; it claims before an action (not before one that only reads: ActionSpec.reads_only), and
   falls back to the claim when the state moved meanwhile. A contact's first message runs the same way
   on a new session's state (sessions.unstored), its save creating the contact and the session;
2. run the engine turn outside any transaction (actions may call O'mari for up to 40 s); actions go
   through `stored_invoke`, so a message handled again returns the stored result instead of acting twice;
3. save (one write transaction; on PostgreSQL one statement): the new session state, the outbound
   messages as outbox rows in order, the inbox row marked processed (handle_message inserts it processed:
   one write, not two), the turn's events, and the claim released.

The worker path (process_inbox) is channels/inbox_turns.py; the pieces every path shares are in
channels/claims.py (claim-or-wait), channels/turn_save.py (the save), channels/action_results.py
(stored_invoke), channels/flowcache.py (load_flowset) and channels/expiry.py (expire_due).
handle_message is for callers that hold the message themselves (`flows chat`, tests, the demo): when it
raises, nothing about the turn was saved and the caller decides; a channel that must not lose a message
stores it in the inbox first and lets process_inbox run it.
"""

from __future__ import annotations

import uuid

from channels.claims import WAIT, claim_contact, give_back, released_on_stop, token
from channels.optimistic import OptimisticTurn
from channels.turn_save import conversation_of, log_tags, persistent, save
from engine.context import TurnContext
from engine.messages import Inbound, TurnResult
from engine.model import FlowSet
from engine.runner import expire, run_turn, start
from storage import inbox, sessions
from storage.db import unavailable


def handle_message(
    inbound: Inbound,
    flows: FlowSet,
    ctx: TurnContext,
    profile_name: str | None = None,
    *,
    wa_id: str | None = None,
    worker_id: str | None = None,
    wait: float = WAIT,
) -> TurnResult:
    """Run one message's turn now, persisted (see the module docstring), and record it in the inbox as
    processed in the same transaction that saves the turn.

    Waits (up to `wait` seconds) while another worker holds the contact. A message id already processed
    changes nothing and returns no outbound messages. Raises sessions.ContactBusy when the wait runs out.
    """
    ctx = persistent(ctx)
    # Read without a token: the optimistic turn makes one only if it claims (see OptimisticTurn).
    peeked = sessions.peek(inbound.contact, inbound.message_id, None, profile_name is not None or wa_id is not None)
    # A contact (or session) not stored yet: its first turn too is tried in one commit, its save creating both.
    unstored = peeked is None
    if unstored:
        peeked = sessions.unstored(None), False
    if peeked[0] is not None:
        claim, handled = peeked
        if handled:
            return TurnResult(conversation=conversation_of(inbound.contact, claim.state), outbound=[])
        optimistic = OptimisticTurn(claim, inbound, worker_id)
        try:
            result = optimistic.run(
                ctx,
                lambda turn_ctx: run_turn(flows, conversation_of(inbound.contact, claim.state), inbound, turn_ctx),
                lambda read, turn: save(
                    read, inbound.contact, turn, ctx, received=inbound, wa_id=wa_id, profile_name=profile_name
                ),
            )
        except Exception as error:
            if optimistic.claimed:
                _given_back_on_outage(optimistic.claim, error)
            raise
        if result is not None:
            return result
    claim_token = token(worker_id)
    claim = None if unstored else sessions.try_claim_by_key(inbound.contact, claim_token, ctx.clock())
    if claim is None:  # a new contact, or one another worker holds
        claim = claim_contact(inbound.contact, claim_token, ctx, wait, wa_id=wa_id, profile_name=profile_name)
    try:
        # Checked under the claim: whoever handled this id before us for this contact has committed.
        if inbox.is_processed(inbound.message_id):
            sessions.release(claim)
            return TurnResult(conversation=conversation_of(inbound.contact, claim.state), outbound=[])
        with released_on_stop(claim), log_tags(inbound.contact, claim):
            result = run_turn(flows, conversation_of(inbound.contact, claim.state), inbound, ctx)
            save(claim, inbound.contact, result, ctx, received=inbound, wa_id=wa_id, profile_name=profile_name)
    except Exception as error:
        _given_back_on_outage(claim, error)
        raise
    return result


def _given_back_on_outage(claim: sessions.Claim, error: Exception) -> None:
    """A claimed turn the database cut short (a restart, a lock held past the wait): the claim is given back
    as soon as the database answers, as the workers do, so the contact's next message (or this one sent
    again) runs at once rather than after the lease. Any other failure keeps the claim for its lease."""
    if unavailable(error):
        give_back(claim)


def start_flow(
    contact: str, flow_name: str, flows: FlowSet, ctx: TurnContext, *, worker_id: str | None = None, wait: float = WAIT
) -> TurnResult:
    """Open a flow for a contact directly (`flows chat FLOW`), persisted like a turn; raises KeyError for
    an unknown flow.
    """
    ctx = persistent(ctx)
    claim = claim_contact(contact, token(worker_id), ctx, wait)
    try:
        result = start(flows, contact, flow_name, ctx, message_id=f"start-{uuid.uuid4().hex}")
    except KeyError:
        sessions.release(claim)
        raise
    save(claim, contact, result, ctx)
    return result


def close_conversation(
    contact: str, flows: FlowSet, ctx: TurnContext, *, worker_id: str | None = None, wait: float = WAIT
) -> TurnResult | None:
    """Expire the contact's active conversation now, through the flow's expiry (its step and message), as
    if it had timed out; None when there was none. For `flows demo`, whose sandbox forgets a payment left
    half-way between runs.
    """
    ctx = persistent(ctx)
    claim = claim_contact(contact, token(worker_id), ctx, wait)
    conversation = conversation_of(contact, claim.state)
    if conversation is None or not conversation.active:
        sessions.release(claim)
        return None
    with released_on_stop(claim):
        result = expire(flows, conversation, ctx)
        save(claim, contact, result, ctx)
    return result
