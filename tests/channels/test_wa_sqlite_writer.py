"""The SQLite writer lock the webhook's threads take turns at belongs to the database it guards (issue 12.6):
held on one database it holds up that database's deliveries within DATABASE_WAIT, and none of another's."""

from __future__ import annotations

from datetime import datetime

import pytest

from channels.payloads import parse_webhook
from channels.whatsapp import StoreBusy, store_webhook
from storage.db import database, open_database
from storage.migrations import upgrade

import whatsapp_fakes as wa
from whatsapp_fakes import held_by_another_thread

NOW = datetime(2026, 1, 1, 12, 0)


def delivery(text: str):
    return parse_webhook(wa.body_of(wa.envelope([wa.text("263771234567", text)])))


def test_a_held_writer_lock_holds_up_only_its_own_database(sqlite_db, tmp_path):
    other = open_database(f"sqlite:///{tmp_path / 'other.db'}")
    upgrade(other)
    database.initialize(sqlite_db)  # deliveries go to the test's database again
    with held_by_another_thread(other.writer):  # a thread of this process writing to other.db
        assert store_webhook(delivery("hi"), NOW, wait=0.5) == (1, 0)
    other.close()
    with held_by_another_thread(sqlite_db.writer):  # a thread of this process writing to the same database
        with pytest.raises(StoreBusy, match="within 0.1 s"):
            store_webhook(delivery("hello"), NOW, wait=0.1)
    assert store_webhook(delivery("hello"), NOW, wait=0.1) == (1, 0)
