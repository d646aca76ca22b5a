"""A whole convoflow channel in one test process: stored flows, the webhook on waitress, the workers and
the sender, against the Graph API stand-in. Used by the conversation tests and bench/webhook.py.
"""
from __future__ import annotations

import os
from datetime import datetime

import requests

import actions
from channels.metrics import Metrics
from channels.sender import Sender
from channels.whatsapp import create_app
from channels.worker import WorkerOptions, Workers
from storage import flowstore
from storage.models import InboxMessage, OutboxMessage, Session

import whatsapp_fakes as wa

FLOWS = os.path.join(os.path.dirname(__file__), "flows")


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
        self.server = wa.ServerThread(create_app(settings, metrics=self.metrics, on_inbox=self.workers.wake,
                                                 background=self.workers.state), threads=http_threads)
        self.url = self.server.url
        self.http = requests.Session()
        self.started = False

    def start(self) -> None:
        self.workers.start()
        self.started = True

    def post(self, doc: dict) -> requests.Response:
        body = wa.body_of(doc)
        return self.http.post(self.url + "/webhook", data=body, timeout=10,
                              headers={"Content-Type": "application/json", "X-Hub-Signature-256": wa.sign(body)})

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
