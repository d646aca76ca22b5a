"""Every real webhook body in ../shared/reference/whatsapp-payloads/ (Meta's docs and other WhatsApp
libraries, see SOURCES.json) replayed byte for byte, signed, through the webhook with workers and the
Graph API stand-in: a message gets its reply at the address Meta expects, an event (reaction, revoke, edit,
system notice) and a status get silence, the contact rows are right, and the person can carry on.

Skipped, saying so, when the reference folder is not present.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os

import pytest
import requests

from storage.models import Contact, InboxMessage

import whatsapp_fakes as wa
from channel_harness import Channel, settled, store_flows, wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAYLOADS = os.path.normpath(os.path.join(REPO, "..", "..", "shared", "reference", "whatsapp-payloads"))
if not os.path.isdir(PAYLOADS):
    PAYLOADS = "/work/shared/reference/whatsapp-payloads"
FILES = sorted(glob.glob(os.path.join(PAYLOADS, "*.json")))
FILES = [f for f in FILES if os.path.basename(f) != "SOURCES.json"]
EVENTS = {"reaction", "revoke", "edit", "system"}  # not answers: never a reply, never a turn

pytestmark = pytest.mark.skipif(not FILES, reason=f"no reference payloads at {PAYLOADS}")


@pytest.fixture
def channel(db, settings):
    store_flows(os.path.join(REPO, "flows", "main_menu.yaml"), os.path.join(REPO, "flows", "omari_payment.yaml"))
    # The reference bodies carry their authors' timestamps (2022-2025): replayed on purpose, so the webhook's
    # replay window (WHATSAPP_MAX_MESSAGE_AGE_DAYS, issue 10.7) is opened wide enough to take them.
    ch = Channel(dataclasses.replace(settings, whatsapp_max_message_age_days=36_500))
    ch.start()
    yield ch
    ch.close()


def values(doc: dict) -> list[dict]:
    return [
        c.get("value") or {} for e in doc.get("entry", []) for c in e.get("changes", []) if c.get("field") == "messages"
    ]


def messages(doc: dict) -> list[dict]:
    return [m for v in values(doc) for m in v.get("messages", [])]


def address(item: dict) -> tuple[str, str]:
    """Where Meta expects the reply to a message: its phone number as `to`, else its user id as `recipient`."""
    return ("to", item["from"]) if item.get("from") else ("recipient", item["from_user_id"])


def post_raw(channel: Channel, raw: bytes) -> requests.Response:
    return channel.http.post(
        channel.url + "/webhook",
        data=raw,
        timeout=10,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": wa.sign(raw)},
    )


@pytest.mark.parametrize("path", FILES, ids=[os.path.basename(f)[:-5] for f in FILES])
def test_a_real_body_gets_its_reply_or_silence_and_the_person_carries_on(channel, graph, path):
    with open(path, "rb") as f:
        raw = f.read()
    doc = json.loads(raw)
    items = messages(doc)
    answers = [m for m in items if m.get("type") not in EVENTS]

    assert post_raw(channel, raw).status_code == 200
    assert wait_until(settled)
    sent = graph.wait_for(len(answers), timeout=10)
    assert [(k, s.body.get(k)) for s, k in zip(sent, [address(m)[0] for m in answers])] == [address(m) for m in answers]
    assert len(graph.sent) == len(answers), "an event or a status was answered"
    assert InboxMessage.select().where(InboxMessage.processed_at.is_null()).count() == 0

    if not items:  # statuses and account notices name nobody new
        assert Contact.select().count() == 0
        return
    (contact,) = Contact.select()
    first = items[0]
    system = first.get("system") or {}
    expected_phone = system.get("wa_id") if system.get("type") == "user_changed_number" else first.get("from")
    assert contact.wa_id == expected_phone
    if first.get("from_user_id"):
        assert contact.user_id == first["from_user_id"]

    # The same person writes again, named as Meta named them: the same contact carries on.
    kind, to = ("to", contact.wa_id) if contact.wa_id else ("recipient", contact.user_id)
    follow = wa.message(contact.wa_id, "text", {"body": "menu"}, user_id=None if contact.wa_id else contact.user_id)
    assert channel.post(wa.envelope([follow])).status_code == 200
    reply = graph.wait_for(len(answers) + 1)[-1]
    assert reply.body.get(kind) == to and "What would you like to do?" in reply.body["interactive"]["body"]["text"]
    assert Contact.select().count() == 1
