"""The O'mari Merchant API client (v1.2.0): `/auth`, `/request`, `/query/{reference}`, `/void`.

Every call answers an OmariResult whose outcome is one of:

- ``success``: HTTP 2xx, ``error`` is false and ``responseCode`` is ``"000"`` (the vendor's rule);
- ``failed``: O'mari answered clearly and said no (any other readable JSON object);
- ``unknown``: the answer never arrived or cannot be read (timeout, connection error, HTTP 5xx, an
  empty body, a body that is not a JSON object, or one without a true/false ``error`` and a
  ``responseCode``, e.g. ``"error": "false"`` as text). For `/request` the money may have moved: the caller leaves the transaction
  PENDING and `/query` settles it later.

Amounts travel as JSON numbers with two decimals (``"amount": 3.50``) written straight from the Decimal,
never through a float. The merchant key, the OTP and full phone numbers never reach a log line or an
exception's text.
"""

from __future__ import annotations

import json
import logging
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import quote

from storage import logs

from .providers import FAILED, SUCCESS, UNKNOWN, Answer, ProviderConfigError, mask_msisdn, new_session, send  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    import requests

CENT = Decimal("0.01")
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 30.0

log = logging.getLogger("convoflow.omari")


class OmariConfigError(ProviderConfigError):
    """The client cannot be built: a missing base URL or merchant key (the message never shows the key)."""


# One answer shape for every provider (actions/providers.py); the O'mari name is kept for its callers.
OmariResult = Answer


def encode_body(fields: Mapping[str, Any]) -> bytes:
    """A flat JSON object where Decimals become numbers with exactly two decimals (`3.50`), no float."""
    parts = []
    for key, value in fields.items():
        if isinstance(value, Decimal):
            if not value.is_finite() or value != value.quantize(CENT):
                # Never round money on the way out: the amount charged is the amount the customer typed.
                raise ValueError(f"field '{key}' is not an amount with at most two decimals")
            literal = format(value.quantize(CENT), "f")
        else:
            literal = json.dumps(value)
        parts.append(f"{json.dumps(key)}: {literal}")
    return ("{" + ", ".join(parts) + "}").encode("utf-8")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return str(value)


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value))
    except ArithmeticError:
        return None
    return amount if amount.is_finite() else None


def _off_contract(payload: dict) -> str | None:
    """Why a JSON object is not an answer we can read (None when it is): the vendor's success rule needs a
    true/false `error` and a `responseCode`; without them (`"error": "false"` as text, a gateway's own
    JSON) we cannot tell success from refusal, so the outcome is unknown, never a failure.
    """
    if not isinstance(payload.get("error"), bool):
        return "an 'error' field that is not true or false" if "error" in payload else "no 'error' field"
    if payload.get("responseCode") is None:
        return "no 'responseCode' field"
    return None


