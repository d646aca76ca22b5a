"""Cases for the generic actions "core.set" and "core.log", run through real flows."""

from __future__ import annotations

import logging

import pytest

import actions
from engine.context import TurnContext
from engine.messages import Inbound
from engine.model import FlowSet, Route, Step, Flow
from engine.registry import registry
from engine.runner import run_turn

actions.load_all()


def run(*steps: Step, log: logging.Logger | None = None):
    f = Flow(name="f", title="F", steps={s.name: s for s in steps}, start=steps[0].name, triggers=("go",))
    ctx = TurnContext(registry=registry, log=log or logging.getLogger("test.core"))
    return run_turn(FlowSet.of([f]), None, Inbound("263771234567", "wamid.1", "go"), ctx)


def test_core_set_saves_a_rendered_value():
    result = run(
        Step("s", "action", action="core.set", params={"value": "{{ contact[-4:] }}"}, save="tail", next=(Route("e"),)),
        Step("e", "end", text="Tail: {{ tail }}"),
    )
    assert [o.text for o in result.outbound] == ["Tail: 4567"]
    assert result.conversation.vars["tail"] == "4567"


def test_core_set_renders_every_string_in_a_mapping():
    result = run(
        Step(
            "s",
            "action",
            action="core.set",
            save="t",
            next=(Route("e"),),
            params={"value": {"fee": "{{ '%.2f' | format(100 * 0.02) }}", "items": ["{{ 1 + 1 }}", 3]}},
        ),
        Step("e", "end", text="Fee {{ t.fee | money }}, {{ t['items'] }}"),
    )
    assert [o.text for o in result.outbound] == ["Fee $2.00, ['2', 3]"]


def test_core_set_without_a_value_is_refused_before_it_runs():
    result = run(
        Step("s", "action", action="core.set", params={"valu": "x"}, save="t", next=(Route("e"),)), Step("e", "end")
    )
    assert [e.code for e in result.events] == ["action.params"]
    assert "'value' is required" in result.events[0].message


def test_core_log_writes_a_line_tagged_with_the_contact(caplog):
    with caplog.at_level(logging.INFO, logger="test.core"):
        result = run(
            Step(
                "l",
                "action",
                action="core.log",
                params={"message": "paid {{ contact }}", "level": "warning"},
                next=(Route("e"),),
            ),
            Step("e", "end", text="bye"),
        )
    assert [o.text for o in result.outbound] == ["bye"]
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "flow log [263771234567]: paid 263771234567")
    ]


@pytest.mark.parametrize("params", [{"message": ""}, {"message": "x", "level": "loud"}, {}])
def test_core_log_refuses_bad_params(params):
    result = run(Step("l", "action", action="core.log", params=params, next=(Route("e"),)), Step("e", "end"))
    assert [e.code for e in result.events] == ["action.params"]
