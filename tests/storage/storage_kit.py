"""Helpers for the persisted-turn tests: a counting flow on its own action registry, a movable clock."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from itertools import count
from typing import Callable

from engine.context import TurnContext, utcnow
from engine.messages import Inbound
from engine.registry import ActionRegistry, Result
from storage import flowstore, inbox, outbox
from storage.contacts import upsert_contact
from clock import START, Clock  # noqa: F401  (re-exported for the tests that use this kit)


def two_asks(name: str) -> str:
    """A flow `name` (trigger `go`) that asks two questions and ends showing both answers."""
    return f"""\
flow: {name}
title: {name.capitalize()}
triggers: [go]
steps:
  one:
    ask: "one?"
    save: a
    next: two
  two:
    ask: "two?"
    save: b
    next: three
  three:
    end: "got {{{{ a }}}} and {{{{ b }}}}"
"""


def stored_state(**changes: object) -> dict:
    """A session's state as storage keeps it (sessions._STATE_COLUMNS, times as datetimes, vars decoded): an
    active conversation of flow `pay`, version 3, at step `ask`; `changes` replace fields."""
    return {
        "flow": "pay",
        "flow_version": 3,
        "step": "ask",
        "vars": {"a": [1, "b"]},
        "attempts": 2,
        "status": "active",
        "started_at": datetime(2026, 1, 5, 9, 14, 3),
        "updated_at": datetime(2026, 1, 5, 9, 14, 3, 120000),
        "expires_at": datetime(2026, 1, 5, 9, 24, 3),
    } | changes


def texts(contact: str) -> list[str]:
    """The texts of the replies queued for contact, in order."""
    return [p["text"] for p in outbox.for_contact(upsert_contact(contact, utcnow()))]


def in_threads(count: int, work: Callable[[int], None], db) -> list[Exception]:
    """work(0) … work(count - 1), each in its own thread (which closes its connection to db when done),
    joined; the errors they raised."""
    errors: list[Exception] = []

    def run(w: int) -> None:
        try:
            work(w)
        except Exception as error:
            errors.append(error)
        finally:
            db.close()

    threads = [threading.Thread(target=run, args=(w,)) for w in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return errors


def commits_during(db, run) -> list[str]:
    """The transactions `run()` commits on this thread's connection (a write outside BEGIN … COMMIT is one)."""
    commits: list[str] = []
    connection = db.connection()

    def trace(sql: str) -> None:
        words = sql.lstrip().split(None, 1)
        verb = words[0].upper() if words else ""
        if verb == "COMMIT" or (verb in ("INSERT", "UPDATE", "DELETE", "WITH") and not connection.in_transaction):
            commits.append(sql)

    connection.set_trace_callback(trace)
    try:
        run()
    finally:
        connection.set_trace_callback(None)
    return commits


COUNTER = """\
flow: counter
title: Counter
triggers: [count]
expire:
  after: 10m
  say: "Timed out at {{ n }}."
steps:
  first:
    action: test.increment
    with: {n: "0"}
    save: n
    next: wait
  wait:
    ask: "n={{ n }}"
    save: answer
    next: bump
  bump:
    action: test.increment
    with: {n: "{{ n }}"}
    save: n
    next: wait
"""


def counter_registry(calls: list | None = None) -> ActionRegistry:
    """A registry with `test.increment` (n -> n + 1); every real call is appended to `calls`."""
    registry = ActionRegistry()

    @registry.action(
        "test.increment",
        params={"type": "object", "properties": {"n": {"type": "string"}}, "required": ["n"]},
        outcomes=["ok"],
    )
    def increment(ctx, params):
        if calls is not None:
            calls.append(ctx.idempotency_key)
        return Result("ok", int(params["n"]) + 1)

    return registry


def store_counter(clock, source: str = COUNTER) -> None:
    flowstore.store("counter", source, "flows/counter.yaml", clock())


_ids = count(1)


def message(contact: str, text: str, at: datetime | None = None, message_id: str | None = None) -> Inbound:
    return Inbound(contact=contact, message_id=message_id or f"wamid.{next(_ids)}", text=text, timestamp=at)


def context(registry: ActionRegistry, clock) -> TurnContext:
    return TurnContext(registry=registry, clock=clock)


def counter_setup(calls: list | None = None, clock: Clock | None = None):
    """The counter flow stored and loaded on a fresh registry, with a hand-moved clock: (clock, flows, ctx)."""
    from channels import flowcache

    clock = clock or Clock()
    registry = counter_registry(calls)
    store_counter(clock)
    return clock, flowcache.load_flowset(registry), context(registry, clock)


def say(contact: str, text: str) -> str:
    """A live customer's message through the turn path every channel uses (with the shipped actions, on the
    database opened last); returns the replies' texts, one per line.
    """
    import uuid

    import actions
    from channels import flowcache, turns
    from engine.registry import registry

    actions.load_all()
    result = turns.handle_message(
        message(contact, text, message_id=uuid.uuid4().hex),
        flowcache.load_flowset(registry),
        TurnContext(registry=registry),
    )
    return "\n".join(m.text for m in result.outbound)


def turns_failing(monkeypatch, when: Callable[[Inbound], bool], text: str) -> None:
    """The inbox workers' turns raise ValueError(text) for the messages `when` picks (a bug in those turns);
    the others run as usual."""
    from channels import inbox_turns

    real = inbox_turns.run_turn

    def run_turn(flows, conversation, inbound, ctx):
        if when(inbound):
            raise ValueError(text)
        return real(flows, conversation, inbound, ctx)

    monkeypatch.setattr(inbox_turns, "run_turn", run_turn)


def queue(contact: str, *texts_in: str, clock) -> list[Inbound]:
    """The messages stored in the inbox as the webhook stores them, a second apart."""
    from channels import turn_save

    contact_id = upsert_contact(contact, clock())
    out = []
    for i, text in enumerate(texts_in):
        msg = message(contact, text, at=clock() + timedelta(seconds=i))
        inbox.add(contact_id, msg.message_id, turn_save.inbound_payload(msg), msg.timestamp, clock())
        out.append(msg)
    return out
