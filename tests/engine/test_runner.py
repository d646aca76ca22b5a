"""The turn runner as a user sees it: what they send, what they get back, where the conversation stands."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from engine.messages import ACTIVE, ENDED, EXPIRED, Conversation, Inbound
from engine.model import FlowSet
from engine.runner import expire, run_turn, start

from flowkit import Chat, codes, flow, make_registry, payment_flows, step, texts

SORRY = "Sorry, something went wrong on our side. Send *menu* to start again."


@pytest.fixture
def calls():
    return []


@pytest.fixture
def chat(calls):
    return Chat(payment_flows(), registry=make_registry(calls))


# ── starting ───────────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("typed", ["pay", "PAY", "  Pay!! ", "make   payment", "Make payment.", "¿pay?"])
def test_a_trigger_matches_the_whole_message_in_any_case_and_punctuation(chat, typed):
    result = chat.send(typed)
    assert texts(result) == ["Your booking reference?"]
    assert result.conversation.status == ACTIVE
    assert result.conversation.step == "ask_reference"
    assert result.conversation.vars == {"contact": "263771234567"}


@pytest.mark.parametrize("typed", ["pay now", "I want to pay", "payment", "pa-y"])
def test_a_trigger_inside_a_longer_message_does_not_start_the_flow(chat, typed):
    result = chat.send(typed)
    assert texts(result) == [FlowSet.default_reply]
    assert result.conversation is None


def test_emoji_in_a_trigger_are_kept(chat):
    assert chat.say("Hello 👋!") == ["Hello! What would you like to do?"]
    other = Chat(chat.flows, registry=chat.registry)
    assert other.say("hello") == [FlowSet.default_reply]


def test_nobody_is_left_unanswered_and_an_ended_conversation_is_kept(chat):
    chat.say("pay")
    chat.say("nope")  # not found: the flow ends
    ended = chat.conversation
    assert ended.status == ENDED
    result = chat.send("what?")
    assert texts(result) == [FlowSet.default_reply]
    assert result.conversation == ended


def test_an_image_with_no_conversation_gets_the_default_reply(chat):
    assert chat.say(None, kind="other") == [FlowSet.default_reply]


def test_the_menu_word_starts_the_menu_flow(chat):
    result = chat.send("Menu")
    assert texts(result) == ["Hello! What would you like to do?"]
    assert [b.title for b in result.outbound[0].buttons] == ["Make a payment"]


def test_a_custom_default_reply(calls):
    flows = FlowSet.of(list(payment_flows().versions["payment"].values()), default_reply="Send pay to pay.")
    assert Chat(flows).say("hello") == ["Send pay to pay."]


# ── a whole conversation ───────────────────────────────────────────────────────────────────────────


def test_the_payment_conversation_from_trigger_to_end(chat, calls):
    assert chat.say("pay") == ["Your booking reference?"]
    assert chat.say("bk-1") == ["Balance due: $300.00. How much?"]
    assert chat.say("1,250") == ["Please send an amount between $0.01 and $300.00."]
    assert chat.conversation.attempts == 1
    result = chat.send("$150.5")
    assert texts(result) == ["Choose how you will pay."]
    assert [(b.id, b.title) for b in result.outbound[0].buttons] == [
        ("ecocash", "Ecocash"),
        ("onemoney", "OneMoney"),
        ("zimswitch", "ZimSwitch"),
    ]
    assert chat.conversation.attempts == 0
    result = chat.send("OneMoney", kind="button", reply_id="onemoney")
    assert texts(result) == ["Paying $150.50 by onemoney: a big one."]
    assert result.conversation.status == ENDED
    assert result.conversation.vars["amount"] == "150.50"
    assert result.conversation.vars["booking"] == {"reference": "BK-1", "balance_due": "300.00"}
    assert calls == [("lookup", {"reference": "bk-1"}, "263771234567:wamid.2:find:1")]
    assert [(a.step, a.name, a.outcome) for a in chat.results[1].actions] == [("find", "booking.lookup", "found")]


def test_an_amount_too_long_for_a_decimal_is_re_asked_not_a_crash(chat):
    """A 30-digit answer made Decimal's quantize raise inside the turn (no re-prompt, no reply)."""
    chat.say("pay"), chat.say("bk-1")
    assert chat.say("9" * 30) == ["That amount is too large. Please send an amount like 50 or 50.00."]
    assert chat.conversation.attempts == 1
    assert chat.say("150") == ["Choose how you will pay."]


