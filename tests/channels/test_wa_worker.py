"""The worker's housekeeping and stop: idle conversations expire with their message sent, new flow
versions are picked up, and stop() returns promptly."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from datetime import timedelta

import pytest

from channels.worker import Wakeups, WorkerOptions, Workers, set_once, turn_context
from engine.context import utcnow

import whatsapp_fakes as wa
from channel_harness import FLOWS, Channel, store_flows, wait_until


class Later:
    """A clock that can be moved forward: expiry is tested by moving time, not by waiting for it."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self):
        return utcnow() + self.offset


@pytest.fixture
def clock():
    return Later()


@pytest.fixture
def channel(db, settings, clock):
    store_flows(os.path.join(FLOWS, "timed.yaml"))
    ch = Channel(settings)
    ch.workers.ctx = replace(turn_context({"settings": settings}), clock=clock)
    ch.sender.clock = clock
    ch.start()
    yield ch
    ch.close()


def test_an_idle_conversation_expires_with_its_message(channel, graph, clock):
    channel.say("263771234567", wa.text("263771234567", "quiz"))
    graph.wait_for(1)
    assert channel.workers.sweep() == 0
    clock.offset = timedelta(minutes=11)
    assert channel.workers.sweep() == 1
    graph.wait_for(2)
    assert graph.texts_to("263771234567") == ["What is 6 times 7?", "Time is up: send quiz to try again."]
    assert channel.workers.sweep() == 0


def test_the_sweep_gives_a_check_to_a_conversation_an_older_release_saved_without_one(
    channel, graph, clock, monkeypatch
):
    from channels import expiry
    from storage.db import execute

    channel.say("263771234567", wa.text("263771234567", "quiz"))
    graph.wait_for(1)
    assert channel.workers.sweep() == 0  # the first sweep backfills (nothing to do): the next is 10 minutes on
    execute('UPDATE "session" SET "expiry_check_at" = NULL')  # saved by a process of the release before 0016
    clock.offset = timedelta(minutes=11)
    assert channel.workers.sweep() == 0  # the sweep's index does not hold it
    monkeypatch.setattr(expiry, "BACKFILL_EVERY", 0.0)
    assert channel.workers.sweep() == 1
    graph.wait_for(2)
    assert graph.texts_to("263771234567")[-1] == "Time is up: send quiz to try again."


def test_a_newly_loaded_flow_version_is_picked_up(channel, graph, monkeypatch):
    before = channel.workers.flows
    channel.workers.sweep()
    assert channel.workers.flows is before  # nothing new: not reloaded
    with open(os.path.join(FLOWS, "timed.yaml"), encoding="utf-8") as f:
        source = f.read().replace("What is 6 times 7?", "What is 7 times 6?")
    from storage import flowstore

    # A turn thread takes the flows as it begins a round (a look at the inbox and the turn it finds), so
    # one that began just before the reload runs the message it then finds on the old version (a round's
    # length after the reload, well inside the 15 s docs/deploying.md promises). The message is sent once
    # every turn thread has begun a round on the new flows.
    began: set[str] = set()
    run_turn = channel.workers.run_turn

    def noting_run_turn(worker_id: str, **kw):
        if channel.workers.flows is not before:
            began.add(worker_id)
        return run_turn(worker_id, **kw)

    monkeypatch.setattr(channel.workers, "run_turn", noting_run_turn)
    flowstore.store("timed", source, "timed.yaml", utcnow())
    channel.workers.sweep()
    assert wait_until(lambda: len(began) == channel.workers.options.threads)
    channel.say("263771234567", wa.text("263771234567", "quiz"))
    graph.wait_for(1)
    assert graph.texts_to("263771234567") == ["What is 7 times 6?"]


def test_the_sweep_checkpoints_sqlite_so_the_next_write_empties_the_wal(sqlite_db, settings):
    # With no checkpoint SQLite keeps the WAL's page images until it holds 1,000 pages, a redacted code's
    # old page among them (docs/operations.md, "The OTP at rest").
    from storage import inbox
    from storage.contacts import upsert_contact
    from storage.db import write_transaction

    store_flows(os.path.join(FLOWS, "timed.yaml"))
    workers = Workers({"settings": settings}, sender=None)
    tendai = upsert_contact("263771234567", utcnow(), wa_id="263771234567")

    def store(mid: str, text: str):
        payload = {"contact": "263771234567", "message_id": mid, "text": text, "kind": "text"}
        return inbox.add(tendai, mid, payload, utcnow(), utcnow())[0]

    code = store("wamid.code", "73915284")
    with write_transaction():
        inbox.redact_answer(code.id)
    workers.sweep()
    store("wamid.next", "thanks")
    with open(sqlite_db.database + "-wal", "rb") as f:
        assert b"73915284" not in f.read(), "the code's old page is still in the WAL"


