"""PostgreSQL restarted under a running `flows serve` (issue 10.1, 10.4): the process resumes by itself.

A private throwaway cluster (never the shared test server) is stopped while conversations are going on and
started again a few seconds later. Meta's behaviour is replayed: a delivery answered with anything but 200
is posted again. Every message posted before, during and after the outage is answered exactly once and in
order; while the database is down the webhook says 503 quickly and /readyz says 503; afterwards /healthz,
/readyz and /metrics are 200 again without restarting the process.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from outage_kit import MARKS, RETRY_FOR, all_answered_once, answers, pgcluster, serve_two_turns, store_echo, stop_serve

pytestmark = MARKS


@pytest.fixture
def cluster():
    c = pgcluster.Cluster()
    store_echo(c.url)
    yield c
    c.close()


def test_a_postgresql_restart_under_flows_serve_loses_nothing_and_answers_once(cluster, graph, tmp_path):
    proc, base, say, refusals = serve_two_turns(cluster.url, graph, tmp_path)
    try:
        # No wait for those replies to be recorded: a stop between a send and its record must neither lose
        # the record nor send the reply again (the sender keeps the outcome and writes it later).

        cluster.stop("fast")
        with ThreadPoolExecutor(1) as background:
            during = background.submit(lambda: (say(2, "2"), say(3, "3")))
            assert answers(base + "/readyz", 503, timeout=10)
            scrape = requests.get(base + "/metrics", timeout=10)
            assert scrape.status_code == 200 and "convoflow_database_up 0" in scrape.text
            assert requests.get(base + "/healthz", timeout=10).status_code == 200  # alive: do not restart it
            time.sleep(3)  # the outage: deliveries keep being refused meanwhile
            cluster.start()
            during.result(timeout=RETRY_FOR + 10)
        say(4, "4")
        say(5, "5")
        all_answered_once(graph, base, refusals, cluster.url)
    finally:
        stop_serve(proc)
