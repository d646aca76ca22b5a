"""The deployment checklist's payment conversation over WhatsApp: signed webhook POSTs with list and
button replies in, replies out at the Graph API stand-in, payments on the in-process O'mari sandbox.
"""

from __future__ import annotations

from storage.bookings import find_booking
from storage.models import PaymentTransaction

import whatsapp_fakes as wa
from channel_harness import REF, TENDAI, Phone, settled, wait_until


def test_the_whole_payment_conversation(channel, graph, sandbox):
    phone = Phone(channel, graph)
    (menu,) = phone.send(wa.text(TENDAI, "menu"))
    rows = menu.body["interactive"]["action"]["sections"][0]["rows"]
    assert menu.body["interactive"]["type"] == "list" and rows[0] == {
        "id": "pay",
        "title": "📱 Mobile Payment",
        "description": "Pay for a booking with O'mari",
    }

    (ask_ref,) = phone.send(wa.list_reply(TENDAI, "pay", "📱 Mobile Payment"))
    assert "Please send your booking reference" in phone.text(ask_ref)

    booking, ask_amount = phone.send(wa.text(TENDAI, REF.lower()), replies=2)
    assert "Victoria Falls 3 days" in phone.text(booking) and "300.00" in phone.text(booking)
    assert "How much would you like to pay?" in phone.text(ask_amount)

    (retry,) = phone.send(wa.text(TENDAI, "abc"))
    assert "Please send an amount between" in phone.text(retry)

    (wallets,) = phone.send(wa.text(TENDAI, "50"))
    assert [b["reply"]["title"] for b in wallets.body["interactive"]["action"]["buttons"]] == [
        "Ecocash",
        "OneMoney",
        "ZimSwitch",
    ]

    (ask_phone,) = phone.send(wa.button_reply(TENDAI, "ecocash", "Ecocash"))
    assert "2637XXXXXXXX" in phone.text(ask_phone)

    (retry,) = phone.send(wa.text(TENDAI, "0771234567"))
    assert "in the form 2637XXXXXXXX, e.g. 263771234567" in phone.text(retry)

    (ask_otp,) = phone.send(wa.text(TENDAI, "263771234567"))
    tx = PaymentTransaction.get()
    assert tx.otp_reference and tx.otp_reference in phone.text(ask_otp)

    (paid,) = phone.send(wa.text(TENDAI, sandbox.last_otp(TENDAI)))
    tx = PaymentTransaction.get()
    assert "Payment successful" in phone.text(paid) and tx.payment_reference in phone.text(paid)
    assert "Amount: $50.00" in phone.text(paid) and "New balance: $250.00" in phone.text(paid)
    assert (tx.status, tx.amount_minor, tx.msisdn, tx.wallet) == ("SUCCESS", 5000, TENDAI, "ecocash")
    assert find_booking(REF).paid_minor == 5000 and find_booking(REF).payment_status == "PARTIAL"
    assert sandbox.calls.count("auth") == 1 and sandbox.calls.count("request") == 1
    assert wait_until(settled)


def test_cancel_at_the_otp_step(channel, graph, sandbox):
    phone = Phone(channel, graph)
    phone.send(wa.text(TENDAI, "pay"))
    phone.send(wa.text(TENDAI, REF), replies=2)
    phone.send(wa.text(TENDAI, "300"))
    phone.send(wa.button_reply(TENDAI, "onemoney", "OneMoney"))
    phone.send(wa.text(TENDAI, "+263 77 123 4567"))
    (cancelled,) = phone.send(wa.text(TENDAI, "cancel"))
    assert "Payment cancelled" in phone.text(cancelled)
    assert PaymentTransaction.get().status == "CANCELLED"
    assert find_booking(REF).paid_minor == 0


def test_a_redelivered_otp_pays_once(channel, graph, sandbox):
    phone = Phone(channel, graph)
    phone.send(wa.text(TENDAI, "pay"))
    phone.send(wa.text(TENDAI, REF), replies=2)
    phone.send(wa.text(TENDAI, "120.50"))
    phone.send(wa.button_reply(TENDAI, "zimswitch", "ZimSwitch"))
    phone.send(wa.text(TENDAI, "263771234567"))
    otp = wa.text(TENDAI, sandbox.last_otp(TENDAI))
    phone.send(otp)
    for _ in range(4):
        channel.say(TENDAI, otp)
    assert wait_until(settled)
    assert len(graph.sent) == phone.seen
    assert find_booking(REF).paid_minor == 12050
    assert sandbox.calls.count("request") == 1
    assert PaymentTransaction.get().amount_minor == 12050
