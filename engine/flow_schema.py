"""The flow file's shape: one JSON Schema built from the flow's fields, the step kinds and the input checks,
applied one step kind at a time.

schemas/flow.schema.json is the same schema written out for editors (`python schemas/generate.py` writes
it; a test fails when it is out of date), so it describes every kind. Checking uses it differently: each
step's kind is read from the key it carries (`say`, `ask`, `action`, `flow`, `end`, or only `next` for a
branch), then the step is checked against that kind's definition alone. One `oneOf` over every kind would
answer "is not valid under any of the given schemas"; this names the field the author wrote.
jsonschema's errors are turned into plain words at the place in the file they are about.
"""

from __future__ import annotations

import difflib
import json
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .fast_schema import compile_schema
from .inputs import checks
from .problems import Problem
from .steps import kinds
from .yaml_source import Path, Source

if TYPE_CHECKING:
    import jsonschema

_TYPE_WORDS = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping (name: value lines)",
    "null": "empty",
}

# The flow's own fields and the definitions every kind shares; the kinds and the checks add theirs.
_TEXT = {"$ref": "#/$defs/text"}
_STEP_NAME = {"$ref": "#/$defs/step_name"}
_BASE: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://convoflow.local/schemas/flow.schema.json",
    "title": "convoflow flow",
    "description": "One WhatsApp conversation flow. Put `# yaml-language-server: $schema=../schemas/flow.schema.json` "
    "on the first line of a flow file so your editor checks it as you type; `flows validate` checks "
    "everything this schema checks and more.",
    "type": "object",
    "required": ["flow", "steps"],
    "additionalProperties": False,
    "properties": {
        "flow": {"$ref": "#/$defs/flow_name", "description": "The flow's unique name, e.g. omari_payment."},
        "title": {"$ref": "#/$defs/text", "description": "A human title, e.g. Omari Mobile Payment."},
        "triggers": {
            "type": "array",
            "errorMessage": "must be a list of phrases, e.g. triggers: [pay, payment]",
            "description": "Messages that start this flow. The whole message must match; case, surrounding spaces "
            "and punctuation are ignored.",
            "items": _TEXT,
        },
        "start": {"$ref": "#/$defs/step_name", "description": "The first step. Default: the first step written."},
        "cancel": {
            "type": "object",
            "description": "Words that stop the flow from any question, and what to say then.",
            "additionalProperties": False,
            "properties": {
                "words": {"type": "array", "items": _TEXT, "description": "Default: cancel, stop."},
                "say": {"$ref": "#/$defs/text", "description": "The message sent when the user cancels."},
                "step": {
                    "$ref": "#/$defs/step_name",
                    "description": "A step to run on cancel (e.g. to void a payment).",
                },
            },
        },
        "menu": {
            "$ref": "#/$defs/text",
            "description": "The word that returns to the main menu from any question. Default: menu.",
        },
        "expire": {
            "type": "object",
            "description": "End the conversation after this long without a message from the user.",
            "required": ["after"],
            "additionalProperties": False,
            "properties": {
                "after": {
                    "type": "string",
                    "errorMessage": "must be a duration like 10m, 2h or 1d",
                    "description": "How long: a number then s, m, h or d, e.g. 10m, 2h, 1d.",
                },
                "say": {"$ref": "#/$defs/text", "description": "The message sent when the conversation expires."},
                "step": {"$ref": "#/$defs/step_name", "description": "A step to run when the conversation expires."},
            },
        },
        "steps": {
            "type": "object",
            "description": "The steps, by name. Each step's kind is the key it carries: say, ask, action, flow or "
            "end (a step with only next: is a branch).",
            "minProperties": 1,
            "propertyNames": _STEP_NAME,
            "additionalProperties": {"$ref": "#/$defs/step"},
        },
    },
    "$defs": {
        "text": {"type": "string", "minLength": 1},
        "flow_name": {
            "type": "string",
            "pattern": "^[a-z][a-z0-9_]*$",
            "patternErrorMessage": "must be lowercase letters, digits and underscores, starting with a letter, "
            "e.g. omari_payment",
        },
        "step_name": {
            "type": "string",
            "pattern": "^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$",
            "patternErrorMessage": "must be letters, digits, '_' or '-' (no spaces), at most 64 characters, "
            "e.g. ask_amount",
        },
        "variable": {
            "type": "string",
            "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
            "patternErrorMessage": "must be letters, digits and underscores, starting with a letter, e.g. amount",
        },
        "next": {
            "description": "Where to go next: a step name, or a list of {if: <condition>, goto: <step>} ending with "
            "a plain {goto: <step>}.",
            "type": ["string", "array"],
            "if": {"type": "string"},
            "then": _STEP_NAME,
            "else": {"minItems": 1, "items": {"$ref": "#/$defs/route"}},
        },
        "route": {
            "type": "object",
            "required": ["goto"],
            "additionalProperties": False,
            "properties": {
                "if": {"$ref": "#/$defs/text", "description": "A condition over saved variables, e.g. amount > 100."},
                "goto": _STEP_NAME,
            },
        },
        "number_or_template": {"type": ["string", "number"]},
    },
}


