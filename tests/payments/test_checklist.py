"""The deployment checklist of issue 4, item by item, through the real runner, the persisted turn path,
real storage (SQLite and PostgreSQL) and the O'mari sandbox. Assertions are what the customer reads and
what the operator finds in the database.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest

from storage import payments
from storage.bookings import add_booking

from payment_kit import PHONE, REF, TOUR, Shop

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture
def shop(db):
    return Shop()


def test_1_pay_welcomes_and_asks_for_the_booking_reference(shop):
    reply = shop.say("pay")
    assert "Welcome to O'mari Mobile Payment" in reply
    assert "Please send your booking reference, e.g. BK-SLYKER-TECH-20251023." in reply


@pytest.mark.parametrize("trigger", ["payment", "Make Payment", "  omari payment! "])
def test_1_every_trigger_starts_the_payment(shop, trigger):
    assert "booking reference" in shop.say(trigger)


def test_2_menu_offers_mobile_payment_which_starts_the_payment_flow(shop):
    menu = shop.send("menu")
    assert len(menu) == 1
    titles = [o.title for o in menu[0].options]
    assert "📱 Mobile Payment" in titles
    picked = shop.send("📱 Mobile Payment", kind="list", reply_id="pay")
    assert "Please send your booking reference" in picked[0].text
    assert "Balance due: $300.00" in shop.say(REF)


@pytest.mark.parametrize("greeting", ["hi", "Hello", "help", "start"])
def test_2_greetings_open_the_menu(shop, greeting):
    assert "📱 Mobile Payment" in shop.say(greeting)


def test_3_an_unknown_reference_is_named_and_the_flow_ends(shop):
    shop.say("pay")
    reply = shop.say("INVALID123")
    assert "INVALID123" in reply and "could not find" in reply
    assert shop.session_status() == "ended"
    assert "menu" in shop.say("50")  # no conversation any more: the default reply
    assert shop.transactions() == []


def test_4_a_valid_reference_shows_tour_total_paid_and_balance_then_asks_the_amount(shop):
    shop.say("pay")
    reply = shop.say("  bk-slyker-tech-20251023 ")  # any case, surrounding space ignored
    for line in (
        f"Tour: {TOUR}",
        "Total: $300.00",
        "Amount paid: $0.00",
        "Balance due: $300.00",
        "How much would you like to pay?",
    ):
        assert line in reply


def test_5_abc_is_reprompted_and_50_asks_for_the_channel(shop):
    shop.say("pay")
    shop.say(REF)
    assert "Please send an amount between $0.01 and $300.00" in shop.say("abc")
    assert "Which wallet will you pay from?" in shop.say("50")


def test_6_three_wallet_buttons_and_a_pick_asks_for_the_phone(shop):
    for text in ("pay", REF):
        shop.say(text)
    wallet = shop.send("50")
    assert [b.title for b in wallet[0].buttons] == ["Ecocash", "OneMoney", "ZimSwitch"]
    reply = shop.send("OneMoney", kind="button", reply_id="onemoney")
    assert "phone number" in reply[0].text and "2637XXXXXXXX" in reply[0].text


def test_7_a_local_number_is_reprompted_and_the_full_form_starts_the_payment(shop):
    for text in ("pay", REF, "50", "1"):
        shop.say(text)
    assert "2637XXXXXXXX" in shop.say("0771234567")
    assert shop.transactions() == []
    reply = shop.say(PHONE)
    assert shop.sandbox.calls == ["auth"]
    row = shop.transaction()
    assert row.status == "OTP_SENT" and row.otp_reference in reply


def test_8_the_otp_reference_is_shown_and_the_right_otp_pays(shop):
    reply = shop.pay_until_otp()
    row = shop.transaction()
    assert f"(reference {row.otp_reference})" in reply
    done = shop.say(shop.sandbox.last_otp(PHONE))
    row = payments.get(row.reference)
    assert "Payment successful" in done
    assert "Amount: $50.00" in done
    assert f"Payment reference: {row.payment_reference}" in done and row.payment_reference
    assert "New balance: $250.00" in done
    assert shop.session_status() == "ended"


def test_8_the_otp_never_stays_in_the_conversation(shop):
    shop.pay_until_otp()
    otp = shop.sandbox.last_otp(PHONE)
    shop.say("000000")  # wrong, so the conversation waits again at the OTP question
    assert "000000" not in shop.session_vars()
    shop.say(otp)
    assert otp not in shop.session_vars()


def test_9_cancel_at_the_otp_step_cancels_the_payment(shop):
    shop.pay_until_otp()
    reply = shop.say("cancel")
    assert "Payment cancelled" in reply
    assert shop.session_status() == "ended"
    row = shop.transaction()
    assert row.status == "CANCELLED"
    assert shop.statuses() == ["INITIATED", "OTP_SENT", "CANCELLED"]
    assert shop.sandbox.calls == ["auth", "void"]
    assert shop.sandbox.payments[row.reference].status == "Voided"
    assert shop.paid() == Decimal("0.00")


def test_cancel_before_any_payment_just_stops(shop):
    shop.say("pay")
    shop.say(REF)
    assert "Payment cancelled" in shop.say("stop")
    assert shop.transactions() == [] and shop.sandbox.calls == []


def test_10_the_transaction_row_holds_the_whole_story(shop):
    shop.pay_until_otp(amount="50")
    shop.say(shop.sandbox.last_otp(PHONE))
    row = shop.transaction()
    assert UUID.match(row.reference)
    assert row.msisdn == PHONE and row.amount_minor == 5000 and row.currency == "USD"
    assert row.wallet == "ecocash" and row.channel == "WEB"
    assert shop.statuses() == ["INITIATED", "OTP_SENT", "SUCCESS"]
    assert row.otp_reference and row.payment_reference and row.debit_reference
    assert row.booking.reference == REF and row.applied_at is not None
    shown = payments.as_dict(row)
    assert shown["amount"] == "50.00" and shown["booking"] == REF and shown["status"] == "SUCCESS"
    json.dumps(shown)  # JSON-able as `flows payments show --json` prints it


def test_10_a_failed_payment_keeps_the_error_message(shop):
    shop.pay_until_otp(phone="263771230051")  # the sandbox's insufficient-funds number
    reply = shop.say(shop.sandbox.last_otp("263771230051"))
    assert "did not go through" in reply and "not enough money" in reply
    row = shop.transaction()
    assert row.status == "FAILED" and row.response_code == "051" and row.error_message == "Insufficient funds"
    assert shop.statuses() == ["INITIATED", "OTP_SENT", "FAILED"]
    assert shop.paid() == Decimal("0.00")


def test_11_the_booking_grows_by_exactly_the_amount_partial_then_paid(shop):
    shop.pay_until_otp(amount="120.55")
    shop.say(shop.sandbox.last_otp(PHONE))
    booking = shop.booking()
    assert shop.paid() == Decimal("120.55") and booking.payment_status == "PARTIAL"
    reply = shop.pay_until_otp(amount="179.45")
    assert "$179.45" in reply
    done = shop.say(shop.sandbox.last_otp(PHONE))
    assert "New balance: $0.00" in done
    assert shop.paid() == Decimal("300.00") and shop.booking().payment_status == "PAID"


@pytest.mark.parametrize("typed", ["300.01", "500", "0", "-5", "0.001"])
def test_also_an_amount_out_of_range_is_reprompted_with_the_range(shop, typed):
    shop.say("pay")
    shop.say(REF)
    assert "Please send an amount between $0.01 and $300.00" in shop.say(typed)


def test_also_a_booking_paid_in_full_says_so(db):
    shop = Shop(total="300.00", paid="300.00")
    shop.say("pay")
    reply = shop.say(REF)
    assert "already paid in full" in reply and REF in reply
    assert shop.session_status() == "ended"


def test_also_no_otp_within_10_minutes_expires_the_payment_with_a_message(shop):
    shop.pay_until_otp()
    shop.clock.advance(minutes=9, seconds=59)
    assert shop.expire_due() == 0
    shop.clock.advance(seconds=2)
    assert shop.expire_due() == 1
    assert "timed out after 10 minutes" in shop.outbox_texts()[-1]
    assert shop.transaction().status == "EXPIRED"
    assert shop.statuses() == ["INITIATED", "OTP_SENT", "EXPIRED"]
    assert shop.session_status() == "expired"
    assert shop.paid() == Decimal("0.00")


def test_also_a_late_message_after_10_minutes_expires_first(shop):
    shop.pay_until_otp()
    otp = shop.sandbox.last_otp(PHONE)
    shop.clock.advance(minutes=11)
    reply = shop.say(otp)  # no sweeper ran: the turn expires the conversation, then the code is no answer
    assert "timed out after 10 minutes" in reply
    assert shop.transaction().status == "EXPIRED"
    assert shop.sandbox.calls == ["auth", "void"]  # the code was never sent to /request


def test_also_a_wrong_otp_three_times_fails_the_payment(shop):
    shop.pay_until_otp()
    assert "2 tries left" in shop.say("111111")
    assert "1 try left" in shop.say("222222")
    reply = shop.say("333333")
    assert "did not go through" in reply
    row = shop.transaction()
    assert row.status == "FAILED" and row.otp_attempts >= 2
    assert shop.statuses() == ["INITIATED", "OTP_SENT", "FAILED"]
    assert shop.session_status() == "ended" and shop.paid() == Decimal("0.00")


def test_also_the_amount_charged_is_exactly_the_amount_typed(shop):
    shop.pay_until_otp(amount="$1,2.5")  # refused: not an amount
    shop.say("cancel")
    shop.pay_until_otp(amount="123.45")
    row = shop.transactions()[-1]
    assert row.amount_minor == 12345
    assert shop.sandbox.payments[row.reference].amount == Decimal("123.45")


def test_two_customers_paying_one_booking_are_both_counted(db):
    shop = Shop()
    other = "263772222222"
    for text in ("pay", REF, "40", "1"):
        shop.say(text)
        shop.say(text, contact=other)
    shop.say(PHONE)
    shop.say(other, contact=other)
    shop.say(shop.sandbox.last_otp(other), contact=other)
    shop.say(shop.sandbox.last_otp(PHONE))
    assert shop.paid() == Decimal("80.00")
    assert [r.status for r in shop.transactions()] == ["SUCCESS", "SUCCESS"]


def test_also_a_code_typed_after_the_otp_lifetime_is_refused_without_charging(shop):
    shop.pay_until_otp()
    shop.clock.advance(minutes=6)
    assert "2 tries left" in shop.say("111111")  # a reply keeps the conversation alive …
    shop.clock.advance(minutes=5)
    reply = shop.say(shop.sandbox.last_otp(PHONE))  # … but the code itself is 11 minutes old
    assert "The code has expired" in reply
    assert shop.transaction().status == "EXPIRED" and shop.paid() == Decimal("0.00")
    assert shop.sandbox.calls == ["auth", "request"]


def test_a_zwg_booking_is_paid_in_zwg(db):
    shop = Shop()
    add_booking("BK-ZWG-1", "Rudo", "Hwange day trip", "1500.00", currency="ZWG")
    shop.say("pay")
    assert "Balance due: ZWG 1,500.00" in shop.say("bk-zwg-1")
    assert "between ZWG 0.01 and ZWG 1,500.00" in shop.say("2000")
    shop.say("250")
    shop.say("3")
    shop.say(PHONE)
    done = shop.say(shop.sandbox.last_otp(PHONE))
    assert "Amount: ZWG 250.00" in done and "New balance: ZWG 1,250.00" in done
    row = shop.transaction()
    assert row.currency == "ZWG" and row.wallet == "zimswitch"
    assert shop.sandbox.payments[row.reference].currency == "ZWG"
