"""The persisted turn path every channel uses (WhatsApp workers, `flows chat`, the demo).

One turn, whatever the channel:

1. claim: one statement (its own short transaction) that creates the contact's session row if missing,
   claims it and returns its state — see storage/sessions.py for the claim/lease design; a worker
   claims inside the transaction that picks its inbox row. handle_message first reads the state without
   a claim (sessions.peek) and saves with a compare-and-set, so an uncontended turn without an action is
   one commit; it claims before an action, and falls back to the claim when the state moved meanwhile;
2. run the engine turn outside any transaction (actions may call O'mari for up to 40 s); actions go
   through `stored_invoke`, so a message handled again returns the stored result instead of acting twice;
3. save (one write transaction; on PostgreSQL one statement): the new session state, the outbound
   messages as outbox rows in order, the inbox row marked processed (handle_message inserts it processed:
   one write, not two), the turn's events, and the claim released.

For a worker (process_inbox), a failure in step 2 or 3 (a crash, a bug, a lost claim) leaves the inbox row
unprocessed and the claim in place until its lease runs out; then a worker handles the message again.
handle_message is for callers that hold the message themselves (`flows chat`, tests, the demo): when it
raises, nothing about the turn was saved and the caller decides; a channel that must not lose a message
stores it in the inbox first and lets process_inbox run it.
"""
from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
import uuid
import weakref
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any, Iterator

from engine.context import TurnContext, call_handler
from engine.messages import ACTIVE, Choice, Conversation, Inbound, Outbound, TurnResult
from engine.model import Flow, FlowSet
from engine.registry import ActionContext, ActionRegistry, ActionSpec, Result
from engine.registry import registry as default_registry
from engine.runner import expire, run_turn, start
from storage import events, flowstore, inbox, logs, outbox, sessions
from storage.contacts import contact_id as find_contact
from storage.contacts import touch, touch_params
from storage.db import execute, is_postgres, unavailable, write_transaction
from storage.events import EventRecord
from storage.models import ActionResult
from storage.text import without

log = logging.getLogger("convoflow.turns")

# How long handle_message waits for another worker to release a contact before giving up: a little more
# than the lease, so a claim left by a crashed process is taken over rather than reported busy.
WAIT = sessions.LEASE.total_seconds() + 10

# How many times a worker looks again for a contact after losing a race for one, before it rests.
_PICK_TRIES = 5
# A message whose turn failed this many times (the database working, the turn raising each time) is set
# aside with an apology, so one broken message does not hold its contact's later messages up for ever. A
# database outage never reaches the cap: the failure cannot be counted while the database is down.
MAX_TURN_ATTEMPTS = 3
# How long a turn thread whose turn a database outage cut short keeps trying to give its claim back.
GIVE_BACK_PATIENCE = 20.0
GAVE_UP_REPLY = ("Sorry, something went wrong on our side and I could not handle your last message. "
                 "Send *menu* to start again.")

# Parsed flows per action registry (a flow is checked against the actions it may call), then by
# (name, version, content hash). Weak keys: a test's throwaway registry takes its cache with it.
_parsed: weakref.WeakKeyDictionary[ActionRegistry, dict[tuple[str, int, str], Flow]] = weakref.WeakKeyDictionary()
_parsed_lock = threading.Lock()


class FlowsNotLoaded(RuntimeError):
    """Stored flows that no longer load (an action they use is gone); the message lists the problems."""


# ── flows ────────────────────────────────────────────────────────────────────────────────────────────


