"""1,000 random messages from 40 contacts through the webhook: every POST answered 200, every message
handled, every contact answered, nothing left stuck."""

from __future__ import annotations

import os
import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from actions.omari_sandbox import OmariSandbox
from storage.bookings import add_booking
from storage.models import InboxMessage, OutboxMessage

import whatsapp_fakes as wa
from channel_harness import REF, REPO, Channel, settled, store_flows, wait_until

WORDS = [
    "pay",
    "menu",
    "hi",
    REF,
    "bk-slyker-tech-20251023 ",
    "50",
    "abc",
    "-5",
    "1e3",
    "263771234567",
    "0771234567",
    "cancel",
    "stop",
    "123456",
    "{{ 7*7 }}",
    "{% for %}",
    "NaN",
    "📱 Mobile Payment",
    "ecocash",
    "1",
    "3",
]


def random_item(rng: random.Random, wa_id: str, ts: int) -> dict:
    roll = rng.random()
    if roll < 0.35:
        return wa.text(wa_id, rng.choice(WORDS), ts=ts)
    if roll < 0.45:
        return wa.text(
            wa_id,
            "".join(
                chr(rng.choice([rng.randint(0x20, 0x7E), rng.randint(0xA0, 0x2FFF), rng.randint(0x1F300, 0x1FAFF)]))
                for _ in range(rng.randint(1, 60))
            ),
            ts=ts,
        )
    if roll < 0.50:
        return wa.text(wa_id, "x" * 10_240, ts=ts)
    if roll < 0.55:
        return wa.text(wa_id, "", ts=ts)
    if roll < 0.65:
        return wa.button_reply(wa_id, rng.choice(["ecocash", "onemoney", "zimswitch", "nope", ""]), "Ecocash", ts=ts)
    if roll < 0.75:
        return wa.list_reply(wa_id, rng.choice(["pay", "booking", "contact", "zzz"]), "📱 Mobile Payment", ts=ts)
    if roll < 0.80:
        return wa.template_button(wa_id, "PAY", "pay", ts=ts)
    kind = rng.choice(
        ["image", "audio", "sticker", "location", "reaction", "video", "contacts", "unsupported", "order"]
    )
    return wa.message(wa_id, kind, {"id": str(rng.randint(1, 10**9))} if kind != "unsupported" else None, ts=ts)


@pytest.mark.slow
def test_a_thousand_random_messages(db, settings, graph):
    store_flows(os.path.join(REPO, "flows", "main_menu.yaml"), os.path.join(REPO, "flows", "omari_payment.yaml"))
    add_booking(REF, "Tendai Moyo", "Victoria Falls 3 days", "300.00")
    channel = Channel(settings, services={"omari": OmariSandbox().client(), "settings": settings}, threads=2)
    rng = random.Random(20261126)
    contacts = [f"2637710{i:05d}" for i in range(40)]
    docs = []
    for n in range(1000):
        wa_id = rng.choice(contacts)
        item = random_item(rng, wa_id, wa.TS + n)
        docs.append(wa.envelope([item], [wa.contact(wa_id, rng.choice(["Tendai", "Rudo 🌍", "", "Ñandú"]))]))
    try:
        channel.start()
        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(lambda d: channel.post(d).status_code, docs))
        assert statuses == [200] * 1000
        assert wait_until(settled, timeout=180)
        assert InboxMessage.select().count() == 1000
        assert InboxMessage.select().where(InboxMessage.error.is_null(False)).count() == 0
        assert OutboxMessage.select().where(OutboxMessage.status != "sent").count() == 0
        answered = {s.body.get("to") for s in graph.sent}
        assert answered == set(contacts)
        assert all(len(s.body["text"]["body"]) <= 4096 for s in graph.sent if s.body["type"] == "text")
    finally:
        channel.close()
