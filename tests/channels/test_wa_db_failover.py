"""PostgreSQL failing over to a new primary under a running `flows serve` (issue 10.1, its last clause).

A real pair, both private throwaway clusters (never the shared test server): a primary and a streaming hot
standby made with pg_basebackup, replication synchronous (a commit the primary acknowledged is on the
standby, as a payment service runs it). DATABASE_URL names both hosts in libpq's form with
target_session_attrs=read-write. While conversations go on the primary crashes (stop -m immediate) and the
standby is promoted; Meta's behaviour is replayed (a delivery answered with anything but 200 is posted
again). Every message posted before, during and after is answered exactly once and in order, those posted
during the gap within seconds of the promotion, and /readyz is 200 again without restarting the process.

On the code before this change `flows serve` could not start on such a URL (playhouse reads one host).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from storage.db import open_database
from storage.migrations import upgrade

import whatsapp_fakes as wa
from channel_harness import FLOWS, store_flows
from test_wa_db_restart import CONTACTS, RETRY_FOR, answers, deliver, left_over, pgcluster, pytestmark, start_serve

assert pytestmark  # slow; skipped without the PostgreSQL server programs (same conditions as the restart test)

RESUME_WITHIN = 10.0  # seconds from the promotion until every reply held up by the failover was sent


@pytest.fixture
def pair():
    """A primary with the echo flow stored, and its synchronous streaming standby."""
    primary = pgcluster.Cluster()
    standby = None
    try:
        db = open_database(primary.url)
        upgrade(db)
        store_flows(os.path.join(FLOWS, "echo.yaml"))
        db.close_all()
        standby = pgcluster.Cluster(primary=primary)
        primary.sql("ALTER SYSTEM SET synchronous_standby_names = '*'")
        primary.sql("SELECT pg_reload_conf()")
        yield primary, standby
    finally:
        if standby is not None:
            standby.close()
        primary.close()


def test_a_failover_to_a_new_primary_under_flows_serve_loses_nothing_and_answers_once(pair, graph, tmp_path):
    primary, standby = pair
    url = (f"postgresql://convoflow@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/convoflow"
           "?target_session_attrs=read-write")
    proc, base = start_serve(url, graph, tmp_path)
    refusals: list[float] = []

    def say(k: int, words: str) -> None:
        with ThreadPoolExecutor(len(CONTACTS)) as pool:
            list(pool.map(lambda wa_id: deliver(base, wa_id, words, wa.TS + k, refusals), CONTACTS))

    try:
        say(0, "start")
        say(1, "1")
        assert len(graph.wait_for(2 * len(CONTACTS), timeout=30)) == 2 * len(CONTACTS)

        primary.stop("immediate")  # a crash: no shutdown, sessions cut
        with ThreadPoolExecutor(1) as background:
            during = background.submit(lambda: (say(2, "2"), say(3, "3")))
            assert answers(base + "/readyz", 503, timeout=10)  # no primary: the standby refuses writes
            time.sleep(2)  # the failover tool's decision time: deliveries keep being refused meanwhile
            standby.promote()
            promoted = time.monotonic()
            during.result(timeout=RETRY_FOR + 10)
        held_up = graph.wait_for(4 * len(CONTACTS), timeout=RESUME_WITHIN)
        resumed = time.monotonic() - promoted
        assert len(held_up) >= 4 * len(CONTACTS), left_over(standby.url)
        assert resumed < RESUME_WITHIN, f"replies resumed {resumed:.1f} s after the promotion"
        assert answers(base + "/readyz", 200, timeout=5)
        say(4, "4")
        say(5, "5")

        expected = ["Say something."] + [f"You said {k}. Say something." for k in range(1, 6)]
        graph.wait_for(len(expected) * len(CONTACTS), timeout=30)
        for wa_id in CONTACTS:
            assert graph.texts_to(wa_id) == expected, left_over(standby.url)
        assert refusals, "the webhook never refused a delivery during the failover"
        assert max(refusals) < 5, f"a refusal took {max(refusals):.1f} s (DATABASE_WAIT is 2 s)"
        for path in ("/healthz", "/readyz", "/metrics"):
            assert requests.get(base + path, timeout=10).status_code == 200, path
        assert "convoflow_database_up 1" in requests.get(base + "/metrics", timeout=10).text
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
