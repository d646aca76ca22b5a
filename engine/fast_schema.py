"""A JSON Schema compiled into one yes/no function, for the common case: a step that is valid.

jsonschema explains every problem (flow_schema turns its errors into the author's words), but walking a
schema through it costs a new validator object per keyword it descends into: most of the time `flows
validate` spends on a valid flow's shape. compile_schema() turns the keywords flow schemas use into plain
closures that answer only "valid or not", with jsonschema's meaning of each keyword (Draft 2020-12: an
integer is not a bool, 1.0 is an integer, `pattern` searches, a keyword ignores values of other types).
A schema using any keyword it does not know gives None, and the caller asks jsonschema for everything;
an instance it calls invalid is handed to jsonschema too, for the messages. So its answer can only ever
skip work jsonschema would have found nothing in.
"""

from __future__ import annotations

import numbers
import re
from typing import Any, Callable

Check = Callable[[Any], bool]

# Keywords that only describe (jsonschema checks nothing for them).
_NOTES = frozenset(
    {"$schema", "$id", "$comment", "title", "description", "default", "examples", "errorMessage", "patternErrorMessage"}
    | {"readOnly", "writeOnly", "deprecated"}
)
_TYPES: dict[str, Check] = {
    "string": lambda v: isinstance(v, str),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, numbers.Number) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
}


class _Unknown(Exception):
    """The schema uses something compile_schema does not know: jsonschema alone must judge it."""


def compile_schema(schema: Any) -> Check | None:
    """A function telling whether an instance is valid under schema, or None when schema uses a keyword
    (or a value of a keyword) this module does not know."""
    try:
        return _compile(schema)
    except _Unknown:
        return None


def _compile(schema: Any) -> Check:
    if schema is True or schema == {}:
        return lambda v: True
    if schema is False:
        return lambda v: False
    if not isinstance(schema, dict):
        raise _Unknown
    checks = [_keyword(name, value, schema) for name, value in schema.items() if name not in _NOTES]
    return _every([c for c in checks if c is not None])


def _every(checks: list[Check]) -> Check:
    if len(checks) == 1:
        return checks[0]

    def every(v: Any) -> bool:
        for check in checks:  # a loop, not all(<generator>): this runs for every value of every step
            if not check(v):
                return False
        return True

    return every


def _keyword(name: str, value: Any, schema: dict) -> Check | None:
    """One keyword's check (None: the keyword checks nothing by itself, like `then`)."""
    if name in _SIMPLE and not (name == "items" and "prefixItems" in schema):
        return _SIMPLE[name](value)
    if name in ("then", "else"):
        return None
    if name == "if":
        test, then, else_ = _compile(value), _compile(schema.get("then", True)), _compile(schema.get("else", True))
        return lambda v: then(v) if test(v) else else_(v)
    if name == "additionalProperties":
        if "patternProperties" in schema:
            raise _Unknown
        known = frozenset(schema.get("properties", ()))
        if value is False:  # no other name at all: the common case, one set question
            return lambda v: not isinstance(v, dict) or known.issuperset(v)
        extra = _compile(value)

        def additional(v: Any) -> bool:
            if isinstance(v, dict):
                for k in v:
                    if k not in known and not extra(v[k]):
                        return False
            return True

        return additional
    raise _Unknown


def _type(value: Any) -> Check:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or any(n not in _TYPES for n in names):
        raise _Unknown
    return _any([_TYPES[n] for n in names])


def _any(checks: list[Check]) -> Check:
    """Whether any of checks passes (loops, not any(<generator>), and one check as it is: see _every)."""
    if len(checks) == 1:
        return checks[0]

    def any_of(v: Any) -> bool:
        for check in checks:
            if check(v):
                return True
        return False

    return any_of


def _properties(value: dict) -> Check:
    if not isinstance(value, dict):
        raise _Unknown
    subs = [(name, _compile(sub)) for name, sub in value.items()]

    def properties(v: Any) -> bool:
        if isinstance(v, dict):
            for name, check in subs:
                if name in v and not check(v[name]):
                    return False
        return True

    return properties


def _items(value: Any) -> Check:
    # (with prefixItems beside it, items would mean the rest: _keyword refuses that)
    return _each_member(list, _compile(value))


def _each_member(container: type, each: Check) -> Check:
    """Passes a value of type container when each of its members (a list's items, a dict's keys) passes
    each, and any other value (the type is another keyword's to check)."""

    def every(v: Any) -> bool:
        if isinstance(v, container):
            for member in v:
                if not each(member):
                    return False
        return True

    return every


def _equal_to(value: Any) -> Check:
    # jsonschema's `equal` keeps True apart from 1; only text and booleans are compiled (as flow schemas use).
    if isinstance(value, str):
        return lambda v: isinstance(v, str) and v == value
    if isinstance(value, bool):
        return lambda v: v is value
    raise _Unknown


