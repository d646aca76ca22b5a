"""The vcrpy set-up shared by the O'mari client tests and tests/actions/record_cassettes.py.

Cassettes hold no secret and no environment detail:
- the X-Merchant-Key header is dropped;
- every URI is rewritten to CANONICAL_BASE_URL + the endpoint, so cassettes recorded against the local
  sandbox (any port) or the real O'mari UAT replay the same way;
- request and response bodies have `msisdn` replaced by MSISDN_PLACEHOLDER and `otp` by OTP_PLACEHOLDER.
The rewriting runs on the live request before matching too, so a test matches on method, URI and body
while sending real-looking numbers and codes.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import vcr

from actions.omari_client import encode_body

CASSETTES = Path(__file__).parent / "cassettes"
CANONICAL_BASE_URL = "https://omari.invalid/api/payment"
MSISDN_PLACEHOLDER = "2637XXXXXXXX"
OTP_PLACEHOLDER = "000000"
_ENDPOINT = re.compile(r"/(auth|request|void|query/[^/?#]+)/?(?:[?#].*)?$")
_SECRET_FIELDS = {"msisdn": MSISDN_PLACEHOLDER, "otp": OTP_PLACEHOLDER}


def canonical_uri(uri: str) -> str:
    match = _ENDPOINT.search(uri)
    return f"{CANONICAL_BASE_URL}/{match.group(1)}" if match else uri


def scrub_body(body: bytes | str | None) -> bytes | str | None:
    """The body with msisdn and otp replaced; anything that is not a flat JSON object is left as is."""
    if not body:
        return body
    raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        payload = json.loads(raw, parse_float=Decimal)
    except ValueError:
        return body
    if not isinstance(payload, dict) or any(isinstance(v, (dict, list)) for v in payload.values()):
        return body
    if not any(k in payload for k in _SECRET_FIELDS):
        return body
    cleaned = {k: (_SECRET_FIELDS[k] if k in _SECRET_FIELDS and v is not None else v) for k, v in payload.items()}
    encoded = encode_body(cleaned)
    return encoded if isinstance(body, bytes) else encoded.decode("utf-8")


def scrub_request(request):
    request.uri = canonical_uri(request.uri)
    request.body = scrub_body(request.body)
    return request


def scrub_response(response: dict) -> dict:
    body = response.get("body") or {}
    if body.get("string"):
        body["string"] = scrub_body(body["string"])
    return response


def make_vcr(record_mode: str = "none") -> vcr.VCR:
    """record_mode "none" replays only (CI); the recording script uses "all"."""
    return vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        record_mode=record_mode,
        match_on=["method", "uri", "body"],
        filter_headers=["X-Merchant-Key"],
        before_record_request=scrub_request,
        before_record_response=scrub_response,
        decode_compressed_response=True,
    )