class OmariClient:
    """A requests.Session bound to one O'mari environment and merchant key."""

    def __init__(
        self,
        base_url: str,
        merchant_key: str,
        *,
        session: requests.Session | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        clock=time.monotonic,
    ) -> None:
        if not base_url:
            raise OmariConfigError("OMARI_API_BASE_URL is not set")
        if not merchant_key:
            raise OmariConfigError("OMARI_MERCHANT_KEY is not set")
        self.base_url = base_url.rstrip("/")
        self._key = merchant_key
        self.session = session or new_session()
        self.timeout = (connect_timeout, read_timeout)
        self._clock = clock

    def __repr__(self) -> str:
        return f"OmariClient(base_url={self.base_url!r})"

    @classmethod
    def from_settings(cls, settings, *, session: requests.Session | None = None) -> "OmariClient":
        """Build the client from Settings (OMARI_API_BASE_URL, OMARI_MERCHANT_KEY)."""
        return cls(settings.omari_api_base_url or "", settings.omari_merchant_key or "", session=session)

    # ── the four calls ───────────────────────────────────────────────────────────────────────────────

    def auth(self, msisdn: str, reference: str, amount: Decimal, currency: str, channel: str) -> OmariResult:
        """POST /auth: start a payment; O'mari texts the customer an OTP. Success carries otp_reference."""
        if not isinstance(amount, Decimal):
            raise TypeError("amount must be a Decimal")
        body = {"msisdn": msisdn, "reference": reference, "amount": amount, "currency": currency, "channel": channel}
        return self._call("POST", "/auth", body, msisdn=msisdn, reference=reference)

    def request(self, msisdn: str, reference: str, otp: str) -> OmariResult:
        """POST /request: complete the payment with the OTP; msisdn must be the one /auth used."""
        return self._call(
            "POST",
            "/request",
            {"msisdn": msisdn, "reference": reference, "otp": otp},
            msisdn=msisdn,
            reference=reference,
        )

    def query(self, reference: str) -> OmariResult:
        """GET /query/{reference}: what O'mari knows about one of our transactions."""
        return self._call("GET", f"/query/{quote(reference, safe='')}", None, reference=reference)

    def void(self, reference: str) -> OmariResult:
        """POST /void: cancel a transaction (Postman collection only; its answer is not documented)."""
        return self._call("POST", "/void", {"reference": reference}, reference=reference)

    # ── plumbing ─────────────────────────────────────────────────────────────────────────────────────

    def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        msisdn: str | None = None,
        reference: str | None = None,
    ) -> OmariResult:
        logs.tag(payment=reference)  # this line and the rest of the turn's lines name the payment
        headers = {"X-Merchant-Key": self._key, "Accept": "application/json"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = encode_body(body)
        started = self._clock()
        sent = send(
            self.session, method, self.base_url + path, "O'mari", timeout=self.timeout, data=data, headers=headers
        )
        status = None if isinstance(sent, Answer) else sent.status_code
        result = sent if isinstance(sent, Answer) else self._read(sent)
        log.info(
            "omari %s %s status=%s responseCode=%s outcome=%s msisdn=%s duration_ms=%.0f",
            method,
            "/query/{reference}" if path.startswith("/query/") else path,
            status if status is not None else "-",
            result.response_code or "-",
            result.outcome,
            mask_msisdn(msisdn) or "-",
            (self._clock() - started) * 1000,
        )
        return result

    @staticmethod
    def _read(response: requests.Response) -> OmariResult:
        status = response.status_code
        if status >= 500:
            return OmariResult(UNKNOWN, http_status=status, message=f"O'mari answered HTTP {status}")
        if not (response.content or b"").strip():
            return OmariResult(UNKNOWN, http_status=status, message=f"O'mari answered HTTP {status} with an empty body")
        try:
            payload = json.loads(response.content, parse_float=Decimal)
        except ValueError:
            return OmariResult(
                UNKNOWN, http_status=status, message=f"O'mari answered HTTP {status} with a body that is not JSON"
            )
        if not isinstance(payload, dict):
            return OmariResult(
                UNKNOWN, http_status=status, message=f"O'mari answered HTTP {status} with JSON that is not an object"
            )
        unreadable = _off_contract(payload)
        if unreadable:
            return OmariResult(UNKNOWN, http_status=status, message=f"O'mari answered HTTP {status} with {unreadable}")
        code = _text(payload.get("responseCode"))
        ok = 200 <= status < 300 and payload.get("error") is False and code == "000"
        return OmariResult(
            SUCCESS if ok else FAILED,
            http_status=status,
            response_code=code,
            message=_text(payload.get("message")) or (None if ok else f"HTTP {status}"),
            otp_reference=_text(payload.get("otpReference")),
            payment_reference=_text(payload.get("paymentReference")),
            debit_reference=_text(payload.get("debitReference")),
            status=_text(payload.get("status")),
            amount=_decimal(payload.get("amount")),
            currency=_text(payload.get("currency")),
            created=_text(payload.get("created")),
        )