@pytest.mark.parametrize(
    "typed, channel",
    [
        ("2", "onemoney"),
        ("zimswitch", "zimswitch"),
        ("ECOCASH", "ecocash"),
        (" onemoney! ", "onemoney"),
        ("3", "zimswitch"),
    ],
)
def test_a_button_answer_may_be_typed_as_its_title_id_or_number(chat, typed, channel):
    chat.say("pay"), chat.say("BK-1"), chat.say("20")
    assert chat.say(typed) == [f"Paying $20.00 by {channel}."]


def test_a_wrong_choice_re_sends_the_buttons(chat):
    chat.say("pay"), chat.say("BK-1"), chat.say("20")
    result = chat.send("visa")
    assert texts(result) == ["Please tap one of the buttons, or send its number."]
    assert [b.id for b in result.outbound[0].buttons] == ["ecocash", "onemoney", "zimswitch"]
    stale = chat.send("Old", kind="button", reply_id="not-here")
    assert texts(stale) == ["Please tap one of the buttons, or send its number."]


def test_what_the_user_types_is_never_run_as_a_template(chat):
    chat.say("pay")
    assert chat.say("{{ 7*7 }}") == ["I could not find {{ 7*7 }}."]


def test_another_flows_trigger_inside_a_question_is_an_answer(chat, calls):
    chat.say("pay")
    assert chat.say("hi") == ["I could not find hi."]


def test_the_input_conversation_is_not_changed(chat):
    chat.say("pay")
    before = chat.conversation
    frozen_vars = dict(before.vars)
    chat.say("BK-1")
    assert before.vars == frozen_vars and before.step == "ask_reference"


# ── failed answers ─────────────────────────────────────────────────────────────────────────────────


def test_attempts_run_out_and_the_conversation_ends_politely(chat):
    chat.say("pay"), chat.say("BK-1")
    chat.say("abc"), chat.say("abc")
    result = chat.send("abc")
    assert texts(result) == [
        "Sorry, I could not understand your answer, so I have stopped here. Send *menu* to start again."
    ]
    assert result.conversation.status == ENDED
    assert "ask.gave_up" in codes(result)


def test_retry_text_and_on_fail_route():
    ask = step(
        "ask_code",
        "ask",
        text="Code?",
        expect="otp",
        retry="That is not a code, {{ contact }}.",
        attempts=2,
        on_fail="help",
        save="code",
        next="done",
    )
    f = flow(
        "otp", ask, step("help", "end", text="Call us on 0800."), step("done", "end", text="ok"), triggers=("code",)
    )
    chat = Chat(FlowSet.of([f]))
    chat.say("code")
    assert chat.say("12") == ["That is not a code, 263771234567."]
    assert chat.say("34") == ["Call us on 0800."]
    assert chat.conversation.status == ENDED


def test_a_message_that_cannot_be_an_answer_gets_a_hint_and_uses_no_attempt(chat):
    """Issue 9.2: five stickers at the amount question neither end the payment nor use up its tries."""
    chat.say("pay"), chat.say("BK-1")
    for _ in range(5):
        result = chat.send(None, kind="other")
        assert texts(result) == ["Please type your answer: an amount like 50 or 50.00."]
        assert result.conversation.status == ACTIVE and result.conversation.attempts == 0
    chat.say("abc")
    assert chat.conversation.attempts == 1
    chat.say("50")
    result = chat.send(None, kind="other")
    assert texts(result) == ["Please tap one of the buttons, or send its number."]
    assert len(result.outbound[0].buttons) == 3 and result.conversation.attempts == 0


# ── cancel and menu from a question ─────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("word", ["cancel", "STOP", "Stop."])
def test_a_cancel_word_runs_the_cancel_step_then_the_cancel_message(chat, calls, word):
    chat.say("pay"), chat.say("BK-1")
    result = chat.send(word)
    assert texts(result) == ["(payment voided)", "Okay, I have stopped here. Send *menu* to see what I can do."]
    assert result.conversation.status == ENDED
    assert calls[-1] == ("void", {}, "263771234567:wamid.3:void:1")


def test_a_button_named_like_a_cancel_word_is_an_answer():
    ask = step("sure", "ask", text="Go on?", buttons={"go": "Go", "stop": "Stop"}, save="answer", next="said")
    f = flow("q", ask, step("said", "end", text="You chose {{ answer }}."), triggers=("q",))
    chat = Chat(FlowSet.of([f]))
    chat.say("q")
    assert chat.say("stop") == ["You chose stop."]


def test_the_menu_word_from_a_question_hands_over_to_the_menu(chat):
    chat.say("pay")
    result = chat.send("menu")
    assert texts(result) == ["Hello! What would you like to do?"]
    assert (result.conversation.flow, result.conversation.step) == ("main_menu", "welcome")
    assert result.conversation.vars == {"contact": "263771234567"}


