"""DATABASE_URL naming several PostgreSQL hosts, libpq's form for a primary and its standbys (issue 10.1,
failover): a new connection goes to the first host that answers and is the primary. The failover itself,
under a running `flows serve`, is tests/channels/test_wa_db_failover.py.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest

from storage.db import _postgres_params, open_database

PG_URL = os.environ.get("TEST_DATABASE_URL")


def closed_port() -> int:
    """A loopback port nothing listens on (bound and released: a connection to it is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_url_with_a_dead_host_first_connects_to_the_live_primary_after_it():
    if not PG_URL:
        pytest.skip("PostgreSQL tests need TEST_DATABASE_URL")
    parts = urlsplit(PG_URL)
    user, _, live = parts.netloc.rpartition("@")
    url = f"{parts.scheme}://{user}@127.0.0.1:{closed_port()},{live}{parts.path}?target_session_attrs=read-write"
    db = open_database(url)
    try:
        port, read_only = db.execute_sql(
            "SELECT inet_server_port(), current_setting('transaction_read_only')"
        ).fetchone()
        assert (port, read_only) == (urlsplit(PG_URL).port, "off")
        db.execute_sql("CREATE TEMPORARY TABLE written (x int)")  # a write: it reached a primary
    finally:
        db.close_all()


def test_several_hosts_are_read_by_libpq_and_keep_every_setting():
    params = _postgres_params(
        "postgresql://bot:s%40lt@db1:5432,db2:6432/convoflow?target_session_attrs=read-write&sslmode=require"
    )
    assert params == {
        "database": "convoflow",
        "user": "bot",
        "password": "s@lt",
        "host": "db1,db2",
        "port": "5432,6432",
        "target_session_attrs": "read-write",
        "sslmode": "require",
    }


def test_one_host_is_read_as_before_even_with_a_comma_in_the_password():
    params = _postgres_params("postgresql://bot:a,b@db1:5432/convoflow")
    assert params == {"database": "convoflow", "user": "bot", "password": "a,b", "host": "db1", "port": 5432}


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://bot:hunter2@db1:5432,db2:5432/convoflow?no_such_option=1",
        "postgresql://bot:hunter2%zz@db1:5432,db2:5432/convoflow",
    ],
)
def test_an_unreadable_multi_host_url_says_the_form_and_never_the_password(url):
    with pytest.raises(ValueError) as refused:
        open_database(url)
    assert "host1:port1,host2:port2" in str(refused.value)
    assert "hunter2" not in str(refused.value)
