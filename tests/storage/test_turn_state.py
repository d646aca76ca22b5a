"""channels.turn_save.conversation_of: a stored state as the engine's Conversation, each value in its field."""

from __future__ import annotations

from datetime import datetime

from channels.turn_save import conversation_of, state_of
from engine.messages import Conversation

from storage_kit import stored_state


def test_every_field_gets_its_own_value():
    # conversation_of passes the fields by position: a field moved in Conversation must show here
    assert conversation_of("c1", stored_state()) == Conversation(
        contact="c1",
        flow="pay",
        version=3,
        step="ask",
        vars={"a": [1, "b"]},
        attempts=2,
        status="active",
        started_at=datetime(2026, 1, 5, 9, 14, 3),
        updated_at=datetime(2026, 1, 5, 9, 14, 3, 120000),
        expires_at=datetime(2026, 1, 5, 9, 24, 3),
    )


def test_missing_version_and_attempts_read_as_zero():
    conversation = conversation_of("c1", stored_state(flow_version=None, attempts=None))
    assert (conversation.version, conversation.attempts) == (0, 0)


def test_no_open_conversation_is_none():
    assert conversation_of("c1", stored_state(flow=None)) is None
    assert conversation_of("c1", stored_state(step=None)) is None


def test_the_state_comes_back_from_the_conversation():
    state = stored_state()
    assert state_of(conversation_of("c1", state), {}) == state
