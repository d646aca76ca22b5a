"""SQLite: the usual deliveries that queue for the writer lock are written together, in one transaction, by
whichever gets the lock first (channels.whatsapp.JoinedWrites); each still answers only once its own
message is committed, and a joint write that fails leaves each to write its own, so an error stays with
the delivery that caused it."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest

from channels import whatsapp
from channels.payloads import parse_webhook
from channels.whatsapp import joined, store_webhook
from storage import inbox
from storage.models import InboxMessage

import whatsapp_fakes as wa
from whatsapp_fakes import held_by_another_thread

NOW = datetime(2026, 1, 1, 12, 0)


def delivery(text: str, mid: str):
    return parse_webhook(
        wa.body_of(wa.envelope([wa.text("263771234567", text, mid=mid)], [wa.contact("263771234567")]))
    )


def queued_behind_the_lock(sqlite_db, mids: list[str]) -> dict[str, object]:
    """Store one delivery per message id from its own thread while another thread holds the writer lock,
    release it once all of them wait for it; each thread's answer (or error) by message id."""
    answers: dict[str, object] = {}

    def post(mid: str) -> None:
        try:
            answers[mid] = store_webhook(delivery(f"text {mid}", mid), NOW, wait=10)
        except Exception as e:
            answers[mid] = e

    threads = [threading.Thread(target=post, args=(mid,)) for mid in mids]
    with held_by_another_thread(sqlite_db.writer):
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(joined()._waiting) < len(mids) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(joined()._waiting) == len(mids)  # all queued: the first to get the lock writes them all
    for t in threads:
        t.join(10)
    return answers


def stored_ids() -> set[str]:
    return {m.channel_message_id for m in InboxMessage.select(InboxMessage.channel_message_id)}


def test_deliveries_queued_for_the_lock_are_stored_in_one_transaction_and_each_answered(sqlite_db, monkeypatch):
    assert store_webhook(delivery("hi", "wamid.first"), NOW) == (1, 0)  # the contact is known from here on
    transactions = []
    real = whatsapp.write_transaction

    def counted():
        transactions.append(1)
        return real()

    monkeypatch.setattr(whatsapp, "write_transaction", counted)
    answers = queued_behind_the_lock(sqlite_db, [f"wamid.q{n}" for n in range(5)])
    assert answers == {f"wamid.q{n}": (1, 0) for n in range(5)}
    assert stored_ids() == {"wamid.first", *(f"wamid.q{n}" for n in range(5))}
    assert len(transactions) == 1  # one commit for the five


def test_a_joint_write_that_fails_leaves_each_delivery_to_write_its_own(sqlite_db, monkeypatch):
    assert store_webhook(delivery("hi", "wamid.first"), NOW) == (1, 0)
    real = inbox.add_for_known_contact

    def poisoned(*known):
        if known[3] == "wamid.bad":
            raise ValueError("this one cannot be stored")
        return real(*known)

    monkeypatch.setattr(whatsapp.inbox, "add_for_known_contact", poisoned)
    answers = queued_behind_the_lock(sqlite_db, ["wamid.a", "wamid.bad", "wamid.b"])
    assert answers["wamid.a"] == answers["wamid.b"] == (1, 0)
    assert isinstance(answers["wamid.bad"], ValueError)  # the webhook keeps it as a dead letter (store_apart)
    assert stored_ids() == {"wamid.first", "wamid.a", "wamid.b"}


def test_a_delivery_that_gives_up_waiting_is_not_written_for_it_later(sqlite_db):
    assert store_webhook(delivery("hi", "wamid.first"), NOW) == (1, 0)
    with held_by_another_thread(sqlite_db.writer):
        with pytest.raises(whatsapp.StoreBusy):
            store_webhook(delivery("late", "wamid.late"), NOW, wait=0.1)
    assert store_webhook(delivery("next", "wamid.next"), NOW) == (1, 0)
    assert stored_ids() == {"wamid.first", "wamid.next"}  # Meta delivers the 503'd one again


def test_a_delivery_that_gives_up_behind_another_waiting_one_is_not_written_for_it_later(sqlite_db):
    # Only one queued delivery waits for the writer lock; one queued behind it that runs out of time first
    # answers 503 and leaves the queue, so the one that gets the lock does not write it.
    assert store_webhook(delivery("hi", "wamid.first"), NOW) == (1, 0)
    answers: dict[str, object] = {}

    def post(mid: str, wait: float) -> None:
        try:
            answers[mid] = store_webhook(delivery(f"text {mid}", mid), NOW, wait=wait)
        except Exception as e:
            answers[mid] = e

    patient = threading.Thread(target=post, args=("wamid.patient", 10))
    with held_by_another_thread(sqlite_db.writer):
        patient.start()
        deadline = time.monotonic() + 10
        while not joined()._waiting and time.monotonic() < deadline:
            time.sleep(0.01)
        post("wamid.hasty", 0.1)
        assert isinstance(answers["wamid.hasty"], whatsapp.StoreBusy)
    patient.join(10)
    assert answers["wamid.patient"] == (1, 0)
    assert stored_ids() == {"wamid.first", "wamid.patient"}  # Meta delivers the 503'd one again
