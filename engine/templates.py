"""The sandboxed Jinja environment every message, parameter and condition is rendered in.

What a user types is data: it is only ever passed in as a variable, never compiled as a template, so a
booking reference of `{{ 7*7 }}` is echoed as typed.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment


def money(value: Any, currency: str | None = None) -> str:
    """Format an amount (Decimal, int or numeric string) with two decimals and thousands separators."""
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    text = f"{amount.quantize(Decimal('0.01')):,.2f}"
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


def render(source: str, vars: dict) -> str:
    """Render a template string; raises jinja2.UndefinedError for a variable nobody saved."""
    if "{" not in source:
        return source
    return compile_template(source).render(vars)


def evaluate(expression: str, vars: dict) -> Any:
    """Evaluate a condition such as `amount > 100` over the saved variables."""
    return compile_expression(expression)(**vars)


def variables_used(source: str) -> set[str]:
    """Top-level variable names a template reads (for the 'no step saves this' warning)."""
    from jinja2 import meta

    return set(meta.find_undeclared_variables(env.parse(source)))


__all__ = ["env", "money", "date_filter", "render", "evaluate", "variables_used", "compile_template"]
