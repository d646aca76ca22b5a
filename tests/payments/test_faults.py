"""Faults on the way to O'mari and back, through the whole conversation: what the customer reads, what
the transaction row says, and that the booking is paid exactly once whatever happens.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from actions.reconcile import reconcile
from storage.sessions import LEASE

from payment_kit import PHONE, REF, Shop

BEING_CONFIRMED = "We are confirming your payment with O'mari"


@pytest.fixture
def shop(db):
    return Shop()


def settle(shop):
    return reconcile(shop.sandbox.client(), now=shop.clock())


NOT_STARTED = (
    "❌ The payment could not be started. O'mari could not start the payment just now, and nothing was charged."
)


@pytest.mark.parametrize("fault", ["http_500", "http_401_empty", "malformed_json", "html_after"])
def test_auth_without_a_success_fails_the_payment_at_once(shop, fault):
    shop.sandbox.inject("auth", fault)
    reply = shop.pay_until_otp()
    assert NOT_STARTED in reply and BEING_CONFIRMED not in reply
    row = shop.transaction()
    assert row.status == "FAILED" and shop.statuses() == ["INITIATED", "FAILED"]
    assert settle(shop).settlements == []  # nothing left for reconcile
    assert shop.paid() == Decimal("0.00")
    assert "Payment successful" in (shop.pay_until_otp() and shop.say(shop.sandbox.last_otp(PHONE)))  # pay again


def test_request_timing_out_after_the_money_moved_is_paid_at_once_through_query(shop):
    shop.pay_until_otp(amount="50")
    shop.sandbox.inject("request", "timeout_after")
    reply = shop.say(shop.sandbox.last_otp(PHONE))
    assert "Payment successful" in reply and "New balance: $250.00" in reply
    assert shop.statuses() == ["INITIATED", "OTP_SENT", "PENDING", "SUCCESS"]
    assert shop.sandbox.calls == ["auth", "request", "query"] and shop.paid() == Decimal("50.00")
    assert settle(shop).settlements == []


def test_request_timing_out_after_the_money_moved_is_pending_then_paid_once(shop):
    shop.pay_until_otp(amount="50")
    reply = shop.lose_the_otp_answer()
    assert BEING_CONFIRMED in reply and "Payment successful" not in reply
    row = shop.transaction()
    assert row.status == "PENDING" and shop.paid() == Decimal("0.00")
    assert shop.sandbox.payments[row.reference].status == "Success"  # O'mari took the money

    report = settle(shop)
    assert [(s.before, s.after, s.notified) for s in report.settlements] == [("PENDING", "SUCCESS", True)]
    row = shop.transaction()
    assert shop.statuses() == ["INITIATED", "OTP_SENT", "PENDING", "SUCCESS"]
    assert row.payment_reference == shop.sandbox.payments[row.reference].payment_reference
    assert shop.paid() == Decimal("50.00") and shop.booking().payment_status == "PARTIAL"
    told = shop.outbox_texts()[-1]
    assert "has gone through" in told and row.payment_reference in told and "Balance due: $250.00" in told

    messages = len(shop.outbox_texts())
    again = settle(shop)
    assert again.settlements == []  # nothing left to settle
    assert shop.paid() == Decimal("50.00") and len(shop.outbox_texts()) == messages


def test_reconcile_twice_at_once_applies_and_tells_once(shop):
    import threading

    shop.pay_until_otp(amount="50")
    shop.lose_the_otp_answer()
    messages = len(shop.outbox_texts())

    # Both runs must have O'mari's answer before either writes: the race the row claims are for.
    both_asked = threading.Barrier(2, timeout=10)
    real = shop.sandbox.client()

    class Racing:
        def query(self, reference):
            answer = real.query(reference)
            both_asked.wait()
            return answer

    reports, errors = [], []

    def run():
        try:
            reports.append(reconcile(Racing(), now=shop.clock()))
        except Exception as e:  # surfaced below: a thread's failure must fail the test
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    outcomes = sorted((s.after, s.note) for r in reports for s in r.settlements)
    assert [o[0] for o in outcomes] == ["PENDING", "SUCCESS"]
    assert outcomes[0][1] == "already settled by another run"
    assert shop.paid() == Decimal("50.00")
    assert len(shop.outbox_texts()) == messages + 1


@pytest.mark.parametrize("fault", ["malformed_json", "html_after", "error_as_text", "missing_fields"])
def test_an_unreadable_request_answer_is_pending_then_paid(shop, fault):
    shop.pay_until_otp()
    assert BEING_CONFIRMED in shop.lose_the_otp_answer(fault)
    assert shop.transaction().status == "PENDING"  # never FAILED: the money may have moved
    settle(shop)
    assert shop.transaction().status == "SUCCESS" and shop.paid() == Decimal("50.00")


def test_an_unreadable_request_answer_before_the_otp_was_used_expires_after_the_otp_lifetime(shop):
    shop.pay_until_otp()
    shop.sandbox.inject("request", "html_after")
    assert BEING_CONFIRMED in shop.say("999999")  # a wrong code: O'mari still waits for the right one
    assert shop.transaction().status == "PENDING"
    report = settle(shop)  # too early to decide
    assert [(s.after, s.note) for s in report.settlements] == [("PENDING", "O'mari is still waiting for the OTP")]
    shop.clock.advance(minutes=11)
    report = settle(shop)
    assert [s.after for s in report.settlements] == ["EXPIRED"]
    assert "expired before it was confirmed" in shop.outbox_texts()[-1]
    assert shop.paid() == Decimal("0.00")


def test_no_answer_to_the_query_leaves_the_payment_for_the_next_run(shop):
    shop.pay_until_otp()
    shop.lose_the_otp_answer()
    shop.sandbox.inject("query", "http_500")
    report = settle(shop)
    assert [(s.after, s.note.startswith("no answer from O'mari")) for s in report.settlements] == [("PENDING", True)]
    assert shop.paid() == Decimal("0.00")
    settle(shop)
    assert shop.transaction().status == "SUCCESS" and shop.paid() == Decimal("50.00")


def test_a_refused_merchant_key_fails_no_payment(shop):
    from actions.omari_client import OmariClient

    shop.pay_until_otp()
    shop.lose_the_otp_answer()
    wrong_key = OmariClient(shop.sandbox.client().base_url, "wrong-key", session=shop.sandbox.client().session)
    report = reconcile(wrong_key, now=shop.clock())
    assert [(s.after, "HTTP 401" in s.note) for s in report.settlements] == [("PENDING", True)]


def test_a_wrong_otp_is_retried_on_the_same_payment(shop):
    shop.pay_until_otp()
    assert "2 tries left" in shop.say("999999")
    assert "Payment successful" in shop.say(shop.sandbox.last_otp(PHONE))
    row = shop.transaction()
    assert row.status == "SUCCESS" and row.otp_attempts == 1
    assert shop.sandbox.calls == ["auth", "request", "request"]


def test_the_same_message_delivered_twice_acts_once(shop):
    for text in ("pay", REF, "50", "1"):
        shop.say(text)
    first = shop.send(PHONE, message_id="wamid.phone")
    again = shop.send(PHONE, message_id="wamid.phone")
    assert first and again == []  # the redelivery brings no second reply
    assert shop.sandbox.calls == ["auth"] and len(shop.transactions()) == 1

    otp = shop.sandbox.last_otp(PHONE)
    paid = shop.send(otp, message_id="wamid.otp")
    assert "Payment successful" in paid[0].text
    assert shop.send(otp, message_id="wamid.otp") == []
    assert shop.sandbox.calls == ["auth", "request"]
    assert shop.paid() == Decimal("50.00")


class Crash(BaseException):
    """The process dies (not an Exception: nothing in the turn catches it)."""


class CrashAfter:
    """An O'mari client whose process dies right after O'mari acted on one call (the answer is lost)."""

    def __init__(self, client, call: str) -> None:
        self.client, self.call = client, call

    def __getattr__(self, name):
        real = getattr(self.client, name)
        if name != self.call:
            return real

        def dying(*args, **kwargs):
            real(*args, **kwargs)
            raise Crash(name)

        return dying


def redeliver(shop, text: str, message_id: str) -> str:
    """WhatsApp delivers the message again once the dead worker's claim (its lease) has run out."""
    shop.clock.advance(seconds=LEASE.total_seconds() + 1)
    return shop.say(text, message_id=message_id)