def load_flowset(registry: ActionRegistry | None = None) -> FlowSet:
    """The flows to run: the latest stored version of each flow plus every older version an active
    conversation is still on. Parsed flows are cached by registry and (name, version, content hash), so
    reloading (the workers do it periodically) parses only what changed.

    A stored version that no longer loads is left out with a logged warning (its conversations then
    continue on the latest version); when the latest version of a flow fails, FlowsNotLoaded is raised.
    """
    from engine.load import load_text  # the loader pulls in jsonschema and the flow schema: only when needed

    registry = registry if registry is not None else default_registry
    with _parsed_lock:
        parsed = _parsed.setdefault(registry, {})
    flows: list[Flow] = []
    failed: list[str] = []
    latest = {r.name: r.version for r in flowstore.latest_versions()}
    for row in flowstore.versions_in_use():
        key = (row.name, row.version, row.content_hash)
        flow = parsed.get(key)
        if flow is None:
            flow, problems = load_text(flowstore.source(row.name, row.version), row.file, registry=registry,
                                       version=row.version)
            errors = [p for p in problems if p.severity == "error"]
            if flow is None or errors:
                message = f"flow '{row.name}' version {row.version} no longer loads: " + "; ".join(map(str, errors))
                log.warning(message)
                if latest.get(row.name) == row.version:
                    failed.append(message)
                continue
            with _parsed_lock:
                parsed[key] = flow
        flows.append(flow)
    if failed:
        raise FlowsNotLoaded("\n".join(failed))
    return FlowSet.of(flows)


# ── actions ──────────────────────────────────────────────────────────────────────────────────────────


def stored_invoke(spec: ActionSpec, params: dict, actx: ActionContext) -> Result:
    """TurnContext.invoke for persisted turns: the stored result when this idempotency key ran before,
    otherwise run the handler and store its result at once (committed before the turn goes on, so a
    crash later in the turn cannot make the action run twice).
    """
    key = actx.idempotency_key
    row = execute('SELECT "outcome", "data" FROM "action_result" WHERE "idempotency_key" = ?', (key,)).fetchone()
    if row is not None:
        return Result(row[0], json.loads(row[1]))
    result = call_handler(spec, params, actx)
    execute(
        'INSERT INTO "action_result" ("idempotency_key", "action", "outcome", "data", "created_at") '
        'VALUES (?, ?, ?, ?, ?) ON CONFLICT ("idempotency_key") DO NOTHING',
        (key, spec.name, result.outcome, json.dumps(result.data, separators=(",", ":"), default=str), actx.clock()))
    return result


def stored_result(idempotency_key: str) -> Result | None:
    """The stored result of an action call (for tests and operators)."""
    row = ActionResult.get_or_none(ActionResult.idempotency_key == idempotency_key)
    return Result(row.outcome, json.loads(row.data)) if row else None


# ── messages in and out ─────────────────────────────────────────────────────────────────────────────


def inbound_payload(inbound: Inbound) -> dict[str, Any]:
    """The inbox row's payload for a message: the Inbound's fields (channels may add "raw")."""
    return {
        "contact": inbound.contact,
        "message_id": inbound.message_id,
        "text": inbound.text,
        "kind": inbound.kind,
        "reply_id": inbound.reply_id,
        "timestamp": inbound.timestamp.isoformat() if inbound.timestamp else None,
    }


def inbound_from_payload(payload: dict[str, Any]) -> Inbound:
    stamp = payload.get("timestamp")
    return Inbound(
        contact=payload["contact"],
        message_id=payload["message_id"],
        text=payload.get("text"),
        kind=payload.get("kind") or "text",
        reply_id=payload.get("reply_id"),
        timestamp=datetime.fromisoformat(stamp) if stamp else None,
    )


def _conversation(contact: str, state: dict[str, Any]) -> Conversation | None:
    if state["flow"] is None or state["step"] is None:
        return None
    return Conversation(contact=contact, flow=state["flow"], version=state["flow_version"] or 0, step=state["step"],
                        vars=state["vars"], attempts=state["attempts"] or 0, status=state["status"],
                        started_at=state["started_at"], updated_at=state["updated_at"],
                        expires_at=state["expires_at"])


