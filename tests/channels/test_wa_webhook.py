"""The webhook over real HTTP on loopback: signature, parsing, inbox, receipts, health and metrics."""

from __future__ import annotations

import json
import logging

from storage import deadletters
from storage.models import Contact, InboxMessage, OutboxMessage

import whatsapp_fakes as wa

from datetime import datetime


def post(http, url, doc=None, raw: bytes | None = None, signature: str | None = "sign"):
    body = raw if raw is not None else wa.body_of(doc)
    headers = {"Content-Type": "application/json"}
    if signature == "sign":
        headers["X-Hub-Signature-256"] = wa.sign(body)
    elif signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return http.post(url + "/webhook", data=body, headers=headers, timeout=10)


def test_meta_verification_handshake(webhook, http):
    ok = http.get(
        webhook + "/webhook",
        params={"hub.mode": "subscribe", "hub.verify_token": wa.VERIFY_TOKEN, "hub.challenge": "1158201444"},
    )
    assert (ok.status_code, ok.text) == (200, "1158201444")
    bad = http.get(
        webhook + "/webhook",
        params={"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1158201444"},
    )
    assert bad.status_code == 403 and "1158201444" not in bad.text


def test_a_signed_message_is_stored_in_the_inbox_with_its_contact(webhook, http):
    item = wa.text("263771234567", "pay")
    r = post(http, webhook, wa.envelope([item], [wa.contact("263771234567", "Tendai")]))
    assert (r.status_code, r.text) == (200, "OK")
    row = InboxMessage.get()
    assert row.channel_message_id == item["id"] and row.processed_at is None
    assert json.loads(row.payload)["text"] == "pay"
    assert row.sent_at == wa.TS_UTC
    assert (row.contact.key, row.contact.wa_id, row.contact.profile_name) == ("263771234567", "263771234567", "Tendai")


def test_missing_signature_is_401_and_stores_nothing(webhook, http, caplog):
    with caplog.at_level(logging.WARNING, "convoflow.whatsapp"):
        r = post(http, webhook, wa.envelope([wa.text("263771234567", "pay")]), signature=None)
    assert r.status_code == 401
    assert InboxMessage.select().count() == 0 and Contact.select().count() == 0
    assert "missing X-Hub-Signature-256" in caplog.text


def test_wrong_signature_is_403_and_stores_nothing(webhook, http):
    doc = wa.envelope([wa.text("263771234567", "pay")], [wa.contact("263771234567")])
    r = post(http, webhook, doc, signature=wa.sign(wa.body_of(doc), secret="someone-else"))
    assert r.status_code == 403
    tampered = wa.body_of(doc).replace(b"pay", b"PAY")
    r = post(http, webhook, raw=tampered, signature=wa.sign(wa.body_of(doc)))
    assert r.status_code == 403
    r = post(http, webhook, doc, signature="sha256=zz\u00e9")
    assert r.status_code == 403
    assert InboxMessage.select().count() == 0 and Contact.select().count() == 0


def test_signed_garbage_and_foreign_bodies_are_kept_as_dead_letters_and_answered_200(webhook, http, caplog):
    # Signed, so Meta's: a 400 would make Meta deliver it again for days (issue 10.2).
    with caplog.at_level(logging.WARNING, "convoflow.whatsapp"):
        r = post(http, webhook, raw=b"\x00garbage{")
        assert (r.status_code, r.text) == (200, "OK")
        r = post(http, webhook, raw=b'{"object": "page", "entry": []}')
        assert (r.status_code, r.text) == (200, "OK")
    assert [(d.reason, d.body, d.item) for d in deadletters.recent()] == [
        ("not a WhatsApp payload: object is not 'whatsapp_business_account'", b'{"object": "page", "entry": []}', None),
        ("body is not JSON", b"\x00garbage{", None),
    ]
    assert "kept as a dead letter (see `flows dead-letters`): body is not JSON" in caplog.text
    assert InboxMessage.select().count() == 0


