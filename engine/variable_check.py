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

from .flow_schema import suggest
from .problems import Problem
from .validate import BUILTIN_VARS, FileFacts, VarUse

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
    """For each step reached from the start: the variables saved on every route to it (as bits)."""
    saves = {s.step: bits.index[var] for var, saved in facts.saved.items() for s in saved}
    order: list[str] = []
    seen: set[str] = set()
    for root in [facts.start, *facts.closing]:
        todo = [root] if root else []
        while todo:  # depth-first, so a step mostly comes after the steps that lead to it
            name = todo.pop()
            if name in seen or name not in facts.routes:
                continue
            seen.add(name)
            order.append(name)
            todo.extend(reversed([t for t, _ in facts.routes[name] if t not in seen]))
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


def _walk(all_facts: list[FileFacts], bits: _Bits) -> dict[str, dict[str, int]]:
    """Per file, what each step sees saved (_saved_before), where a flow starts with nothing (besides contact)
    when a trigger starts it, else with what every hand-over to it carries. Repeated until nothing changes,
    so chains of hand-overs count."""
    by_name = {f.name: f for f in all_facts if f.name}
    handed = {f.name: [] for f in all_facts if f.name}
    for facts in all_facts:
        for target, _line, _col, step in facts.handovers:
            if target in handed:
                handed[target].append((facts, step))
    builtin = bits.of(BUILTIN_VARS)
    # Without a trigger a flow starts by a hand-over, or from `flows chat FLOW`, or from a flow not loaded
    # here: only the hand-overs seen can narrow what it starts with.
    open_ = {name for name, f in by_name.items() if not f.triggers}
    entries = {name: (bits.all if name in open_ else builtin) for name in by_name}
    for _ in range(_MAX_ROUNDS):
        before = {f.source.file: _saved_before(f, entries[name], bits) for name, f in by_name.items() if f.sound}
        new = dict(entries)
        for name in open_:
            if handed[name]:
                carried = bits.all
                for facts, step in handed[name]:
                    carried &= before.get(facts.source.file, {}).get(step, bits.all)
                new[name] = carried | builtin
        if new == entries:
            return before
        entries = new
    return {f.source.file: _saved_before(f, entries[name], bits) for name, f in by_name.items() if f.sound}


def check_variables(all_facts: list[FileFacts], complete: bool = True) -> list[Problem]:
    """The four checks over flows loaded together (complete) or one file alone (complete=False)."""
    saved_anywhere = set().union(*(f.saves for f in all_facts)) if all_facts else set()
    bits = _Bits(saved_anywhere | BUILTIN_VARS)
    walked = _walk(all_facts, bits)
    saved = _saved_by_name(all_facts)
    problems: list[Problem] = []
    for facts in all_facts:
        problems.extend(_undefined(facts, saved_anywhere))
        if facts.source.file in walked:
            problems.extend(_not_saved_yet(facts, walked[facts.source.file], bits))
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
    return Problem(facts.source.file, use.line, use.col, severity, code, f"{use.where}: {message}")


def _undefined(facts: FileFacts, known: set[str]) -> list[Problem]:
    """template.undefined: a variable no step of the loaded flows saves."""
    problems: list[Problem] = []
    seen: set[tuple[str, int, int]] = set()
    for use in facts.uses:
        if use.name in known or use.name in BUILTIN_VARS or (use.name, use.line, use.col) in seen:
            continue
        seen.add((use.name, use.line, use.col))
        problems.append(
            _problem(
                facts,
                use,
                "error",
                "template.undefined",
                f"no step saves '{use.name}', so this would stop the conversation with an apology"
                f"{suggest(use.name, known | BUILTIN_VARS)}",
            )
        )
    return problems


def _not_saved_yet(facts: FileFacts, before: dict[str, int], bits: _Bits) -> list[Problem]:
    """template.not_saved_yet: a variable some route reaches this read without saving first."""
    savers = {var: [s.step for s in saved] for var, saved in facts.saved.items()}
    own = {s.step: var for var, saved in facts.saved.items() for s in saved}
    problems: list[Problem] = []
    for use in facts.uses:
        if use.step is None or use.step not in before or use.guarded or use.name not in bits.index:
            continue
        have = before[use.step] | (bits.index[own[use.step]] if use.after_save and use.step in own else 0)
        if have & bits.index[use.name]:
            continue
        where = (
            f"it is saved by step '{savers[use.name][0]}', which does not come before on every way here"
            if use.name in savers
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
