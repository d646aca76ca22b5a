"""Health that tells the truth (issue 10.4): /healthz is cheap liveness, /readyz proves a write and reports
the inbox backlog and the sender, and the webhook gives up within DATABASE_WAIT when it cannot store."""

from __future__ import annotations

import dataclasses
import sqlite3
import time

import pytest

from channels.whatsapp import create_app
from storage.db import is_postgres
from storage.models import Heartbeat, InboxMessage

import whatsapp_fakes as wa
from channel_harness import FLOWS, Channel, store_flows, wait_until


@pytest.fixture
def other_writer(db):
    """A second connection to the SQLite file, standing for another process's writer (a long `flows db
    upgrade`, a backup, …) that holds the write lock while it runs."""
    if is_postgres(db):
        pytest.skip("SQLite's file lock")
    other = sqlite3.connect(db.database, isolation_level=None)
    yield other
    if other.in_transaction:
        other.execute("ROLLBACK")
    other.close()


def post(http, url: str, doc: dict):
    body = wa.body_of(doc)
    return http.post(url + "/webhook", data=body, headers={"X-Hub-Signature-256": wa.sign(body)}, timeout=30)


def test_readyz_proves_a_write_and_reports_the_backlog(webhook, http, db):
    r = post(http, webhook, wa.envelope([wa.text("263771234567", "hi")], [wa.contact("263771234567")]))
    assert r.status_code == 200
    ready = http.get(webhook + "/readyz", timeout=10)
    assert ready.status_code == 200
    report = ready.json()
    assert (report["ready"], report["database"], report["inbox_backlog"]) == (True, "writable", 1)
    assert Heartbeat.select().count() == 1  # the committed write it made
    assert http.get(webhook + "/healthz", timeout=10).text == "ok\n"


def test_readyz_reports_the_workers_and_the_sender(db, settings, graph, http):
    store_flows(f"{FLOWS}/echo.yaml")
    channel = Channel(settings)
    channel.start()
    try:
        assert channel.say("263771234567", wa.text("263771234567", "start")).status_code == 200
        graph.wait_for(1)
        assert wait_until(lambda: channel.workers.sender_ok_at is not None)
        report = http.get(channel.url + "/readyz", timeout=10).json()
    finally:
        channel.close()
    assert report["ready"] is True and report["turn_threads"] == 2
    assert report["sender"]["running"] is True and report["sender"]["error"] is None
    assert report["sender"]["last_round_at"].endswith("Z")


def test_a_locked_sqlite_database_makes_the_webhook_answer_503_within_the_bounded_wait(
    db, settings, http, other_writer
):
    server = wa.ServerThread(create_app(dataclasses.replace(settings, database_wait=1)))
    item = wa.text("263771234567", "hello")
    doc = wa.envelope([item], [wa.contact("263771234567")])
    try:
        other_writer.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        r = post(http, server.url, doc)
        took = time.monotonic() - started
        assert r.status_code == 503
        assert took < 4, f"the webhook waited {took:.1f} s with DATABASE_WAIT=1"
        ready = http.get(server.url + "/readyz", timeout=30)
        assert ready.status_code == 503 and ready.json()["ready"] is False
        assert http.get(server.url + "/healthz", timeout=10).status_code == 200  # alive, only not ready
        other_writer.execute("ROLLBACK")
        assert post(http, server.url, doc).status_code == 200  # Meta's redelivery is stored
        assert http.get(server.url + "/readyz", timeout=10).status_code == 200
    finally:
        server.close()
    assert InboxMessage.get().channel_message_id == item["id"]
