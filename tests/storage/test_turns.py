"""The persisted turn path on both databases: state, outbox, inbox, claims, versions, expiry, concurrency."""

from __future__ import annotations

import json
import threading
import traceback
from datetime import timedelta
from decimal import Decimal

import peewee
import pytest

from channels import action_results, expiry, flowcache, inbox_turns, turn_save, turns
from engine.context import TurnContext, utcnow
from engine.messages import ACTIVE, EXPIRED
from engine.registry import ActionRegistry
from storage import flowstore, inbox, outbox, payments, sessions
from storage.bookings import add_booking, find_booking
from storage.contacts import upsert_contact
from storage.db import is_postgres, write_transaction
from storage.models import Contact, InboxMessage, OutboxMessage, Session
from storage_kit import (
    COUNTER,
    Clock,
    commits_during,
    context,
    counter_registry,
    counter_setup,
    in_threads,
    message,
    store_counter,
    queue,
    texts,
    turns_failing,
    two_asks,
)


def test_a_conversation_is_saved_between_turns_and_its_replies_queued_in_order(db):
    clock = Clock()
    registry = counter_registry()
    store_counter(clock)
    flows = flowcache.load_flowset(registry)
    ctx = context(registry, clock)

    turns.handle_message(message("263771111111", "count"), flows, ctx, profile_name="Tendai")
    result = turns.handle_message(message("263771111111", "again"), flows, ctx)

    assert [o.text for o in result.outbound] == ["n=2"]
    state = sessions.get_state("263771111111")
    assert (state["flow"], state["flow_version"], state["step"], state["status"]) == ("counter", 1, "wait", ACTIVE)
    assert state["vars"]["n"] == 2
    assert texts("263771111111") == ["n=1", "n=2"]
    assert InboxMessage.select().where(InboxMessage.processed_at.is_null()).count() == 0
    assert Session.get().claimed_by is None


def test_a_redelivered_message_changes_nothing(db):
    calls: list[str] = []
    clock, flows, ctx = counter_setup(calls)
    turns.handle_message(message("c1", "count"), flows, ctx)
    again = message("c1", "hello", message_id="wamid.same")
    turns.handle_message(again, flows, ctx)
    second = turns.handle_message(again, flows, ctx)

    assert second.outbound == []
    assert texts("c1") == ["n=1", "n=2"]
    assert sessions.get_state("c1")["vars"]["n"] == 2
    assert len(calls) == 2


def test_running_conversations_stay_on_their_version_and_new_ones_get_the_latest(db):
    clock = Clock()
    registry = counter_registry()
    store_counter(clock)
    ctx = context(registry, clock)
    turns.handle_message(message("old", "count"), flowcache.load_flowset(registry), ctx)

    assert (
        flowstore.store("counter", COUNTER.replace("n={{ n }}", "now {{ n }}"), "flows/counter.yaml", clock()).status
        == flowstore.UPDATED
    )
    flows = flowcache.load_flowset(registry)
    assert sorted(flows.versions["counter"]) == [1, 2]

    turns.handle_message(message("old", "more"), flows, ctx)
    turns.handle_message(message("new", "count"), flows, ctx)
    assert texts("old") == ["n=1", "n=2"]
    assert texts("new") == ["now 1"]
    assert flowstore.active_by_version() == {("counter", 1): 1, ("counter", 2): 1}


def test_an_idle_conversation_expires_through_the_claim_and_gets_its_expiry_message(db):
    clock, flows, ctx = counter_setup()
    turns.handle_message(message("idle", "count"), flows, ctx)
    turns.handle_message(message("busy", "count"), flows, ctx)

    clock.advance(minutes=5)
    turns.handle_message(message("busy", "still here"), flows, ctx)
    assert expiry.expire_due(ctx, flows) == 0
    clock.advance(minutes=6)
    assert expiry.expire_due(ctx, flows) == 1

    assert sessions.get_state("idle")["status"] == EXPIRED
    assert texts("idle") == ["n=1", "Timed out at 1."]
    assert sessions.get_state("busy")["status"] == ACTIVE
    assert expiry.expire_due(ctx, flows) == 0


