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