def build_schema() -> dict:
    """The whole flow schema: the flow's fields, then every step kind's and every input check's."""
    root = json.loads(json.dumps(_BASE))  # a deep copy, so no caller can change the base
    defs = root["$defs"]
    keyed = [k for k in kinds if k.key]
    rules = [{"if": {"required": [k.key]}, "then": {"$ref": f"#/$defs/{k.name}"}} for k in keyed]
    rules.append(
        {
            "if": {"not": {"anyOf": [{"required": [k.key]} for k in keyed]}},
            "then": {"$ref": f"#/$defs/{kinds.keyless().name}"},
        }
    )
    defs["step"] = {"type": "object", "allOf": rules}
    for kind in kinds:
        defs[kind.name] = kind.schema
        defs.update(kind.defs)
    defs.update(_expect_defs())
    return json.loads(json.dumps(root))


def _expect_defs() -> dict:
    bare = [c.name for c in checks if c.bare]
    settings = {c.name: _check_settings(c) for c in checks}
    return {
        "expect": {
            "description": f"The check the answer must pass: {', '.join(bare)}, or a mapping with one of them and "
            "its settings, e.g. {amount: {min: '1', max: '{{ booking.balance_due }}'}}, "
            "{regex: '^BK-'}, {choice: [a, b]}.",
            "type": ["string", "object"],
            "if": {"type": "string"},
            "then": {"enum": bare},
            "else": {"$ref": "#/$defs/expect_settings"},
        },
        "expect_settings": {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": False,
            "properties": settings,
        },
    }


def _check_settings(check: Any) -> dict:
    """The schema of what may follow `name:` under `expect:`."""
    if not check.args:
        return {"type": ["null", "object"], "maxProperties": 0}
    settings = {"additionalProperties": False, "properties": dict(check.args)}
    if not check.shorthand:
        return {"type": ["null", "object"], **settings}
    short = {k: v for k, v in check.args[check.shorthand].items() if k != "type"}
    short_type = check.args[check.shorthand]["type"]
    return {
        "type": [short_type, "object"],
        "if": {"type": short_type},
        "then": short,
        "else": {"required": list(check.required), **settings},
    }


def schema() -> dict:
    """The flow schema as the registries describe it now (schemas/flow.schema.json is its copy for editors).
    Built once per state of the kind and check registries: a kind or check registered later is seen."""
    return _schema_at(kinds.generation, checks.generation)


@lru_cache(maxsize=4)
def _schema_at(kinds_generation: int, checks_generation: int) -> dict:
    return build_schema()


def written_schema() -> dict:
    """The schema file editors load, as shipped: read as package data (so an installed wheel has it). The test
    suite checks it is the same as schema()."""
    from importlib import resources  # here: with tempfile and zipfile, a new `flows validate` paid for it unused

    return json.loads(resources.files("schemas").joinpath("flow.schema.json").read_text(encoding="utf-8"))


class _Shape:
    """One schema the shape is checked against: a quick yes/no (None when it cannot be compiled) and
    jsonschema's validator, asked only for what the quick check does not pass, to explain it (so a valid
    flow never imports jsonschema)."""

    def __init__(self, schema: dict) -> None:
        self.schema = schema
        self.quick: Callable[[Any], bool] | None = compile_schema(schema)

    @cached_property
    def validator(self) -> jsonschema.Draft202012Validator:
        import jsonschema

        return jsonschema.Draft202012Validator(self.schema)

    def explain(self, instance: Any, base: Path, prefix: str, kind: str | None = None) -> list:
        if self.quick is not None and self.quick(instance):
            return []
        return list(_explain(self.validator, instance, base, prefix, kind=kind))


