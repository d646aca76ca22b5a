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
from contextlib import contextmanager, suppress
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import Callable, Iterator

from channels.claims import give_back, released_on_stop, token
from channels.optimistic import OptimisticTurn
from channels.turn_save import conversation_of, inbound_from_payload, log_tags, outbound_dict, persistent, save
from engine.context import TurnContext
from engine.messages import Inbound, Outbound, TurnResult
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
# On SQLite a turn thread takes the waiting messages of up to this many contacts at once and saves their
# turns in one write transaction (_optimistic_group): one commit, one pick and one wake-up of the sender
# for the lot instead of one each.
GROUP = 8
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
        with self.picked_group(lambda: claim_token, now, 1) as found:
            yield found[0] if found else None

    @contextmanager
    def picked_group(
        self, tokens: Callable[[], str], now: datetime, contacts: int
    ) -> Iterator[list[tuple[sessions.Claim | None, inbox.InboxRow, str]]]:
        """sessions.peek_waiting skipping the contacts in hand, those found held for the body's duration."""
        with self._lock:
            found = sessions.peek_waiting(tokens, now, frozenset(self._contacts), contacts)
            self._contacts.update(row.contact_id for _, row, _ in found)
        try:
            yield found
        finally:
            if found:
                with self._lock:
                    self._contacts.difference_update(row.contact_id for _, row, _ in found)


IN_HAND = InHand()


