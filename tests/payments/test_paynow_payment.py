"""Paying a booking through Paynow (issue 12.4), through the whole conversation: the shipped flows on the
persisted turn path, real storage, the Paynow sandbox speaking the signed protocol in-process. What the
customer reads, what the transaction row says, and that the booking is paid exactly once.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from actions.reconcile import reconcile
from storage import payments

from payment_kit import PHONE, REF, Shop

CONFIRMING = "We are confirming your payment with Paynow"
WAITING = "Paynow has not received your approval yet"


@pytest.fixture
def shop(db):
    return Shop()


def prompt(shop: Shop, phone: str = PHONE, wallet: str = "1", amount: str = "50") -> str:
    """From the main menu to Paynow's prompt on the phone; the last reply."""
    shop.say("menu")
    for text in ("4", REF, amount, wallet):
        shop.say(text)
    return shop.say(phone)


def settle(shop: Shop, **clients):
    return reconcile(clients or {"omari": shop.sandbox.client(), "paynow": shop.paynow.client()}, now=shop.clock())


def test_the_menu_offers_paynow_and_a_payment_goes_through(shop):
    assert "📲 Pay with Paynow" in shop.say("menu")
    reply = prompt(shop, wallet="2")
    assert "Paynow has sent a payment request to 263771234567" in reply and "Approve $50.00" in reply
    row = shop.transaction()
    assert (row.provider, row.wallet, row.status, row.channel) == ("paynow", "onemoney", "OTP_SENT", "express")
    assert row.poll_url and row.payment_reference  # Paynow's signed pollurl and paynowreference
    assert shop.paynow.payments[row.poll_url.rsplit("=", 1)[1]].phone == "0771234567"  # Paynow's local form
    paid = shop.say("Done")
    assert "Payment successful" in paid and f"Paynow reference: {row.payment_reference}" in paid
    assert "New balance: $250.00" in paid
    assert shop.transaction().status == "SUCCESS" and shop.paid() == Decimal("50.00")
    assert settle(shop).settlements == []  # nothing left for reconcile


def test_a_late_approval_waits_then_pays(shop):
    prompt(shop, phone="263772222222")  # Paynow's test number for an approval after 30 s
    assert WAITING in shop.say("Done")
    assert shop.transaction().status == "OTP_SENT" and shop.paid() == Decimal("0.00")
    shop.clock.advance(seconds=31)
    assert "Payment successful" in shop.say("Done")
    assert shop.paid() == Decimal("50.00")


def test_a_payment_cancelled_on_the_phone_fails_and_charges_nothing(shop):
    prompt(shop, phone="263773333333")
    assert "The payment did not go through. Paynow could not take the payment" in shop.say("Done")
    row = shop.transaction()
    assert row.status == "FAILED" and row.error_message == "Paynow reports the payment as Cancelled"
    assert shop.paid() == Decimal("0.00")


def test_a_start_refused_by_paynow_is_failed_at_once(shop):
    reply = prompt(shop, phone="263774444444")
    assert "The payment could not be started. Paynow could not take the payment, and nothing was charged." in reply
    row = shop.transaction()
    assert row.status == "FAILED" and row.error_message == "Insufficient balance"


@pytest.mark.parametrize("fault", ["bad_hash", "html", "http_500", "timeout_after"])
def test_a_status_answer_we_cannot_verify_is_never_a_success(shop, fault):
    prompt(shop)
    shop.paynow.inject("poll", fault)
    assert WAITING in shop.say("Done")  # the money may have moved: asked again, never believed
    assert shop.transaction().status == "OTP_SENT" and shop.paid() == Decimal("0.00")
    assert "Payment successful" in shop.say("Done")


@pytest.mark.parametrize("fault", ["bad_hash", "timeout_after"])
def test_a_lost_or_forged_start_answer_waits_for_a_person(shop, fault):
    """The payer may approve right after the start, and without the signed answer we have no poll URL."""
    shop.paynow.inject("remotetransaction", fault)
    assert CONFIRMING in prompt(shop)
    row = shop.transaction()
    assert row.status == "PENDING" and row.poll_url is None
    assert "look the payment up by its reference in the Paynow dashboard" in row.review_reason
    [s] = settle(shop).settlements
    assert (s.after, s.kind) == ("PENDING", "needs_person") and shop.paid() == Decimal("0.00")


