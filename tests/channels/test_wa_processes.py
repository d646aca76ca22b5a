"""Several processes on one PostgreSQL: a webhook-only server and two `flows worker` processes share the
inbox and the outbox. No message is handled twice and each contact's replies leave in order."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from channels.whatsapp import create_app
from storage.db import is_postgres
from storage.models import InboxMessage

import whatsapp_fakes as wa
from channel_harness import FLOWS, REPO, database_url, settled, store_flows, wait_until

CONTACTS = [f"2637720{i:05d}" for i in range(20)]
ROUNDS = 10


def start_worker(db, graph, tmp_path, n: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(db),
        "WHATSAPP_ACCESS_TOKEN": wa.ACCESS_TOKEN,
        "WHATSAPP_PHONE_NUMBER_ID": wa.PHONE_NUMBER_ID,
        "WHATSAPP_API_URL": graph.url,
        "LOG_FORMAT": "json",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    log = open(tmp_path / f"worker{n}.log", "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "worker", "--workers", "2", "--sandbox"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.slow
def test_two_worker_processes_share_the_work_without_doubles_or_reordering(db, settings, graph, tmp_path):
    if not is_postgres(db):
        pytest.skip("several processes share one database on PostgreSQL; SQLite runs one process")
    store_flows(os.path.join(FLOWS, "echo.yaml"))
    (tmp_path / "metrics").mkdir()
    webhook = wa.ServerThread(create_app(settings))
    workers = [start_worker(db, graph, tmp_path, n) for n in range(2)]

    def conversation(wa_id: str) -> None:
        with requests.Session() as http:
            for k, words in enumerate(["start", *map(str, range(1, ROUNDS + 1))]):
                body = wa.body_of(wa.envelope([wa.text(wa_id, words, ts=wa.TS + k)], [wa.contact(wa_id)]))
                r = http.post(
                    webhook.url + "/webhook", data=body, headers={"X-Hub-Signature-256": wa.sign(body)}, timeout=10
                )
                assert r.status_code == 200

    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(conversation, CONTACTS))
        expected = ["Say something."] + [f"You said {k}. Say something." for k in range(1, ROUNDS + 1)]
        graph.wait_for(len(CONTACTS) * len(expected), timeout=120)
        assert wait_until(settled, timeout=60)
        for wa_id in CONTACTS:
            assert graph.texts_to(wa_id) == expected, (tmp_path / "worker0.log").read_text()[-3000:]
        assert InboxMessage.select().count() == len(CONTACTS) * (ROUNDS + 1)
        # The processes' counters, summed through the folder they share (what /metrics shows on one machine).
        assert turns_counted(tmp_path / "metrics") == len(CONTACTS) * (ROUNDS + 1)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                assert w.wait(20) == 0
            except subprocess.TimeoutExpired:
                w.kill()
        webhook.close()
    for n in range(2):  # LOG_FORMAT=json: the workers' log lines are JSON objects
        logged = [
            json.loads(line) for line in (tmp_path / f"worker{n}.log").read_text().splitlines() if line.startswith("{")
        ]
        assert any(line["logger"] == "convoflow.worker" and "workers started" in line["message"] for line in logged)


def turns_counted(folder) -> float:
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    return registry.get_sample_value("convoflow_turns_total") or 0