def _state(conversation: Conversation | None, before: dict[str, Any]) -> dict[str, Any]:
    if conversation is None:
        return before
    return {
        "flow": conversation.flow,
        "flow_version": conversation.version,
        "step": conversation.step,
        "vars": conversation.vars,
        "attempts": conversation.attempts,
        "status": conversation.status,
        "started_at": conversation.started_at,
        "updated_at": conversation.updated_at,
        "expires_at": conversation.expires_at if conversation.status == ACTIVE else None,
    }


def _outbound_dict(message: Outbound) -> dict[str, Any]:
    """Outbound.as_dict() without dataclasses.asdict's deep copy (a tenth of the cost, on every turn)."""
    def choices(items: tuple[Choice, ...]) -> list[dict[str, Any]]:
        return [{"id": c.id, "title": c.title, "description": c.description} for c in items]

    return {"to": message.to, "text": message.text, "buttons": choices(message.buttons),
            "options": choices(message.options), "list_button": message.list_button}


def _token(worker_id: str | None) -> str:
    who = worker_id or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
    return f"{who}:{os.urandom(6).hex()}"


def _persistent(ctx: TurnContext) -> TurnContext:
    """Persisted turns store action results: swap the default invoker for stored_invoke."""
    return replace(ctx, invoke=stored_invoke) if ctx.invoke is call_handler else ctx


def _save(claim: sessions.Claim, contact: str, result: TurnResult, ctx: TurnContext, *, inbox_id: int | None = None,
          received: Inbound | None = None, wa_id: str | None = None, profile_name: str | None = None) -> None:
    """The turn's one write transaction: state + claim released, outbox rows, the inbox row processed
    (inbox_id: a worker's row; received: a message handled as it arrived), events.
    """
    now = ctx.clock()
    if (inbox_id is not None or received is not None) and is_postgres() and not result.secret_answer:
        # On PostgreSQL the same writes in one statement and one round trip.
        sessions.save_and_release(claim, _state(result.conversation, claim.state), sessions.Processed(
            inbox_id, now,
            [outbox.encode(_outbound_dict(m)) for m in result.outbound],
            [(now, e.code, contact, None, json.dumps({"level": e.level, "message": e.message}, default=str))
             for e in result.events],
            received and (inbox.processed_params(claim.contact_id, received.message_id, inbound_payload(received),
                                                 received.timestamp or now, now),
                          touch_params(claim.contact_id, now, wa_id=wa_id, profile_name=profile_name))))
        return
    with write_transaction():
        # Inbox row before session row: the order a worker's pick takes its locks in (PostgreSQL), so the
        # two never wait on each other in a cycle.
        if inbox_id is not None:
            inbox.mark_processed(inbox_id, now)
        if received is not None:
            if not inbox.add_processed(claim.contact_id, received.message_id, inbound_payload(received),
                                       received.timestamp or now, now) and claim.read_as is not None:
                raise sessions.ClaimLost(f"message {received.message_id} was handled while this turn ran")
            touch(claim.contact_id, now, wa_id=wa_id, profile_name=profile_name)
        if result.secret_answer:  # a one-time code: out of the stored message and the conversation (10.6)
            result = _without_secret(result, inbox.redact_answer(inbox_id, received and received.message_id))
        sessions.save_and_release(claim, _state(result.conversation, claim.state))
        outbox.enqueue(claim.contact_id, [_outbound_dict(message) for message in result.outbound], now)
        events.record_many(
            EventRecord(now, e.code, contact, None, {"level": e.level, "message": e.message}) for e in result.events)


def _without_secret(result: TurnResult, secrets: frozenset[str]) -> TurnResult:
    """The turn with the code out of the conversation's variables (one still holds it when the action that
    replaces it failed first, e.g. a crash in omari.confirm)."""
    if not secrets or result.conversation is None:
        return result
    return replace(result, conversation=replace(result.conversation, vars=without(result.conversation.vars, secrets)))


# ── the turn ─────────────────────────────────────────────────────────────────────────────────────────