def test_workers_take_each_contacts_messages_in_timestamp_order(db):
    clock, flows, ctx = counter_setup()
    now = clock()
    # Arrived in reverse order: the channel's timestamps decide.
    for contact, texts_in in (("a", ["count", "x", "y"]), ("b", ["count", "z"])):
        contact_id = upsert_contact(contact, now)
        for i, text in reversed(list(enumerate(texts_in))):
            msg = message(contact, text, at=now + timedelta(seconds=i))
            inbox.add(contact_id, msg.message_id, turn_save.inbound_payload(msg), msg.timestamp, now)

    assert inbox_turns.process_inbox(ctx, flows, limit=100, worker_id="w1") == 5
    assert inbox_turns.process_inbox(ctx, flows, limit=100, worker_id="w1") == 0
    assert texts("a") == ["n=1", "n=2", "n=3"]
    assert texts("b") == ["n=1", "n=2"]
    assert inbox.backlog() == 0


def test_a_crash_between_claim_and_save_leaves_the_message_for_later_and_never_acts_twice(db, monkeypatch):
    calls: list[str] = []
    clock, flows, ctx = counter_setup(calls)
    turns.handle_message(message("c1", "count"), flows, ctx)
    (msg,) = queue("c1", "next", clock=clock)

    def die(*args, **kwargs):
        raise RuntimeError("worker died")

    monkeypatch.setattr(sessions, "save_and_release", die)
    with pytest.raises(RuntimeError, match="worker died"):
        inbox_turns.process_inbox(ctx, flows, worker_id="w1")
    monkeypatch.undo()

    row = InboxMessage.get(InboxMessage.channel_message_id == msg.message_id)
    assert row.processed_at is None and "worker died" in row.error
    claim = Session.get()
    assert claim.claimed_by.startswith("w1:") and claim.claimed_until > clock()
    assert len(calls) == 2  # the action ran before the crash; its result is stored

    clock.advance(seconds=60)
    assert inbox_turns.process_inbox(ctx, flows, worker_id="w2") == 0  # the lease still holds
    clock.advance(seconds=sessions.LEASE.total_seconds())
    assert inbox_turns.process_inbox(ctx, flows, worker_id="w2") == 1
    assert texts("c1") == ["n=1", "n=2"]
    assert len(calls) == 2  # the second run used the stored result
    assert InboxMessage.get_by_id(row.id).processed_at is not None


def test_a_message_whose_turn_always_fails_is_set_aside_with_an_apology_and_the_next_one_is_handled(db, monkeypatch):
    clock, flows, ctx = counter_setup()
    turns.handle_message(message("c1", "count"), flows, ctx)
    broken, later = queue("c1", "broken", "later", clock=clock)

    turns_failing(monkeypatch, lambda inbound: inbound.text == "broken", "a bug in a turn")
    for attempt in range(1, inbox_turns.MAX_TURN_ATTEMPTS):
        with pytest.raises(ValueError):
            inbox_turns.process_inbox(ctx, flows, limit=1, worker_id="w1")
        assert InboxMessage.get(InboxMessage.channel_message_id == broken.message_id).attempts == attempt
        clock.advance(seconds=sessions.LEASE.total_seconds() + 1)
    assert inbox_turns.process_inbox(ctx, flows, limit=1, worker_id="w1") == 1  # the last try gives up

    row = InboxMessage.get(InboxMessage.channel_message_id == broken.message_id)
    assert row.processed_at is not None and row.error.startswith("gave up after 3 attempts")
    assert texts("c1") == ["n=1", inbox_turns.GAVE_UP_REPLY]
    assert inbox_turns.process_inbox(ctx, flows, limit=1, worker_id="w1") == 1  # not held up: the next message runs
    assert texts("c1") == ["n=1", inbox_turns.GAVE_UP_REPLY, "n=2"]


CODE_FLOW = """\
flow: code
triggers: [code]
steps:
  ask_code:
    ask: Type the code we sent you.
    expect: otp
    save: code
    next: done
  done:
    end: Thanks.
"""