def _validators() -> dict[str, _Shape]:
    """The checks for the flow's top level and one per step kind, built once per state of the kind and
    check registries (keyed on their generations, so a later registration is seen)."""
    return _validators_at(kinds.generation, checks.generation)


@lru_cache(maxsize=4)
def _validators_at(kinds_generation: int, checks_generation: int) -> dict[str, _Shape]:
    root = schema()
    top = dict(root)
    top["properties"] = dict(root["properties"])
    # Steps are checked one by one against their own kind; the top level only checks the mapping itself.
    top["properties"]["steps"] = {k: v for k, v in root["properties"]["steps"].items() if k != "additionalProperties"}
    defs = root["$defs"]
    # References are written out in place: following a $ref costs more than checking what it points to,
    # and a 1,000-step flow follows tens of thousands of them.
    inlined = {"top": _inline(top, defs), **{kind: _inline(defs[kind], defs) for kind in kinds.names()}}
    return {name: _Shape(one) for name, one in inlined.items()}


def _inline(node: Any, defs: dict) -> Any:
    """node with every local {"$ref": "#/$defs/x"} replaced by x itself (the schema has no cycles)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            merged = {
                **_inline(defs[ref.removeprefix("#/$defs/")], defs),
                **{k: _inline(v, defs) for k, v in node.items() if k != "$ref"},
            }
            return merged
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


# 0.75: close enough for typos (titel, nxt, refrence), far enough to not offer 'payment' for 'amount'.
_CLOSE = 0.75
# How many (mistake, known name) pairs one set of names compares in all: difflib compares a mistake with
# every name, so a flow of thousands of steps with as many different mistakes would take minutes. Past
# this, a mistake is still reported, without a "did you mean".
SUGGESTION_BUDGET = 50_000


def suggest(word: str, choices: Any) -> str:
    """' — did you mean 'x'?' when a known word is close to what was written, else ''."""
    return _suggest(str(word), tuple(str(c) for c in choices))


@lru_cache(maxsize=64)
def _suggest(word: str, choices: tuple[str, ...]) -> str:
    return Suggestions(choices)(word)


class Suggestions:
    """ "Did you mean" over one set of known names (a flow's steps, every saved variable), asked for many
    mistakes: the names are read once, each mistake is compared only with the names whose length could be
    close enough (difflib's own first test, so the answer is the same), an answer is kept per mistake, and
    the comparisons made in all are bounded by SUGGESTION_BUDGET.
    """

    def __init__(self, choices: Any, budget: int = SUGGESTION_BUDGET) -> None:
        self.by_length: dict[int, list[str]] = {}
        for choice in dict.fromkeys(str(c) for c in choices):
            self.by_length.setdefault(len(choice), []).append(choice)
        self.budget = budget
        self.answers: dict[str, str] = {}

    def __call__(self, word: Any) -> str:
        word = str(word)
        if word not in self.answers:
            size = len(word)
            # difflib's real_quick_ratio: 2 * min(len(a), len(b)) / (len(a) + len(b)) must reach the cutoff.
            near = [
                choice
                for length, group in self.by_length.items()
                if (2.0 * min(size, length) / (size + length) if size + length else 1.0) >= _CLOSE
                for choice in group
            ]
            self.budget -= len(near)
            close = _closest(word, near) if self.budget >= 0 else None
            self.answers[word] = f" — did you mean '{close}'?" if close is not None else ""
        return self.answers[word]


def _closest(word: str, choices: list[str]) -> str | None:
    """difflib.get_close_matches(word, choices, n=1, cutoff=_CLOSE)[0], or None: the same tests in the same
    order, but a choice whose quick upper bound cannot beat (or tie) the best ratio so far is not compared
    in full (the full comparison is most of the cost, and one close choice rules out most others)."""
    matcher = difflib.SequenceMatcher()
    matcher.set_seq2(word)
    best: tuple[float, str] | None = None
    for choice in choices:
        matcher.set_seq1(choice)
        if matcher.real_quick_ratio() < _CLOSE:
            continue
        bound = matcher.quick_ratio()
        if bound < _CLOSE or (best is not None and bound < best[0]):
            continue
        score = matcher.ratio()
        if score >= _CLOSE and (best is None or (score, choice) > best):
            best = (score, choice)
    return best[1] if best else None


def step_kind(step: dict) -> tuple[str | None, list[str]]:
    """The kind a step's keys say it is, and every kind key it carries (more than one is a mistake)."""
    return kinds.of(step)


def check(source: Source) -> tuple[list[Problem], dict[str, str | None], set[str]]:
    """Check the shape of a parsed flow.

    Returns the problems, each step's kind (None when it cannot be told) and the names of the steps
    whose shape is right (the semantic checks look only at those).
    """
    data = source.data
    validators = _validators()
    problems = [
        source.problem(path, "error", code, msg, key=key)
        for path, code, msg, key in validators["top"].explain(data, (), "")
    ]
    kind_of: dict[str, str | None] = {}
    sound: set[str] = set()
    steps = data.get("steps") if isinstance(data, dict) else None
    if isinstance(steps, list):
        problems = [p for p in problems if p.code != "field.type" or (p.line, p.col) != source.where(("steps",))]
        problems.append(source.problem(("steps",), "error", "field.type", _steps_as_list(steps)))
    if not isinstance(steps, dict):
        return problems, kind_of, sound
    for name, step in steps.items():
        kind, found = _check_step(source, name, step, validators)
        kind_of[name] = kind
        problems.extend(found)
        if kind is not None and not found:
            sound.add(name)
    return problems, kind_of, sound


def _check_step(
    source: Source, name: str, step: Any, validators: dict[str, _Shape]
) -> tuple[str | None, list[Problem]]:
    """One step's kind (None when it cannot be told) and the problems with its shape."""
    path = ("steps", name)
    if not isinstance(step, dict):
        return None, [
            source.problem(path, "error", "field.type", f"step '{name}' must be a mapping of fields, e.g. 'say: Hello'")
        ]
    kind, found = step_kind(step)
    if kind is None and not found:
        typo = next(
            (
                f" ('{key}' looks like '{close[0]}')"
                for key in step
                if (close := difflib.get_close_matches(str(key), (*kinds.keys(), "next"), n=1, cutoff=0.6))
            ),
            "",
        )
        message = f"step '{name}' does not say what it does: give it one of {_or_list(kinds.keys())}{typo}"
        return None, [source.problem(path, "error", "step.kind_missing", message, key=True)]
    if kind is None:
        message = (
            f"step '{name}' has both '{found[0]}' and '{found[1]}': a step does one "
            f"thing, so split it into two steps joined by 'next'"
        )
        return None, [source.problem(path + (found[1],), "error", "step.kind_ambiguous", message, key=True)]
    errors = validators[kind].explain(step, path, f"step '{name}': ", kind=kind)
    return kind, [source.problem(p, "error", code, msg, key=key) for p, code, msg, key in errors]


def _explain(
    validator: jsonschema.Draft202012Validator, instance: Any, base: Path, prefix: str, kind: str | None = None
) -> Iterator[tuple[Path, str, str, bool]]:
    """jsonschema errors as (path, code, plain message, point at the key?)."""
    required_seen: set[Path] = set()
    for err in validator.iter_errors(instance):
        path = base + tuple(err.absolute_path)
        if err.validator == "required":
            # jsonschema reports each missing field apart; one line naming them all reads better.
            if path in required_seen:
                continue
            required_seen.add(path)
        if err.validator == "additionalProperties":
            known = list(err.schema.get("properties", {}))
            for extra in sorted(k for k in err.instance if k not in known):
                yield path + (extra,), "field.unknown", prefix + _unknown_field(extra, known, path, base, kind), True
            continue
        if "propertyNames" in err.schema_path:
            name = err.instance
            yield (
                path + (name,),
                "field.invalid",
                f"{prefix}step name '{name}' {err.schema.get('patternErrorMessage', 'is not allowed')}",
                True,
            )
            continue
        code, message = plain_words(err, _label(path, base))
        if err.validator == "dependentRequired":
            # Point at the field that needs the missing one: that is the line the author just wrote.
            yield path + (next(k for k in err.validator_value if k in err.instance),), code, prefix + message, True
            continue
        yield path, code, prefix + message, False


def _unknown_field(extra: str, known: list[str], path: Path, base: Path, kind: str | None) -> str:
    article = "an" if kind and kind[0] in "aeiou" else "a"
    where = f"'{_label(path, base)}'" if path != base else (f"{article} {kind} step" if kind else "a flow")
    message = f"'{extra}' is not a field of {where}"
    if path == base and kind:
        owners = [k.name for k in kinds if extra in k.fields() and k.name != kind]
        if owners:
            return message + f" (only {' and '.join(owners)} steps have it)"
    return message + (suggest(extra, known) or f"; known fields: {', '.join(known)}")


def _label(path: Path, base: Path) -> str:
    """The name the author wrote for path: 'attempts', or 'item 2 of triggers'."""
    rel = path[len(base) :] if path[: len(base)] == base else path
    if not rel:
        return base[-1] if base else "the flow"
    last = rel[-1]
    if isinstance(last, int):
        parent = next((p for p in reversed(rel[:-1]) if isinstance(p, str)), base[-1] if base else "the list")
        return f"item {last + 1} of {parent}"
    return str(last)


def _or_list(names: tuple[str, ...]) -> str:
    """'say, ask, action, flow or end'."""
    return ", ".join(names[:-1]) + " or " + names[-1]


def and_list(names: list[str]) -> str:
    """'a', 'a' and 'b', 'a', 'b' and 'c'."""
    quoted = [f"'{n}'" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _types(value: Any) -> str:
    names = value if isinstance(value, list) else [value]
    return " or ".join(_TYPE_WORDS.get(n, n) for n in names)


def _steps_as_list(steps: list) -> str:
    """The message for steps written as a list (`- name: hello`), showing the same step written right."""
    first = steps[0] if steps and isinstance(steps[0], dict) else {}
    name = first.get("name") if isinstance(first.get("name"), str) else "hello"
    return (
        f"steps are not a list: write each step's name followed by ':' and its fields indented below it, "
        f"e.g. '{name}:' instead of '- name: {name}'"
    )


def plain_words(err: jsonschema.ValidationError, label: str) -> tuple[str, str]:
    """(code, message) for one jsonschema error, in the words of someone editing YAML."""
    v, value, schema_ = err.validator, err.validator_value, err.schema
    subject = label if label.startswith("item ") or label == "the flow" else f"'{label}'"
    if "errorMessage" in schema_:
        return "field.invalid", f"{subject} {schema_['errorMessage']}"
    if v == "type":
        return "field.type", f"{subject} must be {_types(value)}"
    if v == "required":
        missing = [r for r in value if not isinstance(err.instance, dict) or r not in err.instance] or value
        return "field.required", f"{subject} needs {and_list(missing)}"
    if v == "dependentRequired":
        pairs = [
            (k, need) for k, needs in value.items() if k in err.instance for need in needs if need not in err.instance
        ]
        k, need = pairs[0] if pairs else next(iter(value.items()))
        return "field.required", f"'{k}' only works together with '{need}'"
    if v == "enum":
        return "field.invalid", f"{subject} must be one of {', '.join(map(str, value))}{suggest(err.instance, value)}"
    if v == "const":
        return "field.invalid", f"{subject} must be {json.dumps(value)}"
    if v == "pattern":
        return "field.invalid", f"{subject} {schema_.get('patternErrorMessage', 'does not look right')}"
    if v == "minLength":
        return (
            "field.invalid",
            f"{subject} must not be empty" if value == 1 else f"{subject} must be at least {value} characters",
        )
    if v == "maxLength":
        return "field.invalid", f"{subject} must be at most {value} characters"
    if v in ("minItems", "minProperties"):
        return (
            "field.invalid",
            f"{subject} must not be empty" if value == 1 else f"{subject} needs at least {value} entries",
        )
    if v in ("maxItems", "maxProperties"):
        if value == 0:
            return "field.invalid", f"{subject} takes no settings"
        if value == 1 and label == "expect":
            return "field.invalid", f"{subject} must name one check only, e.g. 'expect: amount'"
        return "field.invalid", f"{subject} can have at most {value} entries"
    if v == "minimum":
        return "field.invalid", f"{subject} must be at least {value}"
    if v == "maximum":
        return "field.invalid", f"{subject} must be at most {value}"
    return "field.invalid", f"{subject}: {err.message}"


__all__ = [
    "build_schema",
    "written_schema",
    "schema",
    "check",
    "step_kind",
    "suggest",
    "Suggestions",
    "plain_words",
    "and_list",
]
