"""Parsing Meta's webhook bodies and rendering Cloud API messages (no database, no HTTP)."""

from __future__ import annotations

import json
import logging

import pytest

from channels.payloads import (
    BUTTON_TITLE_MAX,
    INTERACTIVE_BODY_MAX,
    TEXT_MAX,
    PayloadError,
    Webhook,
    inbox_payload,
    parse_webhook,
    split_text,
    to_cloud_api,
)
from engine.messages import Choice, Outbound

import whatsapp_fakes as wa


def parse(doc) -> object:
    return parse_webhook(wa.body_of(doc))


@pytest.mark.parametrize(
    "item, kind, text, reply_id",
    [
        (wa.text("263771234567", "pay"), "text", "pay", None),
        (wa.text("263771234567", ""), "text", "", None),
        (wa.button_reply("263771234567", "ecocash", "Ecocash"), "button", "Ecocash", "ecocash"),
        (wa.list_reply("263771234567", "pay", "📱 Mobile Payment", "O'mari"), "list", "📱 Mobile Payment", "pay"),
        (wa.template_button("263771234567", "PAY_NOW", "Pay now"), "text", "Pay now", "PAY_NOW"),
        (wa.image("263771234567"), "other", None, None),
        (wa.message("263771234567", "audio", {"id": "9"}), "other", None, None),
        (wa.message("263771234567", "sticker", {"id": "9"}), "other", None, None),
        (wa.message("263771234567", "location", {"latitude": -17.8, "longitude": 31.0}), "other", None, None),
        (wa.message("263771234567", "reaction", {"message_id": "wamid.x", "emoji": "👍"}), "other", None, None),
        (wa.message("263771234567", "unsupported", None), "other", None, None),
        (wa.message("263771234567", "interactive", {"type": "nfm_reply", "nfm_reply": {}}), "other", None, None),
    ],
)
def test_each_message_type_becomes_an_inbound_of_the_right_kind(item, kind, text, reply_id):
    hook = parse(wa.envelope([item], [wa.contact("263771234567")]))
    (received,) = hook.messages
    assert (received.inbound.kind, received.inbound.text, received.inbound.reply_id) == (kind, text, reply_id)
    assert received.inbound.contact == "263771234567"
    assert received.inbound.message_id == item["id"]
    assert received.inbound.timestamp == wa.TS_UTC


def test_the_contact_is_keyed_on_user_id_when_meta_sends_one():
    doc = wa.envelope(
        [wa.text("263771234567", "hi", user_id="ZW.1349120865530274")],
        [wa.contact("263771234567", "Tendai", user_id="ZW.1349120865530274")],
    )
    hook = parse(doc)
    assert hook.messages[0].inbound.contact == "ZW.1349120865530274"
    assert hook.contacts[0].key == "ZW.1349120865530274"
    assert hook.contacts[0].wa_id == "263771234567"
    assert hook.contacts[0].user_id == "ZW.1349120865530274"
    assert hook.contacts[0].profile_name == "Tendai"


def test_a_username_user_without_a_phone_number_is_keyed_on_user_id():
    doc = wa.envelope(
        [wa.text(None, "hi", user_id="US.13491208655302741918")],
        [wa.contact(None, "anon", user_id="US.13491208655302741918")],
    )
    hook = parse(doc)
    assert hook.messages[0].inbound.contact == "US.13491208655302741918"
    assert hook.contacts[0].wa_id is None


def test_the_business_scoped_ids_and_username_are_read():
    person = {
        "profile": {"name": "Sheena Nelson", "username": "@sheena"},
        "wa_id": "16505551234",
        "user_id": "US.13491208655302741918",
        "parent_user_id": "US.ENT.11815799212886844830",
    }
    hook = parse(wa.envelope([wa.text("16505551234", "pay")], [person]))
    sender = hook.messages[0].sender
    assert (sender.wa_id, sender.user_id, sender.parent_user_id, sender.username, sender.profile_name) == (
        "16505551234",
        "US.13491208655302741918",
        "US.ENT.11815799212886844830",
        "@sheena",
        "Sheena Nelson",
    )


