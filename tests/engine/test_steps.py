"""Every step kind has cases: a table of (flow, messages sent) -> replies and final status, plus the
details of `action` and `ask` steps.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.messages import ACTIVE, ENDED
from engine.model import FlowSet
from engine.registry import ActionRegistry, Result
from engine.steps import kinds

from flowkit import Chat, codes, flow, step, texts

SORRY = "Sorry, something went wrong on our side. Send *menu* to start again."


def registry_with_echo() -> ActionRegistry:
    reg = ActionRegistry()

    @reg.action("test.echo", params={"type": "object", "properties": {"x": {"type": "string"}}}, outcomes=["ok"])
    def echo(ctx, params):
        return Result("ok", params)

    return reg


CASES = {
    "say": (
        [step("hi", "say", text="Hi {{ contact[-4:] }}!", next="bye"), step("bye", "end", text="Bye")],
        ["go"],
        ["Hi 4567!", "Bye"],
        ENDED,
    ),
    "ask": (
        [step("q", "ask", text="Name?", save="name", next="e"), step("e", "end", text="Hello {{ name }}")],
        ["go", "  Tino  "],
        ["Hello Tino"],
        ENDED,
    ),
    "action": (
        [
            step("a", "action", action="test.echo", params={"x": "{{ contact }}"}, save="r", on={"ok": "e"}),
            step("e", "end", text="{{ r.x }}"),
        ],
        ["go"],
        ["263771234567"],
        ENDED,
    ),
    "flow": (
        [step("a", "ask", text="Name?", save="name", next="h"), step("h", "flow", target_flow="other")],
        ["go", "Rudo"],
        ["Other flow sees Rudo"],
        ENDED,
    ),
    "end": (
        [step("e", "end")],
        ["go"],
        [],
        ENDED,
    ),
    "branch": (
        [
            step("q", "ask", text="Age?", expect="integer", save="age", next="b"),
            step("b", "branch", next=[("age >= 18", "adult"), (None, "child")]),
            step("adult", "end", text="adult"),
            step("child", "end", text="child"),
        ],
        ["go", "17"],
        ["child"],
        ENDED,
    ),
}


def test_every_step_kind_has_a_runner_and_cases():
    assert all(callable(kind.run) for kind in kinds)
    assert set(CASES) == set(kinds.names())


@pytest.mark.parametrize("kind", sorted(CASES))
def test_step_kind(kind):
    steps, messages, last_replies, status = CASES[kind]
    other = flow("other", step("o", "end", text="Other flow sees {{ name }}"))
    chat = Chat(FlowSet.of([flow("f", *steps, triggers=("go",)), other]), registry=registry_with_echo())
    for message in messages:
        result = chat.send(message)
    assert texts(result) == last_replies
    assert result.conversation.status == status
    assert result.events == []


# ── ask with options ────────────────────────────────────────────────────────────────────────────────


def test_options_become_a_list_with_a_button_label_and_answer_by_number_or_reply_id():
    ask = step(
        "pick",
        "ask",
        text="Which tour?",
        options={"t1": "Victoria Falls", "t2": "Hwange"},
        list_button="Tours",
        save="tour",
        next="e",
    )
    f = flow("f", ask, step("e", "end", text="You picked {{ tour }}"), triggers=("go",))
    chat = Chat(FlowSet.of([f]))
    result = chat.send("go")
    assert result.outbound[0].list_button == "Tours"
    assert [(o.id, o.title) for o in result.outbound[0].options] == [("t1", "Victoria Falls"), ("t2", "Hwange")]
    assert chat.say("victoria falls") == ["You picked t1"]
    chat.say("go")
    assert chat.say("Hwange", kind="list", reply_id="t2") == ["You picked t2"]
    chat.say("go")
    assert chat.say("9") == ["Please choose one of the options, or send its number."]


def test_choice_titles_may_be_templates():
    ask = step(
        "pick", "ask", text="Pay?", buttons={"yes": "Pay {{ contact[:3] }}", "no": "No"}, save="answer", next="e"
    )
    chat = Chat(FlowSet.of([flow("g", ask, step("e", "end", text="{{ answer }}"), triggers=("go",))]))
    result = chat.send("go")
    assert [b.title for b in result.outbound[0].buttons] == ["Pay 263", "No"]
    assert chat.say("1") == ["yes"]


# ── action details ─────────────────────────────────────────────────────────────────────────────────


def action_chat(handler, params=None, schema=None, outcomes=("ok",), templates=None, on=None, next="done", **kw):
    reg = ActionRegistry()
    reg.action("t.act", params=schema, outcomes=list(outcomes), templates=templates)(handler)
    steps = [
        step("act", "action", action="t.act", params=params or {}, save="r", on=on or {}, next=next),
        step("done", "end", text="done {{ r }}"),
    ]
    return Chat(FlowSet.of([flow("f", *steps, triggers=("go",), **kw)]), registry=reg)


def test_only_template_params_are_rendered_and_the_rest_pass_as_written():
    seen = []
    chat = action_chat(
        lambda ctx, p: (seen.append(p), Result("ok"))[1],
        params={"who": "{{ contact }}", "raw": "{{ contact }}", "nested": {"a": ["{{ 1 + 1 }}"]}, "n": 3},
        schema={"type": "object", "properties": {"who": {}, "raw": {}, "nested": {}, "n": {}}},
        templates=["who", "nested"],
    )
    chat.say("go")
    assert seen == [{"who": "263771234567", "raw": "{{ contact }}", "nested": {"a": ["2"]}, "n": 3}]


def test_params_that_break_the_schema_end_politely_and_the_action_is_not_called():
    seen = []
    schema = {
        "type": "object",
        "properties": {"amount": {"type": "string", "pattern": "^[0-9.]+$"}},
        "required": ["amount"],
    }
    chat = action_chat(
        lambda ctx, p: (seen.append(p), Result("ok"))[1], params={"amount": "{{ contact }}x"}, schema=schema
    )
    result = chat.send("go")
    assert texts(result) == [SORRY] and codes(result) == ["action.params"]
    assert "amount" in result.events[0].message
    assert seen == []


def test_an_action_that_raises_ends_politely_without_a_traceback():
    def boom(ctx, params):
        raise RuntimeError("database is down")

    result = action_chat(boom).send("go")
    assert texts(result) == [SORRY]
    assert codes(result) == ["action.error"]
    assert "database is down" in result.events[0].message
    assert "Traceback" not in " ".join(texts(result))
    assert [(a.name, a.outcome) for a in result.actions] == [("t.act", "error")]


def test_an_outcome_the_action_did_not_declare_ends_politely():
    result = action_chat(lambda ctx, p: Result("surprise")).send("go")
    assert codes(result) == ["action.bad_outcome"]


def test_an_outcome_the_step_does_not_route_ends_politely():
    chat = action_chat(lambda ctx, p: Result("odd"), outcomes=("ok", "odd"), on={"ok": "done"}, next=None)
    result = chat.send("go")
    assert texts(result) == [SORRY] and codes(result) == ["action.unhandled_outcome"]


def test_outcome_routes_win_over_next():
    reg = ActionRegistry()
    reg.action("t.act", outcomes=["ok", "odd"])(lambda ctx, p: Result("odd"))
    f = flow(
        "f",
        step("act", "action", action="t.act", on={"odd": "odd"}, next="done"),
        step("odd", "end", text="odd"),
        step("done", "end", text="done"),
        triggers=("go",),
    )
    assert Chat(FlowSet.of([f]), registry=reg).say("go") == ["odd"]


def test_an_unknown_action_ends_politely():
    f = flow("f", step("act", "action", action="nope.nothing", next="e"), step("e", "end"), triggers=("go",))
    result = Chat(FlowSet.of([f])).send("go")
    assert texts(result) == [SORRY] and codes(result) == ["action.unknown"]


def test_decimal_and_tuple_data_are_saved_as_json():
    chat = action_chat(lambda ctx, p: Result("ok", {"amount": Decimal("50.00"), "ids": (1, 2)}))
    result = chat.send("go")
    assert result.conversation.vars["r"] == {"amount": "50.00", "ids": [1, 2]}


def test_data_that_is_not_json_ends_politely():
    result = action_chat(lambda ctx, p: Result("ok", object())).send("go")
    assert codes(result) == ["action.data"]


def test_the_action_context_carries_the_turns_services():
    seen = {}

    def handler(ctx, params):
        seen.update(
            key=ctx.idempotency_key,
            contact=ctx.contact,
            now=ctx.clock(),
            id=ctx.new_id(),
            services=dict(ctx.services),
            vars=dict(ctx.vars),
        )
        return Result("ok")

    chat = action_chat(handler)
    chat.services = {"settings": "S"}
    chat.say("go")
    assert seen == {
        "key": "263771234567:wamid.1:act:1",
        "contact": "263771234567",
        "now": chat.clock.now,
        "id": "id-1",
        "services": {"settings": "S"},
        "vars": {"contact": "263771234567"},
    }


def test_the_same_step_called_twice_in_a_turn_gets_distinct_keys():
    keys = []
    reg = ActionRegistry()

    @reg.action("t.count", outcomes=["ok"])
    def count(ctx, params):
        keys.append(ctx.idempotency_key)
        return Result("ok", len(keys))

    f = flow(
        "f",
        step("act", "action", action="t.count", save="n", next=[("n < 3", "act"), (None, "e")]),
        step("e", "end", text="{{ n }}"),
        triggers=("go",),
    )
    assert Chat(FlowSet.of([f]), registry=reg).say("go") == ["3"]
    assert keys == ["263771234567:wamid.1:act:1", "263771234567:wamid.1:act:2", "263771234567:wamid.1:act:3"]


def test_write_only_params_are_kept_out_of_the_recorded_call():
    seen = []
    schema = {"type": "object", "properties": {"otp": {"type": "string", "writeOnly": True}, "ref": {"type": "string"}}}
    chat = action_chat(
        lambda ctx, p: (seen.append(p), Result("ok"))[1], params={"otp": "123456", "ref": "R1"}, schema=schema
    )
    result = chat.send("go")
    assert seen == [{"otp": "123456", "ref": "R1"}]
    assert result.actions[0].params == {"otp": "***", "ref": "R1"}


# ── ask while closing ───────────────────────────────────────────────────────────────────────────────


def test_a_cancel_step_that_asks_does_not_wait():
    f = flow(
        "f",
        step("q", "ask", text="Name?", next="e"),
        step("e", "end"),
        step("oops", "ask", text="Sure?", next="e"),
        triggers=("go",),
        cancel_step="oops",
    )
    chat = Chat(FlowSet.of([f]))
    chat.say("go")
    result = chat.send("cancel")
    assert texts(result) == ["Okay, I have stopped here. Send *menu* to see what I can do."]
    assert result.conversation.status == ENDED
    assert codes(result) == ["ask.while_closing"]


def test_an_ask_step_waits_with_attempts_reset():
    f = flow(
        "f",
        step("q", "ask", text="Age?", expect="integer", next="q2"),
        step("q2", "ask", text="Again?", expect="integer", next="e"),
        step("e", "end"),
        triggers=("go",),
    )
    chat = Chat(FlowSet.of([f]))
    chat.say("go")
    chat.say("x")
    assert chat.conversation.attempts == 1
    assert chat.say("5") == ["Again?"]
    assert (chat.conversation.step, chat.conversation.attempts, chat.conversation.status) == ("q2", 0, ACTIVE)


def test_a_write_only_param_that_breaks_the_schema_is_not_quoted_in_the_event():
    schema = {"type": "object", "properties": {"otp": {"type": "string", "pattern": "^[0-9]{4,8}$", "writeOnly": True}}}
    chat = action_chat(lambda ctx, p: Result("ok"), params={"otp": "{{ contact }}x"}, schema=schema)
    result = chat.send("go")
    assert codes(result) == ["action.params"]
    assert "263771234567x" not in result.events[0].message and "***" in result.events[0].message


def test_a_kind_or_a_check_registered_twice_is_refused_at_import():
    from engine.inputs import InputChecks, checks
    from engine.steps import StepKinds

    fresh_kinds, fresh_checks = StepKinds(), InputChecks()
    fresh_kinds.register(kinds.get("say"))
    fresh_checks.register(checks.get("date"))
    with pytest.raises(ValueError, match="step kind 'say' is registered twice"):
        fresh_kinds.register(kinds.get("say"))
    with pytest.raises(ValueError, match="input check 'date' is registered twice"):
        fresh_checks.register(checks.get("date"))


def test_every_layer_asks_the_kind():
    """The kind's own module holds its shape, its load and how it runs: the flow schema, the loader and the
    runner read them from the registry."""
    from engine.flow_schema import schema

    for kind in kinds:
        assert schema()["$defs"][kind.name] == kind.schema
        assert kind.waits == (kind.name == "ask")
