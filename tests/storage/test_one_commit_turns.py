"""Turns stored in one commit, and the compare-and-set that keeps them right: a contact's first message
(the save creates the contact and its session), and a turn whose action only reads (ActionSpec.reads_only:
run without storing its result or claiming the conversation first). A turn computed from a state that
moved on meanwhile is never saved: it runs again on the new state."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest

from channels import flowcache, turns
from engine.registry import ActionRegistry, Result
from storage import flowstore, inbox, outbox, sessions
from storage.db import database, is_postgres
from storage.models import ActionResult, Contact, InboxMessage, Session
from storage_kit import Clock, context, counter_setup, message, two_asks

LOOKUP = """\
flow: lookup
title: Lookup
triggers: [look]
steps:
  ask_word:
    ask: "word?"
    save: word
    next: look
  look:
    action: test.look
    with: {word: "{{ word }}"}
    save: seen
    next: ask_word_again
  ask_word_again:
    ask: "saw {{ seen }}; word?"
    save: word
    next: look
"""


def lookup_flows(handler, clock):
    """The lookup flow on a fresh registry whose `test.look` (reads only) is `handler`: (flows, ctx)."""
    registry = ActionRegistry()
    registry.action(
        "test.look",
        params={"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
        reads_only=True,
    )(handler)
    flowstore.store("lookup", LOOKUP, "flows/lookup.yaml", clock())
    return flowcache.load_flowset(registry), context(registry, clock)


def lookup_setup(handler):
    """lookup_flows, and contact c1 at its first question."""
    flows, ctx = lookup_flows(handler, Clock())
    turns.handle_message(message("c1", "look"), flows, ctx)
    return flows, ctx


def texts(contact_key: str) -> list[str]:
    contact = Contact.get(Contact.key == contact_key)
    return [p["text"] for p in outbox.for_contact(contact.id)]


def aside(handle) -> None:
    """Run handle() to the end on another thread (another worker), now."""
    errors: list[Exception] = []

    def run() -> None:
        try:
            handle()
        except Exception as error:  # reported here: an assertion in a thread would be lost
            errors.append(error)

    other = threading.Thread(target=run)
    other.start()
    other.join(timeout=60)
    assert errors == []


class FirstReadClock(Clock):
    """A clock that, read for the first time after then(handle), first lets handle run aside: the turn
    reading it is between reading the state and saving it."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list = []

    def then(self, handle) -> None:
        self.pending.append(handle)

    def __call__(self):
        if self.pending:
            aside(self.pending.pop())
        return super().__call__()


def traced() -> list[str]:
    """The SQL this thread's SQLite connection runs from now on (nothing on PostgreSQL)."""
    statements: list[str] = []
    if not is_postgres():
        database.connection().set_trace_callback(statements.append)
    return statements


def untraced() -> None:
    if not is_postgres():
        database.connection().set_trace_callback(None)


def test_a_new_contacts_first_message_is_stored_in_one_commit(db):
    flows, ctx = lookup_flows(lambda actx, params: Result("ok", params["word"]), Clock())
    statements = traced()

    result = turns.handle_message(message("c7", "look", message_id="wamid.first"), flows, ctx)

    untraced()
    assert [o.text for o in result.outbound] == ["word?"]
    assert texts("c7") == ["word?"]
    assert sessions.get_state("c7")["step"] == "ask_word"
    assert Session.get().claimed_by is None
    assert InboxMessage.get(InboxMessage.channel_message_id == "wamid.first").processed_at is not None
    if not is_postgres():
        # Before: the contact and its claimed session in one commit, then the save in another.
        assert commits(statements) == 1, statements


def test_two_first_messages_of_a_new_contact_at_once_are_each_answered_on_the_state_before_them(db):
    # Both turns read "no contact yet"; the other one saves first (creating the contact and its session),
    # so ours finds a session where it expected none, and runs again on the state the other one left.
    clock = FirstReadClock()
    flows, ctx = lookup_flows(lambda actx, params: Result("ok", params["word"].upper()), clock)
    clock.then(lambda: turns.handle_message(message("c8", "look"), flows, ctx, worker_id="other"))

    result = turns.handle_message(message("c8", "look"), flows, ctx)

    assert [o.text for o in result.outbound] == ["saw LOOK; word?"]
    assert texts("c8") == ["word?", "saw LOOK; word?"]
    assert Contact.select().where(Contact.key == "c8").count() == 1
    assert Session.select().count() == 1 and Session.get().claimed_by is None


