"""A turn's inbox and outbox payloads written by hand in their fixed shapes (channels.turn_save.inbound_json and
outbound_json): the same text the JSON encoder gives for the payload dicts, whatever the message holds, and
the rows a turn stores read back as those dicts."""

from __future__ import annotations

from datetime import datetime

import pytest

from channels import turns
from channels.turn_save import inbound_json, inbound_payload, outbound_dict, outbound_json
from engine.messages import Choice, Inbound, Outbound
from storage import outbox
from storage.models import InboxMessage
from storage.text import REPLACEMENT, storable_json, stored_json
from storage_kit import counter_setup, message

TEXTS = [
    "hello",
    "",
    'say "hi"',
    "back\\slash",
    "two\nlines\tand a tab\r",
    "bell\x07 and del\x7f",
    "Tatenda Chirwa 💸 à la café",
    "line\u2028separator",
    "nul\x00inside",
    "lone \ud800 surrogate",
    "%s %(x)s {} {{}}",
]


@pytest.mark.parametrize("text", [*TEXTS, None])
def test_an_inbound_payload_is_the_encoders_text(text):
    for inbound in (
        Inbound("263771234567", "wamid.1", text),
        Inbound(
            "US.1349",
            f"wamid.{text!r}",
            text,
            kind="button_reply",
            reply_id=text or "r",
            timestamp=datetime(2026, 1, 5, 9, 14, 3, 12),
        ),
    ):
        assert inbound_json(inbound) == storable_json(inbound_payload(inbound))


def test_an_inbound_field_that_is_not_text_is_the_encoders_text():
    inbound = Inbound("263771234567", "wamid.1", "hi", kind=None)  # type: ignore[arg-type]
    assert inbound_json(inbound) == storable_json(inbound_payload(inbound))


def test_an_unstorable_character_is_replaced_in_the_handwritten_payload():
    body = inbound_json(Inbound("263771234567", "wamid.1", "a\x00b\ud800c"))
    assert stored_json(body)["text"] == f"a{REPLACEMENT}b{REPLACEMENT}c"


@pytest.mark.parametrize("text", TEXTS)
def test_an_outbound_payload_is_the_encoders_text(text):
    choice = Choice(id="pay", title=text, description=None)
    for reply in (
        Outbound(to="263771234567", text=text),
        Outbound(to="263771234567", text=text, list_button=text),
        Outbound(to="263771234567", text=text, buttons=(choice,)),
        Outbound(to="263771234567", text=text, options=(choice,), list_button="Choose"),
    ):
        assert outbound_json(reply) == outbox.encode(outbound_dict(reply))


def test_a_turns_stored_rows_read_back_as_the_payload_dicts(db):
    clock, flows, ctx = counter_setup()
    sent = datetime(2026, 1, 5, 9, 14, 3)
    for inbound in (
        message("263771234567", "count", message_id="wamid.a"),  # no timestamp: sent_at is the turn's time
        message("263771234567", 'say "hi" 💸 \\n', at=sent, message_id="wamid.b"),
    ):
        clock.advance(seconds=5)
        result = turns.handle_message(inbound, flows, ctx)
        row = InboxMessage.get(InboxMessage.channel_message_id == inbound.message_id)
        assert stored_json(row.payload) == inbound_payload(inbound)
        assert row.received_at == row.processed_at == clock()
        assert row.sent_at == (inbound.timestamp or clock())
        assert result.outbound
        stored = outbox.for_contact(row.contact_id)[-len(result.outbound) :]
        assert stored == [outbound_dict(m) for m in result.outbound]