@pytest.mark.parametrize(
    "fault,reason",
    [
        ("unknown_status", "Paynow reports the status 'Processing', which is not one we know"),
        ("other_amount", "Paynow reports 5.00 USD paid; the payment is 50.00 USD"),
    ],
)
def test_a_status_we_cannot_believe_is_marked_for_a_person(shop, fault, reason):
    prompt(shop)
    shop.paynow.inject("poll", fault)
    assert CONFIRMING in shop.say("Done")
    row = shop.transaction()
    assert (row.status, row.review_reason, row.applied_at) == ("PENDING", reason, None)
    assert shop.paid() == Decimal("0.00")
    [s] = settle(shop).settlements  # the next answer is understood: settled, the mark cleared
    assert (s.after, s.needs_person) == ("SUCCESS", None) and shop.paid() == Decimal("50.00")
    assert "✅ Your Paynow payment of $50.00 for booking" in shop.outbox_texts()[-1]


def test_cancel_leaves_an_unapproved_payment_to_reconcile_which_credits_a_late_approval(shop):
    """Paynow has no void: a payer can still approve after saying cancel, and that money is not lost."""
    prompt(shop, phone="263772222222")
    assert "Payment cancelled" in shop.say("cancel")
    row = shop.transaction()
    assert row.status == "OTP_SENT" and "Paynow has no void" in row.error_message
    assert [s.after for s in settle(shop).settlements] == []  # too young for reconcile
    shop.clock.advance(minutes=11)  # the payer approved in the meantime
    [s] = settle(shop).settlements
    assert (s.before, s.after, s.notified) == ("OTP_SENT", "SUCCESS", True)
    assert shop.paid() == Decimal("50.00")


def test_an_unapproved_prompt_expires_after_the_payers_time(shop):
    prompt(shop, phone="263772222222")
    guid = shop.transaction().poll_url.rsplit("=", 1)[1]
    shop.paynow.payments[guid].status = "Created"  # the payer never looks at their phone
    shop.clock.advance(minutes=11)
    [s] = settle(shop).settlements
    assert (s.after, s.note) == ("EXPIRED", "expired: the payer did not approve within the time allowed")
    assert "Your Paynow payment of $50.00 for booking" in shop.outbox_texts()[-1]
    assert "expired before it was confirmed" in shop.outbox_texts()[-1] and shop.paid() == Decimal("0.00")


def test_reconcile_leaves_a_payment_whose_provider_is_not_configured(shop):
    prompt(shop, phone="263772222222")
    shop.clock.advance(minutes=11)
    [s] = settle(shop, omari=shop.sandbox.client()).settlements
    assert (s.after, s.note) == ("OTP_SENT", "Paynow is not configured in this process: left for a run that has it")
    assert payments.get(s.reference).status == "OTP_SENT"


def test_a_booking_in_another_currency_is_refused_before_any_call(shop):
    from storage.models import Booking

    Booking.update(currency="ZWG").execute()
    reply = prompt(shop)
    assert "Paynow takes USD payments here, and booking BK-SLYKER-TECH-20251023 is in ZWG" in reply
    assert shop.transactions() == [] and shop.paynow.calls == []


def test_a_start_that_died_before_its_answer_is_marked_for_a_person_by_reconcile(shop):
    """The process stopped between committing the row and hearing Paynow: the payer may have paid."""
    booking = shop.booking()
    row, _ = payments.create(
        booking,
        reference="5d0e7a10-0000-4000-8000-0000000000aa",
        idempotency_key="k-died",
        msisdn=PHONE,
        amount=Decimal("50.00"),
        wallet="ecocash",
        channel="express",
        contact_key=PHONE,
        now=shop.clock(),
        provider="paynow",
    )
    shop.clock.advance(minutes=11)
    [s] = settle(shop).settlements
    assert (s.before, s.after, s.kind) == ("INITIATED", "PENDING", "needs_person")
    assert "look the payment up by its reference in the Paynow dashboard" in payments.get(row.reference).review_reason
    again = settle(shop)  # still needs a person, and says so, until someone settles it
    assert [x.kind for x in again.settlements] == ["needs_person"] and shop.paid() == Decimal("0.00")