def handle_message(inbound: Inbound, flows: FlowSet, ctx: TurnContext, profile_name: str | None = None, *,
                   wa_id: str | None = None, worker_id: str | None = None, wait: float = WAIT) -> TurnResult:
    """Run one message's turn now, persisted (see the module docstring), and record it in the inbox as
    processed in the same transaction that saves the turn.

    Waits (up to `wait` seconds) while another worker holds the contact. A message id already processed
    changes nothing and returns no outbound messages. Raises sessions.ContactBusy when the wait runs out.
    """
    ctx = _persistent(ctx)
    token = _token(worker_id)
    peeked = sessions.peek(inbound.contact, inbound.message_id, token)
    if peeked is not None and peeked[0] is not None:
        claim, handled = peeked
        if handled:
            return TurnResult(conversation=_conversation(inbound.contact, claim.state), outbound=[])
        result = _optimistic_turn(claim, inbound, flows, ctx, wa_id, profile_name)
        if result is not None:
            return result
    now = ctx.clock()
    claim = sessions.try_claim_by_key(inbound.contact, token, now) if peeked is not None else None
    if claim is None:  # a new contact (created and claimed in one commit), or one another worker holds
        with write_transaction():
            contact_id = find_contact(inbound.contact, now, wa_id=wa_id, profile_name=profile_name)
            claim = sessions.try_claim(contact_id, token, now)
        claim = claim or _wait_for_claim(contact_id, token, ctx, wait)
    # Checked under the claim: whoever handled this id before us for this contact has committed.
    if inbox.is_processed(inbound.message_id):
        sessions.release(claim)
        return TurnResult(conversation=_conversation(inbound.contact, claim.state), outbound=[])
    with _released_on_stop(claim), _log_tags(inbound.contact, claim):
        result = run_turn(flows, _conversation(inbound.contact, claim.state), inbound, ctx)
        _save(claim, inbound.contact, result, ctx, received=inbound, wa_id=wa_id, profile_name=profile_name)
    return result


class _StateMoved(BaseException):
    """An optimistic turn reached an action but the session changed since it was read: the turn is run
    again under a claim. A BaseException so that the engine's guard around an action does not report it."""


def _optimistic_turn(claim: sessions.Claim, inbound: Inbound, flows: FlowSet, ctx: TurnContext,
                     wa_id: str | None, profile_name: str | None) -> TurnResult | None:
    """Run a turn on a state read without a claim (sessions.peek) and save it in one commit if the state is
    still as read; None when it moved on (nothing saved: run the turn under a claim). A turn that reaches
    an action claims the state first (sessions.claim_read), so actions never run on a stale state; from
    then on it is a claimed turn and a lost claim raises ClaimLost as usual.
    """
    claimed = False
    invoke = ctx.invoke

    def claim_then_invoke(spec: ActionSpec, params: dict, actx: ActionContext) -> Result:
        nonlocal claimed
        if not claimed:
            if not sessions.claim_read(claim, actx.clock()):
                raise _StateMoved
            claimed = True
            if inbox.is_processed(inbound.message_id):  # handled before our claim: leave it
                raise _StateMoved
        return invoke(spec, params, actx)

    try:
        with _released_on_stop(claim), _log_tags(inbound.contact, claim):
            result = run_turn(flows, _conversation(inbound.contact, claim.state), inbound,
                              replace(ctx, invoke=claim_then_invoke))
            _save(claim, inbound.contact, result, ctx, received=inbound, wa_id=wa_id, profile_name=profile_name)
        return result
    except _StateMoved:
        sessions.release(claim)
        return None
    except sessions.ClaimLost:
        if claimed:
            raise
        return None


def _log_tags(contact: str, claim: sessions.Claim):
    """Tag the turn's log lines: the contact masked, the conversation (contact row and start time, no
    number in it), its flow and step."""
    from actions.omari_client import mask_msisdn

    state = claim.state
    started = state["started_at"]
    return logs.context(contact=mask_msisdn(contact), flow=state["flow"], step=state["step"],
                        conversation=f"{claim.contact_id}-{started:%Y%m%dT%H%M%S}" if started else None)


