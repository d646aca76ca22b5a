"""A message handled as it arrives (`flows chat`, handle_message) answering an `expect: otp` step is stored
with the code taken out, in the transaction that saves the turn; other answers are stored as typed."""

from __future__ import annotations

import json

from channels import flowcache, turns
from storage import sessions
from storage.models import InboxMessage
from storage_kit import COUNTER, Clock, context, counter_registry, message, store_counter

CODE_FLOW = COUNTER.replace(
    '    ask: "n={{ n }}"\n    save: answer', '    ask: "code?"\n    expect: otp\n    save: answer'
)


def test_an_answer_to_an_otp_step_is_redacted_and_others_are_not(db):
    clock = Clock()
    registry = counter_registry()
    store_counter(clock, CODE_FLOW)
    flows, ctx = flowcache.load_flowset(registry), context(registry, clock)

    first = turns.handle_message(message("c1", "count", message_id="wamid.start"), flows, ctx)
    code = turns.handle_message(message("c1", " 5813 2046 ", message_id="wamid.code"), flows, ctx)

    assert not first.secret_answer and code.secret_answer
    stored = {r.channel_message_id: json.loads(r.payload) for r in InboxMessage.select()}
    assert stored["wamid.start"]["text"] == "count" and "redacted" not in stored["wamid.start"]
    assert (stored["wamid.code"]["text"], stored["wamid.code"]["redacted"]) == ("[one-time code removed]", True)
    # The flow saved the code as `answer` and went on without replacing it: gone from the conversation too.
    assert sessions.get_state("c1")["vars"]["answer"] == "[one-time code removed]"
