"""A running `flows serve` on a PostgreSQL that goes away under it (a restart, a failover), shared by
test_wa_db_restart and test_wa_db_failover: start it, post as Meta does (again until 200), check that every
contact saw each reply once, in order, and that the process is healthy again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from storage.db import open_database
from storage.migrations import upgrade

import pgcluster
import whatsapp_fakes as wa
from channel_harness import FLOWS, REPO, store_flows

MARKS = [
    pytest.mark.slow,
    pytest.mark.skipif(
        sys.platform == "win32" or pgcluster.server_bin() is None,
        reason="needs the PostgreSQL server programs (initdb, pg_ctl)",
    ),
]

CONTACTS = [f"2637730{i:05d}" for i in range(5)]
RETRY_FOR = 60.0  # seconds a delivery is posted again before the test gives up on it (Meta: days)


def store_echo(url: str) -> None:
    """Give the database at url its schema and the echo flow."""
    db = open_database(url)
    upgrade(db)
    store_flows(os.path.join(FLOWS, "echo.yaml"))
    db.close_all()


def start_serve(url: str, graph, tmp_path) -> tuple[subprocess.Popen, str]:
    port = pgcluster.free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "WHATSAPP_APP_SECRET": wa.SECRET,
        "WHATSAPP_VERIFY_TOKEN": wa.VERIFY_TOKEN,
        "WHATSAPP_ACCESS_TOKEN": wa.ACCESS_TOKEN,
        "WHATSAPP_PHONE_NUMBER_ID": wa.PHONE_NUMBER_ID,
        "WHATSAPP_API_URL": graph.url,
        "DATABASE_WAIT": "2",
    }
    env.pop("OMARI_MERCHANT_KEY", None)
    log = open(tmp_path / "serve.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--port", str(port), "--workers", "2", "--sandbox"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    assert answers(base + "/healthz", 200, timeout=30), (tmp_path / "serve.log").read_text()
    return proc, base


def answers(url: str, status: int, timeout: float) -> bool:
    """Poll url until it answers `status` (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=5).status_code == status:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.1)
    return False


def left_over(url: str) -> str:
    """What a contact left waiting is waiting on: its unhandled inbox rows, claims, unsent replies."""
    import psycopg2

    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        lines = []
        for sql in (
            "SELECT id, contact_id, attempts, error FROM inbox_message WHERE processed_at IS NULL",
            "SELECT contact_id, claimed_by, claimed_until FROM session WHERE claimed_by IS NOT NULL",
            "SELECT id, contact_id, attempts, next_attempt_at, error FROM outbox_message WHERE status = 'pending'",
        ):
            cur.execute(sql)
            lines.append(f"{sql.split(' FROM ')[1].split()[0]}: {cur.fetchall()}")
    return "\n".join(lines)


def deliver(base: str, wa_id: str, words: str, ts: int, refusals: list[float]) -> None:
    """Post one message as Meta does: again and again until it is answered 200 (bounded)."""
    body = wa.body_of(
        wa.envelope([wa.text(wa_id, words, ts=ts, mid=f"wamid.restart.{wa_id}.{ts}")], [wa.contact(wa_id)])
    )
    deadline = time.monotonic() + RETRY_FOR
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            r = requests.post(base + "/webhook", data=body, headers={"X-Hub-Signature-256": wa.sign(body)}, timeout=30)
            if r.status_code == 200:
                return
            assert r.status_code == 503, r.text
            refusals.append(time.monotonic() - started)
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"message '{words}' from {wa_id} was never accepted")


def speaker(base: str, refusals: list[float]):
    """say(k, words): every contact sends words at time TS + k, each delivery retried as Meta does."""

    def say(k: int, words: str) -> None:
        with ThreadPoolExecutor(len(CONTACTS)) as pool:
            list(pool.map(lambda wa_id: deliver(base, wa_id, words, wa.TS + k, refusals), CONTACTS))

    return say


def serve_two_turns(url: str, graph, tmp_path):
    """`flows serve` on url with every contact two turns into the echo flow: (process, base URL, say, the
    refusals list say fills); the process is stopped if that fails."""
    proc, base = start_serve(url, graph, tmp_path)
    refusals: list[float] = []
    say = speaker(base, refusals)
    try:
        say(0, "start")
        say(1, "1")
        assert len(graph.wait_for(2 * len(CONTACTS), timeout=30)) == 2 * len(CONTACTS)
    except BaseException:
        stop_serve(proc)
        raise
    return proc, base, say, refusals


def all_answered_once(graph, base: str, refusals: list[float], url: str) -> None:
    """Every contact saw each of its six replies once, in order; deliveries were refused during the outage,
    quickly; the process is healthy, ready and its metrics say the database is up."""
    expected = ["Say something."] + [f"You said {k}. Say something." for k in range(1, 6)]
    graph.wait_for(len(expected) * len(CONTACTS), timeout=60)
    for wa_id in CONTACTS:
        assert graph.texts_to(wa_id) == expected, left_over(url)
    assert refusals, "the webhook never refused a delivery during the outage"
    assert max(refusals) < 5, f"a refusal took {max(refusals):.1f} s (DATABASE_WAIT is 2 s)"
    for path in ("/healthz", "/readyz", "/metrics"):
        assert requests.get(base + path, timeout=10).status_code == 200, path
    assert "convoflow_database_up 1" in requests.get(base + "/metrics", timeout=10).text


def stop_serve(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
