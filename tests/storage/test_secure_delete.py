"""A redacted one-time code leaves no bytes behind in the SQLite file (PRAGMA secure_delete, set by
storage/db.py whatever the SQLite build's default): the row's old text, once on disk, is zeroed when the
row is rewritten, not left in the page's free space where a copy of the file would still show it."""

from __future__ import annotations

from storage import inbox
from storage.contacts import upsert_contact
from storage.db import utcnow, write_transaction

OTP = "73915284"


def checkpointed_bytes(db) -> bytes:
    """The database file with every committed page in it and the WAL emptied."""
    assert db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    with open(db.database, "rb") as f:
        return f.read()


def test_a_redacted_code_is_not_left_in_the_file(sqlite_db):
    now = utcnow()
    contact = upsert_contact("263771234567", now)
    payload = {"contact": "263771234567", "message_id": "wamid.otp", "text": OTP, "raw": {"text": {"body": OTP}}}
    for n in range(3):  # messages before and after it on its page: its cell is freed inside the page
        inbox.add(contact, f"wamid.before.{n}", {"text": "hello there " * 5}, now, now)
    row, _ = inbox.add(contact, "wamid.otp", payload, now, now)
    for n in range(3):
        inbox.add(contact, f"wamid.after.{n}", {"text": "hello there " * 5}, now, now)
    assert OTP.encode() in checkpointed_bytes(sqlite_db)  # on disk, as a message is until its turn

    with write_transaction():
        assert inbox.redact_answer(row.id) == {OTP}
    raw = checkpointed_bytes(sqlite_db)
    assert b"one-time code removed" in raw
    assert OTP.encode() not in raw
