"""Record the O'mari client cassettes under tests/actions/cassettes.

    python tests/actions/record_cassettes.py            # against the built-in sandbox, served on 127.0.0.1
    python tests/actions/record_cassettes.py --real     # against the real O'mari UAT (needs credentials)

The default serves actions/omari_sandbox.py over HTTP on a free loopback port and records every scenario
through the real client and a real HTTP exchange. `--real` records the scenarios a real sandbox can play
(not the injected faults) against OMARI_API_BASE_URL with OMARI_MERCHANT_KEY, paying from
OMARI_TEST_MSISDN, and asks you to type each OTP O'mari texts to that phone. Either way the cassettes are
scrubbed by tests/actions/omari_vcr.py (no key, no msisdn, no OTP); check `git diff` before committing.
"""

from __future__ import annotations

import argparse
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent.parent)]

from actions.omari_client import OmariClient  # noqa: E402
from actions.omari_sandbox import OmariSandbox  # noqa: E402
from omari_vcr import CASSETTES, make_vcr  # noqa: E402

# Fixed references and amounts: the replaying tests send exactly these bodies.
MSISDN = "263771234567"
REF_AUTH = "6f1c2a34-0001-4c1e-9a55-3b2f7d8e9a01"
REF_PAY = "6f1c2a34-0002-4c1e-9a55-3b2f7d8e9a02"
REF_WRONG = "6f1c2a34-0003-4c1e-9a55-3b2f7d8e9a03"
REF_VOID = "6f1c2a34-0004-4c1e-9a55-3b2f7d8e9a04"
REF_UNKNOWN = "6f1c2a34-0005-4c1e-9a55-3b2f7d8e9a05"
REF_FAULT = "6f1c2a34-0006-4c1e-9a55-3b2f7d8e9a06"
# The odd answers of issue 9, one reference each (the sandbox refuses a reference twice).
REF_401 = "6f1c2a34-0007-4c1e-9a55-3b2f7d8e9a07"
REF_HTML = "6f1c2a34-0008-4c1e-9a55-3b2f7d8e9a08"
REF_TEXT = "6f1c2a34-0009-4c1e-9a55-3b2f7d8e9a09"
REF_MISSING = "6f1c2a34-0010-4c1e-9a55-3b2f7d8e9a10"
REF_STATUS = "6f1c2a34-0011-4c1e-9a55-3b2f7d8e9a11"
REF_AMOUNT = "6f1c2a34-0012-4c1e-9a55-3b2f7d8e9a12"
AMOUNT = Decimal("3.50")
WRONG_OTP = "111111"

Scenario = Callable[[OmariClient, Callable[[str], str], str], None]


def auth_success(client, otp_for, msisdn):
    client.auth(msisdn, REF_AUTH, AMOUNT, "USD", "WEB")


def payment_success(client, otp_for, msisdn):
    client.auth(msisdn, REF_PAY, AMOUNT, "USD", "WEB")
    client.request(msisdn, REF_PAY, otp_for(REF_PAY))
    client.query(REF_PAY)


def wrong_otp(client, otp_for, msisdn):
    client.auth(msisdn, REF_WRONG, AMOUNT, "USD", "WEB")
    for _ in range(3):
        client.request(msisdn, REF_WRONG, WRONG_OTP)


def void(client, otp_for, msisdn):
    client.auth(msisdn, REF_VOID, AMOUNT, "USD", "WEB")
    client.void(REF_VOID)


def query_unknown(client, otp_for, msisdn):
    client.query(REF_UNKNOWN)


def auth_format_error(client, otp_for, msisdn):
    client.auth("0771234567", REF_FAULT, AMOUNT, "USD", "WEB")


def bad_key(client, otp_for, msisdn):
    OmariClient(client.base_url, "not-the-key", session=client.session).query(REF_UNKNOWN)


def auth_server_error(client, otp_for, msisdn):
    client.auth(msisdn, REF_FAULT, AMOUNT, "USD", "WEB")


