"""One person, one contact; events are not answers (issue 9.1, 9.2) — over real HTTP: signed webhook POSTs
in, the workers, replies out at the Graph API stand-in, payments on the in-process O'mari sandbox.
"""

from __future__ import annotations

import json

import pytest

from storage.bookings import find_booking
from storage.models import Contact, Event, InboxMessage, PaymentTransaction, Session

import whatsapp_fakes as wa
from channel_harness import REF, TENDAI, settled, wait_until

PHONE = TENDAI
NEW_PHONE = "263779876543"
USER_ID = "ZW.13491208655302741918"


class Person:
    """Tendai's WhatsApp: what Meta names them by can change between messages (phone, user id, both)."""

    def __init__(self, channel, graph, wa_id: str | None = PHONE, user_id: str | None = None) -> None:
        self.channel, self.graph, self.seen = channel, graph, 0
        self.wa_id, self.user_id = wa_id, user_id

    def item(self, mtype: str, content: dict | None) -> dict:
        return wa.message(self.wa_id, mtype, content, user_id=self.user_id)

    def post(self, item: dict) -> None:
        doc = wa.envelope([item], [wa.contact(self.wa_id, "Tendai", user_id=self.user_id)])
        assert self.channel.post(doc).status_code == 200

    def send(self, body: str, replies: int = 1) -> list[wa.Sent]:
        self.post(self.item("text", {"body": body}))
        sent = self.graph.wait_for(self.seen + replies)
        new, self.seen = sent[self.seen : self.seen + replies], self.seen + replies
        assert len(new) == replies, f"expected {replies} replies, got {[s.body for s in new]}"
        return new

    def silence(self) -> None:
        """Everything received was handled and nothing more was sent."""
        assert wait_until(settled)
        assert [s.body for s in self.graph.sent[self.seen :]] == []


def text_of(s: wa.Sent) -> str:
    return s.body["text"]["body"] if s.body["type"] == "text" else s.body["interactive"]["body"]["text"]


def start_payment(person: Person) -> None:
    person.send("pay")
    person.send(REF, replies=2)


def test_a_user_id_first_seen_mid_payment_keeps_one_contact_and_the_payment(channel, graph, sandbox):
    tendai = Person(channel, graph)
    start_payment(tendai)
    tendai.send("50")
    tendai.send("ecocash")
    (ask_otp,) = tendai.send(PHONE)
    assert PaymentTransaction.get().otp_reference in text_of(ask_otp)

    tendai.user_id = USER_ID  # Meta starts sending the business-scoped user id with the phone number
    (paid,) = tendai.send(sandbox.last_otp(PHONE))
    assert "Payment successful" in text_of(paid)
    assert PaymentTransaction.get().status == "SUCCESS" and find_booking(REF).paid_minor == 5000

    tendai.wa_id = None  # and later the user id alone (a username user hides the number)
    (menu,) = tendai.send("menu")
    assert "What would you like to do?" in text_of(menu)

    (contact,) = Contact.select()
    assert (contact.key, contact.wa_id, contact.user_id) == (PHONE, PHONE, USER_ID)
    assert {s.body.get("to") for s in graph.sent} == {PHONE} and not any("recipient" in s.body for s in graph.sent)
    assert Session.get().contact_id == contact.id
    assert PaymentTransaction.get().contact_key == PHONE
    assert wait_until(settled)


def test_a_user_id_only_contact_is_answered_as_recipient(channel, graph):
    anon = Person(channel, graph, wa_id=None, user_id=USER_ID)
    (ask_ref,) = anon.send("pay")
    assert ask_ref.body["recipient"] == USER_ID and "to" not in ask_ref.body
    (contact,) = Contact.select()
    assert (contact.key, contact.wa_id, contact.user_id) == (USER_ID, None, USER_ID)

    anon.wa_id = PHONE  # the number shows up later: attached to the same contact, replies go to it
    anon.send(REF, replies=2)
    (contact,) = Contact.select()
    assert (contact.key, contact.wa_id, contact.user_id) == (USER_ID, PHONE, USER_ID)
    assert graph.sent[-1].body["to"] == PHONE


def test_five_thumbs_up_at_the_amount_question_do_not_end_the_payment(channel, graph):
    tendai = Person(channel, graph)
    start_payment(tendai)
    assert "How much would you like to pay?" in text_of(graph.sent[-1])
    for _ in range(5):
        tendai.post(tendai.item("reaction", {"message_id": "wamid.out.3", "emoji": "👍"}))
    tendai.post(tendai.item("reaction", {"message_id": "wamid.out.3", "emoji": ""}))  # the 👍 taken back
    tendai.silence()
    assert Session.get().step == "ask_amount" and Session.get().attempts == 0
    (wallets,) = tendai.send("50")
    assert "Which wallet will you pay from?" in text_of(wallets)


@pytest.mark.parametrize(
    "item",
    [
        {"type": "revoke", "revoke": {"original_message_id": "wamid.earlier"}},
        {
            "type": "system",
            "system": {"body": "User identity changed", "type": "customer_identity_changed"},
            "identity": {"acknowledged": True, "created_timestamp": "1764000000", "hash": "x"},
        },
        {
            "type": "edit",
            "edit": {"original_message_id": "wamid.earlier", "message": {"type": "text", "text": {"body": "pay"}}},
        },
    ],
)
def test_a_revoke_an_identity_notice_or_an_edit_at_the_main_menu_uses_no_attempt(channel, graph, item):
    tendai = Person(channel, graph)
    tendai.send("menu")
    for _ in range(4):  # more than the menu's attempts, each a new notice
        tendai.post({**tendai.item(item["type"], None), **item})
    tendai.silence()
    session = Session.get()
    assert (session.flow, session.step, session.status, session.attempts) == ("main_menu", "choose", "active", 0)
    assert InboxMessage.select().where(InboxMessage.processed_at.is_null()).count() == 0


def test_a_number_change_moves_the_contact_and_the_conversation_carries_on(channel, graph):
    tendai = Person(channel, graph)
    start_payment(tendai)
    notice = tendai.item(
        "system",
        {"body": f"User A changed from {PHONE} to {NEW_PHONE}", "wa_id": NEW_PHONE, "type": "user_changed_number"},
    )
    for _ in range(2):  # delivered twice: recorded once
        assert channel.post(wa.envelope([notice])).status_code == 200
    tendai.silence()
    (contact,) = Contact.select()
    assert (contact.key, contact.wa_id) == (PHONE, NEW_PHONE)
    (moved,) = Event.select().where(Event.kind.startswith("contact."))
    assert (moved.kind, moved.contact_key, json.loads(moved.detail)) == (
        "contact.number_changed",
        PHONE,
        {"level": "info", "from": PHONE, "to": NEW_PHONE},
    )

    tendai.wa_id = NEW_PHONE
    (wallets,) = tendai.send("50")
    assert wallets.body["to"] == NEW_PHONE and Session.get().step == "ask_wallet"
    assert Contact.select().count() == 1


def test_a_redelivered_reaction_is_recorded_once(channel, graph):
    tendai = Person(channel, graph)
    tendai.send("menu")
    reaction = tendai.item("reaction", {"message_id": "wamid.out.1", "emoji": "👍"})
    for _ in range(3):
        tendai.post(reaction)
    tendai.silence()
    rows = InboxMessage.select().where(InboxMessage.channel_message_id == reaction["id"])
    assert [r.processed_at is not None for r in rows] == [True]
