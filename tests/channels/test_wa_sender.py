"""The sender against the Graph API stand-in on loopback: order, wamids, retries with back-off, giving up.

Time is a fake clock: back-off is checked by moving the clock, never by sleeping.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from datetime import datetime, timedelta

import pytest

from channels.sender import RateLimiter, Sender, SendPolicy
from engine.messages import Choice, Outbound
from storage import outbox
from storage.contacts import upsert_contact
from storage.db import is_postgres
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


class FakeTime:
    """A monotonic clock for the rate limiter whose sleep moves it on (and notes each pause)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


@pytest.fixture
def pace():
    return FakeTime()


@pytest.fixture
def sender(db, settings, clock, pace):
    s = Sender(
        settings,
        clock=clock,
        jitter=lambda: 0.5,
        policy=SendPolicy(max_attempts=4, base_delay=2.0),
        limiter=RateLimiter(settings.whatsapp_send_rate, monotonic=pace.monotonic, sleep=pace.sleep),
    )
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
    outbox.enqueue(
        other, [Outbound(to="263772222222", text="Choose", buttons=(Choice("a", "A"), Choice("b", "B"))).as_dict()], T0
    )
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
    graph.fail_next(
        400,
        {"message": "(#100) Invalid parameter", "code": 100, "error_data": {"details": "Parameter 'to' is invalid"}},
    )
    with caplog.at_level(logging.DEBUG):
        drain(sender)
    first, second = rows(cid)
    assert (
        first.status == "failed"
        and first.error == "HTTP 400, code 100: (#100) Invalid parameter (Parameter 'to' is invalid)"
    )
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
    down = Sender(
        settings.__class__(**{**settings.__dict__, "whatsapp_api_url": "http://127.0.0.1:9/v21.0"}),
        clock=clock,
        jitter=lambda: 0.5,
        policy=SendPolicy(connect_timeout=1),
    )
    try:
        cid = queue("263771234567", "hello")
        down.run_once()
        (row,) = rows(cid)
        assert row.status == "pending" and row.error.startswith("no answer from the Graph API (")
    finally:
        down.close()


class ClosingGraph(wa.GraphStandIn):
    """A Graph API that closes each connection once it has answered, without saying so (as a server does
    when a keep-alive connection sat idle past its timeout)."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = threading.Semaphore(0)
        handler, stand_in = self.server.RequestHandlerClass, self

        class Closing(handler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                super().do_POST()
                self.close_connection = True

        # Counted once the socket itself is closed: the server does that after the handler's finish(), and
        # counting at finish() let the next send race the close (a flaky test).
        shutdown_request = self.server.shutdown_request

        def closed_then_counted(request) -> None:
            shutdown_request(request)
            stand_in.closed.release()

        self.server.RequestHandlerClass = Closing
        self.server.shutdown_request = closed_then_counted

    def wait_closed(self) -> None:
        assert self.closed.acquire(timeout=10)


def test_a_connection_the_graph_api_closed_while_idle_is_replaced_and_nothing_fails(db, settings, clock):
    graph = ClosingGraph()
    sender = Sender(settings.__class__(**{**settings.__dict__, "whatsapp_api_url": graph.url}), clock=clock, parallel=1)
    try:
        cid = queue("263771234567", "one")
        assert sender.run_once() == 1
        graph.wait_closed()
        outbox.enqueue(cid, [Outbound(to="263771234567", text="two").as_dict()], T0)
        assert sender.run_once() == 1
        assert [(r.status, r.attempts) for r in rows(cid)] == [("sent", 1), ("sent", 1)]
        assert graph.texts_to("263771234567") == ["one", "two"]
    finally:
        sender.close()
        graph.close()


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


def test_posts_keep_to_the_rate_and_a_429_pauses_every_sender(sender, graph, pace):
    limiter = RateLimiter(10, monotonic=pace.monotonic, sleep=pace.sleep)
    start = pace.now
    for _ in range(21):
        limiter.acquire()
    assert pace.now - start == pytest.approx(2.0)  # 21 posts at 10/s: the first at once, the last 2 s later
    queue("263771234567", "hello")
    graph.fail_next(429, {"message": "(#130429) Rate limit hit", "code": 130429})
    sender.run_once()
    assert sender.limiter.throttled(1.0) == 2.0  # a second 429 in a row doubles the pause
    before = pace.now
    sender.limiter.acquire()
    assert pace.now - before >= 2.0  # the next post, whoever makes it, waits the pause out


class LockingGraph(wa.GraphStandIn):
    """A Graph API that, while answering, lets another program take the SQLite write lock and hold it."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def _answer(self, path, auth, raw):
        if not self.other.in_transaction:
            self.other.execute("BEGIN IMMEDIATE")
        return super()._answer(path, auth, raw)

    def unlock(self) -> None:
        self.other.execute("ROLLBACK")


