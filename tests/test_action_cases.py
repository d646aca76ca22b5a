"""Registry-driven: every registered action has cases in tests/actions/test_<namespace>.py that name it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import actions
from engine.registry import registry

actions.load_all()
CASES_DIR = Path(__file__).parent / "actions"


def string_literals(path: Path) -> set[str]:
    """Every string constant in the module except docstrings (a docstring naming an action is no case)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    }


def names_action(literal: str, name: str) -> bool:
    """The literal is the name, or holds it as a whole word (a YAML flow in a string: `action: core.set`)."""
    return re.search(rf"(?<![\w.]){re.escape(name)}(?![\w.])", literal) is not None


def test_there_are_registered_actions():
    assert "core.set" in registry and "core.log" in registry


@pytest.mark.parametrize("name", registry.names())
def test_every_action_has_cases(name):
    namespace = name.split(".", 1)[0]
    module = CASES_DIR / f"test_{namespace}.py"
    assert module.exists(), f"action '{name}' has no cases: write {module.relative_to(CASES_DIR.parent.parent)}"
    mentioned = any(names_action(literal, name) for literal in string_literals(module))
    assert mentioned, f"action '{name}' has no cases: {module.name} never mentions \"{name}\""
