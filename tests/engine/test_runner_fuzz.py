"""Whatever arrives, a turn answers and never raises: thousands of random messages (seeded) through the
payment flows, including button replies with stale ids, media, templates and control characters.
"""

from __future__ import annotations

import random

from engine.messages import ACTIVE, ENDED, EXPIRED

from flowkit import Chat, make_registry, payment_flows

WORDS = [
    "pay",
    "PAY!",
    "hi",
    "menu",
    "cancel",
    "stop",
    "BK-1",
    "bk-1",
    "nope",
    "50",
    "$1,250.50",
    "0",
    "-5",
    "1e3",
    "NaN",
    "1",
    "2",
    "3",
    "4",
    "ecocash",
    "OneMoney",
    "{{ 7*7 }}",
    "{% for x in y %}",
    "",
    "   ",
    "\x00",
    "👋",
    "yes",
    "0771234567",
    "263771234567",
    "a" * 5000,
]


def random_message(rng: random.Random) -> dict:
    roll = rng.random()
    if roll < 0.1:
        return {"text": None, "kind": "other"}
    if roll < 0.2:
        reply = rng.choice(["ecocash", "onemoney", "zimswitch", "pay", "stale", None])
        return {"text": rng.choice(WORDS), "kind": rng.choice(["button", "list"]), "reply_id": reply}
    if roll < 0.3:
        return {"text": "".join(chr(rng.randrange(0, 0x2FFF)) for _ in range(rng.randrange(0, 12)))}
    return {"text": rng.choice(WORDS)}


def test_random_messages_always_get_an_answer_and_never_raise():
    rng = random.Random(20261126)
    for contact in range(60):
        chat = Chat(payment_flows(), registry=make_registry(), contact=f"2637700{contact:05d}")
        for _ in range(50):
            result = chat.send(**random_message(rng))
            assert result.outbound, "nobody is left unanswered"
            assert all(o.text for o in result.outbound)
            assert not [e for e in result.events if e.level == "error"], result.events
            if result.conversation is not None:
                assert result.conversation.status in (ACTIVE, ENDED, EXPIRED)
                if result.conversation.status == ACTIVE:
                    step = chat.flows.get(result.conversation.flow).steps[result.conversation.step]
                    assert step.kind == "ask"
