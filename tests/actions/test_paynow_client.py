"""The Paynow client against exchanges recorded over real HTTP (tests/actions/paynow_vcr.py), and the
protocol as the official `paynow` package (1.0.8) speaks it: the same fields, order, quoting and hash.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
import requests

from actions.paynow_client import PaynowClient, PaynowConfigError, local_phone, sign, signed, verified
from actions.providers import FAILED, SUCCESS, UNKNOWN

from paynow_vcr import AMOUNT, CASSETTES, REF_BAD_HASH, REF_PAID, REF_REFUSED, REF_WRONG_KEY, TEST_KEY, client, make_vcr


def replay(cassette: str):
    return make_vcr("none").use_cassette(cassette)


def test_a_paid_payment_is_started_then_polled_with_every_answer_verified():
    with replay("paid.yaml"):
        started = client().start_mobile(REF_PAID, AMOUNT, "Booking BK-1", "263771111111", "ecocash")
        assert (started.outcome, started.status) == (SUCCESS, "Ok")
        assert started.payment_reference and started.poll_url and "CheckPayment" in started.poll_url
        assert started.message == "Approve the payment of 3.50 on your ecocash phone"
        polled = client().poll(started.poll_url)
    assert (polled.outcome, polled.status, polled.amount, polled.currency) == (SUCCESS, "Paid", Decimal("3.50"), "USD")
    assert polled.payment_reference == started.payment_reference


def test_a_refusal_is_failed_with_paynows_words():
    with replay("refused.yaml"):
        answer = client().start_mobile(REF_REFUSED, AMOUNT, "Booking BK-1", "263774444444", "onemoney")
    assert (answer.outcome, answer.message, answer.poll_url) == (FAILED, "Insufficient balance", None)


def test_an_answer_whose_hash_does_not_match_is_unknown_never_a_success():
    with replay("bad_hash.yaml"):
        started = client().start_mobile(REF_BAD_HASH, AMOUNT, "Booking BK-1", "263771111111", "ecocash")
        polled = client().poll(started.poll_url)
    assert started.outcome == SUCCESS
    assert polled.outcome == UNKNOWN and polled.status == "Paid"  # says Paid, but it is not signed with our key
    assert "hash mismatch" in polled.message and polled.amount is None


def test_a_signed_answer_is_unknown_to_a_client_holding_another_key():
    with replay("paid.yaml"):
        answer = client(key="another-key").start_mobile(REF_PAID, AMOUNT, "Booking BK-1", "263771111111", "ecocash")
    assert answer.outcome == UNKNOWN


def test_a_request_signed_with_the_wrong_key_is_refused_by_paynow():
    with replay("wrong_key.yaml"):
        answer = client(key="not-the-key").start_mobile(
            REF_WRONG_KEY, AMOUNT, "Booking BK-1", "263771111111", "ecocash"
        )
    assert (answer.outcome, answer.message) == (FAILED, "Invalid Hash")


def test_no_cassette_holds_the_key_a_request_hash_or_a_phone_number():
    texts = "\n".join(p.read_text() for p in sorted(CASSETTES.glob("*.yaml")))
    assert len(list(CASSETTES.glob("*.yaml"))) == 4
    assert TEST_KEY not in texts and "0771111111" not in texts and "0774444444" not in texts
    assert texts.count("hash=SCRUBBED") == texts.count("method=")  # every request's hash scrubbed


def test_the_hash_is_the_official_packages():
    """Vector made by paynow 1.0.8's Paynow._Paynow__build_mobile (reference "BK-1 payment", 50, key
    "Test-Integration-Key"): the values are quote_plus-ed, concatenated, the key lower-cased, SHA-512."""
    fields = [
        ("resulturl", "http://result"),
        ("returnurl", "http://return"),
        ("reference", "BK-1+payment"),
        ("amount", "50.0"),
        ("id", "1201"),
        ("additionalinfo", "Booking+BK-1%2C+safari%2C+"),
        ("authemail", "merchant@example.com"),
        ("phone", "0771111111"),
        ("method", "ecocash"),
        ("status", "Message"),
    ]
    expected = (
        "6B256795C4CE6841692169F384B18125617DB748FAEF449D68835E770B9EA3F95C3FE1E9DE5C4EB5362E7242B15A3F95"
        "C7EFED217DBB5AE21059C5D54E7EBDEF"
    )
    assert sign([v for _, v in fields], "Test-Integration-Key") == expected
    assert verified(signed(fields, "Test-Integration-Key"), "test-integration-key")
    assert not verified(fields, "Test-Integration-Key")  # no hash: not verified


def test_the_start_sends_the_packages_fields_in_its_order_and_quoting():
    sent = []

    class Recorder(requests.Session):
        def request(self, method, url, data=None, **kw):
            sent.append((url, data))
            raise requests.ConnectionError("recorded")

    paynow = PaynowClient(
        "1201",
        "k",
        auth_email="merchant@example.com",
        api_url="https://paynow.invalid/interface",
        result_url="http://result",
        return_url="http://return",
        session=Recorder(),
    )
    answer = paynow.start_mobile("BK-1 payment", Decimal("50.00"), "Booking BK-1, safari, ", "263771111111", "ecocash")
    assert answer.outcome == UNKNOWN and answer.message == "could not connect to Paynow"
    [(url, data)] = sent
    assert url == "https://paynow.invalid/interface/remotetransaction"
    assert [k for k, _ in data] == [
        "resulturl",
        "returnurl",
        "reference",
        "amount",
        "id",
        "additionalinfo",
        "authemail",
        "phone",
        "method",
        "status",
        "hash",
    ]
    assert dict(data)["additionalinfo"] == "Booking+BK-1%2C+safari%2C+" and dict(data)["amount"] == "50.00"
    assert dict(data)["phone"] == "0771111111" and local_phone("263771111111") == "0771111111"


@pytest.mark.parametrize("amount", [Decimal("1.005"), Decimal("NaN"), 3.5])
def test_an_amount_that_is_not_exact_money_is_refused_before_any_call(amount):
    with pytest.raises(ValueError):
        client().start_mobile(REF_PAID, amount, "Booking BK-1", "263771111111", "ecocash")


def test_a_missing_setting_is_named_never_the_key():
    with pytest.raises(PaynowConfigError, match="PAYNOW_INTEGRATION_KEY is not set"):
        PaynowClient("1201", "", auth_email="a@b.c")
    assert "secret-key" not in repr(PaynowClient("1201", "secret-key", auth_email="a@b.c"))


def test_a_poll_without_a_poll_url_asks_nobody():
    assert client().poll(None).outcome == UNKNOWN
