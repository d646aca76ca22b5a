"""engine.variable_check: what "saved before" means on loops, hand-over chains and closing steps."""

from __future__ import annotations

from engine.load import load_paths
from validation_kit import validation_registry


def _codes(tmp_path, **files: str) -> list[tuple[str, int, str]]:
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    return [
        (p.file.rsplit("/", 1)[1], p.line, p.code) for p in load_paths([str(tmp_path)], validation_registry()).problems
    ]


def test_a_hand_over_chain_carries_what_was_saved_before_the_first_hand_over(tmp_path):
    menu = "flow: a\ntriggers: [go]\nsteps:\n  ask:\n    ask: Name?\n    save: name\n    next: on\n  on:\n    flow: b\n"
    middle = (
        "flow: b\nsteps:\n  ask:\n    ask: Age?\n    expect: integer\n    save: age\n    next: on\n  on:\n    flow: c\n"
    )
    last = "flow: c\nsteps:\n  bye:\n    end: '{{ name }} is {{ age + 1 }} next year; {{ town }}'\n"
    town = "flow: d\ntriggers: [town]\nsteps:\n  ask:\n    ask: Town?\n    save: town\n    next: bye\n  bye:\n    end: ok\n"
    assert _codes(tmp_path, a=menu, b=middle, c=last, d=town) == [("c.yaml", 4, "template.not_saved_yet")]


def test_a_loop_back_to_a_question_keeps_what_was_saved_on_the_way_in(tmp_path):
    flow = (
        "flow: loop\ntriggers: [go]\nsteps:\n  ask_code:\n    ask: Code?\n    save: code\n    next: check\n"
        '  check:\n    next:\n      - if: code == "1234"\n        goto: ok\n      - goto: again\n'
        "  again:\n    say: '{{ code }} is wrong'\n    next: ask_code\n  ok:\n    end: 'Code {{ code }} accepted'\n"
    )
    assert _codes(tmp_path, loop=flow) == []


def test_the_cancel_step_may_read_what_the_flow_saves(tmp_path):
    flow = (
        "flow: pay\ntriggers: [pay]\ncancel: {step: undo}\nsteps:\n  ask:\n    ask: Ref?\n    save: ref\n"
        "    next: bye\n  bye:\n    end: Bye\n  undo:\n    action: core.log\n    with: {message: 'cancel {{ ref }}'}\n"
        "    next: done\n  done:\n    end: Cancelled\n"
    )
    assert _codes(tmp_path, pay=flow) == []
