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

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from outage_kit import (
    CONTACTS,
    MARKS,
    RETRY_FOR,
    all_answered_once,
    answers,
    left_over,
    pgcluster,
    serve_two_turns,
    store_echo,
    stop_serve,
)

pytestmark = MARKS

RESUME_WITHIN = 10.0  # seconds from the promotion until every reply held up by the failover was sent


@pytest.fixture
def pair():
    """A primary with the echo flow stored, and its synchronous streaming standby."""
    primary = pgcluster.Cluster()
    standby = None
    try:
        store_echo(primary.url)
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
    url = (
        f"postgresql://convoflow@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/convoflow"
        "?target_session_attrs=read-write"
    )
    proc, base, say, refusals = serve_two_turns(url, graph, tmp_path)
    try:
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
        all_answered_once(graph, base, refusals, standby.url)
    finally:
        stop_serve(proc)