def test_a_turn_with_a_read_only_action_commits_once_and_stores_no_result(db):
    calls: list[str] = []
    flows, ctx = lookup_setup(lambda actx, params: calls.append(params["word"]) or Result("ok", params["word"].upper()))
    statements = traced()

    result = turns.handle_message(message("c1", "zebra"), flows, ctx)

    assert [o.text for o in result.outbound] == ["saw ZEBRA; word?"]
    assert calls == ["zebra"]
    assert ActionResult.select().count() == 0  # nothing to return on a redo: a read is simply run again
    assert Session.get().claimed_by is None
    untraced()
    if not is_postgres():
        # Before: the claim's commit, the stored result's commit, then the save's.
        assert commits(statements) == 1, statements


def commits(statements: list[str]) -> int:
    """How many transactions wrote: each COMMIT, and each write run on its own (SQLite's autocommit)."""
    count, open_ = 0, False
    for sql in statements:
        word = sql.split()[0].upper()
        if word == "BEGIN":
            open_ = True
        elif word == "COMMIT":
            count, open_ = count + 1, False
        elif word in ("INSERT", "UPDATE", "DELETE") and not open_:
            count += 1
    return count


@pytest.mark.slow
def test_a_read_only_action_on_a_state_that_moved_on_meanwhile_is_run_again_on_the_new_state(db):
    # The read runs on the state as peeked; meanwhile another message for the contact is handled to the end
    # (it could not be if the read had claimed the conversation). Our save then finds the state moved on,
    # and the turn runs again on the new state, reading again.
    calls: list[str] = []
    meanwhile: list = []

    def look(actx, params):
        calls.append(params["word"])
        if meanwhile:
            aside(meanwhile.pop())
        return Result("ok", params["word"].upper())

    flows, ctx = lookup_setup(look)
    done: list = []
    meanwhile.append(lambda: done.append(turns.handle_message(message("c1", "first"), flows, ctx, wait=5)))

    result = turns.handle_message(message("c1", "second"), flows, ctx)

    assert [o.text for o in done[0].outbound] == ["saw FIRST; word?"]
    assert [o.text for o in result.outbound] == ["saw SECOND; word?"]
    assert calls == ["second", "first", "second"]  # ours, the other message's, ours again on the new state
    state = sessions.get_state("c1")
    assert (state["step"], state["vars"]["word"], state["vars"]["seen"]) == ("ask_word_again", "second", "SECOND")
    assert Session.get().claimed_by is None


def test_the_optimistic_turns_context_is_the_callers_with_only_its_action_runner_swapped():
    # channels/optimistic.py copies the frozen TurnContext field for field instead of dataclasses.replace:
    # the same object as replace would make, for as long as TurnContext has no __post_init__ to run.
    from dataclasses import fields, replace

    from channels.optimistic import _with_invoke
    from engine.context import TurnContext

    def invoke(spec, params, actx):
        return None

    ctx = TurnContext(registry=ActionRegistry(), clock=Clock(), max_steps=7, services={"k": "v"})
    copy = _with_invoke(ctx, invoke)
    assert copy == replace(ctx, invoke=invoke) and copy.invoke is invoke and ctx.invoke is not invoke
    assert [getattr(copy, f.name) for f in fields(ctx) if f.name != "invoke"] == [
        getattr(ctx, f.name) for f in fields(ctx) if f.name != "invoke"
    ]
    assert not hasattr(TurnContext, "__post_init__")


def test_a_turn_that_goes_on_with_a_conversation_leaves_its_stored_start_as_it_was(db):
    flows, ctx = lookup_setup(lambda actx, params: Result("ok", params["word"].upper()))
    # A start stored in another form than this code writes (ISO's "T"): only a turn that changes it rewrites it.
    stored = "2026-01-05T09:14:03" if not is_postgres() else datetime(2026, 1, 5, 9, 14, 3)
    database.execute_sql('UPDATE "session" SET "started_at" = %s' % ("?" if not is_postgres() else "%s"), (stored,))

    result = turns.handle_message(message("c1", "zebra"), flows, ctx)

    assert [o.text for o in result.outbound] == ["saw ZEBRA; word?"]
    state = sessions.get_state("c1")
    assert state["step"] == "ask_word_again" and state["started_at"] == datetime(2026, 1, 5, 9, 14, 3)
    raw = database.execute_sql('SELECT "started_at", "updated_at" FROM "session"').fetchone()
    assert raw[0] == stored  # the text as it was, not written again in this code's form
    assert raw[1] is not None and raw[1] != stored