def test_a_crash_after_request_never_calls_request_twice_and_pays_once(shop):
    shop.pay_until_otp()
    otp = shop.sandbox.last_otp(PHONE)
    dying = shop.ctx.__class__(
        registry=shop.ctx.registry,
        clock=shop.clock,
        services={"omari": CrashAfter(shop.sandbox.client(), "request"), "settings": shop.settings},
    )
    saved, shop.ctx = shop.ctx, dying
    with pytest.raises(Crash):
        shop.say(otp, message_id="wamid.otp")
    shop.ctx = saved
    assert shop.sandbox.calls == ["auth", "request"] and shop.transaction().status == "OTP_SENT"

    reply = redeliver(shop, otp, "wamid.otp")
    assert shop.sandbox.calls == ["auth", "request"]  # the attempt was noted: no second /request
    assert shop.transaction().status == "PENDING"
    assert BEING_CONFIRMED in reply

    settle(shop)
    assert shop.transaction().status == "SUCCESS" and shop.paid() == Decimal("50.00")


def crash_right_after_auth(shop, **say) -> None:
    """Take the customer to the phone number and let the process die the moment O'mari answered /auth."""
    for text in ("pay", REF, "50", "1"):
        shop.say(text)
    saved = shop.ctx
    shop.ctx = saved.__class__(
        registry=saved.registry,
        clock=shop.clock,
        services={"omari": CrashAfter(shop.sandbox.client(), "auth"), "settings": shop.settings},
    )
    with pytest.raises(Crash):
        shop.say(PHONE, **say)
    shop.ctx = saved


def test_a_crash_after_auth_never_calls_auth_twice(shop):
    crash_right_after_auth(shop, message_id="wamid.phone")
    assert shop.transaction().status == "INITIATED"

    reply = redeliver(shop, PHONE, "wamid.phone")
    assert shop.sandbox.calls == ["auth"]
    assert shop.transaction().status == "PENDING"
    assert BEING_CONFIRMED in reply


def test_reconcile_finishes_a_payment_left_initiated_by_a_crash_nobody_retried(shop):
    crash_right_after_auth(shop)
    assert settle(shop).settlements == []  # too young: its /auth may still be in flight
    shop.clock.advance(minutes=11)
    report = settle(shop)
    assert [(s.before, s.after) for s in report.settlements] == [("INITIATED", "EXPIRED")]
    assert shop.paid() == Decimal("0.00")
