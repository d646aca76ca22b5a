"""A flow as a diagram (`flows graph`): every step a node, every way onward an edge with its label.

    print(mermaid(flow))      # flowchart TD …  (GitHub, GitLab and most wikis draw it)
    print(dot(flow))          # digraph …       (Graphviz: dot -Tsvg)

Routes are read in one place, `routes(step)`, from the checked model: `next` (plain or one edge per `if:`
condition, the default labelled "otherwise"), action outcomes (`on:`), `on_fail`, and hand-overs to
another flow. The flow-wide ways out (cancel words, expiry) start from their own nodes, and end at "stopped" when the flow
names no step for them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .model import Flow, Step


@dataclass(frozen=True)
class Edge:
    source: str  # a node id: a step name, or one of the special nodes below
    target: str
    label: str


START, CANCEL, EXPIRE = "(start)", "(cancel)", "(expire)"
STOPPED = "(stopped)"  # where cancel and expiry go when the flow names no step for them: the conversation ends


def handover_node(flow_name: str) -> str:
    return f"(flow {flow_name})"


def routes(step: Step) -> list[tuple[str, str]]:
    """(label, target) for every way onward from one step; a hand-over targets the other flow's node."""
    out: list[tuple[str, str]] = [(outcome, target) for outcome, target in step.on.items()]
    conditional = any(r.when for r in step.next)
    for route in step.next:
        label = f"if {route.when}" if route.when else ("otherwise" if conditional or step.on else "next")
        out.append((label, route.goto))
    if step.on_fail:
        out.append(("on_fail", step.on_fail))
    if step.target_flow:
        out.append(("hand over", handover_node(step.target_flow)))
    return out


def edges(flow: Flow) -> list[Edge]:
    """Every edge of the flow's diagram, the start and the flow-wide cancel and expiry first."""
    found = [Edge(START, flow.start, "start")]
    if flow.cancel_words:
        found.append(Edge(CANCEL, flow.cancel_step or STOPPED, "cancel: " + ", ".join(flow.cancel_words)))
    if flow.expire_after:
        found.append(Edge(EXPIRE, flow.expire_step or STOPPED, f"expire after {_duration(flow)}"))
    for step in flow.steps.values():
        found.extend(Edge(step.name, target, label) for label, target in routes(step))
    return found


def _duration(flow: Flow) -> str:
    seconds = int(flow.expire_after.total_seconds()) if flow.expire_after else 0
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _nodes(flow: Flow, found: list[Edge]) -> dict[str, str]:
    """Node id -> kind ("ask", "say", …, "special", "other_flow") in drawing order, steps first."""
    nodes = {name: step.kind for name, step in flow.steps.items()}
    for edge in found:
        for node in (edge.source, edge.target):
            nodes.setdefault(node, "other_flow" if node.startswith("(flow ") else "special")
    return nodes


def _label(node: str, kind: str) -> str:
    return node.strip("()") if kind in ("special", "other_flow") else f"{kind}: {node}"


# ── mermaid ────────────────────────────────────────────────────────────────────────────────────────

_MERMAID_SHAPES = {
    "ask": '[/"{}"/]',
    "say": '["{}"]',
    "action": '[["{}"]]',
    "branch": '{{"{}"}}',
    "end": '(["{}"])',
    "flow": '>"{}"]',
    "other_flow": '[("{}")]',
    "special": '(("{}"))',
}


def _mermaid_id(node: str, ids: dict[str, str]) -> str:
    if node not in ids:
        ids[node] = f"n{len(ids)}_" + re.sub(r"\W", "_", node.strip("()")).strip("_")
    return ids[node]


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("\n", " ")


def mermaid(flow: Flow) -> str:
    """The flow as a Mermaid flowchart (top to bottom); node labels are "kind: step name"."""
    found = edges(flow)
    ids: dict[str, str] = {}
    lines = ["flowchart TD"]
    for node, kind in _nodes(flow, found).items():
        lines.append(f"    {_mermaid_id(node, ids)}{_MERMAID_SHAPES[kind].format(_mermaid_text(_label(node, kind)))}")
    for edge in found:
        lines.append(
            f'    {_mermaid_id(edge.source, ids)} -->|"{_mermaid_text(edge.label)}"| {_mermaid_id(edge.target, ids)}'
        )
    return "\n".join(lines) + "\n"


# ── Graphviz dot ──────────────────────────────────────────────────────────────────────────────────

_DOT_SHAPES = {
    "ask": "parallelogram",
    "say": "box",
    "action": "box3d",
    "branch": "diamond",
    "end": "oval",
    "flow": "cds",
    "other_flow": "cylinder",
    "special": "circle",
}


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def dot(flow: Flow) -> str:
    """The flow as a Graphviz digraph; node labels are "kind: step name"."""
    found = edges(flow)
    lines = [f"digraph {_quoted(flow.name)} {{", "    rankdir=TB;"]
    for node, kind in _nodes(flow, found).items():
        lines.append(f"    {_quoted(node)} [shape={_DOT_SHAPES[kind]}, label={_quoted(_label(node, kind))}];")
    for edge in found:
        lines.append(f"    {_quoted(edge.source)} -> {_quoted(edge.target)} [label={_quoted(edge.label)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


__all__ = ["routes", "edges", "mermaid", "dot", "Edge", "START", "CANCEL", "EXPIRE"]