def test_a_one_time_code_whose_turn_always_fails_is_set_aside_without_the_code(db, monkeypatch):
    clock = Clock()
    registry = counter_registry()
    flowstore.store("code", CODE_FLOW, "flows/code.yaml", clock())
    flows, ctx = flowcache.load_flowset(registry), context(registry, clock)
    turns.handle_message(message("c1", "code"), flows, ctx)
    code = message("c1", "482913", at=clock())
    inbox.add(upsert_contact("c1", clock()), code.message_id, turn_save.inbound_payload(code), code.timestamp, clock())

    def fails_quoting_the_code(flows, conversation, inbound, ctx):
        raise ValueError(f"could not check {inbound.text}")

    monkeypatch.setattr(inbox_turns, "run_turn", fails_quoting_the_code)
    for _ in range(1, inbox_turns.MAX_TURN_ATTEMPTS):
        with pytest.raises(inbox_turns.SecretAnswerError) as raised:  # what the worker's log line shows
            inbox_turns.process_inbox(ctx, flows, limit=1, worker_id="w1")
        logged = "".join(traceback.format_exception(raised.value))
        assert "ValueError" in logged and "fails_quoting_the_code" in logged and "482913" not in logged
        row = InboxMessage.get(InboxMessage.channel_message_id == code.message_id)
        assert row.error == "ValueError" and "482913" in row.payload  # kept for the next try, never in the error
        clock.advance(seconds=sessions.LEASE.total_seconds() + 1)
    assert inbox_turns.process_inbox(ctx, flows, limit=1, worker_id="w1") == 1

    row = InboxMessage.get(InboxMessage.channel_message_id == code.message_id)
    assert row.processed_at is not None and row.error.startswith("gave up after 3 attempts")
    assert "482913" not in row.payload and json.loads(row.payload)["redacted"] is True
    assert texts("c1")[-1] == inbox_turns.GAVE_UP_REPLY


def test_a_stale_worker_whose_claim_was_taken_over_cannot_overwrite_newer_state(db):
    clock, flows, ctx = counter_setup()
    turns.handle_message(message("c1", "count"), flows, ctx)
    contact_id = upsert_contact("c1", clock())
    stale = sessions.try_claim(contact_id, "slow-worker", clock())
    clock.advance(seconds=sessions.LEASE.total_seconds() + 1)
    turns.handle_message(message("c1", "meanwhile"), flows, ctx)

    with pytest.raises(sessions.ClaimLost):
        with write_transaction():
            sessions.save_and_release(stale, {**stale.state, "step": "first"})
    assert sessions.get_state("c1")["vars"]["n"] == 2


@pytest.mark.slow
def test_eight_threads_sending_to_one_contact_lose_no_update(db):
    registry = counter_registry()
    store_counter(utcnow)
    flows = flowcache.load_flowset(registry)
    ctx = TurnContext(registry=registry)
    turns.handle_message(message("263770000001", "count"), flows, ctx)
    threads, per_thread = 8, 200

    def send(t: int) -> None:
        for i in range(per_thread):
            turns.handle_message(message("263770000001", f"t{t}-{i}"), flows, ctx, worker_id=f"t{t}")

    assert in_threads(threads, send, db) == []  # errors raised in a thread are reported here
    total = 1 + threads * per_thread
    assert sessions.get_state("263770000001")["vars"]["n"] == total
    assert sorted(texts("263770000001"), key=lambda t: int(t[2:])) == [f"n={i}" for i in range(1, total + 1)]
    assert InboxMessage.select().where(InboxMessage.processed_at.is_null()).count() == 0


@pytest.mark.slow
def test_two_contacts_paying_the_same_booking_at_once_end_with_the_exact_sum(db):
    add_booking("BK-SHARED", "Tendai", "Falls", "1000.00", now=utcnow())
    booking = find_booking("bk-shared")
    amounts = {"263771111111": [Decimal("1.01")] * 40, "263772222222": [Decimal("2.50")] * 40}
    errors = []

    def pay(msisdn: str) -> None:
        try:
            for i, amount in enumerate(amounts[msisdn]):
                reference = f"{msisdn}-{i}"
                payments.create(
                    booking,
                    reference=reference,
                    idempotency_key=f"key-{reference}",
                    msisdn=msisdn,
                    amount=amount,
                    wallet="ecocash",
                    channel="WEB",
                    contact_key=msisdn,
                    now=utcnow(),
                )
                payments.record_success(reference, now=utcnow())
        except Exception as error:
            errors.append(error)
        finally:
            db.close()

    workers = [threading.Thread(target=pay, args=(m,)) for m in amounts]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert errors == []
    after = find_booking("BK-SHARED")
    assert after.paid_minor == 40 * 101 + 40 * 250
    assert after.payment_status == "PARTIAL"


