"""The sandboxed Jinja environment every message, parameter and condition is rendered in.

What a user types is data: it is only ever passed in as a variable, never compiled as a template, so a
booking reference of `{{ 7*7 }}` is echoed as typed.
"""

from __future__ import annotations

import operator
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
import re
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Undefined, filters, meta, nodes
from jinja2.parser import Parser
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment


CENT = Decimal("0.01")  # money's two decimals (made once: a Decimal built from text costs more than the rest)


def money(value: Any, currency: str | None = None) -> str:
    """Format an amount (Decimal, int or numeric string) with two decimals and thousands separators."""
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    text = f"{amount.quantize(CENT):,.2f}"
    if currency in (None, "", "USD"):
        return f"${text}" if currency is None or currency == "USD" else text
    return f"{currency} {text}"


def date_filter(value: Any, format: str = "%d %b %Y") -> str:
    """Format a saved date (ISO text such as "2026-12-25", as `expect: date` saves it): 25 Dec 2026.

    Anything that is not a date is shown as it is, like `money` does for what is not an amount.
    """
    if isinstance(value, datetime | date):
        day = value
    else:
        try:
            day = datetime.fromisoformat(str(value).strip())
        except ValueError:
            return str(value)
    try:
        return day.strftime(str(format))
    except ValueError:
        return str(value)


env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
env.filters["money"] = money
env.filters["date"] = date_filter


@lru_cache(maxsize=4096)
def compile_template(source: str):
    """Compile once per distinct source text; flows render the same templates on every turn."""
    return env.from_string(source)


@lru_cache(maxsize=4096)
def compile_expression(source: str):
    return env.compile_expression(source)