def test_the_same_message_delivered_twice_and_five_times_is_stored_once(webhook, http):
    once = wa.text("263771234567", "pay")
    doc = wa.envelope([once], [wa.contact("263771234567")])
    assert [post(http, webhook, doc).status_code for _ in range(2)] == [200, 200]
    five = wa.text("263771234567", "menu")
    doc5 = wa.envelope([five], [wa.contact("263771234567")])
    assert [post(http, webhook, doc5).status_code for _ in range(5)] == [200] * 5
    assert sorted(m for (m,) in InboxMessage.select(InboxMessage.channel_message_id).tuples()) == sorted(
        [once["id"], five["id"]]
    )
    assert Contact.select().count() == 1


def test_a_known_contacts_next_message_is_stored_alike_and_what_changed_about_them_is_recorded(webhook, http):
    """The usual delivery (one message from someone who wrote before) takes a one-statement path: its row
    reads the same as the first message's, and a new profile name or a last seen over a minute old still
    reaches the contact."""
    phone = "263771234567"
    first, second, renamed, later = (wa.text(phone, words) for words in ("hi", "pay", "menu", "1"))
    assert post(http, webhook, wa.envelope([first], [wa.contact(phone, "Tendai")])).status_code == 200
    seen = Contact.get().last_seen_at
    assert post(http, webhook, wa.envelope([second], [wa.contact(phone, "Tendai")])).status_code == 200
    rows = {r.channel_message_id: json.loads(r.payload) for r in InboxMessage.select()}
    assert rows[second["id"]] == {**rows[first["id"]], "message_id": second["id"], "text": "pay", "raw": second}
    assert rows[second["id"]]["contact"] == phone

    assert post(http, webhook, wa.envelope([renamed], [wa.contact(phone, "Tendai M.")])).status_code == 200
    assert Contact.get().profile_name == "Tendai M."
    Contact.update(last_seen_at=datetime(2026, 1, 1)).execute()  # seen long ago
    assert post(http, webhook, wa.envelope([later], [wa.contact(phone, "Tendai M.")])).status_code == 200
    assert Contact.get().last_seen_at >= seen
    assert post(http, webhook, wa.envelope([later], [wa.contact(phone, "Tendai M.")])).status_code == 200
    assert InboxMessage.select().count() == 4 and Contact.select().count() == 1


def test_delivery_receipts_are_recorded_on_the_outbox_row_not_as_input(webhook, http):
    contact = Contact.create(key="263771234567", wa_id="263771234567", created_at=datetime(2026, 1, 1))
    now = datetime(2026, 1, 1)
    row = OutboxMessage.create(
        contact=contact,
        payload="{}",
        status="sent",
        next_attempt_at=now,
        created_at=now,
        channel_message_id="wamid.out.7",
    )
    for state in ("sent", "read", "delivered"):  # unordered: the late "delivered" must not undo "read"
        assert post(http, webhook, wa.envelope(statuses=[wa.status("wamid.out.7", state)])).status_code == 200
    assert OutboxMessage.get_by_id(row.id).delivery_status == "read"
    failed = wa.status("wamid.out.7", "failed", errors=[{"code": 131047, "title": "Re-engagement message"}])
    post(http, webhook, wa.envelope(statuses=[failed]))
    row = OutboxMessage.get_by_id(row.id)
    assert row.delivery_status == "failed" and "131047" in row.error
    assert InboxMessage.select().count() == 0


def test_health_and_metrics(webhook, http):
    assert http.get(webhook + "/healthz").text == "ok\n"
    post(http, webhook, wa.envelope([wa.text("263771234567", "hi")], [wa.contact("263771234567")]))
    post(http, webhook, raw=b"nope", signature=None)
    text = http.get(webhook + "/metrics").text
    assert "convoflow_messages_in_total 1" in text
    assert 'convoflow_webhook_rejected_total{reason="401"} 1' in text
    assert "convoflow_inbox_backlog 1" in text
    assert "# TYPE convoflow_turn_latency_seconds histogram" in text