def test_a_turn_that_ends_a_conversation_leaves_its_stored_start_flow_and_version_as_they_were(db):
    clock = Clock()
    flowstore.store("pair", two_asks("pair"), "flows/pair.yaml", clock())
    flows, ctx = flowcache.load_flowset(ActionRegistry()), context(ActionRegistry(), clock)
    for text in ("go", "x"):
        turns.handle_message(message("c1", text), flows, ctx)
    # A start stored in another form than this code writes (ISO's "T"): the ending turn changes the status
    # only, so it leaves the start's text alone, as a turn that goes on with the conversation does.
    stored = "2026-01-05T09:14:03" if not is_postgres() else datetime(2026, 1, 5, 9, 14, 3)
    database.execute_sql('UPDATE "session" SET "started_at" = %s' % ("?" if not is_postgres() else "%s"), (stored,))

    result = turns.handle_message(message("c1", "y"), flows, ctx)

    assert [o.text for o in result.outbound] == ["got x and y"]
    state = sessions.get_state("c1")
    assert (state["flow"], state["flow_version"], state["status"]) == ("pair", 1, "ended")
    assert state["started_at"] == datetime(2026, 1, 5, 9, 14, 3)
    assert database.execute_sql('SELECT "started_at" FROM "session"').fetchone()[0] == stored


def test_a_turn_that_starts_a_conversation_again_stores_its_new_start(db):
    clock = Clock()
    flowstore.store("pair", two_asks("pair"), "flows/pair.yaml", clock())
    flows, ctx = flowcache.load_flowset(ActionRegistry()), context(ActionRegistry(), clock)
    for text in ("go", "x", "y"):
        turns.handle_message(message("c1", text), flows, ctx)
    first = sessions.get_state("c1")
    clock.advance(seconds=90)

    turns.handle_message(message("c1", "go"), flows, ctx)

    state = sessions.get_state("c1")
    assert (state["flow"], state["flow_version"], state["step"], state["status"]) == ("pair", 1, "one", "active")
    assert "a" not in state["vars"]
    assert state["started_at"] == first["started_at"] + timedelta(seconds=90)


def test_peek_says_whether_the_message_was_handled_and_gives_nothing_while_a_claim_holds_the_session(db):
    clock = Clock()
    flowstore.store("pair", two_asks("pair"), "flows/pair.yaml", clock())
    flows, ctx = flowcache.load_flowset(ActionRegistry()), context(ActionRegistry(), clock)
    assert sessions.peek("c1", "m1", "t") is None  # no contact, no session yet
    turns.handle_message(message("c1", "go", message_id="m1"), flows, ctx)

    claim, handled = sessions.peek("c1", "m1", "t")
    assert handled is True and claim.state["step"] == "one" and claim.read_as is not None
    claim, handled = sessions.peek("c1", "m2", "t")
    assert handled is False and claim.state["step"] == "one"
    contact_id = Contact.get(Contact.key == "c1").id
    inbox.add(contact_id, "m3", {"text": "x"}, clock(), clock())  # stored by a webhook, not handled yet
    assert sessions.peek("c1", "m3", "t")[1] is False

    held = sessions.try_claim_by_key("c1", "other", clock())
    assert held is not None
    assert sessions.peek("c1", "m1", "t") == (None, False)
    assert sessions.peek("c1", "m2", "t") == (None, False)


def test_a_read_without_a_token_saves_only_onto_the_unclaimed_state_it_read(db):
    # handle_message peeks without a token (one is made only when its turn claims): its save is the
    # compare-and-set alone, refused once another worker holds the session or saved over it.
    clock = Clock()
    flowstore.store("pair", two_asks("pair"), "flows/pair.yaml", clock())
    flows, ctx = flowcache.load_flowset(ActionRegistry()), context(ActionRegistry(), clock)
    turns.handle_message(message("c1", "go"), flows, ctx)

    read, _ = sessions.peek("c1", "m2", None)
    held = sessions.try_claim_by_key("c1", "other", clock())
    with pytest.raises(sessions.ClaimLost):
        sessions.save_and_release(read, {**read.state, "step": "two"})
    sessions.save_and_release(held, held.state)
    with pytest.raises(sessions.ClaimLost):  # released, but saved over: the revision moved on
        sessions.save_and_release(read, {**read.state, "step": "two"})

    read, _ = sessions.peek("c1", "m2", None)
    sessions.save_and_release(read, {**read.state, "step": "two"})
    assert sessions.get_state("c1")["step"] == "two" and Session.get().claimed_by is None


