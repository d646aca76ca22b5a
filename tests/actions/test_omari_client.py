"""The O'mari client against cassettes recorded through real HTTP (see cassettes/README.md), and the
parts of its contract a cassette cannot show: exact amounts, timeouts, logs without secrets.
"""

from __future__ import annotations

import logging
import re
from decimal import Decimal

import pytest
import requests

from actions.omari_client import OmariClient, OmariConfigError, encode_body, mask_msisdn
from actions.omari_sandbox import OmariSandbox
from omari_vcr import CANONICAL_BASE_URL, CASSETTES, make_vcr
from record_cassettes import (
    AMOUNT,
    MSISDN,
    REF_401,
    REF_AMOUNT,
    REF_AUTH,
    REF_FAULT,
    REF_HTML,
    REF_MISSING,
    REF_PAY,
    REF_STATUS,
    REF_TEXT,
    REF_UNKNOWN,
    REF_VOID,
    REF_WRONG,
)

KEY = "test-merchant-key-0123456789"


@pytest.fixture
def replay():
    return make_vcr("none")


@pytest.fixture
def client():
    return OmariClient(CANONICAL_BASE_URL, KEY)


def test_auth_success_gives_the_otp_reference(replay, client):
    with replay.use_cassette("auth_success.yaml") as cassette:
        result = client.auth(MSISDN, REF_AUTH, AMOUNT, "USD", "WEB")
    assert cassette.all_played
    assert (result.outcome, result.response_code, result.message) == ("success", "000", "Auth Success")
    assert re.fullmatch(r"[A-Z]{4}", result.otp_reference)


def test_the_amount_goes_out_as_a_number_with_two_decimals(replay, client):
    with replay.use_cassette("auth_success.yaml") as cassette:
        client.auth(MSISDN, REF_AUTH, Decimal("3.5"), "USD", "WEB")
    assert b'"amount": 3.50,' in cassette.requests[0].body


def test_a_different_amount_is_not_the_recorded_request(replay, client):
    """Matching on the body: 3.51 is not what was recorded, so the replay refuses it."""
    from vcr.errors import CannotOverwriteExistingCassetteException

    with replay.use_cassette("auth_success.yaml"):
        with pytest.raises(CannotOverwriteExistingCassetteException):
            client.auth(MSISDN, REF_AUTH, Decimal("3.51"), "USD", "WEB")


def test_payment_success_then_query(replay, client):
    with replay.use_cassette("payment_success.yaml") as cassette:
        client.auth(MSISDN, REF_PAY, AMOUNT, "USD", "WEB")
        paid = client.request(MSISDN, REF_PAY, "482913")
        queried = client.query(REF_PAY)
    assert cassette.all_played
    assert paid.outcome == "success" and paid.message == "Payment Success"
    assert re.fullmatch(r"[A-Z0-9]{26}", paid.payment_reference) and paid.debit_reference
    assert queried.outcome == "success" and queried.status == "Success"
    assert queried.amount == Decimal("3.50") and queried.currency == "USD"
    assert queried.payment_reference == paid.payment_reference


def test_a_wrong_otp_is_refused_and_the_third_ends_the_payment(replay, client):
    with replay.use_cassette("wrong_otp.yaml"):
        client.auth(MSISDN, REF_WRONG, AMOUNT, "USD", "WEB")
        answers = [client.request(MSISDN, REF_WRONG, "111111") for _ in range(3)]
    assert [(a.outcome, a.response_code) for a in answers] == [("failed", "055"), ("failed", "055"), ("failed", "075")]
    assert answers[0].message == "Invalid OTP"


def test_void(replay, client):
    with replay.use_cassette("void.yaml"):
        client.auth(MSISDN, REF_VOID, AMOUNT, "USD", "WEB")
        voided = client.void(REF_VOID)
    assert (voided.outcome, voided.message) == ("success", "Void Success")


