"""Saving a turn: the session state and the engine's Conversation one from the other, the inbox payload of a
message, and the turn's one write transaction (state and claim released, outbox rows, the inbox row
processed, events) — shared by the persisted turn path (channels/turns.py), the inbox worker path
(channels/inbox_turns.py) and expiry (channels/expiry.py).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Any

from channels.action_results import stored_invoke
from engine.context import TurnContext, call_handler
from engine.messages import ACTIVE, Choice, Conversation, Inbound, Outbound, TurnResult
from storage import events, inbox, logs, outbox, sessions
from storage.contacts import contact_id, touch, touch_params
from storage.db import is_postgres, time_param, unavailable, write_transaction
from storage.events import EventRecord
from storage.text import json_string, storable_json, unstorable_json, without


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


def inbound_json(inbound: Inbound) -> str:
    """storable_json(inbound_payload(inbound)), the same text written by hand in inbound_payload's shape (about
    5.8k instructions against the C encoder's 16.7k walking the dict, on every turn)."""
    text, reply_id, stamp = inbound.text, inbound.reply_id, inbound.timestamp
    try:
        body = (
            f'{{"contact":{json_string(inbound.contact)},"message_id":{json_string(inbound.message_id)},'
            f'"text":{"null" if text is None else json_string(text)},"kind":{json_string(inbound.kind)},'
            f'"reply_id":{"null" if reply_id is None else json_string(reply_id)},'
            f'"timestamp":{"null" if stamp is None else json_string(stamp.isoformat())}}}'
        )
    except TypeError:  # a field that is not text: the encoder's answer
        return storable_json(inbound_payload(inbound))
    return storable_json(inbound_payload(inbound)) if unstorable_json(body) else body


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


def conversation_of(contact: str, state: dict[str, Any]) -> Conversation | None:
    """The engine's Conversation of a stored state (None when no conversation is open). Its ten fields are
    passed by position, in the order Conversation declares them: by keyword, calling the class packed them
    into a dict for its __init__ first (about 5k instructions of every turn)."""
    flow, step = state["flow"], state["step"]
    if flow is None or step is None:
        return None
    return Conversation(
        contact,
        flow,
        state["flow_version"] or 0,
        step,
        state["vars"],
        state["attempts"] or 0,
        state["status"],
        state["started_at"],
        state["updated_at"],
        state["expires_at"],
    )


def state_of(conversation: Conversation | None, before: dict[str, Any]) -> dict[str, Any]:
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


def outbound_dict(message: Outbound) -> dict[str, Any]:
    """Outbound.as_dict() without dataclasses.asdict's deep copy (a tenth of the cost, on every turn)."""

    def choices(items: tuple[Choice, ...]) -> list[dict[str, Any]]:
        return [{"id": c.id, "title": c.title, "description": c.description} for c in items]

    return {
        "to": message.to,
        "text": message.text,
        "buttons": choices(message.buttons),
        "options": choices(message.options),
        "list_button": message.list_button,
    }


def outbound_json(message: Outbound) -> str:
    """outbox.encode(outbound_dict(message)), the same text written by hand for a message without buttons or
    options (most replies; about 4k instructions against the C encoder's 14k walking the dict)."""
    if message.buttons or message.options:
        return outbox.encode(outbound_dict(message))
    button = message.list_button
    try:
        return (
            f'{{"to":{json_string(message.to)},"text":{json_string(message.text)},"buttons":[],"options":[],'
            f'"list_button":{"null" if button is None else json_string(button)}}}'
        )
    except TypeError:  # a field that is not text: the encoder's answer
        return outbox.encode(outbound_dict(message))


def persistent(ctx: TurnContext) -> TurnContext:
    """Persisted turns store action results (the default invoker swapped for stored_invoke), and a database
    that goes away during an action stops the turn unsaved, to run again once it answers (storage.db.
    unavailable as the context's outage), rather than failing the action. A context built so already
    (worker.turn_context) is returned as it is."""
    if ctx.invoke is not call_handler and ctx.outage is unavailable:
        return ctx
    return replace(ctx, invoke=stored_invoke if ctx.invoke is call_handler else ctx.invoke, outage=unavailable)