def test_a_turn_read_without_a_token_claims_with_one_before_an_action_that_writes(db):
    calls: list[str] = []
    clock, flows, ctx = counter_setup(calls)
    turns.handle_message(message("c1", "count"), flows, ctx, worker_id="w1")
    turns.handle_message(message("c1", "again"), flows, ctx, worker_id="w1")

    assert texts("c1") == ["n=1", "n=2"]
    assert len(calls) == 2 and Session.get().claimed_by is None


def test_a_turn_that_names_the_person_records_the_name_and_one_naming_nobody_keeps_it(db):
    # A message naming nobody peeks at last_seen_at alone; one with a profile name compares the stored one.
    clock = Clock()
    flowstore.store("pair", two_asks("pair"), "flows/pair.yaml", clock())
    flows, ctx = flowcache.load_flowset(ActionRegistry()), context(ActionRegistry(), clock)
    turns.handle_message(message("c1", "go"), flows, ctx)
    clock.advance(seconds=5)
    turns.handle_message(message("c1", "a"), flows, ctx, profile_name="Tendai")
    assert Contact.get(Contact.key == "c1").profile_name == "Tendai"

    clock.advance(seconds=5)
    turns.handle_message(message("c1", "b"), flows, ctx)
    contact = Contact.get(Contact.key == "c1")
    assert contact.profile_name == "Tendai" and sessions.get_state("c1")["status"] != "active"
    clock.advance(minutes=2)
    turns.handle_message(message("c1", "go"), flows, ctx)
    assert Contact.get(Contact.key == "c1").last_seen_at == clock()


class Ticking(Clock):
    """A clock that moves a second on every reading: which reading a stored time came from shows."""

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def stored_times() -> tuple[datetime, datetime, datetime]:
    """(the session's updated_at, the last inbox row's processed_at, the last outbox row's created_at)."""
    from storage.db import stored_time
    from storage.models import OutboxMessage

    row = InboxMessage.select().order_by(InboxMessage.id.desc()).get()
    reply = OutboxMessage.select().order_by(OutboxMessage.id.desc()).get()
    return (
        stored_time(Session.get().updated_at),
        stored_time(row.processed_at),
        stored_time(reply.created_at),
    )


def test_a_turn_that_calls_no_action_is_saved_at_its_own_time_and_one_after_an_action_at_the_save(db):
    clock = Ticking()
    flows, ctx = lookup_flows(lambda actx, params: clock.advance(seconds=30) or Result("ok", "seen"), clock)
    turns.handle_message(message("c1", "look"), flows, ctx)  # no action: asks for a word

    updated, processed, created = stored_times()
    assert processed == created == updated  # one reading of the clock, the turn's

    turns.handle_message(message("c1", "zebra"), flows, ctx)  # the action moves the clock on 30 s

    updated, processed, created = stored_times()
    assert processed == created
    assert processed >= updated + timedelta(seconds=30)  # read again after the action, not the turn's start


@pytest.mark.parametrize("at", [datetime(2026, 1, 5, 9, 14, 3, 120_500), datetime(2026, 1, 5, 9, 14, 3)])
def test_a_turns_start_and_save_times_are_stored_as_the_adapter_writes_them_and_no_expiry_as_null(db, at):
    # The save binds the text the turn made of its time once (not a datetime through sqlite3's adapter): the
    # same text, with and without a fraction; and an expiry the turn does not set is a NULL in the statement.
    clock = Clock(at)
    flowstore.store("pair", two_asks("pair"), "flows/pair.yaml", clock())
    flows, ctx = flowcache.load_flowset(ActionRegistry()), context(ActionRegistry(), clock)

    for text, step in (("go", "one"), ("x", "two")):
        clock.advance(seconds=61)
        turns.handle_message(message("c1", text), flows, ctx)
        raw = database.execute_sql('SELECT "started_at", "updated_at", "expires_at", "step" FROM "session"').fetchone()
        if is_postgres():
            assert raw == (at + timedelta(seconds=61), clock(), None, step)
        else:
            assert raw == ((at + timedelta(seconds=61)).isoformat(" "), clock().isoformat(" "), None, step)
    state = sessions.get_state("c1")
    assert (state["started_at"], state["updated_at"]) == (at + timedelta(seconds=61), clock())