def test_query_of_an_unknown_reference_is_a_clear_failure(replay, client):
    with replay.use_cassette("query_unknown.yaml"):
        result = client.query(REF_UNKNOWN)
    assert (result.outcome, result.response_code, result.http_status) == ("failed", "025", 200)


def test_a_format_error_is_a_failure_with_its_message(replay, client):
    with replay.use_cassette("auth_format_error.yaml"):
        result = client.auth("0771234567", REF_FAULT, AMOUNT, "USD", "WEB")
    assert (result.outcome, result.response_code, result.http_status) == ("failed", "030", 400)
    assert "msisdn" in result.message


def test_a_refused_key_is_a_failure(replay, client):
    with replay.use_cassette("bad_key.yaml"):
        result = client.query(REF_UNKNOWN)
    assert (result.outcome, result.http_status, result.response_code) == ("failed", 401, "063")


def test_http_500_is_an_unknown_outcome(replay, client):
    with replay.use_cassette("auth_server_error.yaml"):
        result = client.auth(MSISDN, REF_FAULT, AMOUNT, "USD", "WEB")
    assert (result.outcome, result.http_status, result.response_code) == ("unknown", 500, None)


def test_a_body_that_is_not_json_is_an_unknown_outcome(replay, client):
    with replay.use_cassette("auth_malformed_json.yaml"):
        result = client.auth(MSISDN, REF_FAULT, AMOUNT, "USD", "WEB")
    assert result.outcome == "unknown" and result.http_status == 200
    assert "not JSON" in result.message


# ── the odd answers real gateways give (issue 9) ──────────────────────────────────────────────────────


def test_a_401_with_an_empty_body_at_auth_is_not_a_success_and_says_so(replay, client):
    with replay.use_cassette("auth_unauthorized_empty.yaml") as cassette:
        result = client.auth(MSISDN, REF_401, AMOUNT, "USD", "WEB")
    assert cassette.all_played
    assert (result.outcome, result.http_status) == ("unknown", 401)
    assert result.message == "O'mari answered HTTP 401 with an empty body"


@pytest.mark.parametrize(
    "cassette_name,reference,why",
    [
        ("request_html_after_paying.yaml", REF_HTML, "with a body that is not JSON"),
        ("request_error_as_text.yaml", REF_TEXT, "with an 'error' field that is not true or false"),
        ("request_missing_fields.yaml", REF_MISSING, "with no 'error' field"),
    ],
)
def test_an_unreadable_request_answer_after_paying_is_unknown_and_query_shows_the_money_moved(
    replay, client, cassette_name, reference, why
):
    with replay.use_cassette(cassette_name) as cassette:
        client.auth(MSISDN, reference, AMOUNT, "USD", "WEB")
        paid = client.request(MSISDN, reference, "482913")
        queried = client.query(reference)
    assert cassette.all_played
    assert (paid.outcome, paid.http_status) == ("unknown", 200) and why in paid.message
    assert (queried.outcome, queried.status, queried.amount, queried.currency) == ("success", "Success", AMOUNT, "USD")


@pytest.mark.parametrize(
    "cassette_name,reference,status,amount",
    [
        ("query_unknown_status.yaml", REF_STATUS, "Processing", AMOUNT),
        ("query_other_amount.yaml", REF_AMOUNT, "Success", Decimal("0.35")),
    ],
)
def test_query_answers_that_read_well_but_say_odd_things(replay, client, cassette_name, reference, status, amount):
    with replay.use_cassette(cassette_name):
        client.auth(MSISDN, reference, AMOUNT, "USD", "WEB")
        client.request(MSISDN, reference, "482913")
        queried = client.query(reference)
    assert (queried.outcome, queried.status, queried.amount) == ("success", status, amount)


def test_cassettes_hold_no_secret():
    files = sorted(CASSETTES.glob("*.yaml"))
    assert len(files) >= 15
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"x-merchant-key", text, re.I), f"{path.name} holds the merchant key header"
        assert "sandbox-merchant-key" not in text
        assert not re.search(r"2637\d{8}", text), f"{path.name} holds a phone number"
        assert not re.search(r'"otp": "(?!000000")', text), f"{path.name} holds an OTP"
        assert "Your O'mari OTP" not in text
        assert "127.0.0.1" not in text and "omari.v.co.zw" not in text


