"""The OTP at rest (issue 10.6): after a payment over WhatsApp the code a customer typed is nowhere in the
database — not in the inbox message (text or raw body), the conversation, the action results, the events
or the outbox — checked by dumping the whole database (SQLite's .dump, pg_dump) and searching it.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess

import pytest

from actions.omari_sandbox import OmariSandbox
from storage.db import is_postgres
from storage.models import InboxMessage, PaymentTransaction

import whatsapp_fakes as wa
from channel_harness import REF, TENDAI, Phone, settled, wait_until  # `channel` (conftest) runs on the sandbox below

OTP = "73915284"  # eight digits: no timestamp, id or amount in the dump contains it by chance
WRONG = "4455 6677"  # typed with a space: the otp check saves it as 44556677
PG_DUMP = "/usr/lib/postgresql/15/bin/pg_dump"


def dump(db) -> str:
    """Every row of every table as text, the way an operator (or a thief with a backup) would see it."""
    if is_postgres():
        return subprocess.run(
            [PG_DUMP, "--data-only", "--inserts", "-d", db.url], capture_output=True, text=True, check=True, timeout=60
        ).stdout
    db.close()
    with sqlite3.connect(db.url.removeprefix("sqlite:///")) as raw:
        return "\n".join(raw.iterdump())


@pytest.fixture
def sandbox():
    return OmariSandbox(fixed_otp=OTP)


def pay_up_to_the_code(phone: Phone) -> None:
    phone.send(wa.text(TENDAI, "pay"))
    phone.send(wa.text(TENDAI, REF), replies=2)
    phone.send(wa.text(TENDAI, "50"))
    phone.send(wa.button_reply(TENDAI, "ecocash", "Ecocash"))
    phone.send(wa.text(TENDAI, TENDAI))


def test_no_otp_anywhere_in_the_database_after_a_payment(db, channel, graph):
    phone = Phone(channel, graph)
    pay_up_to_the_code(phone)
    wrong, _ask_again = phone.send(wa.text(TENDAI, WRONG), replies=2)
    assert "That code was not accepted" in phone.text(wrong)
    (paid,) = phone.send(wa.text(TENDAI, OTP))
    assert "Payment successful" in phone.text(paid)
    assert wait_until(settled) and PaymentTransaction.get().status == "SUCCESS"
    text = dump(db)
    assert REF in text and "Payment successful" in text  # the dump holds the conversation…
    for secret in (OTP, WRONG, "44556677"):
        assert secret not in text  # …but not one form of a code the customer typed
    assert "[one-time code removed]" in text


def test_a_confirm_that_crashes_leaves_no_code_in_the_conversation(db, channel, graph, sandbox):
    """omari.confirm failing before it can replace the saved code: the turn ends with an apology, and the
    code the ask step saved must not stay in the stored conversation variables."""
    phone = Phone(channel, graph)
    pay_up_to_the_code(phone)
    client = channel.workers.services["omari"]

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the O'mari client")

    client.request = broken
    (sorry,) = phone.send(wa.text(TENDAI, OTP))
    assert "Sorry, something went wrong" in phone.text(sorry)
    assert wait_until(settled)
    assert OTP not in dump(db)


def test_the_stored_message_keeps_everything_but_the_code(db, channel, graph):
    phone = Phone(channel, graph)
    pay_up_to_the_code(phone)
    item = wa.text(TENDAI, OTP)
    phone.send(item)
    assert wait_until(settled)
    row = InboxMessage.get(InboxMessage.channel_message_id == item["id"])
    payload = json.loads(row.payload)
    assert (payload["text"], payload["raw"]["text"]["body"], payload["redacted"]) == (
        "[one-time code removed]",
        "[one-time code removed]",
        True,
    )
    assert payload["raw"]["from"] == TENDAI and row.processed_at is not None