def test_outbox_offers_one_contacts_messages_one_at_a_time_in_order(db):
    now = utcnow()
    lease = now + timedelta(seconds=120)
    a, b = upsert_contact("a", now), upsert_contact("b", now)
    outbox.enqueue(a, [{"to": "a", "text": "1"}, {"to": "a", "text": "2"}], now)
    outbox.enqueue(b, [{"to": "b", "text": "3"}], now)
    first = outbox.claim(now, lease, 50)
    assert [json.loads(r.payload)["text"] for r in first] == ["1", "3"]
    assert outbox.claim(now, lease, 50) == []  # leased: not offered again while it is being sent
    outbox.record_sent([(first[0].id, "wamid.1")], now)
    assert [json.loads(r.payload)["text"] for r in outbox.claim(now, lease, 50)] == ["2"]
    outbox.retry_later(first[1].id, now + timedelta(seconds=30), "429")
    assert outbox.claim(now + timedelta(seconds=31), lease, 50)[0].id == first[1].id
    assert outbox.record_deliveries([("wamid.1", "read", None), ("wamid.1", "delivered", None)], now) == []
    assert OutboxMessage.get_by_id(first[0].id).delivery_status == "read"
    assert json.loads(OutboxMessage.get_by_id(first[1].id).payload)["text"] == "3"


@pytest.mark.slow
def test_concurrent_workers_handle_every_message_once_and_each_contact_in_order(db):
    registry = counter_registry()
    store_counter(utcnow)
    flows = flowcache.load_flowset(registry)
    ctx = TurnContext(registry=registry)
    start = utcnow()
    contacts = [f"26377{i:07d}" for i in range(12)]
    per_contact = 8
    for contact in contacts:
        contact_id = upsert_contact(contact, start)
        for i in range(per_contact):
            msg = message(contact, "count" if i == 0 else f"answer {i}", at=start + timedelta(seconds=i))
            inbox.add(contact_id, msg.message_id, turn_save.inbound_payload(msg), msg.timestamp, start)
    handled = []

    def work(w: int) -> None:
        for _ in range(200):  # bounded: stops once the inbox is empty
            n = inbox_turns.process_inbox(ctx, flows, limit=5, worker_id=f"w{w}")
            handled.append(n)
            if n == 0 and inbox.backlog() == 0:
                break

    assert in_threads(4, work, db) == []
    assert sum(handled) == len(contacts) * per_contact
    for contact in contacts:
        assert texts(contact) == [f"n={i}" for i in range(1, per_contact + 1)]
        assert sessions.get_state(contact)["vars"]["answer"] == f"answer {per_contact - 1}"
        rows = InboxMessage.select().join(Contact).where(Contact.key == contact).order_by(InboxMessage.sent_at)
        processed = [r.processed_at for r in rows]
        assert None not in processed and processed == sorted(processed)


