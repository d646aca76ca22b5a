"""The inbox workers' optimistic turn (channels/inbox_turns.py, channels/optimistic.py): one commit for an
uncontended turn without an action, and the compare-and-set that keeps racing workers from answering a
message twice, saving over a state that moved on, or running an action on it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from channels import inbox_turns, turn_save, turns
from storage import inbox, sessions
from storage.contacts import upsert_contact
from storage.db import is_postgres
from storage.models import InboxMessage, Session
from storage_kit import Clock, counter_setup, message
from test_turns import MeanwhileClock, steps_setup, texts


class LaterClock(MeanwhileClock):
    """MeanwhileClock for a worker, whose pick reads the clock first: the other worker (another process:
    its own InHand) runs at the turn's first reading after the pick, while ours is between reading the
    state and saving it."""

    skip = 0

    def arm(self, handle) -> None:
        super().arm(handle)
        self.skip = 1

    def __call__(self):
        if self.skip:
            self.skip -= 1
            return Clock.__call__(self)
        return super().__call__()


def queue(contact: str, *texts_in: str, clock) -> list:
    """The messages stored in the inbox as the webhook stores them, a second apart."""
    contact_id = upsert_contact(contact, clock())
    out = []
    for i, text in enumerate(texts_in):
        msg = message(contact, text, at=clock() + timedelta(seconds=i))
        inbox.add(contact_id, msg.message_id, turn_save.inbound_payload(msg), msg.timestamp, clock())
        out.append(msg)
    return out


def another_worker(flows, ctx, limit: int = 1):
    return lambda: inbox_turns.process_inbox(ctx, flows, limit=limit, worker_id="other", in_hand=inbox_turns.InHand())


def test_a_worker_turn_without_an_action_commits_once_on_sqlite(db):
    if is_postgres(db):
        pytest.skip("counts SQLite transactions")
    clock, flows, ctx = steps_setup("go", LaterClock())
    queue("c1", "first", clock=clock)
    commits: list[str] = []
    connection = db.connection()

    def trace(sql: str) -> None:
        # A transaction ends at COMMIT; a write outside BEGIN … COMMIT is a transaction of its own.
        words = sql.lstrip().split(None, 1)
        verb = words[0].upper() if words else ""
        if verb == "COMMIT" or (verb in ("INSERT", "UPDATE", "DELETE", "WITH") and not connection.in_transaction):
            commits.append(sql)

    connection.set_trace_callback(trace)
    try:
        assert inbox_turns.process_inbox(ctx, flows, worker_id="w1") == 1
    finally:
        connection.set_trace_callback(None)

    assert len(commits) == 1, commits
    assert texts("c1") == ["one?", "two?"]
    assert inbox.backlog() == 0 and Session.get().claimed_by is None


def test_threads_of_one_process_pick_different_contacts(db):
    clock = Clock()
    a = queue("a", "x", clock=clock)
    queue("b", "y", clock=clock)
    in_hand = inbox_turns.InHand()

    with in_hand.picked("t1", clock()) as first:
        with in_hand.picked("t2", clock()) as second:
            with in_hand.picked("t3", clock()) as third:
                assert third is None  # both contacts are in hand
    assert {first[2], second[2]} == {"a", "b"}
    with in_hand.picked("t4", clock()) as again:  # given back once handled
        assert again[1].channel_message_id == a[0].message_id


def test_a_message_a_worker_handled_meanwhile_is_answered_once(db):
    # A turn that leaves the state as it was: only the inbox row tells the second save the message is done.
    clock, flows, ctx = steps_setup("hello", LaterClock())
    before = texts("c1")
    (msg,) = queue("c1", "hello again", clock=clock)

    clock.arm(another_worker(flows, ctx))
    inbox_turns.process_inbox(ctx, flows, worker_id="w1")

    assert len(texts("c1")) == len(before) + 1
    assert InboxMessage.get(InboxMessage.channel_message_id == msg.message_id).processed_at is not None
    assert Session.get().claimed_by is None


def test_a_worker_turn_whose_state_moved_on_is_not_saved_and_the_next_message_runs_on_the_new_state(db):
    clock, flows, ctx = steps_setup("go", LaterClock())
    queue("c1", "first", "second", clock=clock)

    clock.arm(another_worker(flows, ctx))
    inbox_turns.process_inbox(ctx, flows, worker_id="w1")
    inbox_turns.process_inbox(ctx, flows, worker_id="w1")

    assert texts("c1") == ["one?", "two?", "got first and second"]
    assert sessions.get_state("c1")["vars"] == {"contact": "c1", "a": "first", "b": "second"}
    assert inbox.backlog() == 0 and Session.get().claimed_by is None


def test_a_worker_never_runs_an_action_on_a_state_that_moved_on(db):
    calls: list[str] = []
    clock, flows, ctx = counter_setup(calls, LaterClock())
    turns.handle_message(message("c1", "count"), flows, ctx)
    queue("c1", "mine", "next", clock=clock)

    clock.arm(another_worker(flows, ctx))
    inbox_turns.process_inbox(ctx, flows, worker_id="w1")
    inbox_turns.process_inbox(ctx, flows, worker_id="w1")

    assert texts("c1") == ["n=1", "n=2", "n=3"]
    assert sessions.get_state("c1")["vars"]["n"] == 3
    assert len(calls) == 3  # one increment per message, each on the state its message found
    assert inbox.backlog() == 0 and Session.get().claimed_by is None
