"""Reading a flow's templates without running them: syntax, the variables they use, their literal text.

Parsing goes through the same sandboxed environment the runner renders with, so a template that passes
here compiles there. Results are cached per source text: a generated flow repeats the same templates.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from jinja2 import TemplateSyntaxError, nodes
from jinja2.parser import Parser

from .templates import env

_TAGS = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


@dataclass(frozen=True)
class TemplateInfo:
    """What a template (or an `if:` condition) needs: the names it reads; or why it does not parse."""

    names: frozenset[str] = frozenset()
    error: str | None = None
    error_line: int = 1  # line of the error inside the template text (1 = its first line)
    unknown_filters: tuple[str, ...] = ()
    unknown_tests: tuple[str, ...] = ()


def is_template(text: str) -> bool:
    """Whether text is rendered with Jinja: it holds a {{ }} or {% %} tag (or a {# #} comment)."""
    return "{{" in text or "{%" in text or "{#" in text


def literal_text(text: str) -> str:
    """text without its template tags: what WhatsApp will certainly show, whatever the variables hold."""
    return _TAGS.sub("", text) if "{" in text else text


@lru_cache(maxsize=8192)
def inspect_template(source: str) -> TemplateInfo:
    """Parse a message template."""
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as e:
        return TemplateInfo(error=e.message or "syntax error", error_line=e.lineno or 1)
    return _describe(tree)


@lru_cache(maxsize=8192)
def inspect_expression(source: str) -> TemplateInfo:
    """Parse a condition such as `amount | float > 100` (what `if:` holds: an expression, no braces)."""
    try:
        parser = Parser(env, source, state="variable")
        expr = parser.parse_expression()
        if not parser.stream.eos:
            token = parser.stream.current
            return TemplateInfo(error=f"unexpected '{token.value}' after the condition", error_line=token.lineno)
    except TemplateSyntaxError as e:
        return TemplateInfo(error=e.message or "syntax error", error_line=e.lineno or 1)
    return _describe(nodes.Template([nodes.Output([expr])]))


def _describe(tree: nodes.Node) -> TemplateInfo:
    loaded: set[str] = set()
    stored: set[str] = set()
    for name in tree.find_all(nodes.Name):
        (loaded if name.ctx == "load" else stored).add(name.name)
    filters = sorted({f.name for f in tree.find_all(nodes.Filter) if f.name not in env.filters})
    tests = sorted({t.name for t in tree.find_all(nodes.Test) if t.name not in env.tests})
    return TemplateInfo(
        names=frozenset(loaded - stored - set(env.globals)),
        unknown_filters=tuple(filters),
        unknown_tests=tuple(tests),
    )


__all__ = ["TemplateInfo", "inspect_template", "inspect_expression", "is_template", "literal_text"]
