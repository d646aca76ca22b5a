"""docs/writing-flows.md stays true: its full example is a valid flow, its snippets pass, every code is in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.codes import CODES
from engine.load import load_text
from validation_kit import validation_registry

DOC = (Path(__file__).resolve().parents[2] / "docs" / "writing-flows.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```yaml\n(.*?)```", DOC, re.DOTALL)


def test_every_problem_code_is_explained():
    table = DOC.split("## Every problem", 1)[1]
    assert all(f"| `{code}` | {c.severity} |" in table for code, c in CODES.items())


def test_the_whole_flow_example_is_valid():
    [example] = [b for b in BLOCKS if b.startswith("# yaml-language-server") and "flow:" in b]
    flow, problems = load_text(example, "example.yaml", validation_registry())
    assert problems == [] and flow is not None


STEP_SNIPPETS = [b for b in BLOCKS if b.startswith("  ") and re.match(r"  \w+:\n", b)]


@pytest.mark.parametrize("snippet", STEP_SNIPPETS, ids=lambda b: b.split(":", 1)[0].strip())
def test_step_examples_have_the_right_shape(snippet):
    """Each step example, put in a flow, breaks no rule about shapes, actions, templates or WhatsApp.

    Only what the snippet cannot know is allowed: steps and variables defined elsewhere in a real flow.
    """
    text = "flow: snippet\nsteps:\n" + snippet
    _, problems = load_text(text, "snippet.yaml", validation_registry())
    allowed = {
        "step.unknown_target",
        "template.undefined",
        "step.unreachable",
        "step.dead_end",
        "action.unhandled_outcome",
    }
    assert [str(p) for p in problems if p.code not in allowed] == []


def test_every_check_in_the_expect_examples_is_valid():
    [block] = [b for b in BLOCKS if b.startswith("    expect: phone_zw")]
    for line in block.splitlines():
        text = f"flow: x\nsteps:\n  q:\n    ask: Q?\n{line}\n    save: a\n    next: e\n  e: {{end: true}}\n"
        flow, problems = load_text(text, "x.yaml", validation_registry())
        assert flow is not None and [p.code for p in problems if p.code != "template.undefined"] == [], line


def test_the_generated_tables_and_schema_file_are_up_to_date():
    """The step-kind and input-check tables come from the registries: `python schemas/generate.py`."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "generate", Path(__file__).resolve().parents[2] / "schemas" / "generate.py"
    )
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    assert generate.with_generated_docs(DOC) == DOC, "run python schemas/generate.py"
    assert generate.SCHEMA_FILE.read_text(encoding="utf-8") == generate.schema_text(), "run python schemas/generate.py"
