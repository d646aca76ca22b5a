"""A `flows worker` process killed (SIGKILL) in the middle of a payment turn, then restarted: no message
is lost, every reply goes out, and the payment is neither made nor applied twice.

The worker runs as a real subprocess on the same database, O'mari is the sandbox served on 127.0.0.1
behind a gate that holds the answer to /request after the money has moved — so the kill lands exactly
"mid-turn, money moved, answer not yet recorded", the hardest moment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
import requests

from actions.omari_client import OmariClient
from actions.omari_sandbox import BASE_PATH, SANDBOX_MERCHANT_KEY, OmariSandbox
from actions.reconcile import reconcile
from channels.whatsapp import create_app
from engine.context import utcnow
from storage.bookings import add_booking, find_booking
from storage.models import InboxMessage, OutboxMessage, PaymentTransaction, Session

import whatsapp_fakes as wa
from channel_harness import REF, REPO, TENDAI, database_url, store_flows, wait_until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")


class GatedSandbox:
    """The O'mari sandbox on loopback; when armed, /request is processed and then its answer withheld."""

    def __init__(self) -> None:
        self.sandbox = OmariSandbox()
        self.armed = False
        self.money_moved = threading.Event()
        self.release = threading.Event()

        def app(environ, start_response):
            if self.armed and environ["PATH_INFO"].endswith("/request"):
                body = b"".join(self.sandbox.app(environ, lambda *a, **k: None))
                self.money_moved.set()
                self.release.wait(30)
                start_response("200 OK", [("Content-Type", "application/json")])
                return [body]
            return self.sandbox.app(environ, start_response)

        self.server = wa.ServerThread(app)
        self.base_url = self.server.url + BASE_PATH

    def close(self) -> None:
        self.release.set()
        self.server.close()


def start_worker(db, graph, omari: GatedSandbox, tmp_path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(db),
        "WHATSAPP_ACCESS_TOKEN": wa.ACCESS_TOKEN,
        "WHATSAPP_PHONE_NUMBER_ID": wa.PHONE_NUMBER_ID,
        "WHATSAPP_API_URL": graph.url,
        "OMARI_API_BASE_URL": omari.base_url,
        "OMARI_MERCHANT_KEY": SANDBOX_MERCHANT_KEY,
    }
    log = open(tmp_path / "worker.log", "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "worker", "--workers", "2"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop(worker: subprocess.Popen) -> None:
    """SIGTERM a worker still running, SIGKILL it if it does not stop in time."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()


@pytest.mark.slow
def test_a_worker_killed_mid_payment_loses_nothing_and_pays_once(db, settings, graph, tmp_path):
    store_flows(os.path.join(REPO, "flows", "main_menu.yaml"), os.path.join(REPO, "flows", "omari_payment.yaml"))
    add_booking(REF, "Tendai Moyo", "Victoria Falls 3 days", "300.00")
    omari = GatedSandbox()
    webhook = wa.ServerThread(create_app(settings))
    worker = start_worker(db, graph, omari, tmp_path)
    http = requests.Session()
    seen = 0

    def send(item: dict, replies: int = 1) -> None:
        nonlocal seen
        body = wa.body_of(wa.envelope([item], [wa.contact(TENDAI)]))
        r = http.post(webhook.url + "/webhook", data=body, headers={"X-Hub-Signature-256": wa.sign(body)}, timeout=10)
        assert r.status_code == 200
        seen += replies
        assert len(graph.wait_for(seen, timeout=30)) >= seen, (tmp_path / "worker.log").read_text()

    try:
        send(wa.text(TENDAI, "pay"))
        send(wa.text(TENDAI, REF), replies=2)
        send(wa.text(TENDAI, "50"))
        send(wa.button_reply(TENDAI, "ecocash", "Ecocash"))
        send(wa.text(TENDAI, "263771234567"))
        omari.armed = True
        otp = wa.text(TENDAI, omari.sandbox.last_otp(TENDAI))
        body = wa.body_of(wa.envelope([otp], [wa.contact(TENDAI)]))
        http.post(webhook.url + "/webhook", data=body, headers={"X-Hub-Signature-256": wa.sign(body)}, timeout=10)
        assert omari.money_moved.wait(30), "the worker never reached /request"
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        omari.armed = False
        omari.release.set()

        # What the dead worker left: the OTP message unprocessed, the contact claimed.
        assert InboxMessage.get(InboxMessage.channel_message_id == otp["id"]).processed_at is None
        assert Session.get().claimed_by is not None
        # Time passes beyond the claim's lease (a restarted process would wait it out; we move it instead).
        Session.update(claimed_until=utcnow() - timedelta(seconds=1)).execute()

        worker = start_worker(db, graph, omari, tmp_path)
        seen += 1
        sent = graph.wait_for(seen, timeout=30)
        assert len(sent) == seen, (tmp_path / "worker.log").read_text()
        last = graph.texts_to(TENDAI)[-1]
        assert "We are confirming your payment" in last
        assert wait_until(lambda: InboxMessage.select().where(InboxMessage.processed_at.is_null()).count() == 0)

        # The money moved once; reconcile finds out and applies it once, however often it runs.
        client = OmariClient(omari.base_url, SANDBOX_MERCHANT_KEY)
        reconcile(client, now=utcnow())
        reconcile(client, now=utcnow())
        tx = PaymentTransaction.get()
        assert tx.status == "SUCCESS"
        assert find_booking(REF).paid_minor == 5000
        assert omari.sandbox.calls.count("request") == 1 and omari.sandbox.calls.count("auth") == 1
    finally:
        stop(worker)
        webhook.close()
        omari.close()
        http.close()


@pytest.mark.slow
def test_a_worker_killed_while_meta_holds_the_answer_sends_the_reply_after_restart(db, settings, graph, tmp_path):
    """Meta accepted the reply but the worker died before recording it: after the restart the reply is
    sent again — the one duplicate the Cloud API's lack of an idempotency key allows — and never lost."""
    store_flows(os.path.join(REPO, "tests", "channels", "flows", "greet.yaml"))
    omari = GatedSandbox()
    webhook = wa.ServerThread(create_app(settings))
    worker = start_worker(db, graph, omari, tmp_path)
    try:
        graph.hold_answers()
        body = wa.body_of(wa.envelope([wa.text(TENDAI, "hi")], [wa.contact(TENDAI)]))
        assert (
            requests.post(
                webhook.url + "/webhook", data=body, headers={"X-Hub-Signature-256": wa.sign(body)}, timeout=10
            ).status_code
            == 200
        )
        assert len(graph.wait_for(1, timeout=30)) == 1, (tmp_path / "worker.log").read_text()
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        graph.release()
        (row,) = OutboxMessage.select()
        assert (row.status, row.channel_message_id) == ("pending", None)  # leased, outcome never recorded
        OutboxMessage.update(next_attempt_at=utcnow() - timedelta(seconds=1)).execute()  # the lease runs out

        worker = start_worker(db, graph, omari, tmp_path)
        assert len(graph.wait_for(2, timeout=30)) == 2, (tmp_path / "worker.log").read_text()
        assert graph.texts_to(TENDAI) == ["What is your name?", "What is your name?"]
        assert wait_until(lambda: OutboxMessage.get_by_id(row.id).status == "sent")
        assert OutboxMessage.get_by_id(row.id).channel_message_id.startswith("wamid.out.")
    finally:
        stop(worker)
        webhook.close()
        omari.close()
