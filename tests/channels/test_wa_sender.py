"""The sender against the Graph API stand-in on loopback: order, wamids, retries with back-off, giving up.

Time is a fake clock: back-off is checked by moving the clock, never by sleeping.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pytest

from channels.sender import Sender, SendPolicy
from engine.messages import Choice, Outbound
from storage import outbox
from storage.contacts import upsert_contact
from storage.models import OutboxMessage

import whatsapp_fakes as wa

T0 = datetime(2026, 3, 1, 9, 0)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def sender(db, settings, clock):
    s = Sender(settings, clock=clock, jitter=lambda: 0.5, policy=SendPolicy(max_attempts=4, base_delay=2.0))
    yield s
    s.close()


def queue(wa_id: str, *texts: str) -> int:
    contact_id = upsert_contact(wa_id, T0, wa_id=wa_id)
    outbox.enqueue(contact_id, [Outbound(to=wa_id, text=t).as_dict() for t in texts], T0)
    return contact_id


def drain(sender: Sender) -> int:
    """Run rounds until nothing is due (bounded); returns the rows attempted."""
    total = 0
    for _ in range(20):
        n = sender.run_once()
        if not n:
            return total
        total += n
    raise AssertionError("the outbox never drained")


def rows(contact_id: int) -> list[OutboxMessage]:
    return list(OutboxMessage.select().where(OutboxMessage.contact == contact_id).order_by(OutboxMessage.id))


def test_messages_are_sent_in_order_with_the_token_and_the_wamid_is_kept(sender, graph):
    cid = queue("263771234567", "one", "two", "three")
    other = upsert_contact("263772222222", T0, wa_id="263772222222")
    outbox.enqueue(other, [Outbound(to="263772222222", text="Choose", buttons=(Choice("a", "A"), Choice("b", "B"))).as_dict()], T0)
    assert drain(sender) == 4
    assert graph.texts_to("263771234567") == ["one", "two", "three"]
    assert graph.texts_to("263772222222") == ["Choose"]
    assert {s.authorization for s in graph.sent} == {f"Bearer {wa.ACCESS_TOKEN}"}
    assert {s.path for s in graph.sent} == {f"/v21.0/{wa.PHONE_NUMBER_ID}/messages"}
    assert [(r.status, r.attempts) for r in rows(cid)] == [("sent", 1)] * 3
    assert all(r.channel_message_id.startswith("wamid.out.") for r in rows(cid))
    assert sender.run_once() == 0


def test_a_500_is_retried_after_back_off_and_sent_once_it_recovers(sender, graph, clock, caplog):
    cid = queue("263771234567", "hello", "after")
    graph.fail_next(500)
    with caplog.at_level(logging.WARNING, "convoflow.sender"):
        sender.run_once()
    (first, second) = rows(cid)
    assert (first.status, first.attempts, first.error) == ("pending", 1, "HTTP 500, code 1: stand-in failure")
    assert first.next_attempt_at == T0 + timedelta(seconds=2)
    assert second.status == "pending" and graph.sent == []  # the later message waits its turn
    assert "retrying in 2 s" in caplog.text
    clock.advance(1)
    assert sender.run_once() == 0  # not due yet
    clock.advance(1)
    assert drain(sender) == 2
    assert graph.texts_to("263771234567") == ["hello", "after"]
    assert [r.status for r in rows(cid)] == ["sent", "sent"]


def test_back_off_doubles_and_the_sender_gives_up_after_max_attempts(sender, graph, clock, caplog):
    cid = queue("263771234567", "hello")
    graph.fail_next(503, times=4)
    delays = []
    for _ in range(3):
        sender.run_once()
        (row,) = rows(cid)
        delays.append((row.next_attempt_at - clock.now).total_seconds())
        clock.now = row.next_attempt_at
    assert delays == [2.0, 4.0, 8.0]
    with caplog.at_level(logging.ERROR, "convoflow.sender"):
        sender.run_once()
    (row,) = rows(cid)
    assert (row.status, row.attempts) == ("failed", 4)
    assert "gave up after 4 attempts: HTTP 503" in caplog.text


@pytest.mark.parametrize(
    "status, error",
    [
        (429, {"message": "rate", "code": 4}),
        (400, {"message": "(#130429) Rate limit hit", "code": 130429}),
        (400, {"message": "(#131056) pair rate limit", "code": 131056}),
        (400, {"message": "Service unavailable", "code": 131016}),
        (400, {"message": "Something went wrong", "code": 131000}),
        (400, {"message": "try later", "code": 2, "is_transient": True}),
    ],
)
def test_throttling_and_service_trouble_are_retried(sender, graph, clock, status, error):
    cid = queue("263771234567", "hello")
    graph.fail_next(status, error)
    sender.run_once()
    assert rows(cid)[0].status == "pending"
    clock.advance(60)
    sender.run_once()
    assert rows(cid)[0].status == "sent" and graph.texts_to("263771234567") == ["hello"]


def test_a_400_is_given_up_with_the_reason_logged_and_no_token_in_any_log(sender, graph, clock, caplog):
    cid = queue("263771234567", "hello", "next")
    graph.fail_next(400, {"message": "(#100) Invalid parameter", "code": 100,
                          "error_data": {"details": "Parameter 'to' is invalid"}})
    with caplog.at_level(logging.DEBUG):
        drain(sender)
    first, second = rows(cid)
    assert first.status == "failed" and first.error == "HTTP 400, code 100: (#100) Invalid parameter (Parameter 'to' is invalid)"
    assert "not retryable: HTTP 400, code 100" in caplog.text
    assert second.status == "sent"  # a dead message does not block the ones after it
    assert wa.ACCESS_TOKEN not in caplog.text


def test_the_24_hour_window_is_noted(sender, graph, caplog):
    cid = queue("263771234567", "hello")
    graph.fail_next(400, {"message": "Re-engagement message", "code": 131047})
    with caplog.at_level(logging.ERROR, "convoflow.sender"):
        sender.run_once()
    assert rows(cid)[0].status == "failed"
    assert "24-hour window is closed" in caplog.text


def test_a_stand_in_that_is_down_is_retried(db, settings, clock):
    down = Sender(settings.__class__(**{**settings.__dict__, "whatsapp_api_url": "http://127.0.0.1:9/v21.0"}),
                  clock=clock, jitter=lambda: 0.5, policy=SendPolicy(connect_timeout=1))
    try:
        cid = queue("263771234567", "hello")
        down.run_once()
        (row,) = rows(cid)
        assert row.status == "pending" and row.error.startswith("no answer from the Graph API (")
    finally:
        down.close()


def test_a_claimed_row_is_not_claimed_again_until_its_lease_runs_out(sender, settings, clock):
    cid = queue("263771234567", "one", "two")
    other = Sender(settings, clock=clock)
    first = rows(cid)[0].id
    try:
        assert [c.id for c in sender.claim()] == [first]  # the second waits for the first to go
        assert other.claim() == []  # what a second process sees while the first is sending
        clock.advance(SendPolicy().lease + 1)  # the first process died mid-send
        assert [c.id for c in other.claim()] == [first]
    finally:
        other.close()
