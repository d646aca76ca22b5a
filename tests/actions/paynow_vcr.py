"""The vcrpy set-up for the Paynow client tests, and the recording of their cassettes.

    python tests/actions/paynow_vcr.py      # records tests/actions/cassettes/paynow/*.yaml

Recording serves actions/paynow_sandbox.py on a free loopback port, signed with TEST_KEY (a test value,
not a real integration key), and runs each scenario through the real PaynowClient over real HTTP.
Cassettes hold no secret and no environment detail: every URI is rewritten to CANONICAL_ORIGIN, and a
request's `phone` and `hash` (made with the key) are replaced, on the live request before matching too.
The answers' hashes stay: replaying, the client verifies them with TEST_KEY as it would live.
"""

from __future__ import annotations

import random
import sys
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

HERE = Path(__file__).resolve().parent
if __name__ == "__main__":
    sys.path[:0] = [str(HERE), str(HERE.parent.parent)]

import vcr  # noqa: E402

from actions.paynow_client import PaynowClient  # noqa: E402

CASSETTES = HERE / "cassettes" / "paynow"
CANONICAL_ORIGIN = "https://paynow.invalid"
API_URL = CANONICAL_ORIGIN + "/interface"
INTEGRATION_ID = "1201"
TEST_KEY = "test-integration-key"
AUTH_EMAIL = "merchant@example.com"
AMOUNT = Decimal("3.50")
REF_PAID, REF_REFUSED, REF_BAD_HASH, REF_WRONG_KEY = (f"5d0e7a10-000{n}-4b2a-8c1d-2e3f4a5b6c7{n}" for n in range(1, 5))
_SCRUBBED = {"phone": "07XXXXXXXX", "hash": "SCRUBBED"}


def _scrub_request(request):
    parts = urlsplit(request.uri)
    request.uri = CANONICAL_ORIGIN + parts.path + (f"?{parts.query}" if parts.query else "")
    if request.body:
        raw = request.body.decode() if isinstance(request.body, bytes) else request.body
        fields = [(k, _SCRUBBED.get(k, v)) for k, v in parse_qsl(raw, keep_blank_values=True)]
        request.body = urlencode(fields).encode()
    return request


def make_vcr(record_mode: str = "none") -> vcr.VCR:
    """record_mode "none" replays only (the tests); recording uses "all"."""
    return vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        record_mode=record_mode,
        match_on=["method", "uri", "body"],
        before_record_request=_scrub_request,
    )


def client(key: str = TEST_KEY, api_url: str = API_URL) -> PaynowClient:
    return PaynowClient(INTEGRATION_ID, key, auth_email=AUTH_EMAIL, api_url=api_url)


def _paid(api_url, box):
    answer = client(api_url=api_url).start_mobile(REF_PAID, AMOUNT, "Booking BK-1", "263771111111", "ecocash")
    client(api_url=api_url).poll(answer.poll_url)


def _refused(api_url, box):
    client(api_url=api_url).start_mobile(REF_REFUSED, AMOUNT, "Booking BK-1", "263774444444", "onemoney")


def _bad_hash(api_url, box):
    answer = client(api_url=api_url).start_mobile(REF_BAD_HASH, AMOUNT, "Booking BK-1", "263771111111", "ecocash")
    box.inject("poll", "bad_hash")
    client(api_url=api_url).poll(answer.poll_url)


def _wrong_key(api_url, box):
    client(key="not-the-key", api_url=api_url).start_mobile(
        REF_WRONG_KEY, AMOUNT, "Booking BK-1", "263771111111", "ecocash"
    )


SCENARIOS = {"paid.yaml": _paid, "refused.yaml": _refused, "bad_hash.yaml": _bad_hash, "wrong_key.yaml": _wrong_key}


def record() -> None:
    from actions.paynow_sandbox import PaynowSandbox

    CASSETTES.mkdir(parents=True, exist_ok=True)
    for name, scenario in SCENARIOS.items():
        box = PaynowSandbox(integration_id=INTEGRATION_ID, integration_key=TEST_KEY, rng=random.Random(12))
        with box.serve() as api_url, make_vcr("all").use_cassette(name):
            scenario(api_url, box)
        print(f"recorded {CASSETTES / name}")


if __name__ == "__main__":
    record()