def group_size() -> int:
    """How many messages a turn thread asks process_inbox for at once: GROUP on SQLite, where they are saved
    together; one on PostgreSQL, whose pick claims one contact and says whether more is waiting."""
    return 1 if is_postgres() else GROUP


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
    one was; on SQLite it is assumed when the pick found as many contacts as it asked for), so the caller
    knows to look again and can wake another thread. on_next (PostgreSQL) is called when a claimed turn's
    save found the contact's next message waiting: it was stored while the turn held the contact, so every
    look meanwhile passed it by; the caller looks again.

    Each message's turn runs first without a claim and saves with a compare-and-set that also marks the
    inbox row processed: one commit (channels/optimistic.py); on SQLite the messages of up to GROUP
    contacts are picked at once and their turns saved in one commit (_optimistic_group). A new session, a
    claim that ran out, or a state that moved meanwhile takes the claim path instead (_claim_next), as does
    PostgreSQL, whose SKIP LOCKED pick keeps several processes off each other's contacts.
    """
    ctx = persistent(ctx)
    done = 0
    while done < limit:
        if not is_postgres():
            tokens = partial(token, worker_id)
            with in_hand.picked_group(tokens, ctx.clock(), min(GROUP, limit - done)) as group:
                if not group:
                    break
                if on_more is not None and len(group) == min(GROUP, limit - done):  # a full group: more may wait
                    on_more()
                if len(group) > 1:
                    handled = _optimistic_group(group, flows, ctx)
                else:
                    claim, row, contact = group[0]
                    handled = int(claim is not None and _optimistic(claim, row, contact, flows, ctx))
                done += handled
                if handled == len(group):
                    continue
        taken = _claim_next(token(worker_id), ctx.clock(), on_more)
        if taken is None:
            break
        if _claimed_turn(*taken, flows, ctx) and on_next is not None:
            on_next()
        done += 1
    return done


def _inbound(row: inbox.InboxRow, contact: str) -> Inbound:
    """The row's message from the contact's stored key, whichever id (phone or user id) the message named it
    by. The webhook writes that key into the payload, so the usual row needs no copy (dataclasses.replace
    is a few µs a message)."""
    inbound = inbound_from_payload(row.payload)
    return inbound if inbound.contact == contact else replace(inbound, contact=contact)


def _optimistic(claim: sessions.Claim, row: inbox.InboxRow, contact: str, flows: FlowSet, ctx: TurnContext) -> bool:
    """The row's turn without a claim, saved in one commit; False when the state moved on (nothing saved).
    A turn that fails takes the claim first, so the row is retried after the lease as on the claim path."""
    inbound = _inbound(row, contact)
    turn = OptimisticTurn(claim, inbound)
    try:
        result = turn.run(
            ctx,
            lambda turn_ctx: run_turn(flows, conversation_of(contact, claim.state), inbound, turn_ctx),
            lambda read, result: save(read, contact, result, ctx, inbox_id=row.id),
        )
        return result is not None
    except Exception as error:
        _optimistic_failed(turn, row, error, flows, ctx)
    return True


def _optimistic_failed(
    turn: OptimisticTurn, row: inbox.InboxRow, error: Exception, flows: FlowSet, ctx: TurnContext
) -> None:
    """An optimistic turn or its save raised `error`: an outage gives back the claim an action took and is
    raised; otherwise the turn takes the claim (unless it holds it) and fails as a claimed turn does."""
    claim, contact = turn.claim, turn.inbound.contact
    if unavailable(error):
        if turn.claimed:
            give_back(claim)
        raise error
    if not turn.claimed and not sessions.claim_read(claim, ctx.clock()):
        raise error  # the state moved on meanwhile: whoever moved it handles the row, or it is picked again
    _failed(claim, contact, row, error, ctx, flows)


def _optimistic_group(
    group: list[tuple[sessions.Claim | None, inbox.InboxRow, str]], flows: FlowSet, ctx: TurnContext
) -> int:
    """Several contacts' messages, each one's turn run without a claim as _optimistic runs it, and the turns
    that reached no action acting outside saved together: one write transaction, each save its own
    savepoint (a nested write_transaction), so a save that fails or finds its state moved on leaves the
    others. A turn that took the claim for an action saved alone at once, as on its own. Nothing is
    acknowledged before the commit: a crash or a failed commit leaves every row of the group unprocessed,
    and its turn runs again. Returns how many messages were handled (saved, or set aside after failing);
    the rest (a new session, a state that moved on) are left for the claim path or the next pick.
    """
    handled = 0
    ready: list[tuple[OptimisticTurn, inbox.InboxRow, TurnResult]] = []
    failed: list[tuple[OptimisticTurn, inbox.InboxRow, Exception]] = []
    for claim, row, contact in group:
        if claim is None:  # a new session, or a claim that ran out: the claim path
            continue
        inbound = _inbound(row, contact)
        turn = OptimisticTurn(claim, inbound)
        together: list[TurnResult] = []
        try:
            result = turn.run(
                ctx, partial(_turn_of, flows, claim, inbound), partial(_save_or_keep, turn, row, ctx, together)
            )
        except Exception as error:
            failed.append((turn, row, error))
            continue
        if result is None:  # the state moved on: nothing saved
            continue
        if together:
            ready.append((turn, row, together[0]))
        else:
            handled += 1
    try:
        handled += _save_together(ready, ctx, failed)
    except BaseException:
        for turn, row, error in failed:  # claims taken for actions are given back, errors noted where possible
            with suppress(Exception):
                _optimistic_failed(turn, row, error, flows, ctx)
        raise
    first: Exception | None = None
    for turn, row, error in failed:
        try:
            _optimistic_failed(turn, row, error, flows, ctx)
            handled += 1
        except Exception as raised:
            first = first or raised
    if first is not None:
        raise first
    return handled


def _turn_of(flows: FlowSet, claim: sessions.Claim, inbound: Inbound, turn_ctx: TurnContext) -> TurnResult:
    return run_turn(flows, conversation_of(inbound.contact, claim.state), inbound, turn_ctx)


def _save_or_keep(
    turn: OptimisticTurn,
    row: inbox.InboxRow,
    ctx: TurnContext,
    together: list[TurnResult],
    read: sessions.Claim,
    result: TurnResult,
) -> None:
    """A group's save of one turn: alone at once when the turn took the claim for an action, else kept to
    be saved with the others."""
    if turn.claimed:
        save(read, turn.inbound.contact, result, ctx, inbox_id=row.id)
    else:
        together.append(result)


def _save_together(
    ready: list[tuple[OptimisticTurn, inbox.InboxRow, TurnResult]],
    ctx: TurnContext,
    failed: list[tuple[OptimisticTurn, inbox.InboxRow, Exception]],
) -> int:
    """The kept turns' saves in one write transaction, a savepoint each; returns how many were saved once it
    committed. A save whose state moved on (ClaimLost) is dropped, its row picked again; one that fails
    otherwise goes to `failed`; an outage ends the transaction, nothing saved."""
    if not ready:
        return 0
    saved = 0
    with write_transaction():
        for turn, row, result in ready:
            try:
                with log_tags(turn.inbound.contact, turn.claim):
                    save(turn.claim, turn.inbound.contact, result, ctx, inbox_id=row.id)
            except sessions.ClaimLost:
                continue
            except Exception as error:
                if unavailable(error):
                    raise
                failed.append((turn, row, error))
                continue
            saved += 1
    return saved


def _claimed_turn(claim: sessions.Claim, row: inbox.InboxRow, contact: str, flows: FlowSet, ctx: TurnContext) -> bool:
    """The claimed row's turn and save; whether the save said the contact's next message may be waiting."""
    try:
        with released_on_stop(claim), log_tags(contact, claim):
            inbound = _inbound(row, contact)
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
            # PostgreSQL's pick hands over the message it took when it is the contact's oldest.
            taken = getattr(picked, "taken", None) or inbox.oldest_pending_with_key(claim.contact_id)
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
    - PostgreSQL: the pick and the claim in one statement, its own transaction (sessions.claim_next), which
      also hands over the message it locked when that is the contact's oldest (its `taken`); otherwise the
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