def test_a_stop_mid_turn_gives_the_claim_back_at_once(db, monkeypatch):
    clock, flows, ctx = counter_setup()
    turns.handle_message(message("c1", "count"), flows, ctx)

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(turns, "run_turn", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        turns.handle_message(message("c1", "interrupted"), flows, ctx)
    monkeypatch.undo()

    assert Session.get().claimed_by is None
    turns.handle_message(message("c1", "again"), flows, ctx, wait=0)
    assert texts("c1") == ["n=1", "n=2"]


def test_a_stop_in_an_action_gives_back_the_claim_the_turn_took_for_it(db):
    class StopOnCall(list):  # the action's record of its calls, raising Ctrl-C once armed
        armed = False

        def append(self, key):
            if self.armed:
                raise KeyboardInterrupt
            super().append(key)

    calls = StopOnCall()
    clock, flows, ctx = counter_setup(calls)
    turns.handle_message(message("c1", "count"), flows, ctx)

    calls.armed = True  # the answer's turn reaches test.increment, so it claims the session first
    with pytest.raises(KeyboardInterrupt):
        turns.handle_message(message("c1", "interrupted"), flows, ctx)
    calls.armed = False

    assert Session.get().claimed_by is None
    turns.handle_message(message("c1", "again"), flows, ctx, wait=0)
    assert texts("c1") == ["n=1", "n=2"]


def test_a_database_locked_past_its_wait_during_an_action_stops_the_turn_unsaved_and_it_runs_again(db, monkeypatch):
    """SQLite: another program holds the writer lock past the turn's wait while the turn's action runs, so
    the action's result cannot be stored. That is the database's outage, not the action's failure: the turn
    stops with the database's error and nothing is saved (no apology, the message not marked handled); the
    claim the action took is given back as soon as the database answers, as the workers do (the test
    below), so the message delivered again runs its turn at once, not after the lease, its action called
    with the same idempotency key (an action that acts outside answers the second call from its first:
    actions/payment.py)."""
    if is_postgres(db):
        pytest.skip("SQLite's writer lock, held by another connection")
    import sqlite3

    from storage.db import limit_wait

    other = sqlite3.connect(db.database, isolation_level=None)

    class LockOnCall(list):  # the action's record of its calls; once armed, another connection takes the lock
        armed = False

        def append(self, key):
            super().append(key)
            if self.armed:
                other.execute("BEGIN IMMEDIATE")

    calls = LockOnCall()
    clock, flows, ctx = counter_setup(calls)
    turns.handle_message(message("c1", "count"), flows, ctx)
    answer = message("c1", "next")
    real = action_results.execute

    def then_unlocked(*args):  # the lock goes as soon as the result's store gave up: the save could go on
        try:
            return real(*args)
        finally:
            if other.in_transaction:
                other.execute("ROLLBACK")

    monkeypatch.setattr(action_results, "execute", then_unlocked)
    calls.armed = True
    limit_wait(0.05)
    try:
        with pytest.raises(peewee.OperationalError, match="locked"):
            turns.handle_message(answer, flows, ctx)
    finally:
        limit_wait(None)
        calls.armed = False
        other.close()
    monkeypatch.undo()

    assert texts("c1") == ["n=1"]  # no apology queued
    assert not InboxMessage.select().where(InboxMessage.channel_message_id == answer.message_id).exists()
    assert Session.get().claimed_by is None  # given back, not held for the lease
    turns.handle_message(answer, flows, ctx, wait=0)  # same clock: no lease to wait out
    assert texts("c1") == ["n=1", "n=2"]
    assert calls[-1] == calls[-2]  # the same idempotency key both times


def test_a_contact_held_by_a_live_claim_makes_a_waiting_turn_give_up_with_contact_busy(db):
    clock, flows, ctx = counter_setup()
    turns.handle_message(message("c1", "count"), flows, ctx)
    assert sessions.try_claim(upsert_contact("c1", clock()), "other-worker", clock()) is not None

    with pytest.raises(sessions.ContactBusy):
        turns.handle_message(message("c1", "blocked"), flows, ctx, wait=0)
    assert texts("c1") == ["n=1"]


def test_stored_flows_that_no_longer_load_are_refused_with_their_problems(db):
    clock = Clock()
    store_counter(clock)
    with pytest.raises(flowcache.FlowsNotLoaded, match="flow 'counter' version 1 no longer loads: .*test.increment"):
        flowcache.load_flowset(ActionRegistry())


@pytest.mark.parametrize("where", ["save", "pick that reads the message", "action's stored result"])
def test_a_turn_cut_short_by_a_database_outage_gives_its_claim_back_and_runs_again_at_once(db, monkeypatch, where):
    """PostgreSQL ends the worker's session (a restart): after its claim committed, between the turn and its
    save; as it picks, the statement that claims the contact and hands over the message (the read after
    the claim it replaced is cut in the next test); or in the turn's action, as it looks for the action's
    stored result (the outage is the database's, not the action's: no apology, nothing saved). A claim is
    given back as soon as the database answers, so the message runs again at once, not after the lease, and
    the outage is not counted against it."""
    if not is_postgres(db):
        pytest.skip("ends a PostgreSQL session")

    clock, flows, ctx = counter_setup()
    turns.handle_message(message("c1", "count"), flows, ctx)
    (msg,) = queue("c1", "next", clock=clock)
    module, name = {
        "save": (sessions, "save_and_release"),
        "pick that reads the message": (sessions, "claim_next"),
        "action's stored result": (action_results, "execute"),
    }[where]
    real = getattr(module, name)

    def restart_then(*args, **kwargs):
        _restart(db)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, restart_then)
    db.idle_check = 3600  # the connection was just used: the next statement meets the dead connection
    with pytest.raises(peewee.OperationalError):
        inbox_turns.process_inbox(ctx, flows, worker_id="w1")
    monkeypatch.undo()

    assert Session.get().claimed_by is None  # given back, not held for the lease
    row = InboxMessage.get(InboxMessage.channel_message_id == msg.message_id)
    assert row.processed_at is None and row.attempts == 0
    assert inbox_turns.process_inbox(ctx, flows, worker_id="w2") == 1  # same clock: no lease to wait out
    assert texts("c1") == ["n=1", "n=2"]


