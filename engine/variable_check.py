"""How the flows loaded together read their variables: what would stop a conversation at run time.

Four checks, over the facts check_file() gathered (the variables each step saves and how its templates read
them): a variable no step saves (template.undefined); a variable read on a path from the flow's start
where no earlier step has saved it (template.not_saved_yet; a flow reached by a `flow:` hand-over starts
with what every hand-over to it carries); a text answer compared by size or used in arithmetic without
`| int`/`| float` (template.text_as_number); a key that a literal table saved by core.set does not have
(template.unknown_key).

"Saved before" is a must-analysis over the step graph: a step sees what every route into it has saved,
computed with one bit per variable, so it stays linear in practice. With complete=False (one file judged
alone, as a stored version is) what only the other flows could tell is a warning, never an error.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable

from .flow_schema import Suggestions, suggest
from .problems import Problem
from .validate import BUILTIN_VARS, FileFacts, Saved, VarUse

# A file judged alone (a stored version loaded at run time) gets these as warnings: refusing a published
# version for them would take a live flow down, and only the other flows can tell some of them.
CODES = ("template.undefined", "template.not_saved_yet", "template.text_as_number", "template.unknown_key")
_MAX_ROUNDS = 20
_STOPS = "would stop the conversation with an apology"
_EFFECT = {
    "==": "is never true: text never equals a number",
    "!=": "is always true: text never equals a number",
}  # hand-over chains longer than this are judged with what is known by then


class _Bits:
    """One bit per variable name."""

    def __init__(self, names: Iterable[str]) -> None:
        self.index = {name: 1 << i for i, name in enumerate(sorted(set(names)))}
        self.all = (1 << len(self.index)) - 1

    def of(self, names: Iterable[str]) -> int:
        bits = 0
        for name in names:
            bits |= self.index.get(name, 0)
        return bits


def _saved_before(facts: FileFacts, entry: int, bits: _Bits) -> dict[str, int]:
    """For each step reached from the start: the variables of bits saved on every route to it (as bits).

    Each step's value is as wide as bits: _SavedBefore asks this only about variables several steps save.
    """
    saves = {s.step: bits.index.get(var, 0) for var, saved in facts.saved.items() for s in saved}
    order = facts.reached  # depth-first from the start, then the closing steps: validate walked it already
    into: dict[str, list[tuple[str, bool]]] = {name: [] for name in order}
    for name in order:
        for target, after_save in facts.routes[name]:
            if target in into:
                into[target].append((name, after_save))
    fixed = {facts.start: entry, **{root: bits.all for root in facts.closing}}
    before = {name: bits.all for name in order}
    changed = True
    while changed:
        changed = False
        for name in order:
            value = fixed.get(name, bits.all)
            for source, after_save in into[name]:
                value &= before[source] | (saves.get(source, 0) if after_save else 0)
            if value != before[name]:
                before[name], changed = value, True
    return before


class _SavedBefore:
    """Whether a variable is saved on every route from a flow's start to a step, one question at a time.

    A variable one step saves is saved before X exactly when that step's save dominates X: every route from
    the start to X passes it. One dominator tree of the flow (the save of a step is a node of its own,
    after the step, so an `on_fail` route skips it) answers that for every variable in constant time, where
    a set of saved variables per step grows with the flow and made the check quadratic. A variable several
    steps save (two branches that both ask for it) is judged by the fixed point over those variables only.
    What a flow starts with (entry: None for everything) is saved everywhere; a step not reached from the
    start (only from a cancel or expire step, which may read anything) sees everything saved.
    """

    def __init__(self, facts: FileFacts) -> None:
        self.savers: dict[str, list[Saved]] = facts.saved  # as they are: a copy of the names cost misses
        self.own = {s.step: var for var, saved in facts.saved.items() for s in saved}
        self.routes = facts.routes
        self.everything = facts.start not in facts.routes or facts.start in facts.closing
        self.number: dict[str, int] = {}  # step name -> its node; a step that saves has its save's node next
        if not self.everything:
            self._dominators(facts.start)
        several = [var for var, saved in self.savers.items() if len(saved) > 1]
        self.bits = _Bits(several)
        self.several = _saved_before(facts, 0, self.bits) if several else {}

    def _dominators(self, start: str) -> None:
        """Number the nodes reached from start in the order a depth-first walk meets them, find each one's
        immediate dominator, and lay the dominator tree out so that a subtree is a range of numbers
        (self.first, self.size).

        One table keyed by step names and flat lists by number, the walk's tree kept as each node's first
        predecessor: for a 5,000-step flow the name-keyed tables of successors, numbers and tuple nodes
        (7,500 nodes, each read again by every later pass) were what no longer fitted the cache.
        """
        routes, own, number = self.routes, self.own, self.number
        idom: list[int] = []  # first each node's predecessor in the walk's tree (numbered before it)
        joins: dict[int, list[int]] = {}  # a node several routes enter -> all its predecessors
        todo = [(start, 0)]  # (step, the node whose route leads to it), the last pushed walked first
        while todo:
            name, source = todo.pop()
            node = number.get(name)
            if node is not None:
                joins.setdefault(node, [idom[node]]).append(source)
                continue
            steps = routes.get(name)
            if steps is None:
                continue  # a target that is not a step leads nowhere
            node = number[name] = len(idom)
            idom.append(source)
            save = node
            if name in own:  # the save: after the step, so an `on_fail` route skips it
                save = node + 1
                idom.append(node)
            for target, after_save in reversed(steps):
                todo.append((target, save if after_save else node))
        _narrow_dominators(idom, joins)
        self.first, self.size = _tree_ranges(idom)

    def saved(self, var: str, step: str, entry: frozenset[str] | None) -> bool:
        """Whether var is saved on every route from the start to step (before step's own save)."""
        at = self.number.get(step)
        if self.everything or at is None or entry is None or var in entry:
            return True
        savers = self.savers.get(var, ())
        if len(savers) == 1:
            step_node = self.number.get(savers[0].step)
            if step_node is None:
                return False
            save = step_node + 1
            return self.first[save] <= self.first[at] < self.first[save] + self.size[save]
        return bool(self.several.get(step, self.bits.all) & self.bits.index.get(var, 0))

    def saved_names(self, step: str, entry: frozenset[str] | None) -> frozenset[str] | None:
        """Every variable saved on every route to step (None: everything, as at a step not reached)."""
        if self.everything or entry is None or step not in self.number:
            return None
        return entry | {var for var in self.savers if self.saved(var, step, frozenset())}


def _narrow_dominators(idom: list[int], joins: dict[int, list[int]]) -> None:
    """Each node's immediate dominator, in place. idom starts as a tree of the graph rooted at node 0 whose
    parents are numbered before their children (a walk's): every dominator of a node is on its path there,
    and a node with one predecessor is dominated by it. So only the nodes several routes enter (joins)
    narrow, in the order of their numbers, until nothing changes (Cooper, Harvey and Kennedy's "A Simple,
    Fast Dominance Algorithm", started from the walk's tree instead of from nothing)."""
    order = sorted(node for node in joins if node)  # node 0 is the start: nothing dominates it
    changed = True
    while changed:
        changed = False
        for node in order:
            preds = iter(joins[node])
            new = next(preds)
            for pred in preds:
                a, b = pred, new
                while a != b:
                    while a > b:
                        a = idom[a]
                    while b > a:
                        b = idom[b]
                new = a
            if idom[node] != new:
                idom[node], changed = new, True


def _tree_ranges(idom: list[int]) -> tuple[list[int], list[int]]:
    """The dominator tree in preorder: node a dominates b exactly when first[a] <= first[b] < first[a] +
    size[a]. A node's immediate dominator is numbered before it, so two plain passes do."""
    size = [1] * len(idom)
    for node in range(len(idom) - 1, 0, -1):
        size[idom[node]] += size[node]
    first = [0] * len(idom)
    free = [1] * len(idom)  # the next number free under each node
    for node in range(1, len(idom)):
        parent = idom[node]
        first[node] = free[parent]
        free[parent] += size[node]
        free[node] = first[node] + 1
    return first, size


def _walk(all_facts: list[FileFacts]) -> dict[str, tuple[_SavedBefore, frozenset[str] | None]]:
    """Per file, what each step sees saved (_SavedBefore) and what the flow starts with: nothing (besides
    contact) when a trigger starts it, else what every hand-over to it carries (None: anything). Repeated
    until nothing changes, so chains of hand-overs count."""
    by_name = {f.name: f for f in all_facts if f.name}
    handed: dict[str, list[tuple[FileFacts, str]]] = {f.name: [] for f in all_facts if f.name}
    for facts in all_facts:
        for target, _path, step in facts.handovers:
            if target in handed:
                handed[target].append((facts, step))
    builtin = frozenset(BUILTIN_VARS)
    analyses = {f.source.file: _SavedBefore(f) for f in by_name.values() if f.sound}
    # Without a trigger a flow starts by a hand-over, or from `flows chat FLOW`, or from a flow not loaded
    # here: only the hand-overs seen can narrow what it starts with.
    open_ = {name for name, f in by_name.items() if not f.triggers}
    entries: dict[str, frozenset[str] | None] = {name: (None if name in open_ else builtin) for name in by_name}
    for _ in range(_MAX_ROUNDS):
        new = dict(entries)
        for name in open_:
            if handed[name]:
                carried: frozenset[str] | None = None
                for facts, step in handed[name]:
                    analysis = analyses.get(facts.source.file)
                    here = analysis.saved_names(step, entries[str(facts.name)]) if analysis else None
                    carried = here if carried is None else (carried if here is None else carried & here)
                new[name] = None if carried is None else carried | builtin
        if new == entries:
            break
        entries = new
    return {f.source.file: (analyses[f.source.file], entries[name]) for name, f in by_name.items() if f.sound}


def check_variables(all_facts: list[FileFacts], complete: bool = True) -> list[Problem]:
    """The four checks over flows loaded together (complete) or one file alone (complete=False)."""
    saved_anywhere = set().union(*(f.saves for f in all_facts)) if all_facts else set()
    known = saved_anywhere | BUILTIN_VARS
    walked = _walk(all_facts)
    saved = _saved_by_name(all_facts)
    problems: list[Problem] = []
    hints = Suggestions(known)
    for facts in all_facts:
        problems.extend(_unsaved(facts, walked.get(facts.source.file), known, hints))
        problems.extend(_text_as_number(facts, saved))
        problems.extend(_unknown_keys(facts, saved))
    if not complete:
        problems = [replace(p, severity="warning") for p in problems]
    return problems


def _saved_by_name(all_facts: list[FileFacts]) -> dict[str, list]:
    saved: dict[str, list] = {}
    for facts in all_facts:
        for var, entries in facts.saved.items():
            saved.setdefault(var, []).extend(entries)
    return saved


def _problem(facts: FileFacts, use: VarUse, severity: str, code: str, message: str) -> Problem:
    line, col = facts.source.where(use.path)
    return Problem(facts.source.file, line, col, severity, code, f"{use.where}: {message}")


def _unsaved(
    facts: FileFacts,
    walked: tuple[_SavedBefore, frozenset[str] | None] | None,
    known: set[str],
    hints: Suggestions,
) -> list[Problem]:
    """template.undefined (a variable no step of the loaded flows saves) and template.not_saved_yet (one some
    route reaches this read without saving first; walked: None when the file's steps are not all sound).

    One pass over the file's reads for both: each read is either unknown or known, and a 5,000-step flow's
    16,000 reads no longer fit the processor's cache when a second pass comes back to them.
    """
    problems: list[Problem] = []
    seen: set[tuple[str, tuple[int, int]]] = set()
    for use in facts.uses:
        if use.name not in known:
            place = (use.name, facts.source.where(use.path))
            if place in seen:
                continue
            seen.add(place)
            problems.append(
                _problem(
                    facts,
                    use,
                    "error",
                    "template.undefined",
                    f"no step saves '{use.name}', so this would stop the conversation with an apology{hints(use.name)}",
                )
            )
            continue
        if walked is None or use.step is None or use.guarded:
            continue
        before, entry = walked
        if before.saved(use.name, use.step, entry) or (use.after_save and before.own.get(use.step) == use.name):
            continue
        where = (
            f"it is saved by step '{before.savers[use.name][0].step}', which does not come before on every way here"
            if use.name in before.savers
            else "only another flow saves it, and no hand-over brings it here"
        )
        problems.append(
            _problem(
                facts,
                use,
                "error",
                "template.not_saved_yet",
                f"'{use.name}' may not be saved yet when this runs: {where}. Save it earlier, "
                f"or write '{use.name} | default(\"\")' where it may be missing",
            )
        )
    return problems


def _text_as_number(facts: FileFacts, saved: dict[str, list]) -> list[Problem]:
    """template.text_as_number: a variable every step saves as text, used as a number as it stands."""
    found = [
        (use, how, entries[0].why)
        for use, how in facts.numeric
        for entries in [_only(saved, use.name, "text")]
        if entries
    ]
    return [
        _problem(
            facts,
            use,
            "error",
            "template.text_as_number",
            f"'{use.name} {how} …' {_EFFECT.get(how, _STOPS)}, because {why}. Write '{use.name} | int' "
            f"(whole numbers) or '{use.name} | float'",
        )
        for use, how, why in found
    ]


def _unknown_keys(facts: FileFacts, saved: dict[str, list]) -> list[Problem]:
    """template.unknown_key: reading a key a literal table saved by core.set does not have."""
    problems: list[Problem] = []
    for use, keys in facts.reads:
        entries = _only(saved, use.name, "table")
        missing = _missing_key(entries[0].table, keys) if entries else None
        if missing is None:
            continue
        key, has = missing
        problems.append(
            _problem(
                facts,
                use,
                "error",
                "template.unknown_key",
                f"the table '{use.name}' (saved by step '{entries[0].step}') has no key '{key}' "
                f"(it has {', '.join(map(str, has)) or 'no keys'}){suggest(str(key), has)}",
            )
        )
    return problems


def _only(saved: dict[str, list], name: str, kind: str) -> list:
    """The steps that save name, when every one of them saves it as kind; else []."""
    entries = saved.get(name) or []
    return entries if entries and all(s.kind == kind for s in entries) else []


def _missing_key(table: Any, keys: tuple) -> tuple[Any, list] | None:
    """The first key of keys the literal table lacks (a computed key: any row may be meant), else None."""
    for i, key in enumerate(keys):
        if not isinstance(table, dict):
            return None
        if key is None:
            for row in table.values():
                missing = _missing_key(row, keys[i + 1 :])
                if missing is not None:
                    return missing
            return None
        if isinstance(key, str) and hasattr(dict, key):
            return None  # a mapping's own method (items, keys, get…), not a key
        if key not in table:
            return key, list(table)
        table = table[key]
    return None


__all__ = ["CODES", "check_variables"]
