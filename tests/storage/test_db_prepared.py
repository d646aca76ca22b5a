"""On PostgreSQL, storage.db.execute's statements run as server-side prepared statements (issue 14): parsed
and planned once per connection, not on every call. A connection that lost them (DISCARD ALL, a reconnect)
prepares them again; a statement the server cannot prepare runs as plain SQL, inside a transaction too.
"""

from __future__ import annotations

import os

import peewee
import pytest

from storage.db import _UNPREPARABLE, execute, is_postgres, open_database, write_transaction

PG_URL = os.environ.get("TEST_DATABASE_URL")
COUNT_KEYS = 'SELECT COUNT(*) FROM "contact" WHERE "key" = ?'
ADD = 'INSERT INTO "contact" ("key", "created_at", "last_seen_at") VALUES (?, now(), now())'


@pytest.fixture
def pg(db):
    """conftest's fresh database, on PostgreSQL only (SQLite has nothing to prepare)."""
    if not is_postgres(db):
        pytest.skip("PostgreSQL only: SQLite's statements are cached by sqlite3")
    return db


def prepared(db) -> list[str]:
    """The statements prepared on this thread's connection (its server session)."""
    rows = db.execute_sql("SELECT statement FROM pg_prepared_statements").fetchall()
    return [r[0] for r in rows]


def test_a_fixed_statement_is_prepared_once_and_executed_after_that(pg):
    for key in ("a", "b", "c"):
        execute(ADD, (key,))
    assert execute(COUNT_KEYS, ("a",)).fetchone()[0] == 1
    assert execute(COUNT_KEYS, ("z",)).fetchone()[0] == 0
    texts = prepared(pg)
    assert sum('FROM "contact" WHERE "key" = $1' in t for t in texts) == 1
    assert sum('INSERT INTO "contact"' in t for t in texts) == 1


def test_rowcount_and_returning_work_through_execute(pg):
    execute(ADD, ("a",))
    cursor = execute('UPDATE "contact" SET "profile_name" = ? WHERE "key" = ? RETURNING "id"', ("Ann", "a"))
    assert cursor.rowcount == 1 and cursor.fetchone()[0] > 0
    assert execute('UPDATE "contact" SET "profile_name" = ? WHERE "key" = ?', ("Bob", "nobody")).rowcount == 0


def test_statements_lost_by_discard_all_are_prepared_again(pg):
    execute(ADD, ("a",))
    assert execute(COUNT_KEYS, ("a",)).fetchone()[0] == 1
    pg.execute_sql("DISCARD ALL")
    assert prepared(pg) == []
    assert execute(COUNT_KEYS, ("a",)).fetchone()[0] == 1  # outside a transaction: prepared again at once
    pg.execute_sql("DISCARD ALL")
    with pytest.raises(peewee.DatabaseError):  # inside one, the transaction is lost: its caller retries it
        with write_transaction():
            execute(COUNT_KEYS, ("a",))
    with write_transaction():
        execute(ADD, ("b",))
        assert execute(COUNT_KEYS, ("b",)).fetchone()[0] == 1
    assert execute(COUNT_KEYS, ("b",)).fetchone()[0] == 1


def test_a_statement_the_server_cannot_prepare_runs_plain_without_losing_the_transaction(pg):
    untyped = "SELECT ? IS NULL"  # PREPARE cannot infer $1's type
    with write_transaction():
        execute(ADD, ("a",))
        assert execute(untyped, (None,)).fetchone()[0] is True
        assert execute(untyped, (1,)).fetchone()[0] is False
        execute(ADD, ("b",))
    assert execute('SELECT COUNT(*) FROM "contact"').fetchone()[0] == 2
    assert not any("SELECT $1 IS NULL" in t for t in prepared(pg))
    assert untyped in _UNPREPARABLE


def test_a_new_connection_prepares_its_statements_afresh(pg):
    import psycopg2

    assert execute(COUNT_KEYS, ("a",)).fetchone()[0] == 0
    pid = pg.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
    other = psycopg2.connect(PG_URL)
    other.autocommit = True
    other.cursor().execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
    other.close()
    pg.idle_check = 0  # checked at its next use: the dead connection is replaced
    assert execute(COUNT_KEYS, ("a",)).fetchone()[0] == 0
    assert pg.execute_sql("SELECT pg_backend_pid()").fetchone()[0] != pid
    assert any('WHERE "key" = $1' in t for t in prepared(pg))


def test_prepare_statements_off_in_the_url_runs_plain_sql(pg):
    pg.close_all()
    db = open_database(PG_URL + ("&" if "?" in PG_URL else "?") + "prepare_statements=off")
    try:
        assert execute(COUNT_KEYS, ("a",)).fetchone()[0] == 0
        assert prepared(db) == []
    finally:
        db.close_all()


def test_a_refused_statement_inside_a_transaction_begun_by_hand_keeps_it(pg):
    pg.execute_sql("BEGIN")  # not through peewee's atomic(): the server's transaction status is what counts
    execute(ADD, ("a",))
    assert execute("SELECT ? IS NOT NULL", ("x",)).fetchone()[0] is True
    execute(ADD, ("b",))
    pg.execute_sql("COMMIT")
    assert execute('SELECT COUNT(*) FROM "contact"').fetchone()[0] == 2


def test_the_senders_mark_of_sent_rows_is_prepared(pg):
    # Its VALUES list's parameters once had no type PostgreSQL could infer: planned anew on every mark.
    from datetime import datetime

    from storage import outbox

    execute(ADD, ("263771234567",))
    contact_id = execute('SELECT "id" FROM "contact" WHERE "key" = ?', ("263771234567",)).fetchone()[0]
    at = datetime(2026, 12, 2, 8, 0)
    outbox.enqueue(contact_id, [{"to": "263771234567", "text": f"reply {n}"} for n in range(2)], at)
    for n in range(2):  # a contact's rows are claimed one at a time, each marked by the same statement
        outbox.record_sent([(row.id, f"wamid.{n}") for row in outbox.claim(at, at, 10)], at)
    assert sum('UPDATE "outbox_message" SET "status" = \'sent\'' in t for t in prepared(pg)) == 1
    marked = execute('SELECT "status", "channel_message_id" FROM "outbox_message" ORDER BY "id"').fetchall()
    assert [tuple(r) for r in marked] == [("sent", "wamid.0"), ("sent", "wamid.1")]
