"""The Paynow client: mobile express checkout (EcoCash, OneMoney) and the status poll, speaking the
protocol as the official `paynow` package (1.0.8, paynow/model.py) does.

- Start: POST {PAYNOW_API_URL}/remotetransaction, a form with, in this order: resulturl, returnurl,
  reference, amount, id, additionalinfo, authemail, phone, method, status=Message, hash. Every value but
  resulturl, returnurl and authemail is quote_plus-ed before it is hashed and sent, as the package does.
- hash: SHA-512 over the values concatenated in order (the hash itself left out) followed by the
  integration key in lower case; upper-case hex.
- Answers are URL-encoded: ``status=Ok&instructions=…&paynowreference=…&pollurl=…&hash=…`` or
  ``status=Error&error=…`` (Paynow signs no error).
- Status: POST the answer's pollurl with an empty body: ``reference, paynowreference, amount, status,
  pollurl, hash``. Paynow posts the same fields to the result URL when a status changes.

Stricter than the package (our decisions): the hash of every answer is verified, the poll's too (the
package skips it) — a missing or wrong hash makes the answer unknown, never a success (the poll URL we
keep came in such a signed answer); amounts go out as ``50.00`` from the Decimal, never a float;
the payer's 2637XXXXXXXX number goes out in Paynow's local form 07XXXXXXXX.

Outcomes: ``success`` (a signed answer whose status is not Error), ``failed`` (status=Error: Paynow
refused, with its words) and ``unknown`` (timeout, connection error, HTTP 5xx, no status, a bad hash).
The integration key, the hash and full phone numbers never reach a log line or an exception's text.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from decimal import Decimal
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote_plus, urlsplit

from storage import logs

from .omari_client import DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT
from .providers import FAILED, SUCCESS, UNKNOWN, Answer, ProviderConfigError, mask_msisdn, new_session, send

if TYPE_CHECKING:
    import requests

METHODS = ("ecocash", "onemoney")  # what Paynow's express checkout takes
CENT = Decimal("0.01")
_NOT_QUOTED = ("resulturl", "returnurl", "authemail")  # the package sends these as they are

log = logging.getLogger("convoflow.paynow")


class PaynowConfigError(ProviderConfigError):
    """The client cannot be built: a missing integration id, key or auth email (never shows the key)."""


def sign(values: list[str], integration_key: str) -> str:
    """Paynow's hash of a message's values (in their order, the hash left out)."""
    text = "".join(values) + integration_key.lower()
    return hashlib.sha512(text.encode("utf-8")).hexdigest().upper()


def signed(fields: list[tuple[str, str]], integration_key: str) -> list[tuple[str, str]]:
    """The fields with their hash appended: what Paynow sends, and what we send."""
    return fields + [("hash", sign([value for _, value in fields], integration_key))]


def verified(fields: list[tuple[str, str]], integration_key: str) -> bool:
    """True when the message carries a hash and it is the one its values and the key make."""
    theirs = [value for key, value in fields if key.lower() == "hash"]
    values = [value for key, value in fields if key.lower() != "hash"]
    return len(theirs) == 1 and hmac.compare_digest(theirs[0].upper(), sign(values, integration_key))


def local_phone(msisdn: str) -> str:
    """`263771234567` -> `0771234567`, the form Paynow's express checkout takes."""
    return "0" + msisdn[3:] if msisdn.startswith("263") else msisdn


