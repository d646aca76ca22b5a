"""Shared fixtures. `db` runs a test on a real SQLite file and, when TEST_DATABASE_URL is set (`.ci/run`
sets it), on a real PostgreSQL as well. Both get their schema from storage.migrations.upgrade(), the
same path `flows db upgrade` takes.
"""

from __future__ import annotations

import io
import logging
import os

import pytest

from storage import logs
from storage.db import open_database
from storage.migrations import upgrade

PG_URL = os.environ.get("TEST_DATABASE_URL")
PG_SKIP = "PostgreSQL tests need TEST_DATABASE_URL (run `bash .ci/run`, which starts a throwaway server)"


def _fresh_postgres():
    """Empty the test database: dropping the schema is faster than dropping tables one by one."""
    database = open_database(PG_URL)
    database.execute_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    return database


@pytest.fixture(autouse=True)
def no_log_fields_left():
    """Fail a test that leaves log fields set on the main thread (a storage.logs context entered and never
    left, a tag kept outside any context): every later test's log lines would carry them."""
    before = logs.current()
    yield
    left = logs.current()
    assert left == before, f"the test left log fields set on the main thread: {left}"


@pytest.fixture
def json_logs():
    """Every logger at DEBUG through the JSON handler into a buffer, as LOG_LEVEL=DEBUG LOG_FORMAT=json."""
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    logs.configure("DEBUG", "json", stream)
    yield stream
    for handler in [h for h in root.handlers if getattr(h, "convoflow_handler", False)]:
        root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    """A fresh database with the full schema, on SQLite and on PostgreSQL; its URL is in `.url`."""
    if request.param == "sqlite":
        database = open_database(f"sqlite:///{tmp_path / 'test.db'}")
    else:
        if not PG_URL:
            pytest.skip(PG_SKIP)
        database = _fresh_postgres()
    database.url = f"sqlite:///{tmp_path / 'test.db'}" if request.param == "sqlite" else PG_URL
    upgrade(database)
    yield database
    _close(database)


def _close(database) -> None:
    """Close this thread's connection and, for a pool, every idle one: each test opens a new pool."""
    database.close()
    if hasattr(database, "close_all"):
        database.close_all()


@pytest.fixture(params=["sqlite", "postgres"])
def blank_db(request, tmp_path):
    """A database with no schema at all (for migration tests); its URL is in `.url`."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'blank.db'}"
        database = open_database(url)
    else:
        if not PG_URL:
            pytest.skip(PG_SKIP)
        url = PG_URL
        database = _fresh_postgres()
    database.url = url
    yield database
    _close(database)


@pytest.fixture
def sqlite_db(tmp_path):
    """A fresh SQLite file database only (for tests that do not need both)."""
    database = open_database(f"sqlite:///{tmp_path / 'test.db'}")
    upgrade(database)
    yield database
    database.close()
