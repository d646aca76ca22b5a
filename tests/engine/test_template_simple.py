"""template_check reads templates that only show variables without Jinja's parser: for every template it
answers, the answer must be exactly what Jinja's tree gives (the names read, the keys, the filters unknown,
the names guarded), and it must leave to Jinja every template Jinja refuses.

Judged on every template in the shipped flows, the fixtures and the broken flows (whole YAML values, so
text around the tags counts), and on thousands of random templates built from the pieces simple tags are
made of, with near misses mixed in (operators, tests, whitespace control, stray braces, keywords, quotes).
"""

from __future__ import annotations

import random
import re

from jinja2 import TemplateSyntaxError

from engine.template_check import _describe, _simple_template
from engine.templates import env
from engine.yaml_source import parse
from validation_kit import BROKEN, FIXTURES, SHIPPED

SEED = 20261202
PIECES = [
    "{{ name }}",
    "{{name}}",
    "{{ booking.total }}",
    "{{ tours['hwange'].price | money }}",
    '{{ rows[0]["b|c"] | default("x}}y") }}',
    "{{ a[1].b[2] }}",
    "{{ total | money('USD') }}",
    "{{ tries | default(0) | int }}",
    "{{ x | d(1.5) }}",
    "{{ x | mony }}",
    "{{ x | money() }}",
    "{{ a.b | length }}",
    "{{ a + 1 }}",
    "{{ a is defined }}",
    "{{- a }}",
    "{{ a -}}",
    "{{ none }}",
    "{{ true }}",
    "{{ a.not }}",
    "{{ range }}",
    "{{ a | default(b) }}",
    "{{ a.0 }}",
    "{{ a[-1] }}",
    "{{ a | foo.bar }}",
    "{{ a['x\\'y'] }}",
    "{{ a | money(b.c) }}",
    "{{ a | default(b['x'], 'y', c[1]) }}",
    "{{ a.b | f(c[-4:]) | g(d) }}",
    "{{ a | f(none) }}",
    "{{ a | f(range) }}",
    "{{ a | f(b.not) }}",
    "{{ a | f(b c) }}",
    "{{ a[-4:] }}",
    "{{ a[1:3].b }}",
    "{{ a[::-1] }}",
    "{{ a[:] }}",
    "{{ a[::] }}",
    "{{ a[1:2:3:4] }}",
    "{{ a[01] }}",
    "{{ a | default(01) }}",
    "{{ a | default(007.50) }}",
    "{{ a[''] }}",
    "{{ a | f('') }}",
    "{{ '0.01' | money(b.c) }}",
    "{{ 1.5 | f }}",
    "{{ 'x' }}",
    "{{ 'a' 'b' }}",
    "{{-a-}}",
    "{{ 01 | f }}",
    " \n ",
    "{{ naïve }}",
    "{{ }}",
    "{{ a b }}",
    "{% if a %}",
    "{% endif %}",
    "{# note #}",
    "{",
    "}",
    "{{",
    "}}",
    "{{{ a }}",
    "{{ a }}}",
    "text ",
    " and ",
    "\n",
    "'",
    '"',
    "|",
]


def _answers(source: str) -> None:
    simple = _simple_template(source)
    try:
        tree = env.parse(source)
    except TemplateSyntaxError:
        assert simple is None, source
        return
    assert simple is None or simple == _describe(tree), source


def _texts(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    return []


def test_every_template_of_the_flows_is_read_as_jinja_reads_it():
    files = [*SHIPPED.glob("*.yaml"), *FIXTURES.glob("*.yaml"), *BROKEN.rglob("*.yaml")]
    answered = 0
    for path in sorted(files):
        try:
            data = parse(path.read_text(encoding="utf-8"), str(path)).data
        except UnicodeDecodeError:
            continue
        for text in _texts(data):
            if re.search(r"\{[{%#]", text):
                _answers(text)
                answered += _simple_template(text) is not None
    assert answered > 50  # most real templates take the simple path


def test_random_templates_are_read_as_jinja_reads_them():
    rng = random.Random(SEED)
    answered = 0
    for _ in range(6000):
        source = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 5)))
        _answers(source)
        answered += _simple_template(source) is not None
    assert answered > 600  # both ways are reached
