"""SQLite's page size: a new database's pages are 2 KiB (storage/db.py SQLITE_PRAGMAS, docs/storage.md); a
database made before with SQLite's 4 KiB pages keeps them and works as before."""

from __future__ import annotations

import sqlite3

from clock import START
from storage import contacts, db as storage_db
from storage.db import execute, open_database
from storage.migrations import upgrade


def test_a_new_sqlite_database_has_2_kib_pages_in_wal_mode(sqlite_db):
    assert execute("PRAGMA page_size").fetchone()[0] == 2048
    assert execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_database_made_with_4_kib_pages_keeps_them_and_its_data(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    with monkeypatch.context() as old:  # as a release before this one created it
        old.setitem(storage_db.SQLITE_PRAGMAS, "page_size", 4096)
        made = open_database(f"sqlite:///{path}")
        upgrade(made)
        first = contacts.upsert_contact("c1", START)
        made.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA page_size").fetchone()[0] == 4096

    reopened = open_database(f"sqlite:///{path}")
    upgrade(reopened)
    try:
        assert execute("PRAGMA page_size").fetchone()[0] == 4096
        assert execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert contacts.upsert_contact("c1", START) == first
        second = contacts.upsert_contact("c2", START)
        assert execute('SELECT "key" FROM "contact" WHERE "id" = ?', (second,)).fetchone()[0] == "c2"
    finally:
        reopened.close()