def _restart(db) -> None:
    """End the test's PostgreSQL session from another one, as a server restart would."""
    import psycopg2

    pid = db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
    other = psycopg2.connect(db.url)
    other.autocommit = True
    other.cursor().execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
    other.close()


def test_an_outage_before_the_read_after_the_claim_gives_the_claim_back_and_loses_nothing(db, monkeypatch):
    """The pick could not hand its row over (another pick held the contact's older row locked), so the
    worker reads the contact's oldest message after its claim committed; PostgreSQL ends the session
    before that read. The claim is given back at once, neither message is lost or counted, and both run
    once, the older first."""
    if not is_postgres(db):
        pytest.skip("ends a PostgreSQL session")
    import psycopg2

    clock, flows, ctx = counter_setup()
    turns.handle_message(message("c1", "count"), flows, ctx)
    older, newer = queue("c1", "next", "later", clock=clock)
    locker = psycopg2.connect(db.url)  # another worker's pick, holding the older row
    locker.cursor().execute(
        'SELECT 1 FROM "inbox_message" WHERE "channel_message_id" = %s FOR UPDATE', (older.message_id,)
    )
    real = inbox.oldest_pending_with_key

    def restart_then(*args, **kwargs):
        locker.rollback()
        _restart(db)
        return real(*args, **kwargs)

    monkeypatch.setattr(inbox, "oldest_pending_with_key", restart_then)
    db.idle_check = 3600
    try:
        with pytest.raises(peewee.OperationalError):
            inbox_turns.process_inbox(ctx, flows, worker_id="w1")
    finally:
        locker.close()
    monkeypatch.undo()

    assert Session.get().claimed_by is None
    rows = InboxMessage.select().where(InboxMessage.channel_message_id.in_([older.message_id, newer.message_id]))
    assert [(r.processed_at, r.attempts) for r in rows] == [(None, 0), (None, 0)]
    assert inbox_turns.process_inbox(ctx, flows, worker_id="w2") == 2
    assert texts("c1") == ["n=1", "n=2", "n=3"]
    handled = InboxMessage.select().where(InboxMessage.processed_at.is_null(False)).order_by(InboxMessage.id)
    assert [r.channel_message_id for r in handled][-2:] == [older.message_id, newer.message_id]


STEPS = two_asks("steps")


class MeanwhileClock(Clock):
    """A frozen clock that, the first time the turn under test reads it after arm(), lets another message
    for the same contact be handled to the end on another thread first: that turn runs while ours is
    between reading the state and saving it."""

    def __init__(self) -> None:
        super().__init__()
        self.meanwhile = None

    def arm(self, handle) -> None:
        self.meanwhile = handle

    def __call__(self):
        handle, self.meanwhile = self.meanwhile, None
        if handle is not None:
            errors: list[Exception] = []
            other = threading.Thread(target=lambda: _capture(handle, errors))
            other.start()
            other.join(timeout=60)
            assert errors == []
        return super().__call__()


def _capture(handle, errors: list) -> None:
    try:
        handle()
    except Exception as error:  # reported by the caller: an assertion in a thread would be lost
        errors.append(error)
    finally:
        from storage.db import database

        database.obj.close()


def steps_setup(first: str, clock: Clock | None = None):
    """The steps flow stored and loaded, contact c1 having sent `first`: (clock, flows, ctx)."""
    clock = clock or MeanwhileClock()
    registry = ActionRegistry()
    flowstore.store("steps", STEPS, "flows/steps.yaml", clock())
    flows = flowcache.load_flowset(registry)
    ctx = context(registry, clock)
    turns.handle_message(message("c1", first), flows, ctx)
    return clock, flows, ctx