def test_stop_returns_promptly_when_idle(db, settings):
    store_flows(os.path.join(FLOWS, "timed.yaml"))
    workers = Workers({"settings": settings}, sender=None, options=WorkerOptions(threads=3, poll_interval=5))
    workers.start()
    started = time.monotonic()
    assert workers.stop(timeout=10) is True
    assert time.monotonic() - started < 2  # the idle waits are woken, not waited out


def test_a_reply_another_process_queued_is_sent_by_the_poll(channel, graph):
    # The sender loop claims at once only rows this process queued, or a contact's next row a finished
    # send freed; a row another process queued (no wake-up here) is taken by its look every poll_interval.
    from storage import outbox
    from storage.contacts import upsert_contact

    for n in range(3):
        channel.say("263771234567", wa.text("263771234567", "quiz", mid=f"wamid.poll.{n}"))
    graph.wait_for(3)
    elsewhere = upsert_contact("263770000009", utcnow(), wa_id="263770000009")
    outbox.enqueue(elsewhere, [{"to": "263770000009", "text": "queued elsewhere"}], utcnow())
    graph.wait_for(4)
    assert graph.texts_to("263770000009") == ["queued elsewhere"]


def test_a_message_stored_with_no_wake_up_is_handled_by_the_poll(channel, graph):
    # Another process's webhook stores a message and wakes only its own threads; this process's threads,
    # idle (their last pick found nothing more), take it at their poll: a missed wake-up costs time, never
    # the message.
    from storage import inbox
    from storage.contacts import upsert_contact

    channel.say("263771234567", wa.text("263771234567", "quiz"))
    graph.wait_for(1)
    other = upsert_contact("263770000008", utcnow(), wa_id="263770000008")
    payload = {"contact": "263770000008", "message_id": "wamid.elsewhere", "text": "quiz", "kind": "text"}
    inbox.add(other, "wamid.elsewhere", payload, utcnow(), utcnow())
    graph.wait_for(2)
    assert graph.texts_to("263770000008") == ["What is 6 times 7?"]


def test_a_contacts_next_message_stored_during_its_turn_is_taken_without_the_poll(db, settings, monkeypatch):
    # The contact's second message is stored (by another process's webhook: no wake-up here) while the
    # thread runs the first one's turn; every look meanwhile finds the contact held. The save says the
    # contact has another message waiting, so the thread looks again at once: the poll (a minute) is never
    # reached. (On SQLite a thread always looks again after a turn.)
    from channels import inbox_turns
    from storage import inbox
    from storage.contacts import upsert_contact

    store_flows(os.path.join(FLOWS, "timed.yaml"))
    tendai = upsert_contact("263771234567", utcnow(), wa_id="263771234567")

    def store(mid: str, text: str) -> None:
        payload = {"contact": "263771234567", "message_id": mid, "text": text, "kind": "text"}
        inbox.add(tendai, mid, payload, utcnow(), utcnow())

    real_turn = inbox_turns.run_turn

    def turn_storing_the_next(flows, conversation, inbound, ctx):
        if inbound.message_id == "wamid.first":
            store("wamid.second", "42")
        return real_turn(flows, conversation, inbound, ctx)

    monkeypatch.setattr(inbox_turns, "run_turn", turn_storing_the_next)
    store("wamid.first", "quiz")
    workers = Workers({"settings": settings}, sender=None, options=WorkerOptions(threads=1, poll_interval=60))
    workers.start()
    try:
        assert wait_until(lambda: inbox.is_processed("wamid.second"), timeout=15)
    finally:
        workers.stop(timeout=10)


def test_a_wake_up_for_a_message_a_thread_looking_again_took_costs_no_look(db, settings, monkeypatch):
    # Two contacts' messages stored while the one turn thread is busy leave a wake-up (kept: nobody waits).
    # The thread's pick says another message is waiting, so it looks again after its turn and takes it; that
    # look spends the kept wake-up, and the thread then waits instead of waking at once for a look that
    # finds nothing (a pick statement in the process and one in its backend, 0.4 a message in a burst of
    # three processes).
    if db.url.startswith("sqlite"):
        pytest.skip("SQLite's thread takes both contacts' messages in one group")
    from channels import inbox_turns
    from storage import inbox
    from storage.contacts import upsert_contact

    store_flows(os.path.join(FLOWS, "timed.yaml"))
    for n, wa_id in enumerate(("263771234567", "263771234568")):
        contact = upsert_contact(wa_id, utcnow(), wa_id=wa_id)
        payload = {"contact": wa_id, "message_id": f"wamid.{n}", "text": "quiz", "kind": "text"}
        inbox.add(contact, f"wamid.{n}", payload, utcnow() - timedelta(seconds=10 - n), utcnow())
    workers = Workers({"settings": settings}, sender=None, options=WorkerOptions(threads=1, poll_interval=60))
    for _ in range(2):
        workers.wake()  # the webhook's, one a stored delivery
    looks: list[int] = []  # messages each look handled
    real = inbox_turns.process_inbox
    monkeypatch.setattr(inbox_turns, "process_inbox", lambda *a, **k: looks.append(real(*a, **k)) or looks[-1])
    workers.start()
    try:
        assert wait_until(lambda: workers._inbox_wake._waiting == 1)  # idle, waiting out its poll
        assert looks == [1, 1]
    finally:
        workers.stop(timeout=10)


