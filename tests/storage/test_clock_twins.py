"""storage.db.utcnow and engine.context.utcnow are one convention written twice (storage imports only
peewee; the engine never imports storage): both naive UTC, both the same reading of the clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from engine.context import utcnow as engine_utcnow
from storage.db import utcnow as storage_utcnow


def test_both_clocks_read_naive_utc_now():
    before = datetime.now(timezone.utc).replace(tzinfo=None)
    engine_now, storage_now = engine_utcnow(), storage_utcnow()
    after = datetime.now(timezone.utc).replace(tzinfo=None)
    for now in (engine_now, storage_now):
        assert now.tzinfo is None
        assert before <= now <= after
    assert abs(storage_now - engine_now) < timedelta(seconds=1)
