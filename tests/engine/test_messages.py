"""The turn's value types: built by quick_init's __init__ exactly as dataclass's own would build them, and
the clock's naive UTC time."""

from __future__ import annotations

import dataclasses
import pickle
from datetime import datetime, timedelta, timezone

import pytest

from engine.context import utcnow
from engine.messages import Choice, Conversation, Inbound, Outbound, TurnResult, quick_init
from storage.db import utcnow as storage_utcnow

QUICK = [Inbound, Outbound, Conversation, TurnResult]


def _dataclass_init(cls: type) -> type:
    """The same class as dataclass(frozen=True) alone makes it: its generated __init__, for comparison."""
    fields = [
        (f.name, f.type, dataclasses.field(default=f.default, default_factory=f.default_factory))
        for f in dataclasses.fields(cls)
    ]
    return dataclasses.make_dataclass(cls.__name__, fields, frozen=True)


@pytest.mark.parametrize("cls", QUICK, ids=lambda c: c.__name__)
def test_quick_init_builds_what_dataclass_builds(cls):
    plain = _dataclass_init(cls)
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    given = {name: f"v-{name}" for name in required}
    assert vars(cls(**given)) == vars(plain(**given))  # defaults and factories filled in the same
    everything = {f.name: f"w-{f.name}" for f in dataclasses.fields(cls)}
    assert vars(cls(**everything)) == everything
    assert vars(cls(*everything.values())) == everything  # positional, in field order
    with pytest.raises(TypeError):
        cls(**{name: 1 for name in required[:-1]})  # a required field missing
    with pytest.raises(TypeError):
        cls(**given, not_a_field=1)


def test_quick_init_factories_give_each_instance_its_own():
    a, b = TurnResult(None, []), TurnResult(None, [])
    assert a.actions == [] and a.actions is not b.actions and a.events is not b.events
    assert Conversation("c", "f", 1, "s").vars is not Conversation("c", "f", 1, "s").vars


def test_quick_init_instances_stay_frozen_hashable_and_replaceable():
    conversation = Conversation("c", "f", 1, "s", vars={"a": 1}, started_at=datetime(2026, 1, 1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        conversation.step = "t"  # type: ignore[misc]
    assert dataclasses.replace(conversation, step="t").step == "t"
    assert pickle.loads(pickle.dumps(conversation)) == conversation
    assert hash(Inbound("c", "m", "hi")) == hash(Inbound("c", "m", "hi"))
    message = Outbound("c", "pick", (Choice("a", "A"),))
    assert message.as_dict()["buttons"] == ({"id": "a", "title": "A", "description": None},)


def test_quick_init_keeps_a_class_without_defaults():
    @quick_init
    @dataclasses.dataclass(frozen=True)
    class Pair:
        left: int
        right: int

    assert Pair(1, right=2) == Pair(left=1, right=2)
    assert repr(Pair(1, 2)).endswith("Pair(left=1, right=2)")


@pytest.mark.parametrize("clock", [utcnow, storage_utcnow], ids=["engine", "storage"])
def test_utcnow_is_naive_utc(clock):
    before = datetime.now(timezone.utc).replace(tzinfo=None)
    now = clock()
    after = datetime.now(timezone.utc).replace(tzinfo=None)
    assert now.tzinfo is None
    assert before <= now <= after + timedelta(microseconds=1)