def test_the_menu_hands_over_to_the_payment_flow_keeping_vars(chat):
    chat.say("hi")
    result = chat.send("1")
    assert texts(result) == ["Your booking reference?"]
    assert result.conversation.flow == "payment"
    assert result.conversation.vars["choice"] == "pay"


# ── errors end politely ─────────────────────────────────────────────────────────────────────────────


def test_an_undefined_variable_ends_politely_with_an_event():
    f = flow("t", step("hello", "say", text="Hello {{ name }}", next="bye"), step("bye", "end"), triggers=("t",))
    result = Chat(FlowSet.of([f])).send("t")
    assert texts(result) == [SORRY]
    assert result.conversation.status == ENDED
    assert [(e.level, e.code) for e in result.events] == [("error", "template.undefined")]
    assert "'name' is undefined" in result.events[0].message and "hello" in result.events[0].message


@pytest.mark.parametrize("source", ["{{ 1 / 0 }}", "{{ contact.__class__.__mro__ }}", "{{ 'x' | money(1, 2, 3) }}"])
def test_a_template_error_at_run_time_ends_politely(source):
    f = flow("t", step("hello", "end", text=source), triggers=("t",))
    result = Chat(FlowSet.of([f])).send("t")
    assert texts(result) == [SORRY]
    assert codes(result) == ["template.error"]


def test_the_step_limit_names_the_loop():
    f = flow(
        "loop",
        step("a", "say", text="a", next="b"),
        step("b", "branch", next="c"),
        step("c", "say", text="c", next="a"),
        triggers=("loop",),
    )
    chat = Chat(FlowSet.of([f]), max_steps=20)
    result = chat.send("loop")
    assert texts(result)[-1] == SORRY
    assert len(result.outbound) < 20
    assert codes(result) == ["turn.step_limit"]
    assert "more than 20 steps in one turn: the loop goes b → c → a → b" in result.events[0].message
    assert result.conversation.status == ENDED


def test_a_route_where_no_condition_holds_ends_politely():
    f = flow("b", step("check", "branch", next=[("false", "x")]), step("x", "end"), triggers=("b",))
    result = Chat(FlowSet.of([f])).send("b")
    assert texts(result) == [SORRY] and codes(result) == ["step.no_route"]


def test_a_say_step_without_next_ends_the_conversation():
    f = flow("s", step("only", "say", text="Bye."), triggers=("s",))
    result = Chat(FlowSet.of([f])).send("s")
    assert texts(result) == ["Bye."] and result.conversation.status == ENDED and result.events == []


def test_a_broken_check_argument_ends_politely():
    f = flow(
        "a",
        step("amt", "ask", text="How much?", expect=("amount", {"max": "{{ limit }}"}), next="x"),
        step("x", "end"),
        triggers=("a",),
    )
    chat = Chat(FlowSet.of([f]))
    chat.say("a")
    result = chat.send("5")
    assert texts(result) == [SORRY] and codes(result) == ["template.undefined"]
    chat2 = Chat(FlowSet.of([f]))
    chat2.say("a")
    chat2.conversation = chat2.conversation.evolve(vars={**chat2.conversation.vars, "limit": "lots"})
    result = chat2.send("5")
    assert texts(result) == [SORRY] and codes(result) == ["expect.invalid"]


# ── versions and expiry ─────────────────────────────────────────────────────────────────────────────


def test_a_running_conversation_stays_on_its_version_new_ones_take_the_latest():
    v1 = flow(
        "f",
        step("q", "ask", text="v1 question", next="e"),
        step("e", "end", text="v1 end"),
        triggers=("go",),
        version=1,
    )
    v2 = flow(
        "f",
        step("q", "ask", text="v2 question", next="e"),
        step("e", "end", text="v2 end"),
        triggers=("go",),
        version=2,
    )
    chat = Chat(FlowSet.of([v1]))
    assert chat.say("go") == ["v1 question"]
    chat.flows = FlowSet.of([v1, v2])
    assert chat.say("answer") == ["v1 end"]
    assert chat.say("go") == ["v2 question"]


def test_a_conversation_whose_step_disappeared_starts_over_with_a_warning():
    v1 = flow("f", step("q", "ask", text="question", next="e"), step("e", "end"), triggers=("go",))
    chat = Chat(FlowSet.of([v1]))
    chat.say("go")
    chat.flows = FlowSet.of([flow("f", step("other", "end", text="gone"), triggers=("go",))])
    result = chat.send("answer")
    assert texts(result) == [FlowSet.default_reply]
    assert result.conversation.status == ENDED
    assert codes(result) == ["conversation.lost"]


