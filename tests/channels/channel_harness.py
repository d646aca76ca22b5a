"""A whole convoflow channel in one test process: stored flows, the webhook on waitress, the workers and
the sender, against the Graph API stand-in. Used by the conversation tests and bench/webhook.py.
"""

from __future__ import annotations

import os
import time
from datetime import datetime

import requests

import actions
from channels.metrics import Metrics
from channels.sender import Sender
from channels.whatsapp import create_app
from channels.worker import WorkerOptions, Workers
from storage import flowstore
from storage.db import is_postgres
from storage.models import InboxMessage, OutboxMessage, Session

import whatsapp_fakes as wa

FLOWS = os.path.join(os.path.dirname(__file__), "flows")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TENDAI = "263771234567"
REF = "BK-SLYKER-TECH-20251023"


def store_flows(*paths: str) -> None:
    """Store flow files as `flows load` does (they are checked by load_flowset when the workers start)."""
    for path in paths:
        with open(path, encoding="utf-8") as f:
            source = f.read()
        name = os.path.splitext(os.path.basename(path))[0]
        flowstore.store(name, source, path, datetime(2026, 1, 1))


class Channel:
    """The webhook plus workers plus sender; start() starts the workers (the webhook runs at once)."""

    def __init__(self, settings, services: dict | None = None, threads: int = 2, http_threads: int = 4) -> None:
        actions.load_all()
        self.metrics = Metrics()
        self.sender = Sender(settings, metrics=self.metrics)
        self.workers = Workers(
            services if services is not None else {"settings": settings},
            sender=self.sender,
            metrics=self.metrics,
            options=WorkerOptions(threads=threads, poll_interval=0.05),
        )
        self.server = wa.ServerThread(
            create_app(settings, metrics=self.metrics, on_inbox=self.workers.wake, background=self.workers.state),
            threads=http_threads,
        )
        self.url = self.server.url
        self.http = requests.Session()
        self.started = False

    def start(self) -> None:
        self.workers.start()
        self.started = True

    def post(self, doc: dict) -> requests.Response:
        body = wa.body_of(doc)
        return self.http.post(
            self.url + "/webhook",
            data=body,
            timeout=10,
            headers={"Content-Type": "application/json", "X-Hub-Signature-256": wa.sign(body)},
        )

    def say(self, wa_id: str, item: dict, name: str = "Tendai") -> requests.Response:
        return self.post(wa.envelope([item], [wa.contact(wa_id, name)]))

    def close(self) -> None:
        if self.started:
            self.workers.stop()
        else:
            self.sender.close()
        self.server.close()
        self.http.close()


def settled() -> bool:
    """Nothing left to do: every inbox row handled, nothing pending in the outbox, no session claimed."""
    return (
        InboxMessage.select().where(InboxMessage.processed_at.is_null()).count() == 0
        and OutboxMessage.select().where(OutboxMessage.status == "pending").count() == 0
        and Session.select().where(Session.claimed_by.is_null(False)).count() == 0
    )


def wait_until(predicate, timeout: float = 20.0) -> bool:
    """Poll a condition the workers will make true (bounded); not a wait for time to pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def database_url(db) -> str:
    return os.environ["TEST_DATABASE_URL"] if is_postgres(db) else f"sqlite:///{db.database}"


class Phone:
    """Tendai's phone: sends a message, returns the replies it brought."""

    def __init__(self, channel, graph) -> None:
        self.channel, self.graph, self.seen = channel, graph, 0

    def send(self, item: dict, replies: int = 1) -> list[wa.Sent]:
        assert self.channel.say(TENDAI, item).status_code == 200
        sent = self.graph.wait_for(self.seen + replies)
        new, self.seen = sent[self.seen : self.seen + replies], self.seen + replies
        assert len(new) == replies, f"expected {replies} replies, got {[s.body for s in new]}"
        return new

    @staticmethod
    def text(s: wa.Sent) -> str:
        return s.body["text"]["body"] if s.body["type"] == "text" else s.body["interactive"]["body"]["text"]
