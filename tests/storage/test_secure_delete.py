"""A redacted one-time code leaves no bytes behind in the SQLite file (PRAGMA secure_delete, set by
storage/db.py whatever the SQLite build's default): the row's old text, once on disk, is zeroed when the
row is rewritten, not left in the page's free space where a copy of the file would still show it."""

from __future__ import annotations

import sqlite3
import time

from storage import inbox
from storage.contacts import upsert_contact
from storage.db import empty_wal, utcnow, write_transaction

OTP = "73915284"


def checkpointed_bytes(db) -> bytes:
    """The database file with every committed page in it and the WAL emptied (as the housekeeping does)."""
    assert empty_wal() is True
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


def test_a_redacted_code_leaves_the_wal_when_the_housekeeping_empties_it(sqlite_db):
    # The WAL keeps every page image a transaction wrote, the code's page before its redaction among them;
    # a checkpoint copies only the last image of each page into the database file and SQLite then writes
    # over the log from its beginning, leaving the older images behind the new ones. `empty_wal` (every
    # housekeeping sweep) copies the pages and cuts the log to nothing.
    now = utcnow()
    contact = upsert_contact("263771234567", now)
    for n in range(3):
        inbox.add(contact, f"wamid.before.{n}", {"text": "hello there " * 5}, now, now)
    payload = {"contact": "263771234567", "message_id": "wamid.otp", "text": OTP, "raw": {"text": {"body": OTP}}}
    row, _ = inbox.add(contact, "wamid.otp", payload, now, now)
    with write_transaction():
        assert inbox.redact_answer(row.id) == {OTP}
    assert OTP.encode() in file_bytes(sqlite_db.database + "-wal")  # its page as first written

    assert empty_wal() is True
    assert file_bytes(sqlite_db.database + "-wal") == b""
    assert OTP.encode() not in file_bytes(sqlite_db.database), "the code is in the database file"
    inbox.add(contact, "wamid.next", {"text": "the next message"}, now, now)
    assert OTP.encode() not in file_bytes(sqlite_db.database + "-wal"), "the code's old page is still in the WAL"
    assert OTP.encode() not in file_bytes(sqlite_db.database), "the code is in the database file"


def test_empty_wal_gives_up_within_its_wait_while_a_reader_holds_old_pages_and_succeeds_after(sqlite_db):
    now = utcnow()
    contact = upsert_contact("263771234567", now)
    inbox.add(contact, "wamid.first", {"text": "hello"}, now, now)
    reader = sqlite3.connect(sqlite_db.database, isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM inbox_message").fetchone() == (1,)  # a snapshot in the WAL
        inbox.add(contact, "wamid.second", {"text": "hello again"}, now, now)
        started = time.monotonic()
        assert empty_wal(wait=0.2) is False
        assert time.monotonic() - started < 2
        with write_transaction():  # this thread's own wait is back to the default, and writers go on
            inbox.add(contact, "wamid.third", {"text": "and again"}, now, now)
        reader.execute("COMMIT")
    finally:
        reader.close()
    assert empty_wal() is True
    assert file_bytes(sqlite_db.database + "-wal") == b""


def test_sqlite_keeps_its_wal_file_between_checkpoints(sqlite_db):
    # A journal_size_limit would cut the WAL file at each automatic checkpoint and grow it again page by page,
    # about a third more system time a commit; the old images are cut by `empty_wal` instead.
    assert sqlite_db.execute_sql("PRAGMA journal_size_limit").fetchone() == (-1,)


def file_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
