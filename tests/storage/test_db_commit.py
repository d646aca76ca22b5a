"""A write transaction commits what it wrote, however long it took: the check a connection gets after sitting
idle (storage/db.py) must never roll back the transaction whose COMMIT it precedes."""

from __future__ import annotations

from storage.db import execute, write_transaction
from storage.models import Event
from storage.events import EventRecord, record_many
from clock import START


def test_a_transaction_longer_than_the_idle_check_still_commits_its_writes(db):
    # idle_check 0: every use outside a transaction counts as after a long idle, as the COMMIT of a
    # transaction that took longer than a second (a slow lock wait, a busy machine) does. On PostgreSQL the
    # check's ping rolled the open transaction back and the COMMIT that followed committed nothing.
    db.idle_check = 0.0

    with write_transaction():
        record_many([EventRecord(START, "test.kept", "c1", None, {})])
        execute('UPDATE "event" SET "subject" = ? WHERE "kind" = ?', ("still here", "test.kept"))

    assert [(e.kind, e.subject) for e in Event.select()] == [("test.kept", "still here")]
    assert not db.in_transaction()
