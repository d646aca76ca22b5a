"""Shared fixtures. `db` runs a test on a real SQLite file and, when TEST_DATABASE_URL is set (`.ci/run`
sets it), on a real PostgreSQL as well.
"""
from __future__ import annotations

import os

import pytest

from storage.db import is_postgres, open_database
from storage.models import ALL_MODELS

PG_URL = os.environ.get("TEST_DATABASE_URL")
PG_SKIP = "PostgreSQL tests need TEST_DATABASE_URL (run `bash .ci/run`, which starts a throwaway server)"


def _reset(db):
    db.drop_tables(ALL_MODELS, safe=True, cascade=is_postgres(db))
    db.create_tables(ALL_MODELS)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    """A fresh, empty database with the schema, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        database = open_database(f"sqlite:///{tmp_path / 'test.db'}")
    else:
        if not PG_URL:
            pytest.skip(PG_SKIP)
        database = open_database(PG_URL)
    _reset(database)
    yield database
    database.close()


@pytest.fixture
def sqlite_db(tmp_path):
    """A fresh SQLite file database only (for tests that do not need both)."""
    database = open_database(f"sqlite:///{tmp_path / 'test.db'}")
    _reset(database)
    yield database
    database.close()
