"""Dead letters: webhook deliveries that can never be stored, kept as received for a person to look at.

A body that is signed (so it is Meta's) but cannot be read, or one message of it that the database
refuses, is answered 200 so that Meta does not retry it for days, and is kept here with the reason.
The rest of the same delivery is stored as usual. `flows dead-letters` lists them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from .db import execute
from .text import storable

_KEEP = (
    'INSERT INTO "dead_letter" ("received_at", "reason", "item", "body", "digest") VALUES (?, ?, ?, ?, ?) '
    'ON CONFLICT ("digest") DO NOTHING RETURNING "id"'
)
_COLUMNS = '"id", "received_at", "reason", "item", "body"'


@dataclass(frozen=True)
class DeadLetterRow:
    id: int
    received_at: datetime
    reason: str
    item: str | None  # the message id that failed, "statuses", or None: the whole body
    body: bytes


def keep(body: bytes, reason: str, now: datetime, item: str | None = None) -> bool:
    """Keep a delivery (item: the part of it that failed); False when the same one was kept before."""
    item = storable(item)[:256] if item is not None else None
    digest = hashlib.sha256(body + b"\0" + (item or "").encode()).hexdigest()
    return execute(_KEEP, (now, storable(reason)[:2000], item, body, digest)).fetchone() is not None


def _row(r: tuple) -> DeadLetterRow:
    received_at = r[1] if isinstance(r[1], datetime) else datetime.fromisoformat(r[1])
    return DeadLetterRow(r[0], received_at, r[2], r[3], bytes(r[4]))


def recent(limit: int = 20) -> list[DeadLetterRow]:
    """The latest dead letters, newest first."""
    rows = execute(f'SELECT {_COLUMNS} FROM "dead_letter" ORDER BY "received_at" DESC, "id" DESC LIMIT ?', (limit,))
    return [_row(r) for r in rows.fetchall()]


def get(dead_letter_id: int) -> DeadLetterRow | None:
    r = execute(f'SELECT {_COLUMNS} FROM "dead_letter" WHERE "id" = ?', (dead_letter_id,)).fetchone()
    return _row(r) if r else None


def count() -> int:
    return execute('SELECT COUNT(*) FROM "dead_letter"').fetchone()[0]
