"""Issue 11.6: each new validator error names something that really stops a conversation.

The broken flows of tests/engine/broken are run as they are (a file judged alone only warns, so it loads)
and the customer gets the apology exactly where `flows validate` said; the corrected line runs through.
"""

from __future__ import annotations

import pytest

from actions.core import set_value
from engine.load import load_paths, load_text
from engine.model import FlowSet
from engine.registry import ActionRegistry
from validation_kit import BROKEN, validation_registry

from flowkit import Chat, codes

SORRY = "Sorry, something went wrong on our side. Send *menu* to start again."


def _registry() -> ActionRegistry:
    registry = ActionRegistry()
    registry.action("core.set", params={"type": "object"}, outcomes=["ok"], templates=["value"])(set_value)
    return registry


def _chat(*texts: str) -> Chat:
    flows = []
    for i, text in enumerate(texts):
        flow, problems = load_text(text, f"f{i}.yaml", _registry())
        assert flow is not None and all(p.severity == "warning" for p in problems)
        flows.append(flow)
    return Chat(FlowSet.of(flows), registry=_registry())


def _case(name: str) -> str:
    return (BROKEN / name).read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "broken,fixed,answers",
    [
        ("template_text_as_number.yaml", ("rating <= 2", "rating | int <= 2"), ["feedback", "1"]),
        ("template_unknown_key.yaml", ("tours[tour].nmae", "tours[tour].name"), ["tours", "safari"]),
        ("template_not_saved_yet.yaml", ("Hello {{ name }}", "Hello {{ contact }}"), ["book"]),
    ],
)
def test_the_error_is_where_the_conversation_breaks_and_the_fix_mends_it(broken, fixed, answers):
    text = _case(broken)
    if broken == "template_unknown_key.yaml":  # only the misspelt key of the line is this test's subject
        text = text.replace(", not {{ tours.safary.name }}", "")
    chat = _chat(text)
    *first, last = answers
    for answer in first:
        chat.send(answer)
    result = chat.send(last)
    assert [o.text for o in result.outbound][-1] == SORRY and any(c.startswith("template.") for c in codes(result))
    mended = _chat(text.replace(*fixed))
    for answer in answers:
        result = mended.send(answer)
    assert SORRY not in [o.text for o in result.outbound]


def test_a_flow_started_by_its_trigger_does_not_get_what_a_hand_over_would_bring():
    folder = BROKEN / "template_not_saved_yet_handover"
    texts = [(folder / f).read_text(encoding="utf-8") for f in ("menu.yaml", "payment.yaml", "help.yaml")]
    chat = _chat(*texts)
    assert chat.say("help") == [SORRY]
    chat = _chat(*texts)
    chat.say("menu"), chat.say("pay")
    assert chat.say("BK-1") == ["Paying for BK-1 (you chose pay)."]


def test_the_shipped_flows_and_the_fixtures_have_none_of_the_new_errors():
    import actions

    assert [str(p) for p in load_paths(["flows"], actions.load_all()).problems] == []
    assert load_paths(["tests/engine/fixtures"], validation_registry()).problems == []