def save(
    claim: sessions.Claim,
    contact: str,
    result: TurnResult,
    ctx: TurnContext,
    *,
    inbox_id: int | None = None,
    received: Inbound | None = None,
    wa_id: str | None = None,
    profile_name: str | None = None,
) -> bool:
    """The turn's one write transaction: state + claim released, outbox rows, the inbox row processed
    (inbox_id: a worker's row; received: a message handled as it arrived), events. Returns whether another
    message of the contact may be waiting (sessions.save_and_release: PostgreSQL's one-statement save of a
    worker's row says; otherwise True).
    """
    # A turn that called no action ran in microseconds: its own clock reading is the save's time too (a
    # second reading and its formatting cost about 6.7k instructions a turn). After an action (up to 40 s
    # with O'mari) the save reads the clock again, so processed_at and the replies' times stay the save's.
    now = result.at if result.at is not None and not result.actions else ctx.clock()
    stored = claim.session_id is not None
    if stored and (inbox_id is not None or received is not None) and is_postgres() and not result.secret_answer:
        return _save_in_one_statement(claim, contact, result, now, inbox_id, received, wa_id, profile_name)
    stamp = time_param(now)  # now as every statement below takes it, made once
    with write_transaction():
        if claim.contact_id is None:  # a first turn read as unstored: the contact is found or created with it
            claim = sessions.with_contact(claim, contact_id(contact, now, wa_id=wa_id, profile_name=profile_name))
        # Inbox row before session row: the order a worker's pick takes its locks in (PostgreSQL), so the
        # two never wait on each other in a cycle.
        if inbox_id is not None and claim.read_as is not None:  # a turn without a claim: the row may be done
            if not inbox.mark_pending_processed(inbox_id, stamp):
                raise sessions.ClaimLost(f"inbox row {inbox_id} was handled while this turn ran")
        elif inbox_id is not None:
            inbox.mark_processed(inbox_id, stamp)
        if received is not None:
            if (
                not inbox.add_processed(
                    claim.contact_id, received.message_id, inbound_json(received), received.timestamp or stamp, stamp
                )
                and claim.read_as is not None
            ):
                raise sessions.ClaimLost(f"message {received.message_id} was handled while this turn ran")
            touch(claim.contact_id, now, wa_id=wa_id, profile_name=profile_name, seen=claim.seen)
        if result.secret_answer:  # a one-time code: out of the stored message and the conversation (10.6)
            result = _without_secret(result, inbox.redact_answer(inbox_id, received and received.message_id))
        sessions.save_and_release(claim, state_of(result.conversation, claim.state), at=(now, stamp))
        outbox.enqueue_encoded(claim.contact_id, [outbound_json(message) for message in result.outbound], stamp)
        if result.events:
            events.record_many(
                EventRecord(now, e.code, contact, None, {"level": e.level, "message": e.message}) for e in result.events
            )
    return True


def _save_in_one_statement(
    claim: sessions.Claim,
    contact: str,
    result: TurnResult,
    now: datetime,
    inbox_id: int | None,
    received: Inbound | None,
    wa_id: str | None,
    profile_name: str | None,
) -> bool:
    """save's writes on PostgreSQL, for a stored session: one statement and one round trip."""
    return sessions.save_and_release(
        claim,
        state_of(result.conversation, claim.state),
        sessions.Processed(
            inbox_id,
            now,
            [outbound_json(m) for m in result.outbound],
            [
                (now, e.code, contact, None, json.dumps({"level": e.level, "message": e.message}, default=str))
                for e in result.events
            ],
            received
            and (
                inbox.processed_params(
                    claim.contact_id, received.message_id, inbound_json(received), received.timestamp or now, now
                ),
                touch_params(claim.contact_id, now, wa_id=wa_id, profile_name=profile_name),
            ),
        ),
    )


def _without_secret(result: TurnResult, secrets: frozenset[str]) -> TurnResult:
    """The turn with the code out of the conversation's variables (one still holds it when the action that
    replaces it failed first, e.g. a crash in omari.confirm)."""
    if not secrets or result.conversation is None:
        return result
    return replace(result, conversation=replace(result.conversation, vars=without(result.conversation.vars, secrets)))


def log_tags(contact: str, claim: sessions.Claim) -> logs.context:
    """Tag the turn's log lines: the contact masked, the conversation (contact row and start time, no
    number in it), its flow and step, worked out only for a line that is written."""
    return logs.context.later(_turn_tags, contact, claim)


def _turn_tags(contact: str, claim: sessions.Claim) -> dict[str, object]:
    from actions.omari_client import mask_msisdn

    state = claim.state
    started = state["started_at"]
    return {
        "contact": mask_msisdn(contact),
        "flow": state["flow"],
        "step": state["step"],
        "conversation": f"{claim.contact_id}-{started:%Y%m%dT%H%M%S}" if started is not None else None,
    }
