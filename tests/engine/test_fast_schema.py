"""The quick yes/no shape check (engine.fast_schema) says "valid" exactly when jsonschema finds nothing.

flow_schema skips jsonschema for a step the quick check passes, so a quick "valid" that jsonschema would
refuse would hide a problem from the author. Every step of every shipped flow and broken fixture, and
thousands of random edits of them (values swapped for values of every JSON type, fields dropped, unknown
fields added), are judged both ways against the real flow schema.
"""

from __future__ import annotations

import random

import jsonschema
import pytest

from engine import flow_schema
from engine.fast_schema import compile_schema, well_formed
from engine.registry import ActionRegistry, RegistryError
from engine.steps import kinds
from engine.yaml_source import parse
from validation_kit import BROKEN, FIXTURES, SHIPPED

SEED = 20261202
EDITS_PER_STEP = 12
VALUES = [
    None,
    True,
    False,
    0,
    1,
    -1,
    1.0,
    1.5,
    "",
    "x",
    "ok_name",
    "bad name!",
    "{{ amount }}",
    "5",
    "text",
    "ecocash",
    [],
    ["a"],
    [{"goto": "x"}],
    [{"if": "a", "goto": "b"}, {"goto": "c"}],
    {},
    {"a": 1},
    {"amount": {"min": "1"}},
    {"text": None},
    {"choice": ["a", "b"]},
    {"regex": "^BK-"},
    {"ok": "next_step"},
    "x" * 300,
]


def _steps() -> list[tuple[str, dict]]:
    """(kind, step) for every step whose kind can be told, in the shipped flows and the fixtures."""
    files = [*SHIPPED.glob("*.yaml"), *FIXTURES.glob("*.yaml"), *BROKEN.rglob("*.yaml")]
    found = []
    for path in sorted(files):
        try:
            data = parse(path.read_text(encoding="utf-8"), str(path)).data
        except UnicodeDecodeError:
            continue
        steps = data.get("steps") if isinstance(data, dict) else None
        for step in (steps or {}).values() if isinstance(steps, dict) else ():
            kind = kinds.of(step)[0] if isinstance(step, dict) else None
            if kind is not None:
                found.append((kind, step))
    return found


def _edit(step: dict, rng: random.Random) -> dict:
    """step with one field (or a field inside a field) dropped, replaced or added."""
    edited = {k: (dict(v) if isinstance(v, dict) else v) for k, v in step.items()}
    target = edited
    inner = [k for k, v in edited.items() if isinstance(v, dict)]
    if inner and rng.random() < 0.4:
        target = edited[rng.choice(inner)]
    keys = list(target)
    move = rng.random()
    if keys and move < 0.25:
        del target[rng.choice(keys)]
    elif keys and move < 0.8:
        target[rng.choice(keys)] = rng.choice(VALUES)
    else:
        target[rng.choice(["next", "save", "retry", "attempts", "on_fail", "with", "extra", "min", "max"])] = (
            rng.choice(VALUES)
        )
    return edited


def _agree(shape, instance) -> None:
    assert shape.quick(instance) is (next(shape.validator.iter_errors(instance), None) is None), instance


def test_every_schema_of_the_flow_compiles():
    assert all(shape.quick is not None for shape in flow_schema._validators().values())


def test_the_quick_check_agrees_with_jsonschema_on_real_steps_and_random_edits():
    shapes = flow_schema._validators()
    rng = random.Random(SEED)
    steps = _steps()
    assert len(steps) > 100
    invalid = 0
    for kind, step in steps:
        _agree(shapes[kind], step)
        for _ in range(EDITS_PER_STEP):
            edited = _edit(step, rng)
            _agree(shapes[kind], edited)
            invalid += not shapes[kind].quick(edited)
    assert invalid > len(steps)  # the edits do reach the refusing side


def test_the_quick_check_agrees_on_whole_flows():
    top = flow_schema._validators()["top"]
    rng = random.Random(SEED)
    for path in sorted([*SHIPPED.glob("*.yaml"), *FIXTURES.glob("*.yaml")]):
        data = parse(path.read_text(encoding="utf-8"), str(path)).data
        _agree(top, data)
        for _ in range(50):
            _agree(top, _edit(data, rng))


