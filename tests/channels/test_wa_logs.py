"""Log lines of a whole WhatsApp payment (issue 13.5): JSON lines tagged with the contact, conversation, flow
and payment; and nothing in them a thief could use — no OTP, key, token, app secret or full phone number."""

from __future__ import annotations

import json
import re

from storage.models import PaymentTransaction

import whatsapp_fakes as wa
from channel_harness import REF, TENDAI, Phone

WALLET = "263779876543"  # the number that pays: not the WhatsApp contact's own


def pay(phone: Phone, sandbox) -> str:
    phone.send(wa.text(TENDAI, "pay"))
    phone.send(wa.text(TENDAI, REF), replies=2)
    phone.send(wa.text(TENDAI, "50"))
    phone.send(wa.button_reply(TENDAI, "ecocash", "Ecocash"))
    phone.send(wa.text(TENDAI, WALLET))
    otp = sandbox.last_otp(WALLET)
    (paid,) = phone.send(wa.text(TENDAI, otp))
    assert "Payment successful" in phone.text(paid)
    return otp


def test_a_payment_logs_json_lines_tagged_with_what_they_are_about(channel, graph, sandbox, json_logs):
    pay(Phone(channel, graph), sandbox)
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    tx = PaymentTransaction.get()
    omari = [line for line in lines if line["logger"] == "convoflow.omari"]
    assert [line["message"].split()[1] for line in omari] == ["POST", "POST"]
    for line in omari:
        assert line["payment"] == tx.reference
        assert line["contact"] == "2637****4567" and line["flow"] == "omari_payment"
        assert re.fullmatch(r"\d+-\d{8}T\d{6}", line["conversation"])


def test_no_secret_otp_or_full_number_reaches_the_logs(channel, graph, sandbox, json_logs):
    otp = pay(Phone(channel, graph), sandbox)
    text = json_logs.getvalue()
    assert "convoflow.omari" in text  # the payment was logged at all
    for secret in (otp, sandbox.merchant_key, wa.ACCESS_TOKEN, wa.SECRET, wa.VERIFY_TOKEN, WALLET, TENDAI):
        assert secret not in text, f"{secret!r} is in the logs"
