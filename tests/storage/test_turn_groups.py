"""A turn thread's group on SQLite (channels/inbox_turns.py, _optimistic_group): several contacts' waiting
messages picked at once and their turns saved in one write transaction, a savepoint each. On a real
SQLite file: one commit for the group, a failing turn or save leaving the others saved, a crash before
the commit losing nothing, each contact's messages in order."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest

from channels import flowcache, inbox_turns, turn_save
from engine.registry import ActionRegistry
from storage import flowstore, inbox, outbox, sessions
from storage.contacts import upsert_contact
from storage.models import InboxMessage, Session
from storage_kit import Clock, commits_during, context, in_threads, message, queue, texts, turns_failing, two_asks

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ASKS = two_asks("asks")


def setup(contacts: list[str], *said: str):
    """The asks flow stored and loaded; each contact's messages `said` queued in the inbox as the webhook
    stores them, a second apart. Returns (clock, flows, ctx)."""
    clock = Clock()
    flowstore.store("asks", ASKS, "flows/asks.yaml", clock())
    flows = flowcache.load_flowset(ActionRegistry())
    for contact in contacts:
        queue(contact, *said, clock=clock)
    return clock, flows, context(ActionRegistry(), clock)


def started(contacts: list[str]):
    """Each contact has said "go" (its session stored, waiting at `one`) and has "first" waiting."""
    clock, flows, ctx = setup(contacts, "go")
    for _ in contacts:
        assert inbox_turns.process_inbox(ctx, flows, limit=1, worker_id="w0") == 1
    for contact in contacts:
        msg = message(contact, "first", at=clock() + timedelta(seconds=5))
        inbox.add(
            upsert_contact(contact, clock()), msg.message_id, turn_save.inbound_payload(msg), msg.timestamp, clock()
        )
    return clock, flows, ctx


def test_a_group_of_contacts_turns_is_saved_in_one_commit(sqlite_db):
    contacts = ["a", "b", "c"]
    clock, flows, ctx = started(contacts)
    handled: list[int] = []

    commits = commits_during(
        sqlite_db, lambda: handled.append(inbox_turns.process_inbox(ctx, flows, limit=8, worker_id="w1"))
    )

    assert handled == [3]
    assert len(commits) == 1, commits
    for contact in contacts:
        assert texts(contact) == ["one?", "two?"]
        assert sessions.get_state(contact)["vars"]["a"] == "first"
    assert inbox.backlog() == 0
    assert all(s.claimed_by is None for s in Session.select())


def test_a_failing_turn_in_a_group_leaves_the_others_saved(sqlite_db, monkeypatch):
    clock, flows, ctx = started(["a", "b", "c"])
    turns_failing(monkeypatch, lambda inbound: inbound.contact == "b", "a bug in b's turn")
    with pytest.raises(ValueError, match="a bug in b's turn"):
        inbox_turns.process_inbox(ctx, flows, limit=8, worker_id="w1")

    assert texts("a") == texts("c") == ["one?", "two?"]
    assert texts("b") == ["one?"]
    b_row = InboxMessage.get(InboxMessage.processed_at.is_null())
    assert b_row.attempts == 1 and "a bug in b's turn" in b_row.error
    assert sessions.get_state("b")["step"] == "one"  # b's turn is retried once its claim's lease runs out
    assert inbox.backlog() == 1


def test_a_save_that_fails_in_a_group_is_rolled_back_alone(sqlite_db, monkeypatch):
    clock, flows, ctx = started(["a", "b", "c"])
    b_id = upsert_contact("b", clock())
    real_enqueue = outbox.enqueue_encoded  # what a turn's save queues its replies with

    def fails_for_b(contact_id, payloads, now):
        if contact_id == b_id:  # after b's session and inbox row were written in its savepoint
            raise ValueError("the outbox refused b's reply")
        return real_enqueue(contact_id, payloads, now)

    monkeypatch.setattr(outbox, "enqueue_encoded", fails_for_b)
    with pytest.raises(ValueError, match="refused b's reply"):
        inbox_turns.process_inbox(ctx, flows, limit=8, worker_id="w1")
    monkeypatch.undo()

    assert texts("a") == texts("c") == ["one?", "two?"]
    assert texts("b") == ["one?"]
    assert sessions.get_state("b")["step"] == "one" and "a" not in sessions.get_state("b")["vars"]
    b_row = InboxMessage.get(InboxMessage.processed_at.is_null())
    assert b_row.attempts == 1 and "refused b's reply" in b_row.error

    clock.advance(seconds=sessions.LEASE.total_seconds() + 1)
    assert inbox_turns.process_inbox(ctx, flows, limit=8, worker_id="w2") == 1
    assert texts("b") == ["one?", "two?"]
    assert inbox.backlog() == 0


CRASH = """
import os, sys
from channels import flowcache, inbox_turns, turn_save
from engine.registry import ActionRegistry
from storage.db import open_database
from storage_kit import Clock, context

