"""An in-process O'mari simulator: the same four calls as the Merchant API v1.2.0, answered in the
documented shapes, so `flows demo`, `flows chat` and the tests run the real client with no network.

It is a small Flask (WSGI) app used two ways:

- mounted into a requests.Session through a transport adapter (`OmariSandbox.client()`): no socket at
  all; this is what the demo, the chat and the conversation tests use;
- served on 127.0.0.1 (`OmariSandbox.serve()`) so the vcrpy cassettes under tests/actions/cassettes are
  recorded through a real HTTP exchange.

Each successful `/auth` makes a 6-digit OTP and "texts" it through the `sms` callback (the terminal
prints it, e.g. ``[O'mari sandbox SMS to 2637****4567] Your O'mari OTP is 123456 …``); `fixed_otp`
makes it send the same code every time, so a scripted `flows demo --otp 123456` can type it.

What the vendor documents is followed as written: paths, fields, the success rule (2xx, ``error`` false,
``responseCode`` "000"), ``otpReference``, ``paymentReference``, ``debitReference``, the /query fields.
Everything below is OUR decision, because the vendor does not say:

- Failure codes borrow the ISO-8583 style third-party clients use: 030 format error (HTTP 400),
  063 bad merchant key (HTTP 401), 026 duplicate reference, 025 unknown reference, 012 invalid
  transaction (wrong msisdn for the reference, or a void of a completed payment), 055 wrong OTP,
  075 OTP tries exceeded (the 3rd wrong OTP; the transaction then fails), 054 OTP expired,
  051 insufficient funds, 005 do not honour. Business refusals answer HTTP 200 with ``error: true``.
- The OTP lives 10 minutes; a wrong OTP may be retried on the same reference, 3 tries in all.
- Test numbers: an msisdn ending in 0005 is refused at /auth (005); one ending in 0051 is refused at
  /request (051 insufficient funds). Any other valid 2637XXXXXXXX number pays.
- /query answers ``status`` as Pending (OTP sent, not yet paid), Success, Failed, Voided or Expired;
  /void answers ``{"error": false, "responseCode": "000", "message": "Void Success"}``.

Faults for tests (`inject`): ``http_500`` and ``malformed_json`` are answered by the app (so they can be
recorded too), and so are the odd answers of real gateways: ``http_401_empty`` (a gateway refusing the
key: 401, no body, nothing handled); after handling the call (the money moves): ``html_after`` (a 200 HTML
page), ``error_as_text`` (``"error": "false"`` as a string), ``missing_fields`` (``{"message": "OK"}``);
on /query: ``unknown_status`` (the status word "Processing") and ``other_amount`` (a tenth of the
amount). ``timeout_after`` (the call is processed — the money moves — and then the answer is
lost), ``timeout_before`` and ``connection_error`` happen in the transport adapter, in-process only.
"""

from __future__ import annotations

import json
import random
import re
import threading
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Callable, Iterator
from urllib.parse import urlsplit

import requests
from flask import Blueprint, Flask, Response, request
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

from engine.context import utcnow

from .omari_client import OmariClient, encode_body, mask_msisdn

BASE_PATH = "/vsuite/omari/api/merchant/api/payment"
IN_PROCESS_ORIGIN = "http://omari-sandbox.invalid"
IN_PROCESS_BASE_URL = IN_PROCESS_ORIGIN + BASE_PATH
SANDBOX_MERCHANT_KEY = "sandbox-merchant-key"
OTP_LIFETIME = timedelta(minutes=10)
OTP_TRIES = 3

# The odd answers real gateways give (issue 9): refused before the call is handled, or given after it was
# handled (the money moved, then the answer is unreadable or cannot be believed).
ODD_BEFORE = ("http_401_empty",)
ODD_AFTER = ("html_after", "error_as_text", "missing_fields", "unknown_status", "other_amount")
APP_FAULTS = ("http_500", "malformed_json") + ODD_BEFORE + ODD_AFTER
TRANSPORT_FAULTS = ("timeout_after", "timeout_before", "connection_error")
ENDPOINTS = ("auth", "request", "query", "void")

MSISDN = re.compile(r"^2637\d{8}$")


@dataclass
class SandboxPayment:
    """What the simulator remembers about one reference."""

    reference: str
    msisdn: str
    amount: Decimal
    currency: str
    channel: str
    otp: str
    otp_reference: str
    otp_sent_at: datetime
    created: datetime
    status: str = "Pending"  # Pending | Success | Failed | Voided | Expired
    wrong_otps: int = 0
    payment_reference: str | None = None
    debit_reference: str | None = None


