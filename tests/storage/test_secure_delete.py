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


def test_a_redacted_code_leaves_the_wal_at_the_first_write_after_a_checkpoint(sqlite_db):
    # The WAL keeps every page image a transaction wrote, the code's page before its redaction among them,
    # and a checkpoint (PASSIVE: the automatic one's and the workers' housekeeping's) copies only the last
    # image of each page into the database file. The first write after it starts the WAL again from its
    # beginning, and journal_size_limit (0) cuts the file there: the older images go, not only the few
    # that write overwrites.
    now = utcnow()
    contact = upsert_contact("263771234567", now)
    for n in range(3):
        inbox.add(contact, f"wamid.before.{n}", {"text": "hello there " * 5}, now, now)
    payload = {"contact": "263771234567", "message_id": "wamid.otp", "text": OTP, "raw": {"text": {"body": OTP}}}
    row, _ = inbox.add(contact, "wamid.otp", payload, now, now)
    with write_transaction():
        assert inbox.redact_answer(row.id) == {OTP}
    assert OTP.encode() in file_bytes(sqlite_db.database + "-wal")  # its page as first written

    busy, frames, copied = sqlite_db.execute_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert busy == 0 and frames == copied
    inbox.add(contact, "wamid.next", {"text": "the next message"}, now, now)
    assert OTP.encode() not in file_bytes(sqlite_db.database + "-wal"), "the code's old page is still in the WAL"
    assert OTP.encode() not in file_bytes(sqlite_db.database), "the code is in the database file"


def file_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
