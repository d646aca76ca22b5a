"""engine.templates renders without Jinja's per-call setup, and simple templates without Jinja at all; the
text and the errors must be exactly Jinja's own (`Template.render`, `TemplateExpression.__call__`).

Every template and condition in flows/ and in the tests' YAML is rendered both ways over vars that have
every name it reads, vars missing each name, values of each type a conversation saves, and a saved value
that is not the mapping a `.key` expects.
"""

from __future__ import annotations

import glob
import os
import random
from decimal import Decimal

import pytest
import yaml
from jinja2 import nodes

from engine.templates import compile_expression, compile_template, env, evaluate, prepare, prepare_expression, render

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VALUES = [
    "150",
    " 150 ",
    "12.5",
    "1,000",
    "",
    "Tariro <b>&",
    "{{ 7*7 }}",
    "2026-12-25",
    Decimal("300.00"),
    7,
    2.5,
    True,
    None,
]
VALUES += [["a", "b"], {"reference": "BK-1"}, "263771234567", "ab", "100", 100, "pay", 3]


def _walk(node, seen=None):
    """Every (key, value) pair and string in a YAML document; a fixture may alias itself, so once each."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, str):
        yield None, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(key, seen)
            yield from _walk(value, seen)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value, seen)


def _documents():
    paths = glob.glob(os.path.join(ROOT, "flows", "**", "*.yaml"), recursive=True)
    paths += glob.glob(os.path.join(ROOT, "tests", "**", "*.yaml"), recursive=True)
    for path in sorted(paths):
        try:
            with open(path, encoding="utf-8") as f:
                yield from (d for d in yaml.safe_load_all(f) if d is not None)
        except (yaml.YAMLError, UnicodeDecodeError):
            continue  # a broken-flow fixture, broken on purpose


def _compiles(compile, source: str) -> bool:
    try:
        compile(source)
    except Exception:
        return False
    return True


DOCUMENTS = list(_documents())
PAIRS = [pair for d in DOCUMENTS for pair in _walk(d)]
TEMPLATES = sorted({s for k, s in PAIRS if k is None and "{" in s and _compiles(compile_template, s)})
CONDITIONS = sorted({s for k, s in PAIRS if k == "if" and isinstance(s, str) and _compiles(compile_expression, s)})
EXTRA = [
    "{{ booking.items }}",  # the dict's method in the sandbox, not a key: Jinja's path
    "{{ booking['balance_due'] | money }} and {{ booking.reference }}",
    "{{- amount | money('ZWG') -}} \n",
    "{{ when | date }} / {{ when | date('%A') }}",
    "{{ amount | money }}{{ amount | upper }}",
    "{{ range }}",
    "{{ contact[-4:] }}, {{ contact[1:3] }}, {{ contact[::2] }}, {{ contact[::-1] }}",
    "{{ booking.reference[-2:] }} {{ contact[0] }} {{ contact[a:] }}",
    "{{ booking.missing.deeper }}",
    "{{ amount | money(currency='USD') }}",
    "Line one\n{{ contact }}\n",
]


def _paths(source: str, parse) -> list[tuple[str, ...]]:
    """Each name the template reads, with the `.key` / `['key']` chain under it."""
    found = []
    for node in parse(source).find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        keys = []
        while isinstance(node, nodes.Getattr | nodes.Getitem):
            key = node.attr if isinstance(node, nodes.Getattr) else getattr(node.arg, "value", None)
            keys.append(key if isinstance(key, str) else "x")
            node = node.node
        if isinstance(node, nodes.Name):
            found.append((node.name, *reversed(keys)))
    return found


def _vars_for(paths, value) -> dict:
    vars: dict = {}
    for name, *keys in paths:
        if not keys:
            vars.setdefault(name, value)
            continue
        here = vars.setdefault(name, {})
        if not isinstance(here, dict):
            continue
        for key in keys[:-1]:
            here = here.setdefault(key, {}) if isinstance(here.get(key, {}), dict) else {}
        here.setdefault(keys[-1], value)
    return vars


def _cases(paths):
    yield {}
    for value in VALUES:
        yield _vars_for(paths, value)
    full = _vars_for(paths, "150")
    for name in full:
        yield {k: v for k, v in full.items() if k != name}  # each name missing in turn
        yield {**full, name: "not a mapping"}
        if isinstance(full[name], dict):
            yield {**full, name: {}}  # the mapping without its keys


def _outcome(call):
    try:
        return "ok", call()
    except Exception as e:
        return type(e).__name__, str(e)


def _parse_expression(source):
    from jinja2.parser import Parser

    return nodes.Template([nodes.Output([Parser(env, source, state="variable").parse_expression()])])


def test_the_flows_and_fixtures_have_templates_and_conditions_to_compare():
    assert len(TEMPLATES) > 50 and len(CONDITIONS) > 10
    assert sum(prepare(s).parts is not None for s in TEMPLATES) > 30  # the fast path is the common case


@pytest.mark.parametrize("source", TEMPLATES + EXTRA)
def test_a_template_renders_exactly_as_jinja_renders_it(source):
    for vars in _cases(_paths(source, env.parse)):
        expected = _outcome(lambda: compile_template(source).render(vars))
        assert _outcome(lambda: render(source, vars)) == expected, vars


CONDITION_EXTRA = ["range(3) | list", "nobody", "paid", "booking.balance_due | float >= amount | float"]
CONDITION_EXTRA += ["contact[-4:] == '4567'", "amount | money(booking.currency) != '$1.00'", "1 < amount", "a < b < c"]


@pytest.mark.parametrize("source", CONDITIONS + CONDITION_EXTRA)
def test_a_condition_evaluates_exactly_as_jinja_evaluates_it(source):
    for vars in _cases(_paths(source, _parse_expression)):
        expected = _outcome(lambda: compile_expression(source)(**vars))
        assert _outcome(lambda: evaluate(source, vars)) == expected, vars


# Pieces of templates for random ones: what the fast path takes, and near misses it must leave to Jinja.
PIECES = ["{{ contact }}", "{{ booking.reference }}", "{{ booking['balance_due'] | money }}", "{{ contact[-4:] }}"]
PIECES += ["{{ amount | money(booking.currency) }}", "{{ amount | money('ZWG') }}", "{{ when | date('%A') }}"]
PIECES += [
    "{{ amount | float }}",
    "{{ amount | int | money }}",
    "{{ booking.items }}",
    "{{ contact[0] }}",
    "{{ a[::2] }}",
]
PIECES += ["{{ a | upper }}", "{{ a | default(b) }}", "{{- a }}", "{{ range }}", "{{ a[''] }}", "{{ a[1:3] }}"]
PIECES += ["{{- amount | money }}", "{{ contact -}}", " \n ", "{{ '0.01' | money(booking.currency) }}", "{{ 1 }}"]
PIECES += ["text ", "\n", "\r\n", "\r", "{", "}", "}}", " { ", "'", "|", "Paid: "]


def test_random_templates_render_exactly_as_jinja_renders_them():
    rng = random.Random(20261202)
    fast = 0
    for _ in range(600):
        source = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 5)))
        if "{" not in source or not _compiles(compile_template, source):
            continue  # text without a brace is sent as written, not rendered
        fast += prepare(source).parts is not None
        for vars in _cases(_paths(source, env.parse)):
            expected = _outcome(lambda: compile_template(source).render(vars))
            assert _outcome(lambda: render(source, vars)) == expected, (source, vars)
    assert fast > 100  # both ways are taken


def test_rendering_leaves_the_vars_as_they_were():
    vars = {"contact": "263771234567", "booking": {"reference": "BK-1"}}
    render("{% set contact = 'x' %}{{ contact }} {{ booking.reference }} {{ range(2) | list }}", vars)
    evaluate("contact == '263771234567'", vars)
    assert vars == {"contact": "263771234567", "booking": {"reference": "BK-1"}}


def test_the_fast_path_takes_one_comparison_of_saved_values_and_constants():
    for source in ["amount | float > 100", 'choice == "pay"', "paid", "rating | int == 3", "1 < amount"]:
        assert prepare_expression(source).parts is not None, source
    for source in ["people > 4 and tip == 0", "not paid", "a < b < c", "x in y", "range(3) | list", "1 + a > 2"]:
        assert prepare_expression(source).parts is None, source


def test_the_fast_path_takes_only_plain_outputs():
    assert prepare("Paid {{ amount | money }} for {{ booking.reference }} by {{ channel }}.").parts is not None
    assert prepare("BK-{{ contact[-4:] }}").parts is not None
    for source in ["{{ booking.items }}", "{{ contact[0] }}", "{{ a | upper }}", "{% if a %}x{% endif %}"]:
        assert prepare(source).parts is None, source