def _enum(value: list) -> Check:
    if not isinstance(value, list):
        raise _Unknown
    tests = [_equal_to(each) for each in value]
    if value and all(isinstance(each, str) for each in value):  # texts only: one set question
        texts = frozenset(value)
        return lambda v: isinstance(v, str) and v in texts
    return _any(tests)


def _dependent_required(value: dict) -> Check:
    pairs = [(name, tuple(needs)) for name, needs in value.items()]

    def dependent_required(v: Any) -> bool:
        if isinstance(v, dict):
            for name, needs in pairs:
                if name in v:
                    for n in needs:
                        if n not in v:
                            return False
        return True

    return dependent_required


def _sized(kind: type, compare: Callable[[int, int], bool]) -> Callable[[int], Check]:
    return lambda limit: lambda v: not isinstance(v, kind) or compare(len(v), limit)


def _bound(compare: Callable[[Any, Any], bool]) -> Callable[[Any], Check]:
    def make(limit: Any) -> Check:
        return lambda v: not _TYPES["number"](v) or compare(v, limit)

    return make


def _pattern(value: str) -> Check:
    search = re.compile(value).search
    return lambda v: not isinstance(v, str) or search(v) is not None


def _all_of(value: list) -> Check:
    return _every([_compile(sub) for sub in value])


def _any_of(value: list) -> Check:
    return _any([_compile(sub) for sub in value])


def _not(value: Any) -> Check:
    sub = _compile(value)
    return lambda v: not sub(v)


def _required(value: list) -> Check:
    names = tuple(value)

    def required(v: Any) -> bool:
        if isinstance(v, dict):
            for n in names:
                if n not in v:
                    return False
        return True

    return required


def _property_names(value: Any) -> Check:
    return _each_member(dict, _compile(value))


def well_formed(schema: Any) -> bool:
    """Whether schema is certainly a valid Draft 2020-12 schema, judged only for the keywords this module
    knows, each against what the meta-schema asks of it. False means "not known here", not "invalid": the
    caller asks jsonschema's check_schema, which judges every keyword and explains what is wrong."""
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, dict):
        return False
    for name, value in schema.items():
        rule = _WELL_FORMED.get(name)
        if rule is None or not rule(value):
            return False
    return True


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _unique_names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(n, str) for n in value) and len(set(value)) == len(value)


def _type_names(value: Any) -> bool:
    if isinstance(value, str):
        return value in _TYPES
    return bool(value) and _unique_names(value) and all(n in _TYPES for n in value)


def _regex(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        re.compile(value)  # the meta-schema's `format: regex`, as jsonschema checks it
    except re.error:
        return False
    return True


def _schemas(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(well_formed(sub) for sub in value)


def _anything(value: Any) -> bool:
    return True


_WELL_FORMED: dict[str, Callable[[Any], bool]] = {
    "type": _type_names,
    "properties": lambda v: isinstance(v, dict) and all(well_formed(sub) for sub in v.values()),
    "additionalProperties": well_formed,
    "items": well_formed,
    "propertyNames": well_formed,
    "not": well_formed,
    "if": well_formed,
    "then": well_formed,
    "else": well_formed,
    "allOf": _schemas,
    "anyOf": _schemas,
    "required": _unique_names,
    "dependentRequired": lambda v: isinstance(v, dict) and all(_unique_names(n) for n in v.values()),
    "enum": lambda v: isinstance(v, list),
    "const": _anything,
    "pattern": _regex,
    **dict.fromkeys(("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties"), _count),
    **dict.fromkeys(("minimum", "maximum"), lambda v: _TYPES["number"](v)),
    **dict.fromkeys(("title", "description", "$comment"), lambda v: isinstance(v, str)),
    **dict.fromkeys(("readOnly", "writeOnly", "deprecated"), lambda v: isinstance(v, bool)),
    "examples": lambda v: isinstance(v, list),
    **dict.fromkeys(("default", "errorMessage", "patternErrorMessage"), _anything),
}

_SIMPLE: dict[str, Callable[[Any], Check]] = {
    "type": _type,
    "properties": _properties,
    "items": _items,
    "const": _equal_to,
    "enum": _enum,
    "required": _required,
    "dependentRequired": _dependent_required,
    "propertyNames": _property_names,
    "pattern": _pattern,
    "minLength": _sized(str, lambda n, m: n >= m),
    "maxLength": _sized(str, lambda n, m: n <= m),
    "minItems": _sized(list, lambda n, m: n >= m),
    "maxItems": _sized(list, lambda n, m: n <= m),
    "minProperties": _sized(dict, lambda n, m: n >= m),
    "maxProperties": _sized(dict, lambda n, m: n <= m),
    "minimum": _bound(lambda v, m: not v < m),
    "maximum": _bound(lambda v, m: not v > m),
    "allOf": _all_of,
    "anyOf": _any_of,
    "not": _not,
}

__all__ = ["compile_schema", "well_formed"]
