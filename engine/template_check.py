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
# Most message templates only print variables: `{{ booking.balance_due | money }}`. Those are read with a
# regex, which is ~20x cheaper than Jinja's parser; anything else (arguments, operators, blocks) is parsed.
_SIMPLE_TAG = re.compile(
    r"\{\{-?\s*([A-Za-z_]\w*)((?:\.[A-Za-z_]\w*|\[\s*(?:\d+|'[\w ]*')\s*\])*)"
    r"((?:\s*\|\s*[A-Za-z_]\w*)*)\s*-?\}\}"
)
_FILTER_NAME = re.compile(r"[A-Za-z_]\w*")
# Words Jinja reads as operators or constants, not variables: a tag holding one is left to the parser.
_NOT_NAMES = frozenset({"and", "or", "not", "in", "is", "if", "else", "elif", "for", "true", "false", "none",
                        "True", "False", "None", "recursive", "import", "with", "without", "context", "as"})


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
    simple = _read_simple(source)
    if simple is not None:
        return simple
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


def _read_simple(source: str) -> TemplateInfo | None:
    """The TemplateInfo of a template made of text and plain `{{ name.path | filter }}` tags, else None."""
    names: set[str] = set()
    filters: set[str] = set()
    end = 0
    for match in _SIMPLE_TAG.finditer(source):
        if "{" in source[end:match.start()] or "}" in source[end:match.start()]:
            return None
        name = match.group(1)
        if name in _NOT_NAMES:
            return None
        names.add(name)
        filters.update(_FILTER_NAME.findall(match.group(3)))
        end = match.end()
    if "{" in source[end:] or "}" in source[end:]:
        return None
    unknown = tuple(sorted(f for f in filters if f not in env.filters))
    return TemplateInfo(names=frozenset(names - set(env.globals)), unknown_filters=unknown)


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