# ── what cassettes cannot show ───────────────────────────────────────────────────────────────────────


def test_encode_body_never_goes_through_float():
    body = encode_body({"amount": Decimal("1234567890123.1"), "reference": "r"})
    assert body == b'{"amount": 1234567890123.10, "reference": "r"}'
    with pytest.raises(ValueError):
        encode_body({"amount": Decimal("NaN")})
    with pytest.raises(ValueError, match="at most two decimals"):
        encode_body({"amount": Decimal("5.001")})  # never rounded on the way out
    with pytest.raises(TypeError):
        OmariClient("http://x", "k").auth(MSISDN, "r", 3.5, "USD", "WEB")


def test_timeouts_are_10s_connect_30s_read_by_default():
    assert OmariClient("http://x", "k").timeout == (10.0, 30.0)


def test_missing_configuration_names_the_setting_and_never_the_key():
    with pytest.raises(OmariConfigError, match="OMARI_MERCHANT_KEY"):
        OmariClient("http://x", "")
    with pytest.raises(OmariConfigError, match="OMARI_API_BASE_URL"):
        OmariClient("", KEY)
    assert KEY not in repr(OmariClient("http://x", KEY))


@pytest.mark.parametrize(
    "fault,message",
    [
        ("timeout_before", "no answer within the timeout"),
        ("timeout_after", "no answer within the timeout"),
        ("connection_error", "could not connect"),
    ],
)
def test_transport_failures_are_unknown_outcomes(fault, message):
    sandbox = OmariSandbox()
    sandbox.inject("auth", fault)
    result = sandbox.client().auth(MSISDN, REF_AUTH, AMOUNT, "USD", "WEB")
    assert result.outcome == "unknown" and message in result.message
    assert result.response_code is None


def test_json_that_is_not_an_object_is_unknown():
    session = requests.Session()
    adapter = _OneAnswer(b'["error", false]')
    session.mount("http://omari.test/", adapter)
    result = OmariClient("http://omari.test/api", KEY, session=session).query(REF_AUTH)
    assert result.outcome == "unknown" and "not an object" in result.message


def test_error_false_without_code_000_is_a_failure():
    session = requests.Session()
    session.mount("http://omari.test/", _OneAnswer(b'{"error": false, "responseCode": "001", "message": "Later"}'))
    result = OmariClient("http://omari.test/api", KEY, session=session).query(REF_AUTH)
    assert (result.outcome, result.response_code, result.message) == ("failed", "001", "Later")


def test_every_call_is_logged_without_key_otp_or_full_number(caplog):
    sandbox = OmariSandbox()
    client = sandbox.client()
    with caplog.at_level(logging.DEBUG):
        client.auth(MSISDN, REF_PAY, AMOUNT, "USD", "WEB")
        otp = sandbox.last_otp()
        client.request(MSISDN, REF_PAY, otp)
        client.query(REF_PAY)
    lines = [r.getMessage() for r in caplog.records if r.name == "convoflow.omari"]
    assert len(lines) == 3
    assert "POST /auth status=200 responseCode=000" in lines[0]
    assert "GET /query/{reference}" in lines[2] and "duration_ms=" in lines[2]
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert sandbox.merchant_key not in everything and otp not in everything and MSISDN not in everything
    assert mask_msisdn(MSISDN) == "2637****4567" and mask_msisdn(MSISDN) in lines[0]


class _OneAnswer(requests.adapters.BaseAdapter):
    """A transport that answers every request with the same 200 body (shapes no server here sends)."""

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body

    def send(self, request, **kwargs):
        response = requests.Response()
        response.status_code, response._content, response.request, response.url = 200, self.body, request, request.url
        return response

    def close(self):
        pass