def test_a_message_from_a_user_id_alone_is_matched_to_its_contacts_entry():
    doc = wa.envelope(
        [wa.text(None, "pay", user_id="US.1")],
        [{"profile": {"name": "Sheena", "username": "@sheena"}, "user_id": "US.1"}],
    )
    sender = parse(doc).messages[0].sender
    assert (sender.wa_id, sender.user_id, sender.username, sender.key) == (None, "US.1", "@sheena", "US.1")


@pytest.mark.parametrize(
    "mtype, content, event, new_wa_id",
    [
        ("reaction", {"message_id": "wamid.x", "emoji": "👍"}, "reaction", None),
        ("reaction", {"message_id": "wamid.x", "emoji": ""}, "reaction_removed", None),
        ("reaction", {"message_id": "wamid.x"}, "reaction_removed", None),
        ("revoke", {"original_message_id": "wamid.x"}, "revoke", None),
        (
            "edit",
            {"original_message_id": "wamid.x", "message": {"type": "text", "text": {"body": "pay"}}},
            "edit",
            None,
        ),
        (
            "system",
            {"type": "customer_identity_changed", "body": "User identity changed"},
            "system.customer_identity_changed",
            None,
        ),
        (
            "system",
            {"type": "user_changed_number", "wa_id": "263779876543"},
            "system.user_changed_number",
            "263779876543",
        ),
        (
            "system",
            {"type": "customer_changed_number", "new_wa_id": "263779876543"},
            "system.customer_changed_number",
            "263779876543",
        ),
        ("system", None, "system.unknown", None),
        ("image", {"id": "1"}, None, None),
        ("sticker", {"id": "1"}, None, None),
        ("unsupported", None, None, None),
    ],
)
def test_events_are_told_apart_from_messages(mtype, content, event, new_wa_id):
    (received,) = parse(wa.envelope([wa.message("263771234567", mtype, content)])).messages
    assert (received.event, received.new_wa_id) == (event, new_wa_id)
    assert inbox_payload(received).get("event") == event


def test_a_status_body_names_no_contact():
    doc = wa.envelope(statuses=[wa.status("wamid.out.1", "read")], contacts=[wa.contact("263771234567")])
    assert parse(doc).contacts == ()


def test_every_entry_change_message_and_status_is_read():
    first = wa.envelope([wa.text("263771000001", "a"), wa.text("263771000001", "b")], [wa.contact("263771000001")])
    second = wa.envelope(
        [wa.text("263771000002", "c")],
        [wa.contact("263771000002", "Rudo")],
        [wa.status("wamid.out.1", "delivered"), wa.status("wamid.out.2", "read")],
    )
    first["entry"].append(second["entry"][0])
    first["entry"][0]["changes"].append({"field": "account_update", "value": {"event": "x"}})
    hook = parse(first)
    assert [m.inbound.text for m in hook.messages] == ["a", "b", "c"]
    assert {c.key for c in hook.contacts} == {"263771000001", "263771000002"}
    assert [(s.wamid, s.status) for s in hook.statuses] == [("wamid.out.1", "delivered"), ("wamid.out.2", "read")]


def test_a_failed_status_carries_its_error():
    hook = parse(
        wa.envelope(
            statuses=[wa.status("wamid.out.9", "failed", errors=[{"code": 131047, "title": "Re-engagement message"}])]
        )
    )
    assert hook.statuses[0].error == "131047 Re-engagement message"


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"garbage", "body is not JSON"),
        (b"\xff\xfe", "body is not JSON"),
        (b"[1, 2]", "not a WhatsApp payload: body is not an object"),
        (b'{"object": "page", "entry": []}', "not a WhatsApp payload: object is not 'whatsapp_business_account'"),
        (b'{"object": "whatsapp_business_account"}', "not a WhatsApp payload: no entry list"),
    ],
)
def test_a_body_that_is_not_a_whatsapp_payload_is_refused_with_a_reason(body, reason):
    with pytest.raises(PayloadError) as e:
        parse_webhook(body)
    assert str(e.value) == reason


def _spaced(text: str) -> str:
    return " \n" + text + "\n "