@contextmanager
def _released_on_stop(claim: sessions.Claim) -> Iterator[None]:
    """Ctrl-C or SIGTERM mid-turn is a clean stop, not a crash: give the claim back at once so the contact
    is not held for the rest of the lease. (After a committed save the release matches no row.)
    """
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        sessions.release(claim)
        raise


def start_flow(contact: str, flow_name: str, flows: FlowSet, ctx: TurnContext, *, worker_id: str | None = None,
               wait: float = WAIT) -> TurnResult:
    """Open a flow for a contact directly (`flows chat FLOW`), persisted like a turn; raises KeyError for
    an unknown flow.
    """
    ctx = _persistent(ctx)
    now = ctx.clock()
    token = _token(worker_id)
    contact_id = find_contact(contact, now)
    claim = sessions.try_claim(contact_id, token, now) or _wait_for_claim(contact_id, token, ctx, wait)
    try:
        result = start(flows, contact, flow_name, ctx, message_id=f"start-{uuid.uuid4().hex}")
    except KeyError:
        sessions.release(claim)
        raise
    _save(claim, contact, result, ctx)
    return result


def close_conversation(contact: str, flows: FlowSet, ctx: TurnContext, *, worker_id: str | None = None,
                       wait: float = WAIT) -> TurnResult | None:
    """Expire the contact's active conversation now, through the flow's expiry (its step and message), as
    if it had timed out; None when there was none. For `flows demo`, whose sandbox forgets a payment left
    half-way between runs.
    """
    ctx = _persistent(ctx)
    now = ctx.clock()
    token = _token(worker_id)
    contact_id = find_contact(contact, now)
    claim = sessions.try_claim(contact_id, token, now) or _wait_for_claim(contact_id, token, ctx, wait)
    conversation = _conversation(contact, claim.state)
    if conversation is None or not conversation.active:
        sessions.release(claim)
        return None
    with _released_on_stop(claim):
        result = expire(flows, conversation, ctx)
        _save(claim, contact, result, ctx)
    return result


def _wait_for_claim(contact_id: int, token: str, ctx: TurnContext, wait: float) -> sessions.Claim:
    deadline = time.monotonic() + wait
    pause = 0.0005
    while True:
        # Jitter: waiters on one contact should not wake in lockstep and collide again.
        time.sleep(pause * (0.5 + random.random()))
        claim = sessions.try_claim(contact_id, token, ctx.clock())
        if claim is not None:
            return claim
        if time.monotonic() >= deadline:
            raise sessions.ContactBusy(f"contact {contact_id} stayed claimed by another worker for {wait:.0f} s")
        pause = min(pause * 2, 0.05)


def process_inbox(ctx: TurnContext, flows: FlowSet, limit: int = 100, worker_id: str | None = None) -> int:
    """Handle up to `limit` unprocessed inbox messages, each contact's oldest first, skipping contacts
    another worker holds; returns how many were handled. Safe to run in many threads and processes.
    """
    ctx = _persistent(ctx)
    done = 0
    while done < limit:
        token = _token(worker_id)
        taken = _claim_next(token, ctx.clock())
        if taken is None:
            break
        claim, row, contact = taken
        try:
            with _released_on_stop(claim), _log_tags(contact, claim):
                # The contact's stored key, whichever id (phone or user id) the message named it by.
                inbound = replace(inbound_from_payload(row.payload), contact=contact)
                result = run_turn(flows, _conversation(contact, claim.state), inbound, ctx)
                _save(claim, contact, result, ctx, inbox_id=row.id)
        except Exception as error:
            if unavailable(error):  # the database went away mid-turn: not the message's fault, not counted
                _give_back(claim)
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


def _give_back(claim: sessions.Claim, patience: float = GIVE_BACK_PATIENCE) -> None:
    """Release a claim whose turn the database cut short, as soon as the database answers again (within
    `patience` seconds), so the contact's message runs again within seconds of the database's return
    rather than after the lease. Past that, the lease frees the contact."""
    deadline = time.monotonic() + patience
    while True:
        try:
            sessions.release(claim)
            return
        except Exception as error:
            if not unavailable(error) or time.monotonic() >= deadline:
                return
            time.sleep(0.25)


