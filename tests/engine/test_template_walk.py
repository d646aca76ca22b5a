"""template_check walks a template's tree with a stack instead of jinja2's find_all: the same nodes, in
the same order (the order of the problems a template gives depends on it)."""

from __future__ import annotations

import re

import pytest
from jinja2 import TemplateSyntaxError, nodes

from engine.template_check import _by_type
from engine.templates import env
from validation_kit import BROKEN, FIXTURES, SHIPPED

_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}")
NESTED = [
    "{% for x in tours %}{{ x.name | upper }}{% if x is defined %}{{ loop.index }}{% endif %}{% endfor %}",
    "{{ a[b].c(d, e=f) ~ (g + 1) * -h if k else m | default(n[0]) }}",
    "{% set t = {'a': [1, 2], 'b': p.q} %}{{ t.a | join(', ') }}{{ r is not none and s in [u, v] }}",
]


def _templates() -> list[str]:
    files = [*SHIPPED.glob("*.yaml"), *FIXTURES.glob("*.yaml"), *BROKEN.rglob("*.yaml")]
    found = {t for path in files for t in _TAG.findall(path.read_text(encoding="utf-8", errors="replace"))}
    return sorted(found) + NESTED


@pytest.mark.parametrize("source", _templates())
def test_the_walk_finds_what_find_all_finds_in_its_order(source):
    try:
        tree = env.parse(source)
    except TemplateSyntaxError:
        pytest.skip("does not parse")
    expected: dict[type, list] = {}
    for node in tree.find_all(nodes.Node):
        expected.setdefault(type(node), []).append(node)
    walked = _by_type(tree)
    assert list(walked) == list(expected)
    assert all([id(n) for n in walked[kind]] == [id(n) for n in group] for kind, group in expected.items())