@pytest.mark.parametrize(
    "schema, instances",
    [
        ({"type": "integer"}, [1, 1.0, 1.5, True, "1", None]),
        ({"type": ["string", "number"]}, ["a", 2, 2.5, False, None, []]),
        ({"const": True}, [True, 1, 1.0, False, "true"]),
        ({"enum": ["a", "b"]}, ["a", "c", 1, None]),
        ({"minimum": 1, "maximum": 3}, [0, 1, 3, 3.5, True, "9"]),
        ({"pattern": "^a"}, ["abc", "bac", 5]),
        ({"minLength": 1, "maxLength": 2}, ["", "a", "abc", 5]),
        ({"minProperties": 1, "maxProperties": 1}, [{}, {"a": 1}, {"a": 1, "b": 2}, "x"]),
        ({"dependentRequired": {"a": ["b"]}}, [{"a": 1}, {"a": 1, "b": 1}, {"b": 1}, 3]),
        ({"if": {"type": "string"}, "then": {"minLength": 2}, "else": {"type": "object"}}, ["a", "ab", {}, 1]),
        ({"not": {"required": ["a"]}}, [{"a": 1}, {}, 1]),
        ({"anyOf": [{"type": "string"}, {"type": "null"}]}, ["a", None, 1]),
        ({"propertyNames": {"pattern": "^[a-z]+$"}}, [{"ab": 1}, {"A": 1}, []]),
        ({"items": {"type": "string"}, "minItems": 1}, [[], ["a"], ["a", 1], "a"]),
        ({"properties": {"a": {"type": "string"}}, "additionalProperties": False}, [{"a": "x"}, {"b": 1}, {"a": 1}]),
        ({"properties": {"a": {}}, "additionalProperties": {"type": "integer"}}, [{"a": "x", "b": 1}, {"b": "x"}, 3]),
        ({"enum": ["a"]}, ["a", "b", [], {}, None, 1]),
        ({"enum": ["a", True]}, ["a", True, 1, 1.0, "True", []]),
        ({"required": ["a", "b"]}, [{"a": 1}, {"a": 1, "b": 2}, {}, [], "ab"]),
        ({"type": ["null"]}, [None, 0, ""]),
    ],
)
def test_each_keyword_means_what_it_means_to_jsonschema(schema, instances):
    quick = compile_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert [quick(i) for i in instances] == [validator.is_valid(i) for i in instances]


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#/$defs/x"},
        {"uniqueItems": True},
        {"enum": [1, 2]},
        {"properties": {"a": {"format": "date"}}},
        {"additionalProperties": False, "patternProperties": {"^x": {}}},
        {"prefixItems": [{}], "items": False},
    ],
)
def test_a_keyword_it_does_not_know_leaves_the_whole_schema_to_jsonschema(schema):
    assert compile_schema(schema) is None


# Values for random schemas: well-formed and broken ones for every keyword well_formed() knows, and some it
# does not know, so that both of its answers are reached.
_KEYWORD_VALUES = {
    "type": ["string", "integer", "text", ["string", "null"], ["string", "string"], [], 3],
    "properties": [{}, {"a": {"type": "string"}}, {"a": {"type": "nope"}}, {"a": 3}, []],
    "additionalProperties": [False, {"type": "string"}, {"minLength": -1}, "no"],
    "required": [["a"], [], ["a", "a"], ["a", 1], "a"],
    "enum": [["a", 1], [], "a"],
    "const": [None, "a"],
    "pattern": ["^[A-Z]{2}$", "(", 5],
    "minLength": [0, 3, -1, 1.5, True, "3"],
    "maxItems": [2, -2, None],
    "minimum": [0, 1.5, "1", False],
    "description": ["words", 4],
    "writeOnly": [True, "yes"],
    "anyOf": [[{"type": "string"}], [], [{"type": 1}], {}],
    "dependentRequired": [{"a": ["b"]}, {"a": "b"}, {"a": ["b", "b"]}],
    "items": [{"type": "string"}, True, {"minItems": "x"}],
    "not": [{"required": ["a"]}, 7],
    "format": ["date"],
    "$ref": ["#/$defs/x"],
}


def test_well_formed_says_yes_only_to_schemas_jsonschema_accepts():
    rng = random.Random(SEED)
    answers = {True: 0, False: 0}
    for _ in range(3000):
        names = rng.sample(sorted(_KEYWORD_VALUES), rng.randint(1, 4))
        schema = {name: rng.choice(_KEYWORD_VALUES[name]) for name in names}
        if rng.random() < 0.3:
            schema = {"type": "object", "properties": {"x": schema}}
        said = well_formed(schema)
        answers[said] += 1
        if said:
            jsonschema.Draft202012Validator.check_schema(schema)  # raises SchemaError when well_formed lied
    assert answers[True] > 300 and answers[False] > 300  # both answers are reached


def test_every_shipped_contract_is_judged_without_jsonschema():
    import actions

    registry = actions.load_all()
    assert [name for name in registry.names() if not well_formed(registry.get(name).params)] == []


def test_a_broken_contract_is_still_refused_in_jsonschema_s_words():
    registry = ActionRegistry()
    with pytest.raises(RegistryError) as refused:
        registry.action("shop.find", params={"type": "object", "properties": {"sku": {"type": "text"}}})(
            lambda c, p: None
        )
    assert str(refused.value) == (
        "action 'shop.find' has an invalid params schema: 'text' is not valid under any of the given schemas"
    )
