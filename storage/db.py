"""The database: chosen at run time from DATABASE_URL through a proxy, so models exist before it.

SQLite (the embedded default) runs in WAL mode with a busy timeout and foreign keys on; PostgreSQL goes
through psycopg2 with a connection pool.
"""
from __future__ import annotations

import os

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


def database_url(url: str | None = None) -> str:
    return url or os.environ.get("DATABASE_URL") or DEFAULT_URL


def is_postgres(db: peewee.Database | None = None) -> bool:
    target = db if db is not None else database.obj
    return isinstance(target, peewee.PostgresqlDatabase)


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
