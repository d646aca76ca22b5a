"""An action step checks its rendered params with its schema compiled into a yes/no function, and asks
jsonschema whenever that test does not pass: the answer must always be jsonschema's, and an author still
reads jsonschema's words (action.params).
"""

from __future__ import annotations

import itertools
from decimal import Decimal

import jsonschema
import pytest

import actions
from engine.registry import ActionSpec, Result
from engine.steps.action import params_valid, validator_for

SCHEMAS = {
    "integers": {"type": "object", "properties": {"n": {"type": "integer"}, "x": {"type": ["number", "null"]}}},
    "lengths": {"type": "object", "properties": {"s": {"type": "string", "minLength": 2, "maxLength": 3}}},
    "enum": {"type": "object", "properties": {"e": {"enum": ["a", "b"]}}, "required": ["e"]},
    "mixed enum": {"type": "object", "properties": {"e": {"enum": ["a", 1, True]}}},
    "closed": {"type": "object", "properties": {"a": {}}, "additionalProperties": False},
    "nested": {"type": "object", "properties": {"o": {"type": "object", "properties": {"k": {"type": "string"}}}}},
    "bare": {"type": "object"},
    "untyped": {"properties": {"p": {"pattern": "^[0-9]+$"}}},
    "array": {"type": "object", "properties": {"l": {"type": "array", "items": {"type": "string"}}}},
}
VALUES = ["", "a", "ab", "abcd", "12", "1.50", "2637712345678", "263771234567", "ecocash", "  x ", "123456"]
VALUES += [0, 1, -3, 1.0, 2.5, True, False, None, Decimal("1.5"), [], ["a"], [1], {}, {"k": "v"}, {"k": 1}, ("a",)]


SHIPPED = actions.load_all()


def _specs():
    yield from (SHIPPED.get(name) for name in SHIPPED.names())
    for name, schema in SCHEMAS.items():
        yield ActionSpec(f"test.{name}", lambda ctx, params: Result("ok"), schema, ("ok",), ())


def _candidates(schema: dict):
    keys = list(schema.get("properties", {})) + ["other"]
    yield {}
    for key, value in itertools.product(keys, VALUES):
        yield {key: value}
    for values in itertools.product(VALUES, repeat=2):
        yield dict(zip(keys, itertools.cycle(values)))
    yield {k: "1" for k in keys[:-1]}


SPECS = list(_specs())


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_the_params_check_answers_as_jsonschema_does(spec):
    validator = jsonschema.Draft202012Validator(spec.params)
    for params in _candidates(spec.params):
        assert params_valid(spec)(params) == validator.is_valid(params), params


@pytest.mark.parametrize("spec", [SHIPPED.get(n) for n in SHIPPED.names()], ids=SHIPPED.names())
def test_every_shipped_action_is_checked_without_jsonschema_when_its_params_are_fine(spec):
    assert getattr(params_valid(spec), "__self__", None) is not validator_for(spec)
