"""The webhook under gunicorn with two worker processes on one PostgreSQL (issue 13.5, 13.6): /metrics gives
the same totals whichever worker answers (prometheus_client's multiprocess mode), and gunicorn's lines and
the app's are the same JSON lines."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from storage.db import is_postgres

import whatsapp_fakes as wa
from channel_harness import REPO, database_url, wait_until

MESSAGES = 24
SCRAPES = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gunicorn(db, tmp_path, port: int, metrics_dir) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(db),
        "WHATSAPP_APP_SECRET": wa.SECRET,
        "WHATSAPP_VERIFY_TOKEN": wa.VERIFY_TOKEN,
        "WHATSAPP_ACCESS_TOKEN": wa.ACCESS_TOKEN,
        "WHATSAPP_PHONE_NUMBER_ID": wa.PHONE_NUMBER_ID,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
    }
    if metrics_dir is not None:
        metrics_dir.mkdir()
        (metrics_dir / "counter_1.db").write_bytes(b"stale")  # a previous run's: emptied when gunicorn starts
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    log = open(tmp_path / "gunicorn.log", "wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:channels.gunicorn_conf",
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "--control-socket",
            str(tmp_path / "gunicorn.ctl"),
            "channels.whatsapp:create_from_env(workers=0, sandbox=True)",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def deliver(url: str, wa_id: str) -> int:
    body = wa.body_of(wa.envelope([wa.text(wa_id, "hi")], [wa.contact(wa_id)]))
    return requests.post(
        url + "/webhook", data=body, timeout=10, headers={"X-Hub-Signature-256": wa.sign(body), "Connection": "close"}
    ).status_code


def accepted(counter_file) -> float:
    """Messages one worker process counted, from its own multiprocess file."""
    from prometheus_client.multiprocess import MultiProcessCollector

    for metric in MultiProcessCollector.merge([str(counter_file)], accumulate=False):
        for sample in metric.samples:
            if sample.name == "convoflow_messages_in_total":
                return sample.value
    return 0


def scrape(url: str, name: str) -> float | None:
    # A new connection each time, so the scrapes land on either worker.
    text = requests.get(url + "/metrics", headers={"Connection": "close"}, timeout=10).text
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    return values[0] if values else None


@pytest.mark.slow
def test_two_gunicorn_workers_report_the_same_totals_and_json_logs(db, tmp_path):
    if not is_postgres(db):
        pytest.skip("several webhook processes share one database on PostgreSQL; SQLite runs one process")
    pytest.importorskip("gunicorn", reason="gunicorn is not installed (pip install -e '.[test]'; Linux only)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = gunicorn(db, tmp_path, port, tmp_path / "metrics")
    try:
        assert wait_until(lambda: _healthy(url), timeout=30), (tmp_path / "gunicorn.log").read_text()
        files = lambda: sorted((tmp_path / "metrics").glob("counter_*.db"))  # noqa: E731  (one per booted worker)
        assert wait_until(lambda: len(files()) == 2, timeout=30)
        with ThreadPoolExecutor(6) as pool:  # at once, so both workers take some
            assert set(pool.map(lambda k: deliver(url, f"2637730{k:05d}"), range(MESSAGES))) == {200}
        shares = [accepted(f) for f in files()]
        assert sum(shares) == MESSAGES and min(shares) > 0, shares
        with ThreadPoolExecutor(2) as pool:
            seen = set(pool.map(lambda _: scrape(url, "convoflow_messages_in_total"), range(SCRAPES)))
        assert seen == {float(MESSAGES)}
        assert scrape(url, "convoflow_inbox_backlog") == MESSAGES
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    lines = (tmp_path / "gunicorn.log").read_text().splitlines()
    parsed = [json.loads(line) for line in lines]  # every line is JSON, gunicorn's own included
    loggers = {line["logger"] for line in parsed}
    assert "gunicorn.error" in loggers
    assert sum("Booting worker" in line["message"] for line in parsed) == 2


def _healthy(url: str) -> bool:
    try:
        return requests.get(url + "/healthz", timeout=2).status_code == 200
    except requests.RequestException:  # not listening yet, or a worker still booting
        return False