def test_an_oversized_body_is_refused_and_stores_nothing(webhook, http):
    big = wa.body_of(wa.envelope([wa.text("263771234567", "x" * (4 * 1024 * 1024))], [wa.contact("263771234567")]))
    r = post(http, webhook, raw=big)
    assert r.status_code == 413
    assert InboxMessage.select().count() == 0


def test_a_broken_database_answers_503_so_meta_delivers_again(webhook, http, db, caplog):
    db.execute_sql('DROP TABLE "inbox_message"')
    with caplog.at_level(logging.ERROR, "convoflow.whatsapp"):
        r = post(http, webhook, wa.envelope([wa.text("263771234567", "pay")], [wa.contact("263771234567")]))
    assert r.status_code == 503
    assert "Meta will deliver it again" in caplog.text
    assert Contact.select().count() == 0  # the transaction was rolled back as a whole


def test_a_known_contacts_new_username_and_parent_user_id_are_recorded(webhook, http):
    """The one-statement path for a known contact takes only a message that names nothing new; a username or
    a parent user id first seen on a later message reaches the contact (on PostgreSQL it was dropped)."""
    phone, user_id = "16505551234", "US.13491208655302741918"
    first = {"profile": {"name": "Sheena"}, "wa_id": phone, "user_id": user_id}
    later = {**first, "profile": {"name": "Sheena", "username": "@sheena"}, "parent_user_id": "US.ENT.1181"}
    assert post(http, webhook, wa.envelope([wa.text(phone, "hi", user_id=user_id)], [first])).status_code == 200
    assert (Contact.get().username, Contact.get().parent_user_id) == (None, None)
    assert post(http, webhook, wa.envelope([wa.text(phone, "pay", user_id=user_id)], [later])).status_code == 200
    assert (Contact.get().username, Contact.get().parent_user_id) == ("@sheena", "US.ENT.1181")
    assert InboxMessage.select().count() == 2 and Contact.select().count() == 1


REAL_DELIVERED = "/work/shared/reference/whatsapp-payloads/javaapi_textMessageStatusDelivered.json"


def test_a_receipt_that_comes_before_its_send_is_recorded_waits_for_it(webhook, http):
    # A real "delivered" body (see ../shared/reference/whatsapp-payloads/SOURCES.json) when present.
    import os

    from storage import outbox
    from storage.models import EarlyReceipt

    if os.path.exists(REAL_DELIVERED):
        with open(REAL_DELIVERED, "rb") as f:
            raw = f.read()
    else:
        raw = wa.body_of(wa.envelope(statuses=[wa.status("wamid.early.1", "delivered")]))
    wamid = json.loads(raw)["entry"][0]["changes"][0]["value"]["statuses"][0]["id"]
    contact = Contact.create(key="263771234567", wa_id="263771234567", created_at=datetime(2026, 1, 1))
    now = datetime(2026, 1, 1)
    row = OutboxMessage.create(contact=contact, payload="{}", next_attempt_at=now, created_at=now)  # being sent

    assert post(http, webhook, raw=raw).status_code == 200
    assert post(http, webhook, wa.envelope(statuses=[wa.status(wamid, "sent")])).status_code == 200  # lower, later
    assert OutboxMessage.get_by_id(row.id).delivery_status is None
    assert [(r.channel_message_id, r.status) for r in EarlyReceipt.select()] == [(wamid, "delivered")]

    outbox.record_sent([(row.id, wamid)], now)  # the sender records the send after Meta's receipt came
    assert outbox.apply_early_receipts(now) == []
    assert OutboxMessage.get_by_id(row.id).delivery_status == "delivered"
    assert EarlyReceipt.select().count() == 0
    assert InboxMessage.select().count() == 0
