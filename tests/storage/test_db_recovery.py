"""A thread's database connection dies under it (issue 10.1): it is replaced, not reused for ever.

PostgreSQL: the server ends the session (what a restart does to every connection) or the server turns
read-only (what the old primary does in a failover). SQLite: the file is replaced (a restore) or vanishes.
The statement that meets the failure may fail; the next one works, on a fresh connection.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
from datetime import datetime

import peewee
import pytest

from storage.db import execute, is_postgres, open_database, write_transaction
from storage.heartbeat import beat
from storage.migrations import upgrade
from storage.models import Heartbeat

PG_URL = os.environ.get("TEST_DATABASE_URL")
NOW = datetime(2026, 1, 1, 12, 0)


def backend_pid(db) -> int:
    return db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]


@pytest.fixture
def pg():
    if not PG_URL:
        pytest.skip("PostgreSQL tests need TEST_DATABASE_URL")
    db = open_database(PG_URL)
    db.execute_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    upgrade(db)
    yield db
    db.close_all()


def kill_session(pid: int) -> None:
    """End one server session from outside, as a restart or an administrator does."""
    import psycopg2

    other = psycopg2.connect(PG_URL)
    try:
        other.autocommit = True
        # wait for the session to be gone (bounded): pg_terminate_backend only signals it
        other.cursor().execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
    finally:
        other.close()


def test_a_killed_postgresql_session_fails_one_statement_and_the_next_gets_a_new_connection(pg):
    pg.idle_check = 3600  # as if used a moment ago: not checked again before the next statement
    pid = backend_pid(pg)
    kill_session(pid)
    with pytest.raises(peewee.OperationalError):
        beat(NOW, "p1")  # used a moment ago, so not checked again: this one meets the dead connection
    beat(NOW, "p1")
    assert backend_pid(pg) != pid
    assert Heartbeat.get().process == "p1"


def test_an_idle_connection_is_checked_before_use_so_no_statement_fails(pg):
    pid = backend_pid(pg)
    kill_session(pid)
    pg.idle_check = 0  # as if it had sat idle past the check interval
    beat(NOW, "p1")
    assert backend_pid(pg) != pid


def test_a_connection_to_a_server_turned_read_only_is_replaced(pg):
    """The old primary after a failover answers but refuses writes: its connections must go."""
    pg.idle_check = 3600
    pid = backend_pid(pg)
    pg.execute_sql("SET default_transaction_read_only = on")  # this session only, like a demoted server
    with pytest.raises(peewee.InternalError, match="read-only"):
        beat(NOW, "p1")
    beat(NOW, "p1")
    assert backend_pid(pg) != pid


def test_every_dead_pooled_connection_is_dropped_not_handed_out(pg):
    import threading

    pids = []

    def use() -> None:
        pids.append(backend_pid(pg))
        pg.close()  # back to the pool

    threads = [threading.Thread(target=use) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pg.close()
    for pid in set(pids):
        kill_session(pid)
    beat(NOW, "p1")
    assert backend_pid(pg) not in pids


def rows_in_file(path: str) -> list[str]:
    with sqlite3.connect(path) as c:
        return [r[0] for r in c.execute('SELECT "process" FROM "heartbeat" ORDER BY "process"')]


def test_a_replaced_sqlite_file_is_reopened_so_writes_land_in_the_file_now_there(sqlite_db, tmp_path):
    path = str(tmp_path / "test.db")
    beat(NOW, "before")
    sqlite_db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copy(path, tmp_path / "restored.db")
    os.replace(tmp_path / "restored.db", path)  # an operator restores a copy: a new file at the same path
    sqlite_db.idle_check = 0
    beat(NOW, "after")
    sqlite_db.close()
    assert rows_in_file(path) == ["after", "before"]


def test_a_write_transaction_after_the_sqlite_file_was_replaced_writes_to_the_file_now_there(sqlite_db, tmp_path):
    # Its BEGIN is checked as a statement is, and runs on the connection opened in place of the dropped one.
    path = str(tmp_path / "test.db")
    beat(NOW, "before")
    sqlite_db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copy(path, tmp_path / "restored.db")
    os.replace(tmp_path / "restored.db", path)
    sqlite_db.idle_check = 0
    with write_transaction():
        beat(NOW, "after")
        beat(NOW, "again")
    sqlite_db.close()
    assert rows_in_file(path) == ["after", "again", "before"]


def test_a_write_transaction_opens_a_connection_for_a_thread_that_has_none(sqlite_db, tmp_path):
    def write(process: str) -> None:
        with write_transaction():
            beat(NOW, process)

    sqlite_db.close()
    write("this thread")
    other = threading.Thread(target=write, args=("another thread",))
    other.start()
    other.join()
    sqlite_db.close()
    assert rows_in_file(str(tmp_path / "test.db")) == ["another thread", "this thread"]


def test_a_vanished_sqlite_file_is_an_error_not_a_new_empty_database(sqlite_db, tmp_path):
    path = str(tmp_path / "test.db")
    beat(NOW, "before")
    sqlite_db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.move(path, tmp_path / "aside.db")
    sqlite_db.idle_check = 0
    with pytest.raises(peewee.OperationalError, match="missing"):
        beat(NOW, "lost")
    assert not os.path.exists(path)
    shutil.move(tmp_path / "aside.db", path)  # put back: service resumes
    beat(NOW, "after")
    sqlite_db.close()
    assert rows_in_file(path) == ["after", "before"]


def test_limit_wait_bounds_a_wait_for_another_writer(sqlite_db, tmp_path):
    import time

    other = sqlite3.connect(str(tmp_path / "test.db"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        sqlite_db.limit_wait(0.3)
        started = time.monotonic()
        with pytest.raises(peewee.OperationalError, match="locked"):
            beat(NOW, "p1")
        assert time.monotonic() - started < 3  # not SQLite's usual 10 s busy timeout
    finally:
        other.execute("ROLLBACK")
        other.close()
        sqlite_db.limit_wait(None)
    beat(NOW, "p1")
    assert is_postgres(sqlite_db) is False and execute('SELECT COUNT(*) FROM "heartbeat"').fetchone()[0] == 1