def expiring_flows() -> FlowSet:
    return payment_flows(
        expire_after=timedelta(minutes=10), expire_message="This payment timed out.", expire_step="void"
    )


def test_a_waiting_conversation_expires_after_inactivity(calls):
    chat = Chat(expiring_flows(), registry=make_registry(calls))
    chat.say("pay")
    assert chat.conversation.expires_at == chat.clock.now + timedelta(minutes=10)
    chat.clock.advance(minutes=11)
    result = expire(chat.flows, chat.conversation, chat.ctx)
    assert texts(result) == ["(payment voided)", "This payment timed out."]
    assert result.conversation.status == EXPIRED
    assert result.conversation.expires_at is None
    stamp = (chat.clock.now - timedelta(minutes=1)).isoformat()
    assert [a.idempotency_key for a in result.actions] == [f"263771234567:expire-{stamp}:void:1"]
    assert expire(chat.flows, result.conversation, chat.ctx).outbound == []


def test_a_late_answer_expires_the_conversation_first(calls):
    chat = Chat(expiring_flows(), registry=make_registry(calls))
    chat.say("pay")
    chat.clock.advance(minutes=10)
    assert chat.say("BK-1") == ["(payment voided)", "This payment timed out.", FlowSet.default_reply]
    assert chat.conversation.status == EXPIRED
    chat.clock.advance(minutes=1)
    assert chat.say("pay") == ["Your booking reference?"]
    assert chat.conversation.status == ACTIVE


def test_each_answer_pushes_expiry_back(calls):
    chat = Chat(expiring_flows(), registry=make_registry(calls))
    chat.say("pay")
    chat.clock.advance(minutes=9)
    chat.say("BK-1")
    chat.clock.advance(minutes=9)
    assert chat.say("20") == ["Choose how you will pay."]


def test_start_opens_a_flow_directly(chat):
    result = start(chat.flows, "263770000001", "payment", chat.ctx)
    assert texts(result) == ["Your booking reference?"]
    assert result.conversation.contact == "263770000001"
    with pytest.raises(KeyError):
        start(chat.flows, "263770000001", "nope", chat.ctx)


def test_conversation_round_trips_through_its_dict(chat):
    chat.say("pay")
    chat.say("BK-1")
    assert Conversation.from_dict(chat.conversation.as_dict()) == chat.conversation


def test_the_same_message_handled_twice_gives_the_same_turn_and_keys(chat):
    """A redelivered message (same id) must reach the actions with the same idempotency keys."""
    chat.say("pay")
    inbound = Inbound(chat.contact, "wamid.again", "BK-1")
    first = run_turn(chat.flows, chat.conversation, inbound, chat.ctx)
    second = run_turn(chat.flows, chat.conversation, inbound, chat.ctx)
    assert first == second
    assert [a.idempotency_key for a in first.actions] == ["263771234567:wamid.again:find:1"]


# ── the host's time zone and mobile prefixes reach the checks ──────────────────────────────────────


def _ask_flow(expect: str) -> FlowSet:
    ask = step("q", "ask", text="Q?", expect=expect, save="a", next="e")
    return FlowSet.of([flow("f", ask, step("e", "end", text="{{ a }}"), triggers=("go",))])


@pytest.mark.parametrize("time_zone, saved", [("Africa/Harare", "2026-12-02"), ("UTC", "2026-12-01")])
def test_today_is_the_day_where_the_business_is(time_zone, saved):
    from dataclasses import replace

    flows = _ask_flow("date")
    ctx = replace(Chat(flows).ctx, clock=lambda: datetime(2026, 12, 1, 22, 30), business_timezone=time_zone)
    waiting = run_turn(flows, None, Inbound("263771234567", "m1", "go"), ctx).conversation
    result = run_turn(flows, waiting, Inbound("263771234567", "m2", "today"), ctx)
    assert texts(result) == [saved]


def test_the_workers_turn_context_takes_the_mobile_prefixes_from_the_settings():
    from channels.worker import turn_context
    from storage.settings import Settings

    ctx = turn_context({"settings": Settings.from_env({"ZW_MOBILE_PREFIXES": "77"})})
    flows = _ask_flow("phone_zw")
    waiting = run_turn(flows, None, Inbound("263771234567", "m1", "go"), ctx).conversation
    refused = run_turn(flows, waiting, Inbound("263771234567", "m2", "263781234567"), ctx)
    assert texts(refused) == ["Please send a number on a Zimbabwe mobile network: starting 26377, e.g. 263771234567."]
    assert texts(run_turn(flows, refused.conversation, Inbound("263771234567", "m3", "263771234567"), ctx)) == [
        "263771234567"
    ]
