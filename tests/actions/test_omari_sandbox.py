"""The O'mari sandbox's own decisions (codes, OTP lifetime, test numbers), as the client sees them."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from actions.omari_client import OmariClient
from actions.omari_sandbox import OmariSandbox, sms_line

PHONE = "263771234567"


class Now:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 9, 0, 0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock():
    return Now()


@pytest.fixture
def sandbox(clock):
    texts = []
    box = OmariSandbox(clock=clock, sms=lambda msisdn, text: texts.append(sms_line(msisdn, text)))
    box.terminal = texts
    return box


def test_auth_texts_a_six_digit_otp_with_the_otp_reference(sandbox):
    answer = sandbox.client().auth(PHONE, "r1", Decimal("5"), "USD", "WEB")
    otp = sandbox.last_otp(PHONE)
    assert len(otp) == 6 and otp.isdigit()
    assert sandbox.terminal == [
        f"[O'mari sandbox SMS to 2637****4567] Your O'mari OTP is {otp} "
        f"(ref {answer.otp_reference}). It expires in 10 minutes."
    ]


def test_the_otp_lives_ten_minutes(sandbox, clock):
    client = sandbox.client()
    client.auth(PHONE, "r1", Decimal("5"), "USD", "WEB")
    clock.now += timedelta(minutes=10, seconds=1)
    answer = client.request(PHONE, "r1", sandbox.last_otp())
    assert (answer.outcome, answer.response_code) == ("failed", "054")
    assert client.query("r1").status == "Expired"


def test_an_otp_in_time_pays(sandbox, clock):
    client = sandbox.client()
    client.auth(PHONE, "r1", Decimal("5"), "USD", "WEB")
    clock.now += timedelta(minutes=9, seconds=59)
    assert client.request(PHONE, "r1", sandbox.last_otp()).ok


@pytest.mark.parametrize(
    "call,code",
    [
        (lambda c, s: c.auth("263771230005", "r9", Decimal("5"), "USD", "WEB"), "005"),
        (lambda c, s: c.auth(PHONE, "r1", Decimal("5"), "USD", "WEB"), "026"),
        (
            lambda c, s: _raw_auth(
                c,
                b'{"msisdn": "263771234567", "reference": "r9", "amount": 5.001, "currency": "USD", "channel": "WEB"}',
            ),
            "013",
        ),
        (
            lambda c, s: _raw_auth(
                c,
                b'{"msisdn": "263771234567", "reference": "r9", "amount": "5.00", "currency": "USD", "channel": "WEB"}',
            ),
            "030",
        ),
        (lambda c, s: c.auth(PHONE, "r9", Decimal("5"), "EUR", "WEB"), "030"),
        (lambda c, s: c.auth(PHONE, "r9", Decimal("5"), "USD", "APP"), "030"),
        (lambda c, s: c.request("263779999999", "r1", s.last_otp()), "012"),
        (lambda c, s: c.request(PHONE, "r-unknown", "123456"), "025"),
        (lambda c, s: c.query("r-unknown"), "025"),
    ],
)
def test_refusals_carry_the_documented_codes(sandbox, call, code):
    client = sandbox.client()
    client.auth(PHONE, "r1", Decimal("5"), "USD", "WEB")
    answer = call(client, sandbox)
    assert (answer.outcome, answer.response_code) == ("failed", code)


def _raw_auth(client, body: bytes):
    """A body our client would never send (it refuses more than two decimals, and amounts as strings)."""
    return client._read(
        client.session.post(
            client.base_url + "/auth",
            data=body,
            headers={"X-Merchant-Key": "sandbox-merchant-key", "Content-Type": "application/json"},
        )
    )


def test_insufficient_funds_number_fails_at_request(sandbox):
    client = sandbox.client()
    client.auth("263771230051", "r1", Decimal("5"), "USD", "WEB")
    answer = client.request("263771230051", "r1", sandbox.last_otp())
    assert (answer.response_code, answer.message) == ("051", "Insufficient funds")
    assert client.query("r1").status == "Failed"


def test_a_completed_payment_cannot_be_voided_or_paid_twice(sandbox):
    client = sandbox.client()
    client.auth(PHONE, "r1", Decimal("5"), "USD", "WEB")
    assert client.request(PHONE, "r1", sandbox.last_otp()).ok
    assert client.void("r1").response_code == "012"
    assert client.request(PHONE, "r1", sandbox.last_otp()).response_code == "026"


def test_a_fixed_otp_for_scripts(clock):
    sandbox = OmariSandbox(clock=clock, fixed_otp="123456")
    sandbox.client().auth(PHONE, "r1", Decimal("5"), "USD", "WEB")
    assert sandbox.last_otp() == "123456"
    with pytest.raises(ValueError):
        OmariSandbox(fixed_otp="12")


def test_served_over_http_on_loopback_with_the_key_checked(sandbox):
    with sandbox.serve() as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        assert OmariClient(base_url, sandbox.merchant_key).auth(PHONE, "r1", Decimal("3.50"), "USD", "WEB").ok
        refused = OmariClient(base_url, "wrong").query("r1")
    assert (refused.http_status, refused.response_code) == (401, "063")
    assert sandbox.payments["r1"].amount == Decimal("3.50")


def test_unknown_faults_and_endpoints_are_refused(sandbox):
    with pytest.raises(ValueError):
        sandbox.inject("refund", "http_500")
    with pytest.raises(ValueError):
        sandbox.inject("auth", "slow")