class PaynowClient:
    """A requests.Session bound to one Paynow integration."""

    def __init__(
        self,
        integration_id: str,
        integration_key: str,
        *,
        auth_email: str,
        api_url: str = "https://www.paynow.co.zw/interface",
        result_url: str = "",
        return_url: str = "",
        currency: str = "USD",
        session: requests.Session | None = None,
        clock=time.monotonic,
    ) -> None:
        for value, name in (
            (integration_id, "PAYNOW_INTEGRATION_ID"),
            (integration_key, "PAYNOW_INTEGRATION_KEY"),
            (auth_email, "PAYNOW_AUTH_EMAIL"),
        ):
            if not value:
                raise PaynowConfigError(f"{name} is not set")
        self.integration_id, self._key, self.auth_email = integration_id, integration_key, auth_email
        self.api_url, self.result_url, self.return_url = api_url.rstrip("/"), result_url, return_url
        self.currency, self.session, self._clock = currency, session or new_session(), clock
        self.timeout = (DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT)

    def __repr__(self) -> str:
        return f"PaynowClient(api_url={self.api_url!r}, integration_id={self.integration_id!r})"

    @classmethod
    def from_settings(cls, settings, *, session: requests.Session | None = None) -> "PaynowClient":
        """Build the client from Settings (PAYNOW_INTEGRATION_ID, _KEY, _AUTH_EMAIL, _API_URL, …)."""
        return cls(
            settings.paynow_integration_id or "",
            settings.paynow_integration_key or "",
            auth_email=settings.paynow_auth_email or "",
            api_url=settings.paynow_api_url,
            result_url=settings.paynow_result_url or "",
            return_url=settings.paynow_return_url or "",
            currency=settings.paynow_currency,
            session=session,
        )

    def start_mobile(self, reference: str, amount: Decimal, info: str, msisdn: str, method: str) -> Answer:
        """Express checkout: Paynow prompts the payer's phone (EcoCash, OneMoney) to approve the amount."""
        if not isinstance(amount, Decimal) or not amount.is_finite() or amount != amount.quantize(CENT):
            raise ValueError("amount must be a Decimal with at most two decimals")
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}")
        fields = [
            ("resulturl", self.result_url),
            ("returnurl", self.return_url),
            ("reference", reference),
            ("amount", format(amount.quantize(CENT), "f")),
            ("id", self.integration_id),
            ("additionalinfo", info),
            ("authemail", self.auth_email),
            ("phone", local_phone(msisdn)),
            ("method", method),
            ("status", "Message"),
        ]
        fields = [(k, v if k in _NOT_QUOTED else quote_plus(v)) for k, v in fields]
        logs.tag(payment=reference)  # this line and the rest of the turn's lines name the payment
        return self._post(self.api_url + "/remotetransaction", signed(fields, self._key), msisdn=msisdn)

    def poll(self, poll_url: str | None, reference: str | None = None) -> Answer:
        """The payment's status now, from the poll URL Paynow gave at the start (reference: ours, for the log)."""
        logs.tag(payment=reference)
        if urlsplit(poll_url or "").scheme not in ("https", "http"):
            return Answer(UNKNOWN, message="no poll URL for this payment")
        return self._post(poll_url, [])

    def _post(self, url: str, fields: list[tuple[str, str]], msisdn: str | None = None) -> Answer:
        started = self._clock()
        sent = send(self.session, "POST", url, "Paynow", timeout=self.timeout, data=fields)
        status = None if isinstance(sent, Answer) else sent.status_code
        answer = sent if isinstance(sent, Answer) else self._read(sent)
        log.info(
            "paynow POST %s status=%s outcome=%s paynow_status=%s msisdn=%s duration_ms=%.0f",
            "/remotetransaction" if fields else "{pollurl}",
            status if status is not None else "-",
            answer.outcome,
            answer.status or "-",
            mask_msisdn(msisdn) or "-",
            (self._clock() - started) * 1000,
        )
        return answer

    def _read(self, response: requests.Response) -> Answer:
        status = response.status_code
        if status >= 500:
            return Answer(UNKNOWN, http_status=status, message=f"Paynow answered HTTP {status}")
        text = response.content.decode("utf-8", "replace").strip()
        fields = parse_qsl(text, keep_blank_values=True) if "<" not in text else []
        found = {key.lower(): value for key, value in fields}
        word = found.get("status")
        if not word:
            return Answer(UNKNOWN, http_status=status, message=f"Paynow answered HTTP {status} without a status")
        if word.lower() == "error":
            return Answer(FAILED, http_status=status, status=word, message=found.get("error") or "Paynow refused")
        if not verified(fields, self._key):
            return Answer(
                UNKNOWN,
                http_status=status,
                status=word,
                message="Paynow's answer is not signed with our integration key (hash mismatch)",
            )
        return Answer(
            SUCCESS,
            http_status=status,
            status=word,
            message=found.get("instructions"),
            payment_reference=found.get("paynowreference"),
            poll_url=found.get("pollurl"),
            amount=_decimal(found.get("amount")),
            currency=self.currency if "amount" in found else None,
        )


def _decimal(text: str | None) -> Decimal | None:
    try:
        amount = Decimal(text) if text else None
    except ArithmeticError:
        return None
    return amount if amount is not None and amount.is_finite() else None
