"""The inbox worker path: a worker takes the oldest unprocessed inbox message of a contact nobody holds,
runs that message's turn and saves it (channels/turn_save.py). On SQLite the turn runs on the session as
read, without a claim, and its save is a compare-and-set that also marks the row processed: one commit
(channels/optimistic.py); otherwise, and when that state moved on, the worker claims the contact first.
A failure in the turn or the save (a crash, a bug, a lost claim) leaves the inbox row unprocessed (and a
failed turn's claim in place until its lease runs out); then a worker handles the message again, and its
actions return their stored results.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Callable, Iterator

from channels.claims import give_back, released_on_stop, token
from channels.optimistic import OptimisticTurn
from channels.turn_save import conversation_of, inbound_from_payload, log_tags, outbound_dict, persistent, save
from engine.context import TurnContext
from engine.messages import Outbound
from engine.model import FlowSet
from engine.runner import awaits_secret, run_turn
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


class InHand:
    """The contacts this process's turn threads are handling: an optimistic pick skips them, so threads do
    not all run the same contact's message and lose the compare-and-set to each other. (Across processes
    the compare-and-set keeps it correct; a lost race costs a turn run for nothing.)"""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._contacts: set[int] = set()

    @contextmanager
    def picked(
        self, claim_token: str, now: datetime
    ) -> Iterator[tuple[sessions.Claim | None, inbox.InboxRow, str] | None]:
        """sessions.peek_next skipping the contacts in hand, the one found held for the body's duration."""
        with self._lock:
            found = sessions.peek_next(claim_token, now, frozenset(self._contacts))
            if found is not None:
                self._contacts.add(found[1].contact_id)
        try:
            yield found
        finally:
            if found is not None:
                with self._lock:
                    self._contacts.discard(found[1].contact_id)


IN_HAND = InHand()


def process_inbox(
    ctx: TurnContext,
    flows: FlowSet,
    limit: int = 100,
    worker_id: str | None = None,
    in_hand: InHand = IN_HAND,
    on_more: Callable[[], None] | None = None,
    on_next: Callable[[], None] | None = None,
) -> int:
    """Handle up to `limit` unprocessed inbox messages, each contact's oldest first, skipping contacts
    another worker holds; returns how many were handled. Safe to run in many threads and processes.
    on_more is called when a message was taken and another may be waiting (PostgreSQL's pick says whether
    one was; on SQLite it is assumed), so the caller knows to look again and can wake another thread.
    on_next (PostgreSQL) is called when a claimed turn's save found the contact's next message waiting: it
    was stored while the turn held the contact, so every look meanwhile passed it by; the caller looks again.

    Each message's turn runs first without a claim and saves with a compare-and-set that also marks the
    inbox row processed: one commit (channels/optimistic.py). A new session, a claim that ran out, or a
    state that moved meanwhile takes the claim path instead (_claim_next), as does PostgreSQL, whose
    SKIP LOCKED pick keeps several processes off each other's contacts.
    """
    ctx = persistent(ctx)
    done = 0
    while done < limit:
        claim_token = token(worker_id)
        if not is_postgres():
            with in_hand.picked(claim_token, ctx.clock()) as found:
                if found is None:
                    break
                if on_more is not None:
                    on_more()
                if found[0] is not None and _optimistic(found[0], found[1], found[2], flows, ctx):
                    done += 1
                    continue
        taken = _claim_next(claim_token, ctx.clock(), on_more)
        if taken is None:
            break
        if _claimed_turn(*taken, flows, ctx) and on_next is not None:
            on_next()
        done += 1
    return done


def _optimistic(claim: sessions.Claim, row: inbox.InboxRow, contact: str, flows: FlowSet, ctx: TurnContext) -> bool:
    """The row's turn without a claim, saved in one commit; False when the state moved on (nothing saved).
    A turn that fails takes the claim first, so the row is retried after the lease as on the claim path."""
    inbound = replace(inbound_from_payload(row.payload), contact=contact)
    turn = OptimisticTurn(claim, inbound)
    try:
        result = turn.run(
            ctx,
            lambda turn_ctx: run_turn(flows, conversation_of(contact, claim.state), inbound, turn_ctx),
            lambda read, result: save(read, contact, result, ctx, inbox_id=row.id),
        )
        return result is not None
    except Exception as error:
        if unavailable(error):
            if turn.claimed:
                give_back(claim)
            raise
        if not turn.claimed and not sessions.claim_read(claim, ctx.clock()):
            raise  # the state moved on meanwhile: whoever moved it handles the row, or it is picked again
        _failed(claim, contact, row, error, ctx, flows)
    return True


