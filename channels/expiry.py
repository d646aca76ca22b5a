"""Expiry: conversations idle past their expires_at are closed through their flow's expiry (its step and
message), under the same claim a turn takes; the housekeeping thread of the workers runs expire_due.
"""

from __future__ import annotations

from datetime import datetime

from channels.claims import token
from channels.turn_save import conversation_of, log_tags, persistent, save
from engine.context import TurnContext
from engine.model import FlowSet
from engine.runner import expire
from storage import sessions


# How often the sweep also gives an expiry check to sessions a process of an older release saved without
# one (storage.sessions.backfill_expiry_checks: a scan of the active sessions), while a rolling upgrade
# runs both releases. Such a conversation's expiry can come this much late; the older processes' own sweeps
# (by expires_at) expire it on time while they run.
BACKFILL_EVERY = 600.0  # seconds


def expire_due(
    ctx: TurnContext, flows: FlowSet, now: datetime | None = None, limit: int = 100, backfill: bool = False
) -> int:
    """Expire active conversations past their expires_at (through the same claim), queue the expiry
    messages; returns how many expired. `backfill`: first give an expiry check to the sessions an older
    release saved (BACKFILL_EVERY).
    """
    ctx = persistent(ctx)
    now = now or ctx.clock()
    if backfill:
        sessions.backfill_expiry_checks()
    done = 0
    for _session_id, contact_id, contact in sessions.due_for_expiry(now, limit):
        claim = sessions.try_claim(contact_id, token(None), now)
        if claim is None:
            continue
        conversation = conversation_of(contact, claim.state)
        if (
            conversation is None
            or not conversation.active
            or conversation.expires_at is None
            or conversation.expires_at > now
        ):
            sessions.release(claim)  # a turn moved it on between the query and the claim
            continue
        with log_tags(contact, claim):  # its lines (an O'mari void's) tagged as a turn's
            save(claim, contact, expire(flows, conversation, ctx), ctx)
        done += 1
    return done
