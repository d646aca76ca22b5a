"""The audit log: what turns, payments and operators did, one row per event, never a secret."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from .db import execute
from .models import Event


@dataclass(frozen=True)
class EventRecord:
    at: datetime
    kind: str
    contact_key: str | None = None
    subject: str | None = None
    detail: dict[str, Any] | None = None


def record(event: EventRecord) -> None:
    record_many([event])


def record_many(events: Iterable[EventRecord]) -> None:
    """Append events (one multi-row INSERT); call inside the transaction whose change they describe."""
    rows = list(events)
    if not rows:
        return
    values = ", ".join(["(?, ?, ?, ?, ?)"] * len(rows))
    params: list[Any] = []
    for e in rows:
        params += [e.at, e.kind, e.contact_key, e.subject, json.dumps(e.detail or {}, default=str)]
    execute(f'INSERT INTO "event" ("at", "kind", "contact_key", "subject", "detail") VALUES {values}', params)


def _record(e: Event) -> EventRecord:
    return EventRecord(e.at, e.kind, e.contact_key, e.subject, json.loads(e.detail or "{}"))


def for_subject(subject: str) -> list[EventRecord]:
    """Every event about one subject (a payment reference), oldest first (index on subject)."""
    return [_record(e) for e in Event.select().where(Event.subject == subject).order_by(Event.at, Event.id)]


def recent(limit: int = 50, contact_key: str | None = None) -> list[EventRecord]:
    """The latest events, newest first (index on at)."""
    query = Event.select().order_by(Event.at.desc(), Event.id.desc()).limit(limit)
    if contact_key is not None:
        query = query.where(Event.contact_key == contact_key)
    return [_record(e) for e in query]
