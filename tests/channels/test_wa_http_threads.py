"""How many threads answer HTTP in `flows serve` (HTTP_THREADS): unset, fewer on SQLite, whose writes take
turns at one lock, than on PostgreSQL, whose round trips more threads hide."""

from __future__ import annotations

from channels.whatsapp import pool_size
from storage.settings import Settings


def test_unset_http_threads_are_four_on_sqlite_and_eight_on_postgresql():
    assert Settings.from_env({"DATABASE_URL": "sqlite:///bot.db"}, dotenv=False).serving_threads() == 4
    assert Settings.from_env({}, dotenv=False).serving_threads() == 4  # the default database is SQLite
    postgres = Settings.from_env({"DATABASE_URL": "postgresql://bot@db:5432/bot"}, dotenv=False)
    assert postgres.serving_threads() == 8
    assert pool_size(postgres, workers=2) == 14  # a connection for each HTTP and turn thread, and spares


def test_http_threads_set_win_on_either_database():
    for url in ("sqlite:///bot.db", "postgresql://bot@db:5432/bot"):
        assert Settings.from_env({"DATABASE_URL": url, "HTTP_THREADS": "6"}, dotenv=False).serving_threads() == 6
