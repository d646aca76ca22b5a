"""An in-process Paynow simulator: express checkout (`/interface/remotetransaction`) and the poll URL,
answered in the URL-encoded, signed shapes the official `paynow` package reads, so `flows chat`,
`flows demo` and the tests run the real PaynowClient with no network.

Reached like the O'mari sandbox: mounted into a requests.Session in-process (`PaynowSandbox.client()`),
or served on 127.0.0.1 (`PaynowSandbox.serve()`) so the vcrpy cassettes are recorded over real HTTP.

It checks what Paynow checks: the integration id, the hash of every request (signed with the integration
key), the fields. A payment then follows Paynow's test-mode numbers (our reading of Paynow's developer
docs; the package says nothing about them), in the local form the client sends:

- 0771111111 (and any number not below): approved on the phone — Paid at the first poll;
- 0772222222: approved late — Sent for 30 seconds, then Paid;
- 0773333333: the payer cancels on the phone — Cancelled;
- 0774444444: refused at the start — ``status=Error&error=Insufficient balance``.

Faults for tests (`inject(endpoint, fault)`, endpoint "remotetransaction" or "poll"): ``http_500``,
``html`` (a gateway's page), ``bad_hash`` (a signed answer tampered with), ``unknown_status`` (the word
"Processing"), ``other_amount`` (a tenth of the amount); in the transport adapter, in-process only:
``timeout_after`` (handled, then the answer lost), ``timeout_before``, ``connection_error``.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Callable
from urllib.parse import urlencode

import requests
from flask import Flask, Response, request

from engine.context import utcnow

from .omari_sandbox import TRANSPORT_FAULTS, SandboxAdapter, serve_wsgi
from .paynow_client import METHODS, PaynowClient, signed, verified

BASE_PATH = "/interface"
IN_PROCESS_ORIGIN = "http://paynow-sandbox.invalid"
SANDBOX_INTEGRATION_ID = "1201"
SANDBOX_INTEGRATION_KEY = "sandbox-integration-key"
SANDBOX_AUTH_EMAIL = "merchant@example.com"
LATE_APPROVAL = timedelta(seconds=30)
APP_FAULTS = ("http_500", "html", "bad_hash", "unknown_status", "other_amount")
ENDPOINTS = ("remotetransaction", "poll")
CANCELS, LATE, REFUSED = "0773333333", "0772222222", "0774444444"


@dataclass
class SandboxPayment:
    reference: str
    paynow_reference: str
    guid: str
    amount: Decimal
    phone: str
    started: datetime
    status: str = "Sent"  # Sent | Paid | Cancelled


def _form(fields: list[tuple[str, str]]) -> Response:
    return Response(urlencode(fields), mimetype="text/plain")


def _error(message: str) -> Response:
    return _form([("status", "Error"), ("error", message)])


class PaynowSandbox:
    """The simulator: its payments, its Flask app and the ways to reach it."""

    def __init__(
        self,
        *,
        integration_id: str = SANDBOX_INTEGRATION_ID,
        integration_key: str = SANDBOX_INTEGRATION_KEY,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.integration_id, self.integration_key, self.clock = integration_id, integration_key, clock
        self.rng = rng or random.SystemRandom()
        self.payments: dict[str, SandboxPayment] = {}  # by guid
        self.calls: list[str] = []
        self._faults: dict[str, deque[str]] = {e: deque() for e in ENDPOINTS}
        self._lock = threading.RLock()
        self.origin = IN_PROCESS_ORIGIN
        self.app = self._build_app()

    def inject(self, endpoint: str, fault: str, times: int = 1) -> None:
        """Make the next `times` calls to endpoint ("remotetransaction", "poll") fail with fault."""
        if endpoint not in ENDPOINTS or fault not in APP_FAULTS + TRANSPORT_FAULTS:
            raise ValueError(f"unknown endpoint '{endpoint}' or fault '{fault}'")
        with self._lock:
            self._faults[endpoint].extend([fault] * times)

    def take_fault(self, endpoint: str, kinds: tuple[str, ...]) -> str | None:
        with self._lock:
            queue = self._faults[endpoint]
            return queue.popleft() if queue and queue[0] in kinds else None

    @staticmethod
    def endpoint_of(path: str) -> str | None:
        tail = path[len(BASE_PATH) :].strip("/").lower() if path.startswith(BASE_PATH) else ""
        return (
            "poll"
            if tail.startswith("checkpayment")
            else ("remotetransaction" if tail == "remotetransaction" else None)
        )

    def client(self, **kwargs) -> PaynowClient:
        """A PaynowClient whose Session reaches this sandbox in-process (no socket)."""
        session = requests.Session()
        session.mount(IN_PROCESS_ORIGIN + "/", SandboxAdapter(self))
        return PaynowClient(
            self.integration_id,
            self.integration_key,
            auth_email=SANDBOX_AUTH_EMAIL,
            api_url=IN_PROCESS_ORIGIN + BASE_PATH,
            session=session,
            **kwargs,
        )

    def serve(self, host: str = "127.0.0.1", port: int = 0):
        """Serve the app over HTTP on loopback while the block runs; yields the base URL."""
        return serve_wsgi(self.app, host, port, BASE_PATH)

    # ── the app ──────────────────────────────────────────────────────────────────────────────────────

    def _build_app(self) -> Flask:
        app = Flask("paynow_sandbox")
        sandbox = self

        def guarded(endpoint: str, handler: Callable[[], list[tuple[str, str]] | Response]):
            def view() -> Response:
                with sandbox._lock:
                    sandbox.calls.append(endpoint)
                    sandbox.origin = request.host_url.rstrip("/")
                    fault = sandbox.take_fault(endpoint, APP_FAULTS)
                    if fault == "http_500":
                        return Response(
                            "<html><body>500 Internal Server Error</body></html>", status=500, mimetype="text/html"
                        )
                    answer = handler()
                    if isinstance(answer, Response):
                        return answer
                    return sandbox._signed_answer(answer, fault)

            view.__name__ = endpoint
            return view

        app.add_url_rule(
            BASE_PATH + "/remotetransaction", view_func=guarded("remotetransaction", self._start), methods=["POST"]
        )
        app.add_url_rule(BASE_PATH + "/CheckPayment/", view_func=guarded("poll", self._poll), methods=["POST"])
        return app

    def _signed_answer(self, fields: list[tuple[str, str]], fault: str | None) -> Response:
        if fault == "html":
            return Response("<html><body>Paynow is busy</body></html>", mimetype="text/html")
        if fault == "unknown_status":
            fields = [(k, "Processing" if k == "status" else v) for k, v in fields]
        if fault == "other_amount":
            fields = [(k, str((Decimal(v) / 10).quantize(Decimal("0.01"))) if k == "amount" else v) for k, v in fields]
        answer = signed(fields, self.integration_key)
        if fault == "bad_hash":  # tampered with on the way: the values change, the hash does not
            answer = [
                (k, "Paid" if k == "status" else v)
                for k, v in signed([(k, "Cancelled" if k == "status" else v) for k, v in fields], self.integration_key)
            ]
        return _form(answer)

    def _start(self):
        form = list(request.form.items(multi=True))
        found = dict(form)
        if found.get("id") != self.integration_id:
            return _error("Invalid Id.")
        if not verified(form, self.integration_key):
            return _error("Invalid Hash")
        try:
            amount = Decimal(found.get("amount", ""))
        except InvalidOperation:
            return _error("Invalid amount field")
        phone, method, reference = found.get("phone", ""), found.get("method", ""), found.get("reference", "")
        if amount <= 0 or amount != amount.quantize(Decimal("0.01")):
            return _error("Invalid amount field")
        if method not in METHODS or not (phone.isdigit() and len(phone) == 10 and phone.startswith("07")):
            return _error("Invalid phone number or method")
        if not found.get("authemail") or not reference:
            return _error("Missing required field")
        if any(p.reference == reference for p in self.payments.values()):
            return _error("Duplicate reference")
        if phone == REFUSED:
            return _error("Insufficient balance")
        payment = SandboxPayment(
            reference,
            str(self.rng.randrange(10**7, 10**8)),
            uuid.UUID(int=self.rng.getrandbits(128)).hex,
            amount,
            phone,
            self.clock(),
        )
        self.payments[payment.guid] = payment
        return [
            ("status", "Ok"),
            ("instructions", f"Approve the payment of {amount} on your {method} phone"),
            ("paynowreference", payment.paynow_reference),
            ("pollurl", self._poll_url(payment)),
        ]

    def _poll_url(self, payment: SandboxPayment) -> str:
        return f"{self.origin}{BASE_PATH}/CheckPayment/?guid={payment.guid}"

    def _poll(self):
        payment = self.payments.get(request.args.get("guid", ""))
        if payment is None:
            return _error("Invalid poll url")
        if payment.status == "Sent" and (payment.phone != LATE or self.clock() - payment.started >= LATE_APPROVAL):
            payment.status = "Cancelled" if payment.phone == CANCELS else "Paid"
        return [
            ("reference", payment.reference),
            ("paynowreference", payment.paynow_reference),
            ("amount", format(payment.amount, "f")),
            ("status", payment.status),
            ("pollurl", self._poll_url(payment)),
        ]
