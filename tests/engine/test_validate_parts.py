"""The pieces under `flows validate`: the schema editors load, template reading, durations, literal text."""

from __future__ import annotations

import jsonschema
import pytest

from engine.flow_schema import schema, written_schema
from engine.steps import kinds
from engine.template_check import inspect_expression, inspect_template, literal_text
from engine.validate import parse_duration
from engine.yaml_source import parse
from validation_kit import BROKEN, FIXTURES, SHIPPED

VALID = [*sorted(FIXTURES.glob("*.yaml")), *sorted(SHIPPED.glob("*.yaml")), BROKEN / "valid_tricky.yaml"]


def test_the_schema_is_draft_2020_12_and_describes_every_step_kind():
    jsonschema.Draft202012Validator.check_schema(schema())
    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {"say", "ask", "action", "flow", "end"} <= set(kinds.keys())
    assert kinds.keyless().name == "branch" and all(k in schema()["$defs"] for k in kinds.names())


def test_the_schema_file_editors_load_is_the_schema_validate_uses():
    """schemas/flow.schema.json is generated from the step kinds and input checks: regenerate it with
    `python schemas/generate.py` after adding or changing one.
    """
    assert written_schema() == schema(), "schemas/flow.schema.json is out of date: run python schemas/generate.py"


@pytest.mark.parametrize("path", VALID, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_an_editor_using_the_schema_accepts_valid_flows(path):
    data = parse(path.read_text(encoding="utf-8"), path.name).data
    assert list(jsonschema.Draft202012Validator(written_schema()).iter_errors(data)) == []


@pytest.mark.parametrize(
    "case", ["field_unknown", "field_type", "field_invalid", "step_kind_ambiguous", "field_required_route"]
)
def test_an_editor_using_the_schema_flags_broken_shapes(case):
    data = parse((BROKEN / f"{case}.yaml").read_text(encoding="utf-8"), case).data
    assert list(jsonschema.Draft202012Validator(written_schema()).iter_errors(data)) != []


@pytest.mark.parametrize(
    "condition,numeric",
    [
        ("rating <= 2", (("rating", "<="),)),
        ("rating | int <= 2", ()),
        ("2 > rating", (("rating", ">"),)),
        ("choice == 2", (("choice", "=="),)),
        ('choice == "2"', ()),
        ("a + 1", (("a", "+"),)),
        ("a + b", ()),
        ("a ~ 1", ()),
        ("n * 2 - m", (("n", "*"), ("m", "-"))),
        ("total | float / 2", ()),
    ],
)
def test_the_ast_names_variables_used_as_numbers_as_they_stand(condition, numeric):
    assert set(inspect_expression(condition).numeric) == set(numeric)


@pytest.mark.parametrize(
    "text,reads",
    [
        ("{{ tours[tour].nmae }}", (("tours", (None, "nmae")),)),
        ("{{ tours.safari['price'] | money }}", (("tours", ("safari", "price")),)),
        ("{{ a[0].b }}", (("a", (0, "b")),)),
        ("{{ d.items() }}", ()),
        ("{{ x }}", ()),
    ],
)
def test_the_ast_names_the_keys_each_variable_is_read_by(text, reads):
    assert inspect_template(text).reads == reads


def test_is_defined_and_default_guard_a_variable_for_the_whole_template():
    info = inspect_template(
        "{{ (payment.reference or '') if payment is defined else '' }} {{ x.y | default('') }} {{ z }}"
    )
    assert info.guarded == {"payment", "x"}


def test_template_errors_and_names():
    assert inspect_template("{{ x }").error
    assert inspect_template("Hi\n{{ x }").error_line == 2
    assert inspect_template("{% for p in payments %}{{ p.amount }}{% endfor %}").names == {"payments"}
    assert inspect_template("{% set total = amount %}{{ total }}").names == {"amount"}
    assert inspect_expression("amount | float > 100 and wallet == 'ecocash'").names == {"amount", "wallet"}
    assert inspect_expression("amount >").error
    assert "after the condition" in inspect_expression("a b").error
    assert inspect_expression("x is odd and y is bigg").unknown_tests == ("bigg",)


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("30s", 30),
        ("10m", 600),
        ("2h", 7200),
        ("1d", 86400),
        (" 5 m ", 300),
        ("10 minutes", None),
        ("0m", None),
        ("1.5h", None),
        ("m", None),
        ("10", None),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_literal_text_drops_template_tags():
    assert literal_text("Pay {{ amount | money }} now{% if x %}!{% endif %}{# note #}") == "Pay  now!"
    assert literal_text("no tags") == "no tags"


def test_closed_groups_find_only_loops_with_no_way_out():
    from engine.flow_graph import closed_groups

    chain = {f"s{i}": {f"s{i + 1}"} for i in range(5000)}  # deeper than Python's recursion limit
    chain["s5000"] = {"s4999"}
    chain["exit"] = None
    chain["a"] = {"b"}
    chain["b"] = {"a", "exit"}  # can leave through exit: not endless
    chain["self"] = {"self"}
    assert sorted(map(sorted, closed_groups(chain))) == [["s4999", "s5000"], ["self"]]


def test_did_you_mean_over_many_names_answers_as_difflib_does():
    import difflib
    import random

    from engine.flow_schema import Suggestions

    rng = random.Random(14)
    letters = "abcde_"
    for _ in range(200):
        names = ["".join(rng.choices(letters, k=rng.randint(0, 12))) for _ in range(rng.randint(1, 30))]
        hints = Suggestions(names)
        for _ in range(10):
            word = "".join(rng.choices(letters, k=rng.randint(0, 12)))
            close = difflib.get_close_matches(word, names, n=1, cutoff=0.75)
            assert hints(word) == (f" — did you mean '{close[0]}'?" if close else ""), (word, names)


def test_past_its_budget_did_you_mean_stays_quiet_and_every_mistake_is_still_reported():
    from engine.flow_schema import Suggestions

    hints = Suggestions([f"ask_{i:03d}" for i in range(100)], budget=250)
    assert [hints(f"ask_{i:03d}x") for i in (1, 2)] == [" — did you mean 'ask_001'?", " — did you mean 'ask_002'?"]
    assert hints("ask_003x") == ""  # 300 comparisons would pass the budget of 250
    assert hints("ask_001x") == " — did you mean 'ask_001'?"  # an answer already given stays


def test_every_unknown_target_of_a_long_flow_is_reported(tmp_path):
    from engine.load import load_paths
    from validation_kit import validation_registry

    steps = "".join(f"  s{i}:\n    say: Hi\n    next: t{i}_gone\n" for i in range(400))
    (tmp_path / "long.yaml").write_text(f"flow: long\ntriggers: [go]\nsteps:\n{steps}")
    problems = [
        p for p in load_paths([str(tmp_path)], validation_registry()).problems if p.code == "step.unknown_target"
    ]
    assert len(problems) == 400
    assert problems[0].message == "step 's0': there is no step 't0_gone'"


def test_the_faster_resolver_gives_every_node_the_safe_loader_s_tag():
    import itertools

    import yaml

    from engine import yaml_source
    from validation_kit import BROKEN, FIXTURES, SHIPPED

    def tags(root) -> list:
        """(tag, value) of every scalar and the tag of every collection, each node once (aliases share)."""
        found, todo, seen = [], [root] if root is not None else [], set()
        while todo:
            node = todo.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, yaml.MappingNode):
                found.append(node.tag)
                todo.extend(item for pair in node.value for item in pair)
            elif isinstance(node, yaml.SequenceNode):
                found.append(node.tag)
                todo.extend(node.value)
            else:
                found.append((node.tag, node.value))
        return found

    words = [
        "",
        "~",
        "null",
        "Null",
        "yes",
        "No",
        "on",
        "OFF",
        "true",
        "False",
        "0",
        "-1",
        "+2",
        "0x1F",
        "0o7",
        "1_000",
    ]
    words += ["10:30", "1.5", ".5", "-.inf", ".NaN", "1e3", "2026-12-02", "2026-12-02 10:30:00", "<<", "=", "!", "&"]
    words += ["*", "say", "Yes please", "t", "n", "-", ".", "9lives", "0755", "089"]
    texts = [
        p.read_text(encoding="utf-8", errors="replace") for p in [*SHIPPED.glob("*.yaml"), *FIXTURES.glob("*.yaml")]
    ]
    texts += [p.read_text(encoding="utf-8", errors="replace") for p in BROKEN.rglob("*.yaml")]
    texts += [
        "\n".join(f"k{i}: {w}\nl{i}: [{w}, '{w}']" for i, w in enumerate(words)) + "\nm: {a: 1, b: [x, {c: d}]}\n"
    ]
    texts += [f"{a}: {b}\n" for a, b in itertools.product(words[:12], words)]
    compared = 0
    for text in texts:
        try:
            plain = yaml.compose(text, Loader=yaml_source._SAFE_LOADER)
        except yaml.YAMLError:
            continue
        assert tags(yaml.compose(text, Loader=yaml_source._LOADER)) == tags(plain), text
        compared += 1
    assert yaml_source._LOADER is not yaml_source._SAFE_LOADER and compared > 300
