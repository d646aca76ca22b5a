"""Issue 11.8: answers a customer types that authors expect to work (emoji-less titles, yes/no words, menu)."""

from __future__ import annotations

from engine.messages import ACTIVE
from engine.model import FlowSet

from flowkit import Chat, flow, step


def _chat(*flows) -> Chat:
    chat = Chat(FlowSet.of(list(flows)))
    chat.send("start")
    return chat


def _pay_method() -> object:
    return flow(
        "method",
        step(
            "how",
            "ask",
            text="How will you pay?",
            buttons={"mobile": "📱 Mobile Payment", "cash": "💵 Cash"},
            save="how",
            next="done",
        ),
        step("done", "end", text="You chose {{ how }}."),
        triggers=("start",),
    )


def test_a_button_title_typed_without_its_emoji_picks_the_button():
    chat = _chat(_pay_method())
    assert chat.say("Mobile Payment") == ["You chose mobile."]


def test_the_words_the_yes_no_check_takes_pick_a_yes_or_no_button():
    confirm = flow(
        "confirm",
        step("sure", "ask", text="Pay now?", buttons={"yes": "✅ Yes", "no": "❌ No"}, save="sure", next="done"),
        step("done", "end", text="Answer: {{ sure }}"),
        triggers=("start",),
    )
    for typed, saved in (("yep", "yes"), ("OK!", "yes"), ("nope", "no"), ("Nah", "no"), ("2", "no")):
        chat = _chat(confirm)
        assert chat.say(typed) == [f"Answer: {saved}"], typed


def test_menu_without_a_menu_flow_says_so_and_keeps_waiting_instead_of_saving_menu():
    ask_name = flow(
        "name",
        step("who", "ask", text="Your name?", save="name", next="done"),
        step("done", "end", text="Hello {{ name }}"),
        triggers=("start",),
    )
    chat = _chat(ask_name)
    replies = chat.say("menu")
    assert "There is no *menu* here" in replies[0] and replies[0].endswith("Your name?")
    assert (chat.conversation.step, chat.conversation.status, chat.conversation.attempts) == ("who", ACTIVE, 0)
    assert "name" not in chat.conversation.vars
    assert chat.say("Tendai") == ["Hello Tendai"]


def test_menu_starts_the_flow_that_has_the_menu_word_as_trigger_when_there_is_no_menu_flow():
    ask_name = flow(
        "name",
        step("who", "ask", text="Your name?", save="name", next="done"),
        step("done", "end", text="Hello {{ name }}"),
        triggers=("start",),
    )
    home = flow("home", step("hi", "end", text="Welcome home"), triggers=("menu",))
    chat = _chat(ask_name, home)
    assert chat.say("menu") == ["Welcome home"]