def auth_malformed_json(client, otp_for, msisdn):
    client.auth(msisdn, REF_FAULT, AMOUNT, "USD", "WEB")


def auth_unauthorized_empty(client, otp_for, msisdn):
    client.auth(msisdn, REF_401, AMOUNT, "USD", "WEB")


def _pay_then_query(reference: str) -> Scenario:
    """/auth, /request with the right OTP (the odd fault hits one of them), then /query: what happened."""

    def scenario(client, otp_for, msisdn):
        client.auth(msisdn, reference, AMOUNT, "USD", "WEB")
        client.request(msisdn, reference, otp_for(reference))
        client.query(reference)

    return scenario


# name -> (scenario, fault to inject in the sandbox first, playable against the real O'mari)
SCENARIOS: dict[str, tuple[Scenario, tuple[str, str] | None, bool]] = {
    "auth_success": (auth_success, None, True),
    "payment_success": (payment_success, None, True),
    "wrong_otp": (wrong_otp, None, True),
    "void": (void, None, True),
    "query_unknown": (query_unknown, None, True),
    "auth_format_error": (auth_format_error, None, True),
    "bad_key": (bad_key, None, True),
    "auth_server_error": (auth_server_error, ("auth", "http_500"), False),
    "auth_malformed_json": (auth_malformed_json, ("auth", "malformed_json"), False),
    "auth_unauthorized_empty": (auth_unauthorized_empty, ("auth", "http_401_empty"), False),
    "request_html_after_paying": (_pay_then_query(REF_HTML), ("request", "html_after"), False),
    "request_error_as_text": (_pay_then_query(REF_TEXT), ("request", "error_as_text"), False),
    "request_missing_fields": (_pay_then_query(REF_MISSING), ("request", "missing_fields"), False),
    "query_unknown_status": (_pay_then_query(REF_STATUS), ("query", "unknown_status"), False),
    "query_other_amount": (_pay_then_query(REF_AMOUNT), ("query", "other_amount"), False),
}


def record(name: str, client: OmariClient, otp_for, msisdn: str) -> None:
    path = CASSETTES / f"{name}.yaml"
    path.unlink(missing_ok=True)
    with make_vcr("all").use_cassette(path.name):
        SCENARIOS[name][0](client, otp_for, msisdn)
    print(f"recorded {path.relative_to(HERE.parent.parent)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", action="store_true", help="record against OMARI_API_BASE_URL (the real UAT)")
    parser.add_argument("names", nargs="*", help="scenarios to record (default: all)")
    args = parser.parse_args()
    names = args.names or list(SCENARIOS)
    CASSETTES.mkdir(exist_ok=True)

    if args.real:
        base_url, key = os.environ.get("OMARI_API_BASE_URL"), os.environ.get("OMARI_MERCHANT_KEY")
        msisdn = os.environ.get("OMARI_TEST_MSISDN")
        if not (base_url and key and msisdn):
            print("--real needs OMARI_API_BASE_URL, OMARI_MERCHANT_KEY and OMARI_TEST_MSISDN", file=sys.stderr)
            return 1
        client = OmariClient(base_url, key)
        otp_for = lambda reference: input(f"OTP texted to the test phone for {reference}: ").strip()  # noqa: E731
        for name in names:
            if SCENARIOS[name][2]:
                record(name, client, otp_for, msisdn)
            else:
                print(f"skipped {name}: a sandbox fault, kept as recorded against the local sandbox")
        return 0

    sandbox = OmariSandbox()
    with sandbox.serve("127.0.0.1", 0) as base_url:
        client = OmariClient(base_url, sandbox.merchant_key)
        otp_for = lambda reference: sandbox.payments[reference].otp  # noqa: E731
        for name in names:
            fault = SCENARIOS[name][1]
            if fault:
                sandbox.inject(*fault)
            record(name, client, otp_for, MSISDN)
    return 0


if __name__ == "__main__":
    sys.exit(main())