def _claimed_turn(claim: sessions.Claim, row: inbox.InboxRow, contact: str, flows: FlowSet, ctx: TurnContext) -> bool:
    """The claimed row's turn and save; whether the save said the contact's next message may be waiting."""
    try:
        with released_on_stop(claim), log_tags(contact, claim):
            # The contact's stored key, whichever id (phone or user id) the message named it by.
            inbound = replace(inbound_from_payload(row.payload), contact=contact)
            result = run_turn(flows, conversation_of(contact, claim.state), inbound, ctx)
            return save(claim, contact, result, ctx, inbox_id=row.id)
    except Exception as error:
        if unavailable(error):  # the database went away mid-turn: not the message's fault, not counted
            give_back(claim)
            raise
        _failed(claim, contact, row, error, ctx, flows)
    return True


def _failed(
    claim: sessions.Claim, contact: str, row: inbox.InboxRow, error: Exception, ctx: TurnContext, flows: FlowSet
) -> None:
    """A claimed turn failed: the row stays unprocessed and the claim stays until its lease runs out, so the
    message is tried again later, not in a tight loop — up to MAX_TURN_ATTEMPTS times; re-raises the error
    until then. A message sent to a question whose answer is a secret (an OTP) keeps no copy of the code:
    not in the error noted (which may quote it), nor in the row once it is set aside."""
    secret = awaits_secret(flows, conversation_of(contact, claim.state))
    shown = _without_text(error) if secret else error
    try:
        attempts = inbox.record_error(row.id, str(shown) if secret else f"{type(error).__name__}: {error}")
    except Exception:  # the database itself failed: the original error is the one to report
        log.warning("could not note the error on inbox row %s", row.id)
        raise shown from None
    if attempts < MAX_TURN_ATTEMPTS:
        raise shown from None
    _give_up(claim, contact, row, error, ctx, secret)


class SecretAnswerError(Exception):
    """A turn failed on an answer that is a secret (an OTP): the error's type and where it was raised (its
    traceback), without its text, which may quote the code, so no log line carries it."""


def _without_text(error: Exception) -> SecretAnswerError:
    return SecretAnswerError(type(error).__name__).with_traceback(error.__traceback__)


def _give_up(
    claim: sessions.Claim, contact: str, row: inbox.InboxRow, error: Exception, ctx: TurnContext, secret: bool
) -> None:
    """Set a message that keeps failing aside: processed with its error, the conversation left as it was,
    the customer told, an error event for the operator; a secret answer (an OTP) redacted from the row.
    """
    now = ctx.clock()
    log.error("inbox row %s failed %d times; set aside (%s)", row.id, MAX_TURN_ATTEMPTS, type(error).__name__)
    with write_transaction():
        if secret:
            inbox.redact_answer(row.id)
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


def _claim_next(
    claim_token: str, now: datetime, on_more: Callable[[], None] | None = None
) -> tuple[sessions.Claim, inbox.InboxRow, str] | None:
    """Claim the contact with the oldest unprocessed message nobody holds, and take that message.

    One claim attempt per pick (see _picking): on PostgreSQL a failed `ON CONFLICT DO UPDATE … WHERE` still
    locks the session row, so a transaction that went on to try a second contact could wait on a worker
    that waits on it (a deadlock). Losing the race is rare (the pick already skips claimed contacts), so
    looking again with a fresh pick costs little.
    """
    for _ in range(_PICK_TRIES):
        with _picking(claim_token, now) as picked:
            found, claim = picked
            if not found:
                return None
            if claim is None:
                continue
            if on_more is not None and getattr(picked, "more", True):
                on_more()
            taken = inbox.oldest_pending_with_key(claim.contact_id)
            if taken is None:  # handled by someone else between the pick and the claim
                sessions.release(claim)
                continue
            return claim, taken[0], taken[1]
    return None


@contextmanager
def _picking(claim_token: str, now: datetime) -> Iterator[tuple[bool, sessions.Claim | None]]:
    """One pick: (whether a contact with pending messages was found, its claim or None when another worker
    won it; on PostgreSQL a sessions.Pick, which also says whether more was waiting); the body reads the
    contact's oldest message. The SQLite/PostgreSQL difference, in one place:

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
    picked = sessions.claim_next(claim_token, now)
    claim = picked[1]
    try:
        yield picked
    except Exception as error:
        if claim is not None and unavailable(error):
            give_back(claim)
        raise
