"""The inbox worker path: a worker claims the contact with the oldest unprocessed inbox message nobody
holds, runs that message's turn and saves it (channels/turn_save.py). A failure in the turn or the save (a
crash, a bug, a lost claim) leaves the inbox row unprocessed and the claim in place until its lease runs
out; then a worker handles the message again, and its actions return their stored results.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Iterator

from channels.claims import give_back, released_on_stop, token
from channels.turn_save import conversation_of, inbound_from_payload, log_tags, outbound_dict, persistent, save
from engine.context import TurnContext
from engine.messages import Outbound
from engine.model import FlowSet
from engine.runner import run_turn
from storage import events, inbox, outbox, sessions
from storage.db import is_postgres, unavailable, write_transaction
from storage.events import EventRecord

log = logging.getLogger("convoflow.turns")

# How many times a worker looks again for a contact after losing a race for one, before it rests.
_PICK_TRIES = 5
# A message whose turn failed this many times (the database working, the turn raising each time) is set
# aside with an apology, so one broken message does not hold its contact's later messages up for ever. A
# database outage never reaches the cap: the failure cannot be counted while the database is down.
MAX_TURN_ATTEMPTS = 3
GAVE_UP_REPLY = (
    "Sorry, something went wrong on our side and I could not handle your last message. Send *menu* to start again."
)


def process_inbox(ctx: TurnContext, flows: FlowSet, limit: int = 100, worker_id: str | None = None) -> int:
    """Handle up to `limit` unprocessed inbox messages, each contact's oldest first, skipping contacts
    another worker holds; returns how many were handled. Safe to run in many threads and processes.
    """
    ctx = persistent(ctx)
    done = 0
    while done < limit:
        taken = _claim_next(token(worker_id), ctx.clock())
        if taken is None:
            break
        claim, row, contact = taken
        try:
            with released_on_stop(claim), log_tags(contact, claim):
                # The contact's stored key, whichever id (phone or user id) the message named it by.
                inbound = replace(inbound_from_payload(row.payload), contact=contact)
                result = run_turn(flows, conversation_of(contact, claim.state), inbound, ctx)
                save(claim, contact, result, ctx, inbox_id=row.id)
        except Exception as error:
            if unavailable(error):  # the database went away mid-turn: not the message's fault, not counted
                give_back(claim)
                raise
            # The row stays unprocessed and the claim stays until its lease runs out: the message is
            # tried again later, not in a tight loop — up to MAX_TURN_ATTEMPTS times.
            try:
                attempts = inbox.record_error(row.id, f"{type(error).__name__}: {error}")
            except Exception:  # the database itself failed: the original error is the one to report
                log.warning("could not note the error on inbox row %s", row.id)
                raise error
            if attempts < MAX_TURN_ATTEMPTS:
                raise
            _give_up(claim, contact, row, error, ctx)
        done += 1
    return done


def _give_up(claim: sessions.Claim, contact: str, row: inbox.InboxRow, error: Exception, ctx: TurnContext) -> None:
    """Set a message that keeps failing aside: processed with its error, the conversation left as it was,
    the customer told, an error event for the operator.
    """
    now = ctx.clock()
    log.error("inbox row %s failed %d times; set aside (%s)", row.id, MAX_TURN_ATTEMPTS, type(error).__name__)
    with write_transaction():
        inbox.mark_processed(row.id, now, error=f"gave up after {MAX_TURN_ATTEMPTS} attempts: {type(error).__name__}")
        sessions.release(claim)
        outbox.enqueue(claim.contact_id, [outbound_dict(Outbound(to=contact, text=GAVE_UP_REPLY))], now)
        events.record(
            EventRecord(
                now,
                "inbox.gave_up",
                contact,
                row.channel_message_id,
                {"level": "error", "attempts": MAX_TURN_ATTEMPTS, "error": type(error).__name__},
            )
        )


def _claim_next(claim_token: str, now: datetime) -> tuple[sessions.Claim, inbox.InboxRow, str] | None:
    """Claim the contact with the oldest unprocessed message nobody holds, and take that message.

    One claim attempt per pick (see _picking): on PostgreSQL a failed `ON CONFLICT DO UPDATE … WHERE` still
    locks the session row, so a transaction that went on to try a second contact could wait on a worker
    that waits on it (a deadlock). Losing the race is rare (the pick already skips claimed contacts), so
    looking again with a fresh pick costs little.
    """
    for _ in range(_PICK_TRIES):
        with _picking(claim_token, now) as (found, claim):
            if not found:
                return None
            if claim is None:
                continue
            taken = inbox.oldest_pending_with_key(claim.contact_id)
            if taken is None:  # handled by someone else between the pick and the claim
                sessions.release(claim)
                continue
            return claim, taken[0], taken[1]
    return None


@contextmanager
def _picking(claim_token: str, now: datetime) -> Iterator[tuple[bool, sessions.Claim | None]]:
    """One pick: (whether a contact with pending messages was found, its claim or None when another worker
    won it); the body reads the contact's oldest message. The SQLite/PostgreSQL difference, in one place:

    - SQLite: the pick, the claim and the read in one write transaction (`BEGIN IMMEDIATE`);
    - PostgreSQL: the pick and the claim in one statement, its own transaction (sessions.claim_next); the
      read after that committed — a fresh snapshot, so a message the claim's previous holder handled is not
      taken again. A claim committed before the database went away is given back rather than held.
    """
    if not is_postgres():
        with write_transaction():
            candidates = inbox.pending_contacts(now, limit=1)
            yield (True, sessions.try_claim(candidates[0], claim_token, now)) if candidates else (False, None)
        return
    found, claim = sessions.claim_next(claim_token, now)
    try:
        yield found, claim
    except Exception as error:
        if claim is not None and unavailable(error):
            give_back(claim)
        raise
