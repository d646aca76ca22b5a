"""Contacts: one row per person, found by their phone number (wa_id) or their business-scoped user id.

Meta is rolling out business-scoped user ids (BSUIDs, e.g. "US.13491208655302741918"): a person may write
with a phone number only, with both, or with a user id only (a username user). `resolve` finds the row by
either and attaches what is new to it, so the person stays one contact and keeps one conversation when a
user id first appears in the middle of it. A row's `key` is chosen once, when the person first writes (the
user id when Meta sent one, else the phone number), and never changes: sessions, payments and the audit
log refer to it. wa_id and user_id are each unique.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from .db import execute, stored_time
from .text import storable

log = logging.getLogger("convoflow.contacts")

# A business-scoped user id: country code, a dot, then letters and digits (e.g. "US.13491208655302741918").
_USER_ID = re.compile(r"^[A-Z]{2}\.[A-Za-z0-9.]+$")

_UPSERT = (
    'INSERT INTO "contact" ("key", "wa_id", "profile_name", "created_at", "last_seen_at") VALUES (?, ?, ?, ?, ?) '
    'ON CONFLICT ("key") DO UPDATE SET "last_seen_at" = excluded."last_seen_at", '
    '"profile_name" = COALESCE(excluded."profile_name", "contact"."profile_name"), '
    '"wa_id" = COALESCE(excluded."wa_id", "contact"."wa_id") RETURNING "id"'
)
_INSERT = (
    'INSERT INTO "contact" ("key", "wa_id", "user_id", "parent_user_id", "username", "profile_name", "created_at", '
    '"last_seen_at") VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING "id"'
)
_MATCH = (
    'SELECT "id", "wa_id", "user_id", "key", "last_seen_at", "profile_name", "parent_user_id", "username" '
    'FROM "contact" WHERE "user_id" = ? OR "wa_id" = ?'
)
_INSERT_TRIES = 3


def is_user_id(address: str) -> bool:
    """True for a business-scoped user id, False for a phone number (or anything else)."""
    return bool(_USER_ID.match(address))


@dataclass(frozen=True)
class Identity:
    """Who wrote, as the channel named them: any of a phone number and a user id (at least one)."""

    wa_id: str | None = None
    user_id: str | None = None
    parent_user_id: str | None = None
    username: str | None = None
    profile_name: str | None = None

    @property
    def key(self) -> str:
        """The key a new contact gets: the user id when known, else the phone number."""
        return self.user_id or self.wa_id or ""


def resolve(who: Identity, now: datetime) -> tuple[int, str]:
    """The (id, key) of the contact who wrote, found by user id or phone number; creates the row for a
    new person and attaches a newly seen user id or phone number to a known one. Call inside a write
    transaction.
    """
    if not who.key:
        raise ValueError("a contact needs a phone number or a user id")
    who = Identity(*(storable(getattr(who, f.name)) for f in fields(Identity)))  # what the database can hold
    for attempt in range(_INSERT_TRIES):
        rows = execute(_MATCH, (who.user_id, who.wa_id)).fetchall()
        if rows:
            return _attach(who, rows, now)
        # Taken keys: the same person inserted by a concurrent request (found on the next pass), or an old
        # row holding this phone number as its key after its owner moved to another number.
        key = who.key if attempt == 0 else f"{who.key}~{uuid.uuid4().hex[:8]}"
        row = execute(
            _INSERT, (key[:128], who.wa_id, who.user_id, who.parent_user_id, who.username, who.profile_name, now, now)
        ).fetchone()
        if row:
            return row[0], key[:128]
    raise RuntimeError("could not record the contact (the row kept changing under this request)")


def _attach(who: Identity, rows: list[tuple], now: datetime) -> tuple[int, str]:
    """Refresh the matched row; give it the user id and phone number it lacks when no other row holds them."""
    by_user = next((r for r in rows if who.user_id and r[2] == who.user_id), None)
    by_phone = next((r for r in rows if who.wa_id and r[1] == who.wa_id), None)
    chosen = by_user or by_phone
    if by_user and by_phone and by_user[0] != by_phone[0]:
        log.warning(
            "contacts %s and %s look like one person (same user id and phone); kept them apart", by_user[0], by_phone[0]
        )
    wa_id = who.wa_id if by_phone is None or by_phone[0] == chosen[0] else None
    user_id = who.user_id if by_user is None or by_user[0] == chosen[0] else None
    if _nothing_new(chosen, (wa_id, user_id, who.profile_name, who.parent_user_id, who.username), now):
        return chosen[0], chosen[3]  # no write: a webhook's commit stays a page or three smaller
    row = execute(
        'UPDATE "contact" SET "last_seen_at" = ?, "profile_name" = COALESCE(?, "profile_name"), '
        '"wa_id" = COALESCE(?, "wa_id"), "user_id" = COALESCE(?, "user_id"), '
        '"parent_user_id" = COALESCE(?, "parent_user_id"), "username" = COALESCE(?, "username") '
        'WHERE "id" = ? RETURNING "key"',
        (now, who.profile_name, wa_id, user_id, who.parent_user_id, who.username, chosen[0]),
    ).fetchone()
    return chosen[0], row[0]


def _nothing_new(row: tuple, named: tuple, now: datetime) -> bool:
    """Whether the matched row already holds every id and name the message gives (wa_id, user_id,
    profile_name, parent_user_id, username; None gives nothing) and was seen within SEEN_WITHIN: then the
    UPDATE, which rewrites the row and both unique indexes on SQLite, is left out."""
    _, *held = row[:3] + row[5:]  # wa_id, user_id, profile_name, parent_user_id, username as stored
    return holds(held, named, row[4], now)


def holds(stored: tuple | list, given: tuple, seen_at: Any, now: datetime) -> bool:
    """The one rule for "nothing new about this contact": every value given (None gives nothing) equals the
    stored one in the same place, and the row was seen (`seen_at`, as stored) within SEEN_WITHIN of now."""
    for value, held in zip(given, stored):  # a loop, not any() over a generator: asked on every turn
        if value is not None and value != held:
            return False
    seen = stored_time(seen_at)
    return seen is not None and seen >= now - SEEN_WITHIN


def change_number(contact_id: int, new_wa_id: str) -> bool:
    """Move a contact to a new phone number (Meta's user_changed_number notice); the conversation stays.
    False, changing nothing, when another contact already holds that number."""
    return (
        execute(
            'UPDATE "contact" SET "wa_id" = ? WHERE "id" = ? AND NOT EXISTS '
            '(SELECT 1 FROM "contact" o WHERE o."wa_id" = ? AND o."id" <> ?) RETURNING "id"',
            (storable(new_wa_id), contact_id, storable(new_wa_id), contact_id),
        ).fetchone()
        is not None
    )


def upsert_contact(key: str, now: datetime, wa_id: str | None = None, profile_name: str | None = None) -> int:
    """The contact's id by key, creating the row on first contact; refreshes last seen and the profile name.
    For channels that name a contact by one fixed key (the terminal, tests); WhatsApp uses resolve()."""
    return execute(_UPSERT, (storable(key), storable(wa_id), storable(profile_name), now, now)).fetchone()[0]


def contact_id(key: str, now: datetime, wa_id: str | None = None, profile_name: str | None = None) -> int:
    """The contact's id: a read for a known contact (no write, no lock), the upsert for a new one."""
    row = execute('SELECT "id" FROM "contact" WHERE "key" = ?', (storable(key),)).fetchone()
    return row[0] if row else upsert_contact(key, now, wa_id=wa_id, profile_name=profile_name)


# last_seen_at is kept to the minute: a turn rewrites the contact row only when the stored time is a minute
# old or the channel names the person differently (a page less written by most turns of a conversation).
# Nothing reads it closer than that (0005's choice between two rows of one person orders by it).
SEEN_WITHIN = timedelta(minutes=1)


def _touch_sql(wa_id: bool) -> str:
    sets = ['"last_seen_at" = ?', '"profile_name" = COALESCE(?, "profile_name")']
    moved = [
        '"last_seen_at" IS NULL',
        '"last_seen_at" < ?',
        'COALESCE(?, "profile_name") <> COALESCE("profile_name", \'\')',
    ]
    if wa_id:
        sets.append('"wa_id" = COALESCE(?, "wa_id")')
        moved.append('COALESCE(?, "wa_id") <> COALESCE("wa_id", \'\')')
    return f'UPDATE "contact" SET {", ".join(sets)} WHERE "id" = ? AND ({" OR ".join(moved)})'


# Parameters: touch_params; PostgreSQL's one-statement turn save embeds it with a guard appended.
TOUCH_SQL = _touch_sql(wa_id=True)
# Without a wa_id to record, "wa_id" stays out of the SET list: SQLite rewrites its unique index for any
# column set, even to its own value (a page written per turn).
_TOUCH_KEEP_WA_ID = _touch_sql(wa_id=False)


def touch_params(contact_id: int, now: datetime, wa_id: str | None = None, profile_name: str | None = None) -> tuple:
    profile_name, wa_id = storable(profile_name), storable(wa_id)
    return now, profile_name, wa_id, contact_id, now - SEEN_WITHIN, profile_name, wa_id


# The contact's columns touch compares, as a read before the turn gives them (sessions.peek): with them the
# statement is left out when its WHERE would change nothing, as on most turns.
SEEN = ("last_seen_at", "profile_name", "wa_id")


def touch(
    contact_id: int,
    now: datetime,
    wa_id: str | None = None,
    profile_name: str | None = None,
    seen: tuple | None = None,
) -> None:
    """Refresh last seen (to the minute: SEEN_WITHIN) and the profile name or wa_id when the channel gave a
    new one; call in the turn's save. `seen`: the row's SEEN columns read earlier, when the caller has them
    (last_seen_at alone will do when profile_name and wa_id are None: only what is given is compared)."""
    if seen is not None and holds(seen[1:], (storable(profile_name), storable(wa_id)), seen[0], now):
        return  # most turns: the statement's parameters are not even made
    params = touch_params(contact_id, now, wa_id, profile_name)
    if params[2] is None:
        execute(_TOUCH_KEEP_WA_ID, params[:2] + params[3:-1])
    else:
        execute(TOUCH_SQL, params)
