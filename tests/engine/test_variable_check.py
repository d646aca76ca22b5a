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


def _round_robin(facts, entry, bits):
    """The plain statement of "saved before": every step's value from its routes in, until nothing changes."""
    saves = {s.step: bits.index[var] for var, saved in facts.saved.items() for s in saved}
    reached, todo = set(), [r for r in [facts.start, *facts.closing] if r]
    while todo:
        name = todo.pop()
        if name not in reached and name in facts.routes:
            reached.add(name)
            todo.extend(t for t, _ in facts.routes[name])
    fixed = {facts.start: entry, **{root: bits.all for root in facts.closing}}
    before = {name: bits.all for name in reached}
    changed = True
    while changed:
        changed = False
        for name in sorted(reached):
            value = fixed.get(name, bits.all)
            for source in reached:
                for target, after_save in facts.routes[source]:
                    if target == name:
                        value &= before[source] | (saves.get(source, 0) if after_save else 0)
            if value != before[name]:
                before[name], changed = value, True
    return before


def test_saved_before_is_the_fixed_point_on_random_step_graphs():
    import random

    from engine.flow_graph import reachable
    from engine.validate import FileFacts, Saved
    from engine.variable_check import _Bits, _saved_before, _SavedBefore
    from engine.yaml_source import Source

    rng = random.Random(14)
    for _ in range(300):
        steps = [f"s{i}" for i in range(rng.randint(1, 14))]
        names = [f"v{i}" for i in range(rng.randint(1, 5))]
        facts = FileFacts(source=Source("x.yaml"))
        facts.routes = {
            s: [(rng.choice(steps + ["gone"]), rng.random() < 0.8) for _ in range(rng.randint(0, 3))] for s in steps
        }
        for s in steps:
            if rng.random() < 0.5:
                facts.saved.setdefault(rng.choice(names), []).append(Saved(s))
        facts.start = steps[0]
        facts.closing = rng.sample(steps, rng.randint(0, min(2, len(steps))))
        facts.reached = reachable(facts.routes, facts.start)  # as validate's reachability() leaves it
        for root in facts.closing:
            facts.reached |= reachable(facts.routes, root)
        bits = _Bits(names)
        entry = rng.randint(0, bits.all)
        expected = _round_robin(facts, entry, bits)
        assert _saved_before(facts, entry, bits) == expected
        # The dominator tree (one saving step) and the narrow fixed point (several) answer the same.
        entry_names = frozenset(name for name in names if entry & bits.index[name])
        asked = _SavedBefore(facts)
        for step in steps:
            for name in names:
                seen = bool(expected.get(step, bits.all) & bits.index[name])
                assert asked.saved(name, step, entry_names) is seen, (step, name, facts.routes, facts.saved)


def test_saved_before_on_larger_graphs_with_joins_and_loops_back():
    """Flows as authors write them: mostly forward, branches that meet again and loops back to a question.
    The dominator tree is started from the walk's tree and narrowed only where several routes enter."""
    import random

    from engine.flow_graph import reachable
    from engine.validate import FileFacts, Saved
    from engine.variable_check import _Bits, _SavedBefore
    from engine.yaml_source import Source

    rng = random.Random(1414)
    for _ in range(60):
        steps = [f"s{i}" for i in range(rng.randint(20, 60))]
        names = [f"v{i}" for i in range(6)]
        facts = FileFacts(source=Source("x.yaml"))
        facts.routes = {
            s: [
                (steps[min(len(steps) - 1, i + rng.randint(1, 4))] if rng.random() < 0.8 else rng.choice(steps), ok)
                for ok in [rng.random() < 0.8 for _ in range(rng.randint(1, 3))]
            ]
            for i, s in enumerate(steps)
        }
        savers = rng.sample(steps, 12)  # a step saves one variable at most
        for var in names:
            for s in [savers.pop() for _ in range(rng.choice([1, 1, 2]))]:
                facts.saved.setdefault(var, []).append(Saved(s))
        facts.start = steps[0]
        facts.reached = reachable(facts.routes, facts.start)
        bits = _Bits(names)
        expected = _round_robin(facts, 0, bits)
        asked = _SavedBefore(facts)
        for step in steps:
            for name in names:
                seen = bool(expected.get(step, bits.all) & bits.index[name])
                assert asked.saved(name, step, frozenset()) is seen, (step, name)