@pytest.mark.parametrize(
    "encode",
    [
        lambda t: t.encode(),  # what Meta sends: compact UTF-8
        lambda t: json.dumps(json.loads(t), indent=2, ensure_ascii=False).encode(),
        lambda t: _spaced(t).encode(),  # whitespace before and after the object
        lambda t: (t + "  ").encode(),  # after it only: the scanner reads the object, json.loads the rest
        lambda t: t.encode("utf-8-sig"),
        lambda t: t.encode("utf-16-le"),  # "{" then NUL: not read as UTF-8
        lambda t: t.encode("utf-16"),
        lambda t: t.encode("utf-32-be"),
        lambda t: t.encode("utf-32"),
    ],
)
def test_a_body_in_any_encoding_json_reads_is_parsed_alike(encode):
    doc = wa.envelope(
        [wa.text("263771234567", "Mhoro \u2764 \U0001f600", mid="wamid.enc")], [wa.contact("263771234567")]
    )
    text = json.dumps(doc, ensure_ascii=False)
    hook = parse_webhook(encode(text))
    assert hook == parse_webhook(text.encode()) and hook.messages[0].inbound.text == "Mhoro \u2764 \U0001f600"
    assert hook.messages[0].raw == json.loads(text)["entry"][0]["changes"][0]["value"]["messages"][0]


@pytest.mark.parametrize(
    "body",
    [b"{", b'{"object": "whatsapp_business_account"} {}', b'{"a": }', b"{\xff}", b'{"a": "\xed\xa0\x80"', b"{]"],
)
def test_a_broken_body_that_opens_like_an_object_is_refused_as_json_loads_refuses_it(body):
    with pytest.raises(ValueError):
        json.loads(body)
    with pytest.raises(PayloadError) as e:
        parse_webhook(body)
    assert str(e.value) == "body is not JSON"


def test_a_lone_surrogate_escaped_or_raw_reads_as_json_loads_reads_it():
    body = b'{"object": "whatsapp_business_account", "entry": [], "x": "\\ud800", "y": "\xed\xa0\x80"}'
    assert json.loads(body)["y"] == "\ud800"  # json decodes UTF-8 with surrogatepass
    assert parse_webhook(body) == Webhook((), (), ())


def test_odd_items_inside_a_valid_payload_are_skipped_not_fatal():
    doc = wa.envelope(
        [
            {"type": "text", "text": {"body": "no id"}, "from": "263771234567"},
            "not a dict",
            wa.text("263771234567", "ok"),
        ]
    )
    doc["entry"].append("junk")
    doc["entry"][0]["changes"].append({"field": "messages", "value": "junk"})
    hook = parse(doc)
    assert [m.inbound.text for m in hook.messages] == ["ok"]


def test_the_inbox_payload_keeps_the_inbound_and_the_raw_message():
    item = wa.button_reply("263771234567", "ecocash", "Ecocash")
    hook = parse(wa.envelope([item], [wa.contact("263771234567")]))
    stored = inbox_payload(hook.messages[0])
    assert stored["kind"] == "button" and stored["reply_id"] == "ecocash" and stored["raw"] == item
    assert stored["timestamp"] == wa.TS_UTC.isoformat()
    json.dumps(stored)


# ── rendering ────────────────────────────────────────────────────────────────────────────────────────


def test_text_renders_as_the_cloud_api_text_message():
    (msg,) = to_cloud_api(Outbound(to="263771234567", text="Hello *Tendai*"))
    assert msg == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "263771234567",
        "type": "text",
        "text": {"preview_url": False, "body": "Hello *Tendai*"},
    }


def test_a_business_scoped_user_id_is_addressed_as_recipient():
    (msg,) = to_cloud_api(Outbound(to="US.13491208655302741918", text="Hi"))
    assert msg["recipient"] == "US.13491208655302741918" and "to" not in msg


