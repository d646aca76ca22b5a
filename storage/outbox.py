"""The outbox: messages a turn produced, written in the turn's own transaction, delivered by the sender.

A row is `pending` until the channel accepts it (`sent`, with the id the channel returned) or the sender
gives up (`failed`). One contact's messages leave in id order: due() offers a contact's row only when no
earlier row of that contact is still pending.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .db import execute, is_postgres
from .models import OutboxMessage

PENDING, SENT, FAILED = "pending", "sent", "failed"


@dataclass(frozen=True)
class OutboxRow:
    id: int
    contact_id: int
    payload: dict[str, Any]
    attempts: int


def enqueue(contact_id: int, payloads: list[dict[str, Any]], now: datetime) -> None:
    """Queue messages for one contact in the given order (one multi-row INSERT)."""
    if not payloads:
        return
    values = ", ".join(["(?, ?, 'pending', 0, ?, ?)"] * len(payloads))
    params: list[Any] = []
    for payload in payloads:
        params += [contact_id, json.dumps(payload, separators=(",", ":"), ensure_ascii=False), now, now]
    execute('INSERT INTO "outbox_message" ("contact_id", "payload", "status", "attempts", "next_attempt_at", '
            f'"created_at") VALUES {values}', params)


def due(now: datetime, limit: int = 50) -> list[OutboxRow]:
    """Rows ready to send, oldest first, at most one per contact (its earliest pending one).

    On PostgreSQL, call inside a transaction: the rows are locked with SKIP LOCKED so several senders
    share the work without sending a row twice.
    """
    sql = (
        'SELECT o."id", o."contact_id", o."payload", o."attempts" FROM "outbox_message" o '
        "WHERE o.\"status\" = 'pending' AND o.\"next_attempt_at\" <= ? AND NOT EXISTS ("
        'SELECT 1 FROM "outbox_message" p WHERE p."contact_id" = o."contact_id" '
        "AND p.\"status\" = 'pending' AND p.\"id\" < o.\"id\") ORDER BY o.\"id\" LIMIT ?"
    )
    if is_postgres():
        sql += " FOR UPDATE OF o SKIP LOCKED"
    return [OutboxRow(r[0], r[1], json.loads(r[2]), r[3]) for r in execute(sql, (now, limit)).fetchall()]


def mark_sent(row_id: int, channel_message_id: str | None, at: datetime) -> None:
    (OutboxMessage.update(status=SENT, channel_message_id=channel_message_id, sent_at=at,
                          attempts=OutboxMessage.attempts + 1, error=None)
     .where(OutboxMessage.id == row_id).execute())


def retry_later(row_id: int, next_attempt_at: datetime, error: str) -> None:
    (OutboxMessage.update(attempts=OutboxMessage.attempts + 1, next_attempt_at=next_attempt_at, error=error[:2000])
     .where(OutboxMessage.id == row_id).execute())


def mark_failed(row_id: int, error: str) -> None:
    (OutboxMessage.update(status=FAILED, attempts=OutboxMessage.attempts + 1, error=error[:2000])
     .where(OutboxMessage.id == row_id).execute())


def record_delivery(channel_message_id: str, delivery_status: str) -> int:
    """A status the channel reported (delivered, read, failed) for a message it accepted; rows updated."""
    return (OutboxMessage.update(delivery_status=delivery_status)
            .where(OutboxMessage.channel_message_id == channel_message_id).execute())


def for_contact(contact_id: int) -> list[dict[str, Any]]:
    """Payloads queued for a contact, in order (for `flows chat` and tests)."""
    return [json.loads(p) for (p,) in execute(
        'SELECT "payload" FROM "outbox_message" WHERE "contact_id" = ? ORDER BY "id"', (contact_id,)).fetchall()]
