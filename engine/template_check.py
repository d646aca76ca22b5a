"""Reading a flow's templates without running them: syntax, the variables they use, their literal text.

Parsing goes through the same sandboxed environment the runner renders with, so a template that passes
here compiles there. Everything is read from jinja2's tree (one walk per template): the names read, the
names used as numbers as they stand (`rating <= 2`), the keys read (`tours[tour].name`), and the names a
template guards with `is defined` or `| default`. Nothing is cached here: validate's checker keeps the answers
for the file it reads (a flow repeats its templates), and they go with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateSyntaxError, nodes
from jinja2.parser import Parser

from .templates import env, simple_template

_TAGS = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_ORDERING = {"lt": "<", "gt": ">", "lteq": "<=", "gteq": ">="}
_EQUALITY = {"eq": "==", "ne": "!="}
_ARITHMETIC = {nodes.Sub: "-", nodes.Mul: "*", nodes.Div: "/", nodes.FloorDiv: "//", nodes.Mod: "%", nodes.Pow: "**"}


# The names of an answer that has none: a set is some 200 bytes to make, fill and free, and a 5,000-step flow's
# 5,000 answers held 3,500 empty ones.
_NO_NAMES: frozenset[str] = frozenset()


def _frozen(names: set[str]) -> frozenset[str]:
    """names as an answer keeps them: _NO_NAMES when there are none."""
    return frozenset(names) if names else _NO_NAMES


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    """What a template (or an `if:` condition) needs: the names it reads; or why it does not parse."""

    names: frozenset[str] = _NO_NAMES
    error: str | None = None
    error_line: int = 1  # line of the error inside the template text (1 = its first line)
    unknown_filters: tuple[str, ...] = ()
    unknown_tests: tuple[str, ...] = ()
    # Names used as numbers as they stand (no `| int`/`| float`): (name, what is done, e.g. "<=" or "+").
    numeric: tuple[tuple[str, str], ...] = ()
    # Names read with keys: (name, keys), a key None where it is computed (`tours[tour].name` -> (None, "name")).
    reads: tuple[tuple[str, tuple[str | int | None, ...]], ...] = ()
    # Names the template tests with `is defined` or gives a `| default`: reading them never fails.
    guarded: frozenset[str] = _NO_NAMES


def is_template(text: str) -> bool:
    """Whether text is rendered with Jinja: it holds a {{ }} or {% %} tag (or a {# #} comment)."""
    return "{{" in text or "{%" in text or "{#" in text


def literal_text(text: str) -> str:
    """text without its template tags: what WhatsApp will certainly show, whatever the variables hold."""
    return _TAGS.sub("", text) if "{" in text else text


def inspect_template(source: str) -> TemplateInfo:
    """Parse a message template."""
    simple = _simple_template(source)
    if simple is not None:
        return simple
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as e:
        return TemplateInfo(error=e.message or "syntax error", error_line=e.lineno or 1)
    return _describe(tree)


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


def _simple_template(source: str) -> TemplateInfo | None:
    """What inspect_template would find, for a template engine.templates.simple_template reads (every tag
    a variable with keys and filters); None for anything else (Jinja then reads it)."""
    simple = simple_template(source)
    if simple is None:
        return None
    chains: list[tuple[str, tuple]] = []  # every (name, keys) read with keys, in the order Jinja walks them
    names: set[str] = set()
    filters: set[str] = set()
    guarded: set[str] = set()
    for part in simple:
        if type(part) is str:
            continue
        (name, keys), shown_filters = part
        if name is not None:  # else a constant, such as '0.01' in `{{ '0.01' | money }}`
            names.add(name)
            if keys:
                chains.append((name, keys))
            if shown_filters and shown_filters[0][0] in ("default", "d"):
                guarded.add(name)
        for filter_name, arguments in shown_filters:
            filters.add(filter_name)
            for argument in arguments:
                if argument[0] is not None:
                    names.add(argument[0])
                    if argument[1]:
                        chains.append(argument)
    # Jinja's tree lists the `.key` chains and the `[..]` chains apart, whichever kind comes first first.
    first_is_attribute = next((keys[-1][1] for _, keys in chains), True)
    ordered = [c for c in chains if c[1][-1][1] == first_is_attribute]
    ordered += [c for c in chains if c[1][-1][1] != first_is_attribute]
    return TemplateInfo(
        names=_frozen(names),
        unknown_filters=tuple(sorted(f for f in filters if f not in env.filters)),
        reads=tuple(dict.fromkeys((name, tuple([_read(k) for k, _ in keys])) for name, keys in ordered)),
        guarded=_frozen(guarded),
    )


def _read(key: str | int | slice) -> str | int | None:
    """A key as TemplateInfo.reads holds it: a slice is computed, not a key (None)."""
    return None if type(key) is slice else key


def _describe(tree: nodes.Node) -> TemplateInfo:
    found = _Nodes(_by_type(tree))  # one walk over the tree, then each question asks its kind
    loaded: set[str] = set()
    stored: set[str] = set()
    for name in found(nodes.Name):
        (loaded if name.ctx == "load" else stored).add(name.name)
    filters = sorted({f.name for f in found(nodes.Filter) if f.name not in env.filters})
    tests = sorted({t.name for t in found(nodes.Test) if t.name not in env.tests})
    return TemplateInfo(
        names=_frozen(loaded - stored - set(env.globals)),
        unknown_filters=tuple(filters),
        unknown_tests=tuple(tests),
        numeric=_numeric_uses(found),
        reads=_key_reads(found),
        guarded=_guarded(found),
    )


def _by_type(tree: nodes.Node) -> dict[type, list]:
    """Every node below tree, grouped by type, in the order tree.find_all(nodes.Node) gives them.

    One walk with a list for a stack: find_all's nested generators cost a frame per level for every node.
    Each node's children go on the stack last first (its fields and their items in reverse), so popping
    from the end walks them in order.
    """
    every: dict[type, list] = {}
    todo = [tree]
    push, pop, group = todo.append, todo.pop, every.get
    Node = nodes.Node
    first = True
    while todo:
        node = pop()
        if first:
            first = False  # the tree itself is not below it
        else:
            kind = type(node)
            found = group(kind)
            if found is None:
                every[kind] = [node]
            else:
                found.append(node)
        for name in reversed(node.fields):
            item = getattr(node, name, None)
            if type(item) is list:
                for child in reversed(item):
                    if isinstance(child, Node):
                        push(child)
            elif isinstance(item, Node):
                push(item)
    return every


# What _describe asks of a tree: each question's nodes (a node type or a tuple of them, subclasses included).
_QUESTIONS: tuple[Any, ...] = (
    nodes.Name,
    nodes.Filter,
    nodes.Test,
    nodes.Compare,
    nodes.BinExpr,
    (nodes.Getattr, nodes.Getitem),
    nodes.Call,
)
_ASKED: dict[type, tuple[Any, ...]] = {}  # node type -> the questions it answers, found once per type


class _Nodes:
    """A template's nodes by question: found(nodes.Getattr, nodes.Getitem) lists those, subclasses included,
    in the order of _by_type's groups (each type's nodes together, the types in the order first met)."""

    def __init__(self, every: dict[type, list]) -> None:
        self.every = every
        self.answers: dict[Any, list] = {}
        for kind, group in every.items():
            asked = _ASKED.get(kind)
            if asked is None:
                asked = _ASKED[kind] = tuple(q for q in _QUESTIONS if issubclass(kind, q))
            for question in asked:
                found = self.answers.get(question)
                if found is None:
                    self.answers[question] = list(group)
                else:
                    found += group

    def __call__(self, *wanted: type) -> list:
        question = wanted[0] if len(wanted) == 1 else wanted
        if question in _QUESTIONS:
            return self.answers.get(question, [])
        return [n for kind, group in self.every.items() if issubclass(kind, wanted) for n in group]


def _bare(node: nodes.Node) -> str | None:
    """The variable's name when node is a variable as it stands (no filter, no key)."""
    return node.name if isinstance(node, nodes.Name) and node.ctx == "load" else None


def _is_number(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Const) and isinstance(node.value, int | float) and not isinstance(node.value, bool)


def _numeric_uses(found: _Nodes) -> tuple[tuple[str, str], ...]:
    """Variables compared by size, compared with a number, or used in arithmetic, as they stand."""
    uses: list[tuple[str, str]] = []
    for compare in found(nodes.Compare):
        left = compare.expr
        for operand in compare.ops:
            pair = (left, operand.expr)
            if operand.op in _ORDERING:
                uses.extend((n, _ORDERING[operand.op]) for n in map(_bare, pair) if n)
            elif operand.op in _EQUALITY and any(map(_is_number, pair)):
                uses.extend((n, _EQUALITY[operand.op]) for n in map(_bare, pair) if n)
            left = operand.expr
    for expr in found(nodes.BinExpr):
        pair = (expr.left, expr.right)
        if isinstance(expr, nodes.Add) and any(map(_is_number, pair)):  # text + text joins them: fine
            uses.extend((n, "+") for n in map(_bare, pair) if n)
        elif type(expr) in _ARITHMETIC:
            uses.extend((n, _ARITHMETIC[type(expr)]) for n in map(_bare, pair) if n)
    return tuple(dict.fromkeys(uses))


def _key_reads(found: _Nodes) -> tuple[tuple[str, tuple[str | int | None, ...]], ...]:
    """Each outermost `name.key[...]...` chain as (name, keys); a method called on it is not a key."""
    chains = found(nodes.Getattr, nodes.Getitem)
    inner = {id(c.node) for c in chains} | {id(call.node) for call in found(nodes.Call)}
    reads: list[tuple[str, tuple[str | int | None, ...]]] = []
    for chain in chains:
        if id(chain) in inner:
            continue
        keys: list[str | int | None] = []
        node: nodes.Node = chain
        while isinstance(node, nodes.Getattr | nodes.Getitem):
            if isinstance(node, nodes.Getattr):
                keys.append(node.attr)
            else:
                arg = node.arg
                keys.append(arg.value if isinstance(arg, nodes.Const) and isinstance(arg.value, str | int) else None)
            node = node.node
        if _bare(node):
            reads.append((node.name, tuple(reversed(keys))))
    return tuple(dict.fromkeys(reads))


def _guarded(found: _Nodes) -> frozenset[str]:
    """Names tested with `is defined`/`is undefined`, or read through `| default` (even by a key chain)."""
    names: set[str] = set()
    for test in found(nodes.Test):
        if test.name in ("defined", "undefined"):
            names.update(n.name for n in _roots(test.node))
    for filter_ in found(nodes.Filter):
        if filter_.name in ("default", "d") and filter_.node is not None:
            names.update(n.name for n in _roots(filter_.node))
    return _frozen(names)


def _roots(node: nodes.Node) -> list[nodes.Name]:
    while isinstance(node, nodes.Getattr | nodes.Getitem):
        node = node.node
    return [node] if isinstance(node, nodes.Name) else []


__all__ = ["TemplateInfo", "inspect_template", "inspect_expression", "is_template", "literal_text"]