def test_buttons_render_as_reply_buttons():
    out = Outbound(
        to="263771234567",
        text="Choose how you will pay.",
        buttons=(Choice("ecocash", "Ecocash"), Choice("onemoney", "OneMoney"), Choice("zimswitch", "ZimSwitch")),
    )
    (msg,) = to_cloud_api(out)
    assert msg["interactive"] == {
        "type": "button",
        "body": {"text": "Choose how you will pay."},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": i, "title": t}}
                for i, t in (("ecocash", "Ecocash"), ("onemoney", "OneMoney"), ("zimswitch", "ZimSwitch"))
            ]
        },
    }


def test_options_render_as_a_list():
    out = Outbound(
        to="263771234567",
        text="What would you like to do?",
        list_button="Menu",
        options=(Choice("pay", "📱 Mobile Payment", "Pay a booking with O'mari"), Choice("help", "Help")),
    )
    (msg,) = to_cloud_api(out)
    assert msg["interactive"]["type"] == "list"
    assert msg["interactive"]["action"]["button"] == "Menu"
    assert msg["interactive"]["action"]["sections"][0]["rows"] == [
        {"id": "pay", "title": "📱 Mobile Payment", "description": "Pay a booking with O'mari"},
        {"id": "help", "title": "Help"},
    ]


def test_a_long_text_is_split_into_several_messages_with_nothing_lost(caplog):
    words = " ".join(f"word{i}" for i in range(2000))  # about 17,000 characters
    with caplog.at_level(logging.WARNING, "convoflow.whatsapp"):
        msgs = to_cloud_api(Outbound(to="263771234567", text=words))
    bodies = [m["text"]["body"] for m in msgs]
    assert len(msgs) == 5 and all(len(b) <= TEXT_MAX for b in bodies)
    assert " ".join(bodies) == words
    assert "split into 5 messages" in caplog.text


def test_a_long_interactive_body_goes_first_as_text_and_the_buttons_ride_on_the_last_part():
    body = "Terms. " * 400  # 2,800 characters
    out = Outbound(to="263771234567", text=body, buttons=(Choice("yes", "Yes"), Choice("no", "No")))
    msgs = to_cloud_api(out)
    assert [m["type"] for m in msgs] == ["text", "text", "interactive"]
    assert all(len(m["text"]["body"]) <= INTERACTIVE_BODY_MAX for m in msgs[:-1])
    assert len(msgs[-1]["interactive"]["body"]["text"]) <= INTERACTIVE_BODY_MAX
    joined = " ".join([m["text"]["body"] for m in msgs[:-1]] + [msgs[-1]["interactive"]["body"]["text"]])
    assert joined == body


def test_over_long_titles_are_cut_with_a_warning_and_kept_unique(caplog):
    out = Outbound(
        to="263771234567",
        text="Pick",
        buttons=(Choice("a", "Ecocash mobile wallet one"), Choice("b", "Ecocash mobile wallet two")),
    )
    with caplog.at_level(logging.WARNING, "convoflow.whatsapp"):
        (msg,) = to_cloud_api(out)
    titles = [b["reply"]["title"] for b in msg["interactive"]["action"]["buttons"]]
    assert all(len(t) <= BUTTON_TITLE_MAX for t in titles) and len(set(titles)) == 2
    assert titles[0] == "Ecocash mobile wall…"
    assert "was cut" in caplog.text


def test_more_than_three_buttons_become_a_list_and_more_than_ten_rows_keep_ten(caplog):
    four = tuple(Choice(str(i), f"Option {i}") for i in range(4))
    (msg,) = to_cloud_api(Outbound(to="263771234567", text="Pick", buttons=four))
    assert msg["interactive"]["type"] == "list"
    twelve = tuple(Choice(str(i), f"Option {i}") for i in range(12))
    with caplog.at_level(logging.WARNING, "convoflow.whatsapp"):
        (msg,) = to_cloud_api(Outbound(to="263771234567", text="Pick", options=twelve))
    assert len(msg["interactive"]["action"]["sections"][0]["rows"]) == 10
    assert "dropped: Option 10, Option 11" in caplog.text


def test_split_text_prefers_line_breaks_and_never_drops_a_character_without_breaks():
    assert split_text("a" * 25, 10) == ["a" * 10, "a" * 10, "a" * 5]
    assert split_text("line one\nline two", 12) == ["line one", "line two"]