def test_a_look_spends_a_kept_wake_up_but_not_one_a_waiting_thread_was_woken_for():
    wakeups = Wakeups(limit=2)
    wakeups.wake()
    wakeups.take()
    waited = threading.Thread(target=wakeups.wait, args=(60,))
    waited.start()
    assert wait_until(lambda: wakeups._waiting == 1)  # the kept wake-up was spent: this thread waits
    wakeups.wake()
    wakeups.take()  # the waiting thread was woken for this one: it keeps it
    waited.join(timeout=10)
    assert not waited.is_alive()
    assert wakeups._kept == 0


class Pumps:
    """The sender as its loop sees it: each pump() noted as (look, whether a finished send was waiting to be
    written); finish() is a send finishing (its on_done)."""

    more_due = False

    def __init__(self) -> None:
        from channels.metrics import Metrics

        self.metrics, self.on_done, self.pumps, self._finished = Metrics(), None, [], False
        self.asked = threading.Event()  # the loop asked whether a pump would only write finished sends down

    def finish(self) -> None:
        self._finished = True
        self.on_done()

    def only_records(self) -> bool:
        if self._finished:
            self.asked.set()
        return self._finished

    def pump(self, look: bool = True) -> int:
        self.pumps.append((look, self._finished))
        self._finished = False
        return 1

    def close(self) -> None:
        pass


def sender_loop(settings, sender: Pumps) -> Workers:
    workers = Workers({"settings": settings}, sender=sender, options=WorkerOptions(poll_interval=60, record_wait=30))
    threading.Thread(target=workers._sender_loop, daemon=True).start()
    assert wait_until(lambda: sender.pumps == [(True, False)])  # the first look
    return workers


def test_a_finished_send_is_written_with_the_next_claim_while_turns_queue_replies(settings):
    # While this process's turns are queueing replies, a finished send's mark waits for the next rows they
    # queue, and one pump (one statement) writes the mark and claims the rows.
    sender = Pumps()
    workers = sender_loop(settings, sender)
    try:
        workers._queued()  # a turn's replies: claimed at once
        assert wait_until(lambda: len(sender.pumps) == 2)
        sender.finish()
        assert sender.asked.wait(10)  # the loop, woken by the send, chose to wait for the turns' next rows
        workers._queued()
        assert wait_until(lambda: (True, True) in sender.pumps)  # the mark with the claim
        assert sender.pumps[:3] == [(True, False), (True, False), (True, True)]  # not written alone before
    finally:
        workers.stop(timeout=5)


def test_a_finished_send_is_written_at_once_when_no_turn_is_queueing(settings):
    # No reply queued here lately: nothing to join, so the send's mark (which may free the contact's next
    # row, perhaps queued by another process) is written at once, not after record_wait.
    sender = Pumps()
    workers = sender_loop(settings, sender)
    try:
        sender.finish()
        assert wait_until(lambda: len(sender.pumps) == 2, timeout=10)
        assert sender.pumps[1] == (False, True)
    finally:
        workers.stop(timeout=5)


def test_the_sweep_records_a_receipt_that_came_before_its_send_was_recorded(channel, graph, caplog):
    from storage.models import EarlyReceipt, OutboxMessage

    channel.say("263771234567", wa.text("263771234567", "quiz"))
    graph.wait_for(1)
    wait_until(lambda: OutboxMessage.get().status == "sent")
    error = [{"code": 131047, "title": "Re-engagement message"}]
    assert channel.post(wa.envelope(statuses=[wa.status("wamid.late.1", "failed", errors=error)])).status_code == 200
    assert EarlyReceipt.select().count() == 1  # no row holds that wamid yet
    # As if the sender recorded its send only now, with the id Meta's receipt named.
    OutboxMessage.update(channel_message_id="wamid.late.1").execute()
    with caplog.at_level("WARNING", logger="convoflow.worker"):
        channel.workers.sweep()
    row = OutboxMessage.get()
    assert row.delivery_status == "failed" and "131047" in row.error
    assert EarlyReceipt.select().count() == 0
    assert f"message {row.id} was not delivered" in caplog.text


def test_set_once_wakes_a_waiter_and_leaves_a_set_event_as_it_is():
    """set_once is Event.set for whoever waits: a clear event is set and its waiter woken; a set one stays set
    (the Condition is not taken, nothing else changes)."""
    event = threading.Event()
    woken = []
    waiter = threading.Thread(target=lambda: woken.append(event.wait(10)))
    waiter.start()
    wait_until(lambda: event._cond._waiters)  # the waiter waits
    set_once(event)
    waiter.join(10)
    assert woken == [True]
    set_once(event)
    assert event.is_set() and not event._cond._waiters
    event.clear()
    set_once(event)
    assert event.wait(0)
