"""`flows graph`: every step a node, every route an edge with its label, in Mermaid and Graphviz dot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import cli

SHIPPED = Path(cli.__file__).parent / "flows"


def run(*args: str):
    return CliRunner().invoke(cli.main, list(args))


@pytest.fixture(autouse=True)
def shipped(monkeypatch):
    monkeypatch.setenv("FLOWS_DIR", str(SHIPPED))


def routes_written(flow: str) -> int:
    """Routes counted from the YAML itself: each next target, each on outcome, each on_fail, each hand-over."""
    steps = yaml.safe_load((SHIPPED / f"{flow}.yaml").read_text())["steps"]
    total = 0
    for step in steps.values():
        nxt = step.get("next")
        total += 1 if isinstance(nxt, str) else len(nxt or [])
        on = step.get("on", step.get(True))  # plain YAML 1.1 reads the key `on` as true
        total += len(on or {}) + ("on_fail" in step) + ("flow" in step)
    return total


def mermaid_edges(text: str) -> list[tuple[str, str, str]]:
    """(source label, edge label, target label) for every edge, node ids mapped back to their labels."""
    labels = dict(re.findall(r'^    (n\d+_\w+)[\[({>/]+"([^"]+)"', text, re.M))
    return [
        (labels[a], label, labels[b])
        for a, label, b in re.findall(r'^    (n\d+_\w+) -->\|"([^"]*)"\| (n\d+_\w+)$', text, re.M)
    ]


def test_mermaid_draws_every_step_and_every_route_of_the_payment_flow():
    result = run("graph", "omari_payment")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("flowchart TD\n")
    steps = yaml.safe_load((SHIPPED / "omari_payment.yaml").read_text())["steps"]
    for name, step in steps.items():
        kind = next(k for k in ("say", "ask", "action", "flow", "end") if k in step)
        assert f'"{kind}: {name}"' in result.output
    edges = mermaid_edges(result.output)
    assert len(edges) == routes_written("omari_payment") + 3  # + start, cancel, expire
    for edge in [
        ("start", "start", "ask: ask_reference"),
        ("ask: ask_reference", "next", "action: find_booking"),
        ("action: find_booking", "not_found", "end: no_such_booking"),
        ("ask: ask_amount", "on_fail", "end: too_many_tries"),
        ("action: confirm", "wrong_otp", "say: wrong_code"),
        ("cancel", "cancel: cancel, stop", "action: cancel_payment"),
        ("expire", "expire after 10m", "action: expire_payment"),
    ]:
        assert edge in edges


def test_conditions_and_hand_overs_are_labelled():
    edges = mermaid_edges(run("graph", "main_menu").output)
    assert ("ask: choose", "if choice == #quot;pay#quot;", "flow: to_payment") in edges
    assert ("ask: choose", "otherwise", "end: contact_us") in edges
    assert ("flow: to_payment", "hand over", "flow omari_payment") in edges
    assert ("cancel", "cancel: cancel, stop", "stopped") in edges
    assert len(edges) == routes_written("main_menu") + 2  # + start, cancel


def test_dot_draws_the_same_edges():
    result = run("graph", "main_menu", "--format", "dot")
    assert result.exit_code == 0
    assert result.output.startswith('digraph "main_menu" {\n') and result.output.endswith("}\n")
    assert '"choose" -> "to_payment" [label="if choice == \\"pay\\""];' in result.output
    assert '"to_payment" -> "(flow omari_payment)" [label="hand over"];' in result.output
    assert result.output.count(" -> ") == routes_written("main_menu") + 2


def test_a_flow_file_can_be_drawn_by_its_path():
    result = run("graph", str(SHIPPED / "main_menu.yaml"))
    assert result.exit_code == 0 and '"ask: choose"' in result.output


def test_an_unknown_flow_is_a_usage_error_with_a_suggestion():
    result = run("graph", "omari_paymnet")
    assert result.exit_code == 2
    assert "no flow named 'omari_paymnet'" in result.output and "did you mean 'omari_payment'?" in result.output
