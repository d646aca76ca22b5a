"""The database: chosen at run time from DATABASE_URL through a proxy, so models exist before it.

SQLite (the embedded default) runs in WAL mode with a busy timeout and foreign keys on; PostgreSQL goes
through psycopg2 with a connection pool.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from functools import lru_cache

import peewee
from playhouse.db_url import connect

database = peewee.DatabaseProxy()

DEFAULT_URL = "sqlite:///convoflow.db"

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "busy_timeout": 10_000,  # ms: writers queue instead of failing with "database is locked"
    "foreign_keys": 1,
    "synchronous": "normal",  # safe with WAL: a crash loses no committed transaction's consistency
}


def utcnow() -> datetime:
    """Naive UTC now, the project's one time convention (storage does not import the engine's copy)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def database_url(url: str | None = None) -> str:
    return url or os.environ.get("DATABASE_URL") or DEFAULT_URL


def is_postgres(db: peewee.Database | None = None) -> bool:
    target = db if db is not None else database.obj
    return isinstance(target, peewee.PostgresqlDatabase)


def write_transaction(db: peewee.Database | None = None):
    """A transaction that will write: on SQLite it takes the write lock at BEGIN (BEGIN IMMEDIATE), so two
    writers queue on the busy timeout instead of one failing later with "database is locked" when it
    upgrades a read lock. Nested use becomes a savepoint.
    """
    target = db if db is not None else database.obj
    if isinstance(target, peewee.SqliteDatabase):
        return target.atomic("IMMEDIATE")
    return target.atomic()


@lru_cache(maxsize=512)
def _postgres_placeholders(sql: str) -> str:
    return sql.replace("?", "%s")


def execute(sql: str, params: tuple | list = (), db: peewee.Database | None = None):
    """Run one SQL statement written with `?` placeholders on either database; returns the cursor.

    The turn path uses a handful of fixed statements (upserts with RETURNING, conditional updates);
    writing them once as SQL keeps each turn to a few round trips without building queries every time.
    """
    target = db if db is not None else database.obj
    if isinstance(target, peewee.PostgresqlDatabase):
        sql = _postgres_placeholders(sql)
    return target.execute_sql(sql, params)


def open_database(url: str | None = None) -> peewee.Database:
    """Connect the models to the database named by url (or DATABASE_URL, or the SQLite default)."""
    url = database_url(url)
    if url.startswith("sqlite"):
        db = connect(url, pragmas=SQLITE_PRAGMAS, check_same_thread=False)
    elif url.startswith(("postgres", "postgresql")):
        pooled = url.replace("postgresql://", "postgresql+pool://", 1).replace("postgres://", "postgres+pool://", 1)
        db = connect(pooled, max_connections=32, stale_timeout=300, timeout=30)
    else:
        raise ValueError(f"DATABASE_URL must start with sqlite:// or postgresql:// (got '{url.split(':', 1)[0]}')")
    database.initialize(db)
    return db