def test_a_locked_sqlite_after_the_post_is_waited_out_and_the_reply_is_not_sent_twice(db, settings, clock, caplog):
    if is_postgres():
        pytest.skip("a SQLite file's write lock")
    graph = LockingGraph(db.url.split("///", 1)[1])
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 2:
            graph.unlock()  # the other program commits after the sender has failed to write twice

    db.execute_sql("PRAGMA busy_timeout = 50")  # this thread's connection: fail fast instead of after 10 s
    sender = Sender(
        settings.__class__(**{**settings.__dict__, "whatsapp_api_url": graph.url}), clock=clock, pause=pause
    )
    try:
        cid = queue("263771234567", "hello")
        with caplog.at_level(logging.WARNING, "convoflow.sender"):
            assert sender.run_once() == 1
        (row,) = rows(cid)
        assert (row.status, row.channel_message_id) == ("sent", "wamid.out.1")
        assert len(pauses) == 2 and "could not record 1 send outcomes (OperationalError); trying again" in caplog.text
        clock.advance(SendPolicy().lease + 1)
        assert sender.run_once() == 0
        assert graph.texts_to("263771234567") == ["hello"]
    finally:
        sender.close()
        graph.close()


class SlowFor(wa.GraphStandIn):
    """A Graph API that keeps its answer to one recipient back until released."""

    def __init__(self, slow_to: str) -> None:
        super().__init__()
        self.slow_to, self.gate = slow_to, threading.Event()

    def _answer(self, path, auth, raw):
        if json.loads(raw).get("to") == self.slow_to:
            self.gate.wait(20)
        return super()._answer(path, auth, raw)


def pump_until(sender: Sender, woken: threading.Event, done) -> None:
    """Drive the pipeline as the worker loop does (pump, and wait for a send to finish when idle) until
    done() holds; bounded."""
    for _ in range(100):
        woken.clear()
        if not sender.pump():
            if done():
                return
            woken.wait(1)


def test_a_slow_answer_holds_up_only_its_own_contact(db, settings, clock):
    graph = SlowFor("263770000001")
    sender = Sender(settings.__class__(**{**settings.__dict__, "whatsapp_api_url": graph.url}), clock=clock)
    woken = threading.Event()
    sender.on_done = woken.set
    try:
        slow = queue("263770000001", "slow one", "slow two")
        fast = queue("263770000002", "one", "two", "three")
        pump_until(sender, woken, lambda: [r.status for r in rows(fast)] == ["sent"] * 3)
        assert graph.texts_to("263770000002") == ["one", "two", "three"]  # no round waits for the slow answer
        assert [r.status for r in rows(fast)] == ["sent"] * 3 and [r.status for r in rows(slow)] == ["pending"] * 2
        graph.gate.set()
        pump_until(sender, woken, lambda: [r.status for r in rows(slow)] == ["sent"] * 2)
        assert graph.texts_to("263770000001") == ["slow one", "slow two"]
    finally:
        graph.gate.set()
        sender.close()
        graph.close()


def settle(sender: Sender, woken: threading.Event) -> None:
    """Wait until every send under way has finished (bounded)."""
    for _ in range(100):
        with sender._lock:
            if not sender._in_flight:
                return
        woken.wait(0.1)
        woken.clear()
    raise AssertionError("a send never finished")


def test_a_pump_that_only_records_claims_the_next_row_its_send_freed_and_leaves_the_rest_to_a_look(
    db, settings, clock, graph
):
    # The worker loop pumps with look=False when only a finished send woke it: the contact's next row,
    # which the recorded send freed, goes at once; a row queued meanwhile by someone who did not wake this
    # sender (another process) waits for the next look (the worker's poll), and is not lost.
    sender = Sender(settings, clock=clock, jitter=lambda: 0.5)
    woken = threading.Event()
    sender.on_done = woken.set
    try:
        first = queue("263770000001", "one", "two")
        assert sender.pump() == 1  # "one"; "two" waits behind it
        settle(sender, woken)
        assert sender.pump(look=False) == 2  # "one" recorded, "two" claimed: its contact's next row
        other = queue("263770000002", "elsewhere")
        settle(sender, woken)
        assert sender.pump(look=False) == 1  # "two" recorded; nothing freed, so no claim
        assert [r.status for r in rows(first)] == ["sent", "sent"] and [r.status for r in rows(other)] == ["pending"]
        assert sender.pump() == 1  # a look claims it
        settle(sender, woken)
        assert sender.pump(look=False) == 1 and [r.status for r in rows(other)] == ["sent"]
        assert graph.texts_to("263770000001") == ["one", "two"] and graph.texts_to("263770000002") == ["elsewhere"]
    finally:
        sender.close()
