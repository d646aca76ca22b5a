"""The steps of a flow as a graph: where each step may go, what can be reached, which loops never end.

Tolerant of steps of the wrong shape (only string targets count), so it also serves files with errors.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from .yaml_source import Path


def targets(step: dict, base: Path) -> Iterable[tuple[Path, str]]:
    """Every step name this step may go to, with where it is written. Tolerates a step of the wrong shape."""
    routes = step.get("next")
    if isinstance(routes, str):
        yield base + ("next",), routes
    elif isinstance(routes, list):
        for i, route in enumerate(routes):
            if isinstance(route, dict) and isinstance(route.get("goto"), str):
                yield base + ("next", i, "goto"), route["goto"]
    on = step.get("on")
    if isinstance(on, dict):
        for outcome, target in on.items():
            if isinstance(target, str):
                yield base + ("on", outcome), target
    if isinstance(step.get("on_fail"), str):
        yield base + ("on_fail",), step["on_fail"]


def reachable(routes: Mapping[str, Sequence[tuple[str, bool]]], root: str) -> dict[str, None]:
    """Every step a conversation can walk to from root (root included): a dict's keys, in the order a
    depth-first walk meets them with each step's targets taken as written, so a step mostly comes after the
    steps that lead to it (the order variable_check's "saved before" settles in fastest).

    routes: every step's (target, after its save) pairs as validate recorded them while checking the step
    (FileFacts.routes), so the steps' data is not read again; a target that is not a step leads nowhere.
    """
    seen: dict[str, None] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        steps = routes.get(name)
        if steps is None:
            continue  # not a step
        seen[name] = None
        # Every target pushed and judged when taken: asked on the way in too, a 5,000-step flow's step
        # names were looked up twice more each (reading their strings again).
        todo.extend([t for t, _ in reversed(steps)])
    return seen


def closed_groups(exits: dict[str, set[str] | None]) -> list[set[str]]:
    """Groups of steps that only lead to each other (strongly connected, every target inside the group).

    Tarjan's algorithm, written without recursion: a generated flow may chain thousands of steps.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for root in exits:
        if root in index or exits[root] is None:
            continue
        work = [(root, iter(sorted(exits[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if exits.get(child) is None:
                    continue
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(exits[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                closed = all(exits[m] is not None and exits[m] <= group for m in group)
                if closed and (len(group) > 1 or node in (exits[node] or ())):
                    groups.append(group)
    return groups


__all__ = ["targets", "reachable", "closed_groups"]