def _answer(payload: dict, status: int = 200) -> Response:
    # encode_body writes Decimal amounts as exact JSON numbers, as O'mari's BigDecimal fields are.
    return Response(encode_body(payload), status=status, mimetype="application/json")


def _refuse(code: str, message: str, status: int = 200) -> Response:
    return _answer({"error": True, "message": message, "responseCode": code}, status)


def _odd(fault: str, answer: Response) -> Response:
    """The answer a gateway gives instead of the sandbox's own, after the call was handled."""
    if fault == "html_after":
        return Response(
            "<html><head><title>Gateway</title></head><body>Request accepted</body></html>",
            status=200,
            mimetype="text/html",
        )
    payload = json.loads(answer.get_data(), parse_float=Decimal)
    if fault == "error_as_text":
        payload["error"] = str(payload["error"]).lower()
    elif fault == "missing_fields":
        payload = {"message": "OK"}
    elif fault == "unknown_status":
        payload["status"] = "Processing"
    elif fault == "other_amount" and payload.get("amount") is not None:
        payload["amount"] = (Decimal(payload["amount"]) / 10).quantize(Decimal("0.01"))
    return _answer(payload, answer.status_code)


class OmariSandbox:
    """The simulator: its state, its Flask app and the ways to reach it."""

    def __init__(
        self,
        *,
        merchant_key: str = SANDBOX_MERCHANT_KEY,
        sms: Callable[[str, str], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        fixed_otp: str | None = None,
    ) -> None:
        """fixed_otp: send this code on every /auth instead of a random one (scripted demos)."""
        if fixed_otp is not None and not re.fullmatch(r"\d{4,8}", fixed_otp):
            raise ValueError("fixed_otp must be 4 to 8 digits")
        self.fixed_otp = fixed_otp
        self.merchant_key = merchant_key
        self.sms = sms
        self.clock = clock
        self.rng = rng or random.SystemRandom()
        self.payments: dict[str, SandboxPayment] = {}
        self.texts: list[tuple[str, str]] = []  # (msisdn, text) of every SMS "sent", newest last
        self.calls: list[str] = []  # endpoint of every call received, for tests ("auth", "request", …)
        self._faults: dict[str, deque[str]] = {e: deque() for e in ENDPOINTS}
        self._lock = threading.RLock()
        self.app = self._build_app()

    # ── for tests and the terminal ───────────────────────────────────────────────────────────────────

    def inject(self, endpoint: str, fault: str, times: int = 1) -> None:
        """Make the next `times` calls to endpoint ("auth", "request", "query", "void") fail with fault."""
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint '{endpoint}' (one of {', '.join(ENDPOINTS)})")
        if fault not in APP_FAULTS + TRANSPORT_FAULTS:
            raise ValueError(f"unknown fault '{fault}' (one of {', '.join(APP_FAULTS + TRANSPORT_FAULTS)})")
        with self._lock:
            self._faults[endpoint].extend([fault] * times)

    def last_otp(self, msisdn: str | None = None) -> str | None:
        """The OTP of the newest payment (for that msisdn): what the customer would read on their phone."""
        with self._lock:
            for payment in reversed(list(self.payments.values())):  # newest /auth last
                if msisdn is None or payment.msisdn == msisdn:
                    return payment.otp
        return None

    def client(self, **kwargs) -> OmariClient:
        """An OmariClient whose Session reaches this sandbox in-process (no socket)."""
        session = requests.Session()
        session.mount(IN_PROCESS_ORIGIN + "/", SandboxAdapter(self))
        return OmariClient(IN_PROCESS_BASE_URL, self.merchant_key, session=session, **kwargs)

    def serve(self, host: str = "127.0.0.1", port: int = 0):
        """Serve the app over HTTP on loopback while the block runs; yields the base URL."""
        return serve_wsgi(self.app, host, port, BASE_PATH)

    @staticmethod
    def endpoint_of(path: str) -> str | None:
        """Which endpoint a path calls ("auth", "query", …): what faults are injected on."""
        return _endpoint_of(path)

    # ── the app ──────────────────────────────────────────────────────────────────────────────────────

    def take_fault(self, endpoint: str, kinds: tuple[str, ...]) -> str | None:
        """Pop the next injected fault for endpoint when it is one of kinds."""
        with self._lock:
            queue = self._faults[endpoint]
            if queue and queue[0] in kinds:
                return queue.popleft()
        return None

    def _build_app(self) -> Flask:
        app = Flask("omari_sandbox")
        api = Blueprint("omari", __name__, url_prefix=BASE_PATH)
        sandbox = self

        def guarded(endpoint: str, handler: Callable[..., Response]) -> Callable[..., Response]:
            def view(**kwargs) -> Response:
                with sandbox._lock:
                    sandbox.calls.append(endpoint)
                    if request.headers.get("X-Merchant-Key") != sandbox.merchant_key:
                        return _refuse("063", "Invalid merchant key", 401)
                    fault = sandbox.take_fault(endpoint, APP_FAULTS)
                    if fault == "http_500":
                        return Response(
                            "<html><body>500 Internal Server Error</body></html>", status=500, mimetype="text/html"
                        )
                    if fault == "http_401_empty":
                        return Response(b"", status=401)
                    answer = handler(**kwargs)
                    if fault == "malformed_json":
                        return Response(
                            b'{"error": false, "responseCode": "000", "message": "Pay',
                            status=200,
                            mimetype="application/json",
                        )
                    return _odd(fault, answer) if fault in ODD_AFTER else answer

            view.__name__ = endpoint
            return view

        api.add_url_rule("/auth", view_func=guarded("auth", self._auth), methods=["POST"])
        api.add_url_rule("/request", view_func=guarded("request", self._request), methods=["POST"])
        api.add_url_rule("/query/<reference>", view_func=guarded("query", self._query), methods=["GET"])
        api.add_url_rule("/void", view_func=guarded("void", self._void), methods=["POST"])
        app.register_blueprint(api)
        return app

    @staticmethod
    def _body() -> dict | None:
        try:
            body = json.loads(request.get_data() or b"", parse_float=Decimal)
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _auth(self) -> Response:
        body = self._body()
        if body is None:
            return _refuse("030", "Format error: body is not a JSON object", 400)
        msisdn, reference = body.get("msisdn"), body.get("reference")
        amount, currency, channel = body.get("amount"), body.get("currency"), body.get("channel")
        if not isinstance(msisdn, str) or not MSISDN.match(msisdn):
            return _refuse("030", "Format error: msisdn must be 2637XXXXXXXX", 400)
        if not isinstance(reference, str) or not reference.strip():
            return _refuse("030", "Format error: reference is required", 400)
        if isinstance(amount, bool) or not isinstance(amount, (int, Decimal)):
            return _refuse("030", "Format error: amount must be a number", 400)
        amount = Decimal(amount)
        if amount <= 0 or amount != amount.quantize(Decimal("0.01")):
            return _refuse("013", "Invalid amount")
        if currency not in ("USD", "ZWG"):
            return _refuse("030", "Format error: currency must be USD or ZWG", 400)
        if channel not in ("WEB", "POS"):
            return _refuse("030", "Format error: channel must be WEB or POS", 400)
        if reference in self.payments:
            return _refuse("026", "Duplicate reference")
        if msisdn.endswith("0005"):
            return _refuse("005", "Do not honour")
        now = self.clock()
        otp = self.fixed_otp or f"{self.rng.randrange(10**6):06d}"
        otp_reference = "".join(self.rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(4))
        self.payments[reference] = SandboxPayment(
            reference=reference,
            msisdn=msisdn,
            amount=amount,
            currency=currency,
            channel=channel,
            otp=otp,
            otp_reference=otp_reference,
            otp_sent_at=now,
            created=now,
        )
        text = f"Your O'mari OTP is {otp} (ref {otp_reference}). It expires in {OTP_LIFETIME.seconds // 60} minutes."
        self.texts.append((msisdn, text))
        if self.sms is not None:
            self.sms(msisdn, text)
        return _answer(
            {"error": False, "message": "Auth Success", "responseCode": "000", "otpReference": otp_reference}
        )

    def _request(self) -> Response:
        body = self._body()
        if body is None:
            return _refuse("030", "Format error: body is not a JSON object", 400)
        msisdn, reference, otp = body.get("msisdn"), body.get("reference"), body.get("otp")
        if not all(isinstance(v, str) and v for v in (msisdn, reference, otp)):
            return _refuse("030", "Format error: msisdn, reference and otp are required", 400)
        payment = self.payments.get(reference)
        if payment is None:
            return _refuse("025", "Transaction not found")
        if payment.msisdn != msisdn:
            return _refuse("012", "Invalid transaction")
        if payment.status != "Pending":
            return _refuse("026", f"Transaction already {payment.status.lower()}")
        if self.clock() - payment.otp_sent_at > OTP_LIFETIME:
            payment.status = "Expired"
            return _refuse("054", "OTP expired")
        if otp != payment.otp:
            payment.wrong_otps += 1
            if payment.wrong_otps >= OTP_TRIES:
                payment.status = "Failed"
                return _refuse("075", "OTP tries exceeded")
            return _refuse("055", "Invalid OTP")
        if msisdn.endswith("0051"):
            payment.status = "Failed"
            return _refuse("051", "Insufficient funds")
        payment.status = "Success"
        payment.payment_reference = "".join(self.rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(26))
        payment.debit_reference = "".join(self.rng.choice("0123456789abcdef") for _ in range(12))
        return _answer(
            {
                "error": False,
                "message": "Payment Success",
                "responseCode": "000",
                "paymentReference": payment.payment_reference,
                "debitReference": payment.debit_reference,
            }
        )

    def _query(self, reference: str) -> Response:
        payment = self.payments.get(reference)
        if payment is None:
            return _refuse("025", "Transaction not found")
        if payment.status == "Pending" and self.clock() - payment.otp_sent_at > OTP_LIFETIME:
            payment.status = "Expired"
        return _answer(
            {
                "error": False,
                "message": "Query Success",
                "responseCode": "000",
                "reference": payment.reference,
                "amount": payment.amount,
                "currency": payment.currency,
                "channel": payment.channel,
                "paymentReference": payment.payment_reference,
                "debitReference": payment.debit_reference,
                "created": payment.created.replace(microsecond=0).isoformat(),
                "status": payment.status,
            }
        )

    def _void(self) -> Response:
        body = self._body()
        reference = body.get("reference") if body else None
        if not isinstance(reference, str) or not reference:
            return _refuse("030", "Format error: reference is required", 400)
        payment = self.payments.get(reference)
        if payment is None:
            return _refuse("025", "Transaction not found")
        if payment.status == "Success":
            return _refuse("012", "Invalid transaction: a completed payment cannot be voided")
        payment.status = "Voided"
        return _answer({"error": False, "message": "Void Success", "responseCode": "000"})


@contextmanager
def serve_wsgi(app, host: str, port: int, base_path: str) -> Iterator[str]:
    """Serve a sandbox's WSGI app over HTTP on loopback while the block runs; yields its base URL."""
    from werkzeug.serving import make_server

    server = make_server(host, port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="sandbox", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}{base_path}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


class SandboxAdapter(BaseAdapter):
    """A requests transport that hands each request to a sandbox's WSGI app in-process (any sandbox with
    `app`, `endpoint_of(path)` and `take_fault(endpoint, kinds)`: O'mari's, Paynow's).

    It also plays the transport faults: `timeout_after` runs the request (the money moves) and then
    raises ReadTimeout, as if the answer had been lost on the way back.
    """

    def __init__(self, sandbox) -> None:
        super().__init__()
        self.sandbox = sandbox

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        from werkzeug.test import EnvironBuilder, run_wsgi_app

        url = urlsplit(request.url)
        endpoint = self.sandbox.endpoint_of(url.path)
        fault = self.sandbox.take_fault(endpoint, TRANSPORT_FAULTS) if endpoint else None
        if fault == "timeout_before":
            raise requests.exceptions.ConnectTimeout("sandbox: connect timed out", request=request)
        if fault == "connection_error":
            raise requests.exceptions.ConnectionError("sandbox: connection reset", request=request)
        body = request.body or b""
        builder = EnvironBuilder(
            method=request.method,
            base_url=f"{url.scheme}://{url.netloc}",
            path=url.path,
            query_string=url.query,
            headers={k: v for k, v in request.headers.items() if k.lower() != "content-length"},
            data=body.encode() if isinstance(body, str) else body,
        )
        app_iter, status, headers = run_wsgi_app(self.sandbox.app, builder.get_environ(), buffered=True)
        try:
            content = b"".join(app_iter)
        finally:
            getattr(app_iter, "close", lambda: None)()
        if fault == "timeout_after":
            raise requests.exceptions.ReadTimeout("sandbox: read timed out", request=request)
        response = requests.Response()
        response.status_code = int(status.split(" ", 1)[0])
        response.reason = status.split(" ", 1)[1] if " " in status else ""
        response.headers = CaseInsensitiveDict(headers.items())
        response._content = content
        response.url = request.url
        response.request = request
        response.encoding = get_encoding_from_headers(response.headers)
        response.connection = self
        return response

    def close(self) -> None:
        pass


def _endpoint_of(path: str) -> str | None:
    tail = path[len(BASE_PATH) :] if path.startswith(BASE_PATH) else path
    name = tail.strip("/").split("/", 1)[0]
    return name if name in ENDPOINTS else None


def sms_line(msisdn: str, text: str) -> str:
    """How the terminal shows an SMS the sandbox "sent"."""
    return f"[O'mari sandbox SMS to {mask_msisdn(msisdn)}] {text}"