def test_a_turn_whose_state_changed_while_it_ran_is_run_again_on_the_new_state(db):
    # A turn without an action runs on the state as read and saves in one commit only if that state is
    # unchanged; here another message moves the conversation on meanwhile, so ours must not overwrite it.
    clock, flows, ctx = steps_setup("go")

    clock.arm(lambda: turns.handle_message(message("c1", "first"), flows, ctx, worker_id="other"))
    result = turns.handle_message(message("c1", "second"), flows, ctx)

    assert [o.text for o in result.outbound] == ["got first and second"]
    assert texts("c1") == ["one?", "two?", "got first and second"]
    assert sessions.get_state("c1")["vars"] == {"contact": "c1", "a": "first", "b": "second"}
    assert Session.get().claimed_by is None


def test_an_action_never_runs_on_a_state_that_moved_on_since_the_turn_read_it(db):
    calls: list[str] = []
    clock = MeanwhileClock()
    registry = counter_registry(calls)
    store_counter(clock)
    flows = flowcache.load_flowset(registry)
    ctx = context(registry, clock)
    turns.handle_message(message("c1", "count"), flows, ctx)

    clock.arm(lambda: turns.handle_message(message("c1", "meanwhile"), flows, ctx, worker_id="other"))
    result = turns.handle_message(message("c1", "mine"), flows, ctx)

    assert [o.text for o in result.outbound] == ["n=3"]
    assert texts("c1") == ["n=1", "n=2", "n=3"]
    assert sessions.get_state("c1")["vars"]["n"] == 3
    assert len(calls) == 3  # one increment per message, each on the state its message found
    assert Session.get().claimed_by is None


def test_a_message_handled_meanwhile_by_another_worker_is_answered_once(db):
    # The same delivery handled twice at once, on a turn that leaves the state as it was: only the
    # message's inbox row tells the second save that the first already answered it.
    clock, flows, ctx = steps_setup("hello")
    before = texts("c1")

    twice = message("c1", "hello again")
    clock.arm(lambda: turns.handle_message(twice, flows, ctx, worker_id="other"))
    result = turns.handle_message(twice, flows, ctx)

    assert result.outbound == []
    assert len(texts("c1")) == len(before) + 1
    assert InboxMessage.select().where(InboxMessage.channel_message_id == twice.message_id).count() == 1


def test_metrics_count_the_outbox_by_status_from_its_partial_indexes(db):
    from channels.metrics import database_gauges

    now = utcnow()
    a, b = upsert_contact("a", now), upsert_contact("b", now)
    outbox.enqueue(a, [{"to": "a", "text": "1"}, {"to": "a", "text": "2"}], now)
    outbox.enqueue(b, [{"to": "b", "text": "3"}, {"to": "b", "text": "4"}], now)
    sent, failed = outbox.claim(now, now + timedelta(seconds=120), 50)
    outbox.record_sent([(sent.id, "wamid.1")], now)
    outbox.mark_failed(failed.id, "refused")
    counts = next(v for (name, _), v in database_gauges().items() if name == "convoflow_outbox_messages")
    assert counts == {(("status", "sent"),): 1, (("status", "failed"),): 1, (("status", "pending"),): 2}
    outbox.record_sent([(r.id, f"wamid.{r.id}") for r in outbox.claim(now, now + timedelta(seconds=120), 50)], now)
    counts = next(v for (name, _), v in database_gauges().items() if name == "convoflow_outbox_messages")
    assert counts == {(("status", "sent"),): 3, (("status", "failed"),): 1}


# ── the inbox workers' optimistic turn (channels/inbox_turns.py, channels/optimistic.py): one commit for an
# uncontended turn without an action, and the compare-and-set that keeps racing workers from answering a
# message twice, saving over a state that moved on, or running an action on it.


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


def another_worker(flows, ctx, limit: int = 1):
    return lambda: inbox_turns.process_inbox(ctx, flows, limit=limit, worker_id="other", in_hand=inbox_turns.InHand())


def test_a_worker_turn_without_an_action_commits_once_on_sqlite(db):
    if is_postgres(db):
        pytest.skip("counts SQLite transactions")
    clock, flows, ctx = steps_setup("go", LaterClock())
    queue("c1", "first", clock=clock)
    handled: list[int] = []

    commits = commits_during(db, lambda: handled.append(inbox_turns.process_inbox(ctx, flows, worker_id="w1")))

    assert handled == [1]
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
