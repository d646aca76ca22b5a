"""Contacts: one row per WhatsApp user (keyed on user_id when present, else wa_id)."""
from __future__ import annotations

from datetime import datetime

from .db import execute

_UPSERT = (
    'INSERT INTO "contact" ("key", "wa_id", "profile_name", "created_at", "last_seen_at") VALUES (?, ?, ?, ?, ?) '
    'ON CONFLICT ("key") DO UPDATE SET "last_seen_at" = excluded."last_seen_at", '
    '"profile_name" = COALESCE(excluded."profile_name", "contact"."profile_name"), '
    '"wa_id" = COALESCE(excluded."wa_id", "contact"."wa_id") RETURNING "id"'
)


def upsert_contact(key: str, now: datetime, wa_id: str | None = None, profile_name: str | None = None) -> int:
    """The contact's id, creating the row on first contact; refreshes last seen and the profile name."""
    return execute(_UPSERT, (key, wa_id, profile_name, now, now)).fetchone()[0]


def contact_id(key: str, now: datetime, wa_id: str | None = None, profile_name: str | None = None) -> int:
    """The contact's id: a read for a known contact (no write, no lock), the upsert for a new one."""
    row = execute('SELECT "id" FROM "contact" WHERE "key" = ?', (key,)).fetchone()
    return row[0] if row else upsert_contact(key, now, wa_id=wa_id, profile_name=profile_name)


def touch(contact_id: int, now: datetime, wa_id: str | None = None, profile_name: str | None = None) -> None:
    """Refresh last seen (and the profile name or wa_id when the channel gave one); call in the turn's save."""
    execute('UPDATE "contact" SET "last_seen_at" = ?, "profile_name" = COALESCE(?, "profile_name"), '
            '"wa_id" = COALESCE(?, "wa_id") WHERE "id" = ?', (now, profile_name, wa_id, contact_id))
