"""The import directions docs/architecture.md draws, and the test kit's one rule: no test module imports another."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PARTS = ("engine", "storage", "actions", "channels", "cli", "schemas")
# What each part may import from the others (docs/architecture.md, "The parts").
ALLOWED = {
    "engine": set(),
    "storage": set(),
    "actions": {"engine", "storage"},
    "channels": {"engine", "storage", "actions"},
    "channels.commands": {"engine", "storage", "actions", "channels"},
    "cli": {"channels.commands"},
    "schemas": {"engine"},
}


def imported(path: Path) -> set[str]:
    """Every absolute module name a file imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def part_of(module: str) -> str | None:
    if module == "channels.commands" or module.startswith("channels.commands."):
        return "channels.commands"
    top = module.split(".")[0]
    return top if top in PARTS else None


def product_files():
    yield REPO / "cli.py"
    for part in PARTS[:-2] + ("schemas",):
        yield from (REPO / part).rglob("*.py")


@pytest.mark.parametrize("path", list(product_files()), ids=lambda p: str(p.relative_to(REPO)))
def test_each_part_imports_only_the_parts_below_it(path):
    own = part_of(".".join(path.relative_to(REPO).with_suffix("").parts))
    wrong = sorted(m for m in imported(path) if part_of(m) not in (None, own) and part_of(m) not in ALLOWED[own])
    assert not wrong, f"{own} may import only {sorted(ALLOWED[own]) or 'none of the others'}; imports {wrong}"


def test_no_test_module_imports_another():
    tests = REPO / "tests"
    test_modules = {p.stem for p in tests.rglob("test_*.py")}
    offenders = {
        str(p.relative_to(REPO)): sorted(
            m for m in imported(p) if m.split(".")[0] in test_modules or m.startswith("tests.")
        )
        for p in tests.rglob("*.py")
    }
    assert {file: names for file, names in offenders.items() if names} == {}, (
        "shared helpers belong in a kit (channel_harness, flowkit, payment_kit, …) or a conftest fixture"
    )