open_database(sys.argv[1])
flows = flowcache.load_flowset(ActionRegistry())
saves = []
real_save = inbox_turns.save

def save(*args, **kwargs):
    saves.append(1)
    if len(saves) == 3:  # two turns saved in their savepoints, the group not committed: the process dies
        os._exit(9)
    return real_save(*args, **kwargs)

inbox_turns.save = save
inbox_turns.process_inbox(context(ActionRegistry(), Clock()), flows, limit=8, worker_id="doomed")
"""


def test_a_crash_before_the_groups_commit_loses_nothing_and_each_turn_runs_again(sqlite_db):
    contacts = ["a", "b", "c", "d"]
    clock, flows, ctx = started(contacts)
    sqlite_db.close()

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "tests"), os.path.dirname(__file__)])}
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH, f"sqlite:///{sqlite_db.database}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert crashed.returncode == 9, crashed.stdout + crashed.stderr

    assert inbox.backlog() == len(contacts)  # nothing of the group was committed
    for contact in contacts:
        assert texts(contact) == ["one?"]
        assert sessions.get_state(contact)["step"] == "one"
    assert all(s.claimed_by is None for s in Session.select())

    assert inbox_turns.process_inbox(ctx, flows, limit=8, worker_id="w2") == len(contacts)
    for contact in contacts:
        assert texts(contact) == ["one?", "two?"]
    assert inbox.backlog() == 0


def test_groups_in_several_threads_keep_each_contacts_messages_in_order(sqlite_db):
    contacts = [f"26377{i:07d}" for i in range(10)]
    clock, flows, ctx = setup(contacts, "go", "first", "second", "go", "again")

    def work(w: int) -> None:
        for _ in range(100):  # bounded: stops once the inbox is empty
            if inbox_turns.process_inbox(ctx, flows, limit=8, worker_id=f"w{w}") == 0 and inbox.backlog() == 0:
                break

    assert in_threads(3, work, sqlite_db) == []
    for contact in contacts:
        assert texts(contact) == ["one?", "two?", "got first and second", "one?", "two?"]
        assert sessions.get_state(contact)["vars"] == {"contact": contact, "a": "again"}
    assert inbox.backlog() == 0


def test_a_nested_write_transaction_is_a_savepoint_that_fails_alone(sqlite_db):
    # The group's savepoints: write_transaction nested in another (storage/db.py's own SAVEPOINT).
    from storage.db import write_transaction

    clock = Clock()
    with write_transaction():
        upsert_contact("kept", clock())
        with pytest.raises(ValueError):
            with write_transaction():
                upsert_contact("dropped", clock())
                raise ValueError("this part only")
        with write_transaction():
            upsert_contact("also kept", clock())
    with pytest.raises(ValueError):
        with write_transaction():
            with write_transaction():
                upsert_contact("inner of a failed outer", clock())
            raise ValueError("the whole transaction")

    from storage.models import Contact

    assert sorted(c.key for c in Contact.select()) == ["also kept", "kept"]
    assert not sqlite_db.connection().in_transaction