# Filters the fast path may call itself (while env.filters holds these very functions): plain functions
# of (value, *args) that take no context; and the comparisons a condition may make, Python's own operators
# as in Jinja's compiled code (the sandbox intercepts none of them). Any other filter, and anything but text,
# names, `.key` / `['key']` and a text's `[a:b]`, goes through Jinja.
FAST_FILTERS = {"money": money, "date": date_filter, "float": filters.do_float, "int": filters.do_int}
COMPARISONS = {"eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "gt": operator.gt}
COMPARISONS |= {"lteq": operator.le, "gteq": operator.ge}
# `x.items` on a dict is the method in Jinja's sandbox, not the key: such a template is left to Jinja.
_DICT_ATTRIBUTES = frozenset(dir(dict))


class Prepared:
    """A compiled template with what a render needs built once: the globals as a plain dict (Jinja's
    `Template.render` flattens a ChainMap on every call, most of a short render's cost), whether the
    template can read the caller's vars without a copy, and the fast path's parts when it has one.
    """

    __slots__ = ("template", "globals", "shares_vars", "parts")

    def __init__(self, template, tree: nodes.Node, parts: tuple | None = None) -> None:
        self.template = template
        self.globals = dict(template.globals)
        # A template that names no global can read vars as they are (Jinja's own `shared` context);
        # one that does needs the globals under the vars, so it gets a merged copy.
        names = {node.name for node in tree.find_all(nodes.Name)}
        self.shares_vars = not (names & self.globals.keys())
        self.parts = parts

    def context(self, vars: dict) -> Context:
        parent = vars if self.shares_vars else {**self.globals, **vars}
        template = self.template
        return env.context_class(env, parent, template.name, template.blocks, globals=self.globals)


def _fast_parts(source: str) -> tuple | None:
    """The template as text and outputs, or None when it is more than text and `{{ name.key }}`,
    `{{ name[-4:] }}`, `{{ name | money(other.key) }}` outputs (one of FAST_FILTERS at most)."""
    simple = simple_template(source)
    if simple is None:
        return None
    parts: list = []
    for part in simple:
        if type(part) is str:
            parts.append(part)
            continue
        (name, keys), filters = part
        value = (None, keys) if name is None and filters else _fast_path(name, keys) if name is not None else None
        if value is None or len(filters) > 1:
            return None
        apply, args = None, ()
        if filters:
            filter_name, written = filters[0]
            apply = FAST_FILTERS.get(filter_name)
            if apply is None or env.filters.get(filter_name) is not apply:
                return None
            args = tuple(a if a[0] is None else _fast_path(*a) for a in written)
            if None in args:
                return None
        parts.append((name,) if apply is None and name is not None and not value[1] else (value, apply, args))
    return tuple(parts)


def _fast_path(name: str, keys: tuple) -> tuple | None:
    """(name, keys) as _look_up takes it: `.key` (not a dict's own method) and `['key']` look up a dict's
    key, `[a:b]` slices a text; an index (`[0]`) is left to Jinja."""
    found: list[str | slice] = []
    for key, attribute in keys:
        if type(key) is int or (attribute and key in _DICT_ATTRIBUTES):
            return None
        found.append(key)
    return name, tuple(found)


def _fast_expression(node: nodes.Expr) -> tuple | None:
    """(output,) for `name.key` or `name | filter`, (output, operator, output) for one comparison such as
    `amount | float > 100` or `choice == "pay"`; None for any other expression.
    """
    if type(node) is not nodes.Compare:
        output = _output(node)
        return None if output is None else (output,)
    if len(node.ops) != 1 or node.ops[0].op not in COMPARISONS:
        return None
    left, right = _output(node.expr, constant=True), _output(node.ops[0].expr, constant=True)
    return None if left is None or right is None else (left, COMPARISONS[node.ops[0].op], right)


def _output(node: nodes.Expr, constant: bool = False) -> tuple | None:
    """(value, filter, filter args) for a saved value, perhaps through one of FAST_FILTERS. A value or an
    argument is (name, keys) to look up, or (None, constant).
    """
    apply, args = None, ()
    if type(node) is nodes.Filter:
        apply = FAST_FILTERS.get(node.name)
        if apply is None or env.filters.get(node.name) is not apply:
            return None
        if node.kwargs or node.dyn_args or node.dyn_kwargs:
            return None
        args = tuple(_argument(a) for a in node.args)
        value = _argument(node.node)
    else:
        value = _argument(node) if constant else _path(node)
    return None if value is None or None in args else (value, apply, args)


def _argument(node: nodes.Node) -> tuple | None:
    return (None, node.value) if type(node) is nodes.Const else _path(node)


def _path(node: nodes.Node) -> tuple | None:
    """(name, keys) for `name.key['key'][a:b]`, or None for any other expression."""
    keys: list[str | slice] = []
    while type(node) in (nodes.Getattr, nodes.Getitem):
        key = _key(node)
        if key is None:
            return None
        keys.append(key)
        node = node.node
    if type(node) is not nodes.Name or node.ctx != "load":
        return None
    return node.name, tuple(reversed(keys))


def _key(node: nodes.Getattr | nodes.Getitem) -> str | slice | None:
    """`.key` or `['key']` (a dict's key), `[a:b]` with whole-number bounds (a text's slice), else None."""
    if type(node) is nodes.Getattr:
        return node.attr if node.attr not in _DICT_ATTRIBUTES else None
    arg = node.arg
    if type(arg) is nodes.Const:
        return arg.value if type(arg.value) is str else None
    if type(arg) is not nodes.Slice:
        return None
    bounds = [_whole_number(b) for b in (arg.start, arg.stop, arg.step)]
    return None if False in bounds else slice(*bounds)


def _whole_number(node: nodes.Expr | None) -> int | None | bool:
    """The int a slice bound names (None for none), or False when it is not a constant whole number."""
    if node is None:
        return None
    negative = type(node) is nodes.Neg
    node = node.node if negative else node
    if type(node) is not nodes.Const or type(node.value) is not int:
        return False
    return -node.value if negative else node.value


def _render_fast(parts: tuple, vars: dict) -> str:
    """What Jinja renders for these parts when every name and key is there; raises otherwise (a missing
    name, a value that is not a dict): the caller then lets Jinja render it, errors and all. A bare
    `{{ name }}` is the part (name,), read here without a call (most outputs are one).
    """
    out = []
    for part in parts:
        if type(part) is str:
            out.append(part)
        elif len(part) == 1:
            out.append(str(vars[part[0]]))
        else:
            out.append(str(_value(vars, part)))
    return "".join(out)


def _evaluate_fast(parts: tuple, vars: dict) -> Any:
    """As _render_fast, for what _fast_expression built: the value, or the comparison's result."""
    if len(parts) == 1:
        return _value(vars, parts[0])
    left, compare, right = parts
    return compare(_value(vars, left), _value(vars, right))


def _value(vars: dict, output: tuple) -> Any:
    value, apply, args = output
    value = _look_up(vars, value)
    if apply is None:
        return value
    return apply(value, *[_look_up(vars, a) for a in args]) if args else apply(value)


def _look_up(vars: dict, value: tuple) -> Any:
    name, keys = value
    if name is None:
        return keys  # a constant
    value = vars[name]
    for key in keys:
        if type(key) is str and type(value) is dict or type(key) is slice and type(value) is str:
            value = value[key]
        else:
            raise LookupError(key)
    return value


@lru_cache(maxsize=4096)
def prepare(source: str) -> Prepared:
    """Compile once per distinct source text; flows render the same templates on every turn."""
    tree = env.parse(source)
    plain = env.autoescape is False and env.finalize is None
    return Prepared(compile_template(source), tree, _fast_parts(source) if plain else None)


@lru_cache(maxsize=4096)
def prepare_expression(source: str) -> Prepared:
    """The compiled expression's template (it assigns `result`) and the names it reads."""
    template = compile_expression(source)._template
    tree = Parser(env, source, state="variable").parse_expression()
    return Prepared(template, tree, _fast_expression(tree))


def render(source: str, vars: dict) -> str:
    """Render a template string; raises jinja2.UndefinedError for a variable nobody saved.

    The same text, and the same errors, as `compile_template(source).render(vars)`.
    """
    if "{" not in source:
        return source
    prepared = prepare(source)
    if prepared.parts is not None:
        try:
            return _render_fast(prepared.parts, vars)
        except Exception:  # a missing name or key, a filter that failed: Jinja says it, in its words
            pass
    return render_jinja(prepared, vars)


def render_jinja(prepared: Prepared, vars: dict) -> str:
    """Template.render without its per-call setup: the root render function over a prebuilt context."""
    try:
        return env.concat(prepared.template.root_render_func(prepared.context(vars)))
    except Exception:
        env.handle_exception()


def evaluate(expression: str, vars: dict) -> Any:
    """Evaluate a condition such as `amount > 100` over the saved variables.

    As `compile_expression(expression)(**vars)`: the expression assigns `result`; undefined is None.
    """
    prepared = prepare_expression(expression)
    if prepared.parts is not None:
        try:
            return _evaluate_fast(prepared.parts, vars)
        except Exception:  # as in render: Jinja evaluates it again and raises its own error
            pass
    context = prepared.context(vars)
    for _ in prepared.template.root_render_func(context):
        pass
    result = context.vars["result"]
    return None if isinstance(result, Undefined) else result


def variables_used(source: str) -> set[str]:
    """Top-level variable names a template reads (for the 'no step saves this' warning)."""
    return set(meta.find_undeclared_variables(env.parse(source)))


# ── Simple templates: the one reading of a template that only shows variables ─────────────────────────

# Most templates only show variables: `{{ name }}`, `{{ booking.total | money }}`, `{{ tries | default(0) }}`,
# `{{ amount | money(booking.currency) }}`, `{{ contact[-4:] }}`. simple_template reads those with regular
# expressions instead of Jinja's lexer and parser, for the renderer's fast path (above) and for `flows
# validate` (engine.template_check, where Jinja's parser was most of what it spent on a flow). Anything
# else, however slightly different, is left to Jinja (None). tests/engine/ holds both askers to Jinja's own
# answer (test_template_simple.py, test_template_fast_path.py).
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_STRING = r"""'[^'\\]*'|"[^"\\]*\""""
_WHOLE = r"0|[1-9][0-9]*"  # as Jinja's lexer: a whole number has no leading zero (`01` does not parse)
_NUMBER = rf"[0-9]+\.[0-9]+|{_WHOLE}"
_BOUND = rf"-?(?:{_WHOLE})"
_KEYS = rf"(?:\.{_IDENT}|\[(?:{_WHOLE}|{_STRING})\]|\[(?:{_BOUND})?:(?:{_BOUND})?(?::(?:{_BOUND})?)?\])*"
_ARGUMENT = rf"{_NUMBER}|{_STRING}|{_IDENT}{_KEYS}"
_ARGUMENTS = rf"\(\s*(?:(?:{_ARGUMENT})\s*(?:,\s*(?:{_ARGUMENT})\s*)*)?\)"
_SIMPLE_TAG = re.compile(
    rf"\{{\{{(?P<lstrip>-?)\s*(?:(?P<constant>{_NUMBER}|{_STRING})|(?P<name>{_IDENT})(?P<keys>{_KEYS}))"
    rf"(?P<filters>(?:\s*\|\s*{_IDENT}(?:\s*{_ARGUMENTS})?)*)\s*(?P<rstrip>-?)\}}\}}"
)
_FILTER = re.compile(rf"\|\s*({_IDENT})(?:\s*({_ARGUMENTS}))?")  # one filter; a '|' in its quotes is read past
_ARGUMENT_RE = re.compile(rf"({_NUMBER}|{_STRING})|({_IDENT})({_KEYS})")
_KEY = re.compile(rf"\.({_IDENT})|\[({_WHOLE})\]|\[({_STRING})\]|\[({_BOUND})?:({_BOUND})?(?::({_BOUND})?)?\]")
# Words Jinja reads as constants or operators, not as names: such a template is left to Jinja.
_WORDS = frozenset({"true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is", "if", "else"})

# A name with its keys: (name, ((key, attribute), ...)), key a str (`.key` when attribute, else `['key']`),
# an int (`[0]`) or a slice (`[a:b]`). A filter's argument is such a path or (None, constant).
Path = tuple[str, tuple[tuple[str | int | slice, bool], ...]]
Argument = tuple[str | None, Any]
# `{{ path | filter(args) | ... }}`; the value may be a constant, (None, constant), as in `{{ '1' | money }}`.
Shown = tuple[Path | Argument, tuple[tuple[str, tuple[Argument, ...]], ...]]


def simple_template(source: str) -> tuple[str | Shown, ...] | None:
    """source as Jinja reads it, as text and shown values in order, when every tag shows a variable with
    keys (or a constant) through filters whose arguments are constants or variables; None for anything
    else (left to Jinja).

    The text is Jinja's: its one trailing newline dropped (keep_trailing_newline is off), the whitespace
    that `{{-` and `-}}` take away gone. A source with a carriage return (which Jinja turns into a
    newline) is left to Jinja.
    """
    if "\r" in source:
        return None
    if source.endswith("\n"):
        source = source[:-1]
    parts: list[str | Shown] = []
    end = 0
    strip = False  # the tag before ends with `-}}`: the whitespace after it goes
    for tag in _SIMPLE_TAG.finditer(source):
        text = source[end : tag.start()]
        if _opens_tag(text, True):
            return None
        text = text.lstrip() if strip else text
        text = text.rstrip() if tag.group("lstrip") else text
        if text:
            parts.append(text)
        end, strip = tag.end(), bool(tag.group("rstrip"))
        name, filters = tag.group("name"), tag.group("filters")
        shown = tuple((f, _arguments(written)) for f, written in _FILTER.findall(filters)) if filters else ()
        if name is None:
            value: Path | Argument = (None, _constant(tag.group("constant")))
        elif name in _WORDS or name in env.globals:
            return None
        else:
            value = (name, _keys(tag.group("keys")))
            if value[1] is None:
                return None
        if any(f in _WORDS or args is None for f, args in shown):
            return None
        parts.append((value, shown))
    text = source[end:]
    if _opens_tag(text, False):
        return None
    text = text.lstrip() if strip else text
    if text:
        parts.append(text)
    return tuple(parts)


def _opens_tag(text: str, before_tag: bool) -> bool:
    """Whether text between two simple tags opens a tag of its own ({{, {% or {#, or a { just before the
    next tag's {{, which Jinja reads as a tag opened one character earlier)."""
    return "{{" in text or "{%" in text or "{#" in text or (before_tag and text.endswith("{"))


def _keys(written: str) -> tuple | None:
    if not written:
        return ()
    keys: list[tuple[str | int | slice, bool]] = []
    for attribute, index, quoted, *bounds in _KEY.findall(written):
        if attribute:
            if attribute in _WORDS:
                return None
            keys.append((attribute, True))
        elif index:
            keys.append((int(index), False))
        elif quoted:
            keys.append((quoted[1:-1], False))
        else:
            keys.append((slice(*[int(b) if b else None for b in bounds]), False))
    return tuple(keys)


def _constant(written: str) -> str | int | float:
    """A number or a quoted text (without a backslash) as Jinja reads it."""
    if written[0] in "'\"":
        return written[1:-1]
    return float(written) if "." in written else int(written)


def _arguments(written: str) -> tuple[Argument, ...] | None:
    if not written:
        return ()
    arguments: list[Argument] = []
    for constant, name, keys in _ARGUMENT_RE.findall(written):
        if constant:
            arguments.append((None, _constant(constant)))
            continue
        path = _keys(keys)
        if path is None or name in _WORDS or name in env.globals:
            return None
        arguments.append((name, path))
    return tuple(arguments)


__all__ = [
    "env",
    "money",
    "date_filter",
    "render",
    "evaluate",
    "variables_used",
    "compile_template",
    "prepare",
    "simple_template",
]
