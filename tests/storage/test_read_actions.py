"""Actions that only read (ActionSpec.reads_only): a persisted turn runs them without storing their result
or claiming the conversation first, so such a turn is one commit; the save's compare-and-set still keeps
a turn computed from a state that moved on from being saved."""

from __future__ import annotations

import threading

import pytest

from channels import flowcache, turns
from engine.registry import ActionRegistry, Result
from storage import flowstore, sessions
from storage.db import database, is_postgres
from storage.models import ActionResult, Session
from storage_kit import Clock, context, message

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


def lookup_setup(handler):
    """The lookup flow on a fresh registry whose `test.look` (reads only) is `handler`, and contact c1 at
    its first question: (flows, ctx)."""
    clock = Clock()
    registry = ActionRegistry()
    registry.action(
        "test.look",
        params={"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
        reads_only=True,
    )(handler)
    flowstore.store("lookup", LOOKUP, "flows/lookup.yaml", clock())
    flows = flowcache.load_flowset(registry)
    ctx = context(registry, clock)
    turns.handle_message(message("c1", "look"), flows, ctx)
    return flows, ctx


def test_a_turn_with_a_read_only_action_commits_once_and_stores_no_result(db):
    calls: list[str] = []
    flows, ctx = lookup_setup(lambda actx, params: calls.append(params["word"]) or Result("ok", params["word"].upper()))
    statements: list[str] = []
    if not is_postgres():
        database.connection().set_trace_callback(statements.append)

    result = turns.handle_message(message("c1", "zebra"), flows, ctx)

    assert [o.text for o in result.outbound] == ["saw ZEBRA; word?"]
    assert calls == ["zebra"]
    assert ActionResult.select().count() == 0  # nothing to return on a redo: a read is simply run again
    assert Session.get().claimed_by is None
    if not is_postgres():
        database.connection().set_trace_callback(None)
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
            other = threading.Thread(target=meanwhile.pop())
            other.start()
            other.join(timeout=60)
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