def _give_up(claim: sessions.Claim, contact: str, row: inbox.InboxRow, error: Exception, ctx: TurnContext) -> None:
    """Set a message that keeps failing aside: processed with its error, the conversation left as it was,
    the customer told, an error event for the operator.
    """
    now = ctx.clock()
    log.error("inbox row %s failed %d times; set aside (%s)", row.id, MAX_TURN_ATTEMPTS, type(error).__name__)
    with write_transaction():
        inbox.mark_processed(row.id, now, error=f"gave up after {MAX_TURN_ATTEMPTS} attempts: {type(error).__name__}")
        sessions.release(claim)
        outbox.enqueue(claim.contact_id, [_outbound_dict(Outbound(to=contact, text=GAVE_UP_REPLY))], now)
        events.record(EventRecord(now, "inbox.gave_up", contact, row.channel_message_id,
                                  {"level": "error", "attempts": MAX_TURN_ATTEMPTS, "error": type(error).__name__}))


def _claim_next(token: str, now: datetime) -> tuple[sessions.Claim, inbox.InboxRow, str] | None:
    """Claim the contact with the oldest unprocessed message nobody holds, and take that message.

    One claim attempt per transaction: on PostgreSQL a failed `ON CONFLICT DO UPDATE … WHERE` still locks
    the session row, so a transaction that went on to try a second contact could wait on a worker that
    waits on it (a deadlock). Losing the race is rare (the query already skips claimed contacts), so
    looking again in a fresh transaction costs little.
    """
    if is_postgres():
        return _claim_next_postgres(token, now)
    for _ in range(_PICK_TRIES):
        with write_transaction():
            candidates = inbox.pending_contacts(now, limit=1)
            if not candidates:
                return None
            contact_id = candidates[0]
            claim = sessions.try_claim(contact_id, token, now)
            if claim is None:
                continue
            found = inbox.oldest_pending_with_key(contact_id)
            if found is None:  # handled by someone else between the two reads
                sessions.release(claim)
                continue
            return claim, found[0], found[1]
    return None


def _claim_next_postgres(token: str, now: datetime) -> tuple[sessions.Claim, inbox.InboxRow, str] | None:
    """_claim_next in two round trips: the pick and the claim in one statement (its own transaction, see
    sessions.claim_next), then the contact's oldest unprocessed message read after the claim committed —
    a fresh snapshot, so a message the previous holder of the claim handled is not taken again.
    """
    for _ in range(_PICK_TRIES):
        found, claim = sessions.claim_next(token, now)
        if not found:
            return None
        if claim is None:
            continue
        try:
            taken = inbox.oldest_pending_with_key(claim.contact_id)
        except Exception as error:
            if unavailable(error):  # the claim committed, then the database went away: do not hold it
                _give_back(claim)
            raise
        if taken is None:  # handled by someone else between the pick and the claim
            sessions.release(claim)
            continue
        return claim, taken[0], taken[1]
    return None


def expire_due(ctx: TurnContext, flows: FlowSet, now: datetime | None = None, limit: int = 100) -> int:
    """Expire active conversations past their expires_at (through the same claim), queue the expiry
    messages; returns how many expired.
    """
    ctx = _persistent(ctx)
    now = now or ctx.clock()
    done = 0
    for _session_id, contact_id, contact in sessions.due_for_expiry(now, limit):
        claim = sessions.try_claim(contact_id, _token(None), now)
        if claim is None:
            continue
        conversation = _conversation(contact, claim.state)
        if conversation is None or not conversation.active or conversation.expires_at is None \
                or conversation.expires_at > now:
            sessions.release(claim)  # a turn moved it on between the query and the claim
            continue
        _save(claim, contact, expire(flows, conversation, ctx), ctx)
        done += 1
    return done
