"""The inbox: every message a channel received, unique on the channel's message id.

A redelivered message stops at the unique id. Rows are handled one contact at a time in the channel's
timestamp order (sent_at, then id) and marked processed in the same transaction that saves the turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from .contacts import SEEN_WITHIN
from .db import execute, is_postgres, stored_time
from .text import secret_forms, storable, storable_json, stored_json, without


@dataclass(frozen=True)
class InboxRow:
    id: int
    contact_id: int
    channel_message_id: str
    payload: dict[str, Any]
    sent_at: datetime
    processed: bool


_ADD = (
    'INSERT INTO "inbox_message" ("channel_message_id", "contact_id", "payload", "sent_at", "received_at") '
    'VALUES (?, ?, ?, ?, ?) ON CONFLICT ("channel_message_id") DO NOTHING RETURNING "id"'
)
_COLUMNS = '"id", "contact_id", "channel_message_id", "payload", "sent_at", "processed_at"'
COLUMNS = _COLUMNS  # row_of reads them in this order


def row_of(r: tuple) -> InboxRow:
    """An InboxRow from the COLUMNS of a statement that selected them (e.g. sessions.peek_next)."""
    return _row(r)


def _row(r: tuple) -> InboxRow:
    return InboxRow(r[0], r[1], r[2], stored_json(r[3]), stored_time(r[4]), r[5] is not None)


def add(
    contact_id: int, channel_message_id: str, payload: dict[str, Any], sent_at: datetime, received_at: datetime
) -> tuple[InboxRow, bool]:
    """Store a received message; returns (the row, True) or, for a message id seen before, (that row, False)."""
    channel_message_id, body = storable(channel_message_id), storable_json(payload)
    inserted = execute(_ADD, (channel_message_id, contact_id, body, sent_at, received_at)).fetchone()
    if inserted:
        return InboxRow(inserted[0], contact_id, channel_message_id, payload, sent_at, False), True
    existing = execute(
        f'SELECT {_COLUMNS} FROM "inbox_message" WHERE "channel_message_id" = ?', (channel_message_id,)
    ).fetchone()
    return _row(existing), False


# PostgreSQL: a known contact's message inserted in one statement, run on its own (autocommit, so durable
# before the caller answers): one round trip for the usual webhook (one message from someone who wrote
# before) instead of BEGIN, three statements and COMMIT. The contact must already hold every id, parent
# user id and username the message names (nothing to attach); otherwise no row comes back and the caller
# takes the full path (contacts.resolve in a transaction). Like resolve, the contact row is rewritten only
# when its last_seen_at is SEEN_WITHIN old or the profile name is new: most deliveries write the message
# alone.
_ADD_FOR_KNOWN_CONTACT = (
    'WITH c AS (SELECT "id", "key" FROM "contact" '
    'WHERE ("user_id" = ? OR "wa_id" = ?) AND "user_id" IS NOT DISTINCT FROM COALESCE(?, "user_id") '
    'AND "wa_id" IS NOT DISTINCT FROM COALESCE(?, "wa_id") '
    'AND "parent_user_id" IS NOT DISTINCT FROM COALESCE(?, "parent_user_id") '
    'AND "username" IS NOT DISTINCT FROM COALESCE(?, "username")), '
    'u AS (UPDATE "contact" SET "last_seen_at" = ?, "profile_name" = COALESCE(?, "profile_name") '
    'WHERE "id" IN (SELECT "id" FROM c) AND ("last_seen_at" IS NULL OR "last_seen_at" < ? '
    'OR COALESCE(?, "profile_name") <> COALESCE("profile_name", \'\'))) '
    'INSERT INTO "inbox_message" ("channel_message_id", "contact_id", "payload", "sent_at", "received_at") '
    'SELECT ?, c."id", \'{"contact":\' || to_json(c."key")::text || ?, ?, ? FROM c '
    'ON CONFLICT ("channel_message_id") DO NOTHING RETURNING "id"'
)


# SQLite: the same for a contact whose row already holds every id and name the message gives and was seen
# within contacts.SEEN_WITHIN, so there is nothing to refresh (contacts.resolve would write nothing either):
# one INSERT … SELECT, its own implicit transaction, instead of BEGIN, the contact's SELECT, the INSERT and
# COMMIT. The condition names only the fields the message gives (storage.contacts.holds' rule).
_SQLITE_IDENTITY = ("user_id", "wa_id", "profile_name", "parent_user_id", "username")


@lru_cache(maxsize=32)
def _sqlite_add_for_known_contact(given: tuple[str, ...]) -> str:
    matches = " AND ".join(f'c."{name}" = ?' for name in given)
    return (
        'INSERT INTO "inbox_message" ("channel_message_id", "contact_id", "payload", "sent_at", "received_at") '
        'SELECT ?, c."id", \'{"contact":\' || json_quote(c."key") || ?, ?, ? FROM "contact" c '
        f'WHERE {matches} AND c."last_seen_at" >= ? '
        'ON CONFLICT ("channel_message_id") DO NOTHING RETURNING "id"'
    )


def add_for_known_contact(
    wa_id: str | None,
    user_id: str | None,
    profile_name: str | None,
    channel_message_id: str,
    payload: dict[str, Any],
    sent_at: datetime,
    now: datetime,
    parent_user_id: str | None = None,
    username: str | None = None,
) -> bool:
    """Outside a transaction: store one received message from a contact already known by these ids, in one
    statement that commits on its own; the stored payload's "contact" is the contact's key, put before the
    payload's other fields (the webhook's payload has no "contact"; one given is left out, not copied). True
    when the message was stored; False when it is a duplicate or the contact needs resolving (contacts.resolve). On
    PostgreSQL a stale last seen time or a new profile name is refreshed in the same statement; on SQLite
    only a contact with nothing to refresh is taken (call it holding the SQLite database's writer lock).
    """
    if "contact" in payload:
        payload = {k: v for k, v in payload.items() if k != "contact"}
    tail = "," + storable_json(payload)[1:]  # the object after its "contact"
    if not is_postgres():
        if user_id is None and wa_id is None:
            return False
        # One loop over the five, no dict or generators: every usual delivery on SQLite comes here.
        given, params = [], [storable(channel_message_id), tail, sent_at, now]
        for name, value in zip(_SQLITE_IDENTITY, (user_id, wa_id, profile_name, parent_user_id, username)):
            if value is not None:
                given.append(name)
                params.append(storable(value))
        params.append(now - SEEN_WITHIN)
        return execute(_sqlite_add_for_known_contact(tuple(given)), params).fetchone() is not None
    user_id, wa_id, profile_name = storable(user_id), storable(wa_id), storable(profile_name)
    row = execute(
        _ADD_FOR_KNOWN_CONTACT,
        (
            *(user_id, wa_id, user_id, wa_id, storable(parent_user_id), storable(username)),
            *(now, profile_name, now - SEEN_WITHIN, profile_name),
            *(storable(channel_message_id), tail, sent_at, now),
        ),
    ).fetchone()
    return row is not None


_ADD_EVENT = (
    'INSERT INTO "inbox_message" ("channel_message_id", "contact_id", "payload", "sent_at", "received_at", '
    '"processed_at") VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT ("channel_message_id") DO NOTHING RETURNING "id"'
)


def add_event(
    contact_id: int, channel_message_id: str, payload: dict[str, Any], sent_at: datetime, now: datetime
) -> bool:
    """Record an item that is not an answer (a reaction, a revoke, a system notice) as already processed, so
    no turn ever takes it and a redelivery stops at its id. True when it is new."""
    body = storable_json(payload)
    return (
        execute(_ADD_EVENT, (storable(channel_message_id), contact_id, body, sent_at, now, now)).fetchone() is not None
    )


def known_ids(channel_message_ids: list[str]) -> set[str]:
    """Which of these message ids are stored already."""
    if not channel_message_ids:
        return set()
    marks = ", ".join("?" * len(channel_message_ids))
    return {
        r[0]
        for r in execute(
            f'SELECT "channel_message_id" FROM "inbox_message" WHERE "channel_message_id" IN ({marks})',
            storable(channel_message_ids),
        ).fetchall()
    }


def is_processed(channel_message_id: str) -> bool:
    """Whether a message with this id was handled already (a redelivery)."""
    row = execute(
        'SELECT "processed_at" FROM "inbox_message" WHERE "channel_message_id" = ?', (channel_message_id,)
    ).fetchone()
    return row is not None and row[0] is not None


_ADD_PROCESSED = (
    'INSERT INTO "inbox_message" ("channel_message_id", "contact_id", "payload", "sent_at", "received_at", '
    '"processed_at") {rows} ON CONFLICT ("channel_message_id") DO UPDATE SET '
    '"processed_at" = excluded."processed_at" WHERE "inbox_message"."processed_at" IS NULL'
)


_ADD_PROCESSED_ROW = _ADD_PROCESSED.format(rows="VALUES (?, ?, ?, ?, ?, ?)")
# SQLite: a time the row repeats bound once, by number (sqlite3 copies every text bound, about 1.1k
# instructions a time): received_at and processed_at are the same, and sent_at too when the message came
# without a timestamp (the turn passes its one `at` for all three).
_ADD_PROCESSED_NUMBERED = {
    False: _ADD_PROCESSED.format(rows="VALUES (?1, ?2, ?3, ?4, ?5, ?5)"),
    True: _ADD_PROCESSED.format(rows="VALUES (?1, ?2, ?3, ?4, ?4, ?4)"),
}


def processed_params(
    contact_id: int, channel_message_id: str, body: str, sent_at: datetime | str, at: datetime | str
) -> tuple:
    """add_processed's parameters, in the order of its statement (times as datetimes or db.time_param's form;
    body the payload as storable_json's text)."""
    return storable(channel_message_id), contact_id, body, sent_at, at, at


def add_processed(
    contact_id: int, channel_message_id: str, body: str, sent_at: datetime | str, at: datetime | str
) -> bool:
    """Record a message handled as it arrived (one write instead of insert-then-update); a row already
    stored for it (e.g. by the webhook) is marked processed. Call inside the transaction that saves the turn.
    body: the payload as storable_json's text (the caller may write its fixed shape by hand). False when the
    message was marked processed already (another turn handled it first).
    """
    if is_postgres():
        return (
            execute(_ADD_PROCESSED_ROW, processed_params(contact_id, channel_message_id, body, sent_at, at)).rowcount
            == 1
        )
    once = sent_at is at
    params = (
        (storable(channel_message_id), contact_id, body, sent_at)
        if once
        else (storable(channel_message_id), contact_id, body, sent_at, at)
    )
    return execute(_ADD_PROCESSED_NUMBERED[once], params).rowcount == 1


def add_processed_sql(guard: str) -> str:
    """add_processed as a statement to embed in a larger one (PostgreSQL's one-statement save), writing
    only under `guard`; same parameters (processed_params). Returns the row's id when it wrote."""
    return _ADD_PROCESSED.format(rows=f"SELECT ?, ?, ?, ?, ?, ? WHERE {guard}") + ' RETURNING "id"'


def mark_processed(row_id: int, at: datetime | str, error: str | None = None) -> None:
    """Call inside the transaction that saves the turn."""
    execute('UPDATE "inbox_message" SET "processed_at" = ?, "error" = ? WHERE "id" = ?', (at, error, row_id))


def mark_pending_processed(row_id: int, at: datetime | str) -> bool:
    """mark_processed for a turn run without a claim (sessions.peek_next): only while the row is still
    unprocessed; False when another turn handled it first. Call inside the transaction that saves the turn."""
    return (
        execute(
            'UPDATE "inbox_message" SET "processed_at" = ?, "error" = NULL WHERE "id" = ? AND "processed_at" IS NULL',
            (at, row_id),
        ).rowcount
        == 1
    )


def redact_answer(row_id: int | None = None, channel_message_id: str | None = None) -> frozenset[str]:
    """Take a one-time code out of a stored message, found by row id or message id: every string of its
    payload (the text and the raw body as received) equal to what was typed. Call inside the transaction
    that saves the turn. Returns the forms of the code removed, for the caller to keep them out of the
    rest of the turn's writes too.
    """
    r = execute(
        'SELECT "id", "payload" FROM "inbox_message" WHERE "id" = ? OR "channel_message_id" = ?',
        (row_id, storable(channel_message_id)),
    ).fetchone()
    if r is None:
        return frozenset()
    payload = stored_json(r[1])
    secrets = secret_forms(payload.get("text"))
    if secrets:
        body = storable_json({**without(payload, secrets), "redacted": True})
        execute('UPDATE "inbox_message" SET "payload" = ? WHERE "id" = ?', (body, r[0]))
    return secrets


def record_error(row_id: int, error: str) -> int:
    """Note why handling a row failed and count the failure; it stays unprocessed so it is tried again once
    its claim runs out. Returns how many times handling it has failed.
    """
    row = execute(
        'UPDATE "inbox_message" SET "error" = ?, "attempts" = "attempts" + 1 '
        'WHERE "id" = ? AND "processed_at" IS NULL RETURNING "attempts"',
        (error[:2000], row_id),
    ).fetchone()
    return row[0] if row else 0


def oldest_pending(contact_id: int) -> InboxRow | None:
    """The contact's next message to handle (index on processed_at, contact, sent_at)."""
    r = execute(
        f'SELECT {_COLUMNS} FROM "inbox_message" WHERE "processed_at" IS NULL AND "contact_id" = ? '
        'ORDER BY "sent_at", "id" LIMIT 1',
        (contact_id,),
    ).fetchone()
    return _row(r) if r else None


def oldest_pending_with_key(contact_id: int) -> tuple[InboxRow, str] | None:
    """oldest_pending and the contact's key, in one statement."""
    r = execute(
        f'SELECT {", ".join("i." + c for c in _COLUMNS.split(", "))}, c."key" FROM "inbox_message" i '
        'JOIN "contact" c ON c."id" = i."contact_id" WHERE i."processed_at" IS NULL AND i."contact_id" = ? '
        'ORDER BY i."sent_at", i."id" LIMIT 1',
        (contact_id,),
    ).fetchone()
    return (_row(r), r[6]) if r else None


def pending_contacts(now: datetime, limit: int = 1) -> list[int]:
    """Contacts with the oldest unprocessed messages whose session nobody holds a live claim on.

    Call inside the write transaction that then claims one of them. On PostgreSQL the candidate inbox rows
    are locked with SKIP LOCKED, so concurrent workers pick different contacts instead of queueing.
    """
    sql = (
        'SELECT i."contact_id" FROM "inbox_message" i LEFT JOIN "session" s ON s."contact_id" = i."contact_id" '
        'WHERE i."processed_at" IS NULL AND (s."claimed_until" IS NULL OR s."claimed_until" < ?) '
        'ORDER BY i."sent_at", i."id" LIMIT ?'
    )
    if is_postgres():
        sql += " FOR UPDATE OF i SKIP LOCKED"
    seen: dict[int, None] = {}
    for (contact_id,) in execute(sql, (now, limit)).fetchall():
        seen.setdefault(contact_id)
    return list(seen)


def backlog() -> int:
    """Unprocessed messages (for metrics), counted on the partial index of pending rows."""
    return execute('SELECT COUNT(*) FROM "inbox_message" WHERE "processed_at" IS NULL').fetchone()[0]
