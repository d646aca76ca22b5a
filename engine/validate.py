"""The meaning of a flow: checks beyond its shape, each with a stable dotted code.

check_file() looks at one parsed file whose shape flow_schema has checked: step targets, reachability,
dead ends, actions against their registered contracts, input checks, templates and WhatsApp's limits.
It returns the problems plus the facts the cross-file checks need (name, triggers, saved variables,
template variables used, hand-overs); check_set() runs those across every file loaded together.

Every check looks only at steps whose shape is right, so one typo gives one problem, not a cascade.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from typing import Any

from . import flow_schema
from .lookups import normalise
from .problems import Problem
from .registry import ActionRegistry
from .steps import kinds
from .templates import env
from .template_check import TemplateInfo, inspect_expression, inspect_template, is_template, literal_text
from .flow_graph import closed_groups, reachable, targets
from .whatsapp_limits import MAX_INTERACTIVE_BODY, MAX_TEXT_BODY
from .yaml_source import Path, Source

# Variables every template can read without a step saving them (the runner sets them on every turn).
BUILTIN_VARS = frozenset({"contact"})
DURATION = re.compile(r"\s*([0-9]+)\s*([smhd])\s*")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class VarUse:
    """A template reading a top-level variable, where it is written.

    A 5,000-step flow makes 16,000, kept until variable_check has read them: slotted and with no label of
    its own (where is said only when a read is reported), each is one small object, not an object, its
    attributes' array and a label string a step (about 1 MB less alive; fewer cache lines to read and free).
    """

    name: str
    path: Path  # the template's; Source.where finds its line and column only for a read that is reported
    step: str | None = None  # the step whose template it is; None for the flow's cancel/expire messages
    after_save: bool = False  # read by a route's condition, once the step's own `save` is done
    guarded: bool = False  # tested with `is defined` or given a `| default`: reading it never fails

    @property
    def where(self) -> str:
        """The label the checker gave the template: "step 'ask_amount'", "the cancel message", …"""
        return f"step '{self.step}'" if self.step is not None else f"the {self.path[0]} message"


@dataclass(frozen=True, slots=True)
class Saved:
    """What a step's `save` keeps: kind "number", "text", "table" (a literal mapping) or "unknown"."""

    step: str
    kind: str = "unknown"
    why: str = ""  # for "text": what makes it text, in the author's words
    table: Any = None


@dataclass
class FileFacts:
    """One file's problems and what the checks across files need from it."""

    source: Source
    kinds: dict[str, str | None] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    name: str | None = None
    # Positions as paths: Source.where finds the line only for a problem (a valid flow never builds its places).
    triggers: list[tuple[str, str, Path]] = field(default_factory=list)  # (normalised, as written, path)
    saves: set[str] = field(default_factory=set)
    uses: list[VarUse] = field(default_factory=list)
    handovers: list[tuple[str, Path, str]] = field(default_factory=list)  # (flow, path of its `flow:`, step)
    saved: dict[str, list[Saved]] = field(default_factory=dict)  # variable -> the steps that save it
    # A tuple, not a list: a 5,000-step flow keeps one a step until the end (a list is two blocks). (saved
    # stays lists: a tuple grown by one a save copies itself, quadratic when many steps save one variable.)
    routes: dict[str, tuple[tuple[str, bool], ...]] = field(default_factory=dict)  # step -> (target, after save)
    numeric: list[tuple[VarUse, str]] = field(default_factory=list)  # a variable used as a number, and how
    reads: list[tuple[VarUse, tuple]] = field(default_factory=list)  # a variable read by keys, and the keys
    start: str | None = None
    closing: list[str] = field(default_factory=list)  # the cancel and expire steps
    # The steps reached from the start or a closing step, in the order reachable() walked them (when sound).
    reached: dict[str, None] = field(default_factory=dict)
    sound: bool = False  # every step has the right shape: the routes are all known

    @property
    def has_errors(self) -> bool:
        return any(p.severity == "error" for p in self.problems)


def parse_duration(text: str) -> int | None:
    """Seconds in "10m", "2h", "30s", "1d"; None when text is not such a duration (or is zero)."""
    match = DURATION.fullmatch(text)
    if not match:
        return None
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return seconds or None


class _FileChecker:
    """The semantic checks of one file; add() records a problem at a JSON path."""

    def __init__(self, source: Source, kinds: dict[str, str | None], sound: set[str], registry: ActionRegistry) -> None:
        self.source = source
        self.data: dict = source.data
        self.kinds = kinds
        self.sound = sound
        self.registry = registry
        steps = self.data.get("steps")
        self.steps: dict[str, Any] = steps if isinstance(steps, dict) else {}
        # Each step's name as the steps' mapping keeps it. The routes, the start and the closing steps hold
        # that very string, not the equal one the author wrote as a target, so every later lookup of a step
        # by a target (reachability, the loop check, variable_check's "saved before", the reads' steps)
        # compares pointers: comparing texts reads both strings, which a 5,000-step flow read long before.
        self.step_key: dict[str, str] = dict(zip(self.steps, self.steps))
        # Likewise one string a variable, the first one read: every read and save of it holds that one, so
        # variable_check's lookups of a read's name among the saved ones compare pointers.
        self.variable: dict[str, str] = {}
        self.facts = FileFacts(source=source, kinds=kinds)
        self.current: str | None = None  # the step whose templates are being read
        self.in_route = False  # reading a route's condition (after the step's save)
        self.step_names: flow_schema.Suggestions | None = None  # "did you mean" over the steps, once needed
        # Each text read once a file (a flow repeats its templates). The answers go with the checker: kept in
        # a module's cache, each of a 5,000-step flow's 5,000 was still alive when the collector's first
        # collection after the load (engine.load pauses it) walked every object the load had kept.
        self.inspect_template = functools.cache(inspect_template)
        self.inspect_expression = functools.cache(inspect_expression)

    def add(self, path: Path, severity: str, code: str, message: str, *, key: bool = False) -> None:
        self.facts.problems.append(self.source.problem(path, severity, code, message, key=key))

    def run(self) -> FileFacts:
        self.flow_settings()
        for name, step in self.steps.items():
            if name in self.sound:
                self.step(name, step)
            elif isinstance(step, dict) and isinstance(step.get("save"), str):
                # Still a variable the author means to have: no "nobody saves it" warnings for it elsewhere.
                self.facts.saves.add(self.variable.setdefault(step["save"], step["save"]))
        self.facts.sound = all(name in self.sound for name in self.steps)
        start = self._key(self.data.get("start"))
        self.facts.start = start if start is not None else next(iter(self.steps), None)
        self.facts.closing = [
            key
            for s in (self.data.get("cancel"), self.data.get("expire"))
            if isinstance(s, dict) and (key := self._key(s.get("step"))) is not None
        ]
        self.reachability()
        self.endless_loops()
        return self.facts

    # ── flow-level settings ────────────────────────────────────────────────────────────────────────

    def flow_settings(self) -> None:
        data, facts = self.data, self.facts
        self.current = None
        if isinstance(data.get("flow"), str):
            facts.name = data["flow"]
        triggers = data.get("triggers")
        if isinstance(triggers, list):
            for i, phrase in enumerate(triggers):
                if isinstance(phrase, str):
                    facts.triggers.append((normalise(phrase), phrase, ("triggers", i)))
        start = data.get("start")
        if isinstance(start, str):
            self.target(("start",), start, "the flow's 'start'")
        for section in ("cancel", "expire"):
            settings = data.get(section)
            if not isinstance(settings, dict):
                continue
            if isinstance(settings.get("step"), str):
                self.target((section, "step"), settings["step"], f"'{section}'")
            if isinstance(settings.get("say"), str):
                self.template((section, "say"), settings["say"], f"the {section} message", text_limit=MAX_TEXT_BODY)
        expire = data.get("expire")
        if (
            isinstance(expire, dict)
            and isinstance(expire.get("after"), str)
            and parse_duration(expire["after"]) is None
        ):
            self.add(
                ("expire", "after"),
                "error",
                "flow.bad_duration",
                f"'after: {expire['after']}' is not a duration: write a number then s, m, h or d, e.g. 10m, 2h or 1d",
            )

    # ── one step ───────────────────────────────────────────────────────────────────────────────────

    def step(self, name: str, step: dict) -> None:
        base = ("steps", name)
        label = f"step '{name}'"
        self.current = name
        routes = []
        for route_path, target in targets(step, base):
            after_save = route_path[2] != "on_fail"  # on_fail: the answer was never saved
            routes.append((self.target(route_path, target, label), after_save))
        self.facts.routes[name] = tuple(routes)
        self.in_route = True
        self.conditions(step, base, label)
        self.in_route = False
        if isinstance(step.get("save"), str):
            save = self.variable.setdefault(step["save"], step["save"])
            self.facts.saves.add(save)
            self.facts.saved.setdefault(save, []).append(Saved(name))
            if save in BUILTIN_VARS:
                self.add(
                    base + ("save",),
                    "error",
                    "save.reserved",
                    f"{label}: '{step['save']}' is set by convoflow itself: save into another name",
                )
        kind = kinds.get(self.kinds[name])
        if kind.check is not None:
            kind.check(StepChecker(self, name), name, step)

    def dead_end(self, name: str, step: dict, consequence: str) -> None:
        if "next" not in step:
            self.add(
                ("steps", name),
                "warning",
                "step.dead_end",
                f"step '{name}' has no 'next': {consequence}. Add 'next: <step>', or use an 'end:' step "
                f"if the conversation is meant to finish here",
                key=True,
            )

    # ── targets, conditions, templates ─────────────────────────────────────────────────────────────

    def _key(self, name: Any) -> str | None:
        """The steps' own string for name (see step_key); None when name is not a step."""
        return self.step_key.get(name) if isinstance(name, str) else None

    def target(self, path: Path, target: str, label: str) -> str:
        """target as the steps' mapping keeps it (see step_key), reported when there is no such step."""
        key = self.step_key.get(target)
        if key is not None:
            return key
        if self.steps:  # no steps at all is reported once, by the schema
            if self.step_names is None:
                self.step_names = flow_schema.Suggestions(self.steps)
            self.add(
                path, "error", "step.unknown_target", f"{label}: there is no step '{target}'{self.step_names(target)}"
            )
        return target

    def conditions(self, step: dict, base: Path, label: str) -> None:
        routes = step.get("next")
        if not isinstance(routes, list):
            return
        for i, route in enumerate(routes):
            if isinstance(route.get("if"), str):
                self.expression(base + ("next", i, "if"), route["if"], label)
        if all("if" in route for route in routes):
            self.add(
                base + ("next",),
                "warning",
                "step.no_default_route",
                f"{label}: when none of the conditions holds there is nowhere to go and the conversation "
                f"stops with an apology; end the list with '- goto: <step>'",
                key=True,
            )

    def expression(self, path: Path, source: str, label: str) -> None:
        info = self.inspect_expression(source)
        bare = " ".join(source.replace("{{", "").replace("}}", "").split())
        if info.error is not None and "{{" in source and bare and self.inspect_expression(bare).error is None:
            self.add(
                path, "error", "template.syntax", f"{label}: a condition is written without {{{{ }}}}, e.g. if: {bare}"
            )
            return
        self._report_template(path, info, label, "condition")

    def template(self, path: Path, text: str, label: str, *, text_limit: int | None = None) -> None:
        if text_limit is not None:
            literal = literal_text(text)
            if len(literal) > text_limit:
                self.add(
                    path,
                    "error",
                    "whatsapp.text_too_long",
                    f"{label}: the message is {len(literal)} characters; WhatsApp allows {text_limit}"
                    + (" when it has buttons or options" if text_limit == MAX_INTERACTIVE_BODY else ""),
                )
        if is_template(text):
            self._report_template(path, self.inspect_template(text), label, "template")

    def _report_template(self, path: Path, info: TemplateInfo, label: str, what: str) -> None:
        if info.error is not None:
            line_note = f" (line {info.error_line} of the text)" if info.error_line > 1 else ""
            self.add(path, "error", "template.syntax", f"{label}: the {what} does not parse: {info.error}{line_note}")
            return
        for name in info.unknown_filters:
            self.add(
                path,
                "error",
                "template.unknown_filter",
                f"{label}: there is no filter '{name}'{flow_schema.suggest(name, _filters())}",
            )
        for name in info.unknown_tests:
            self.add(path, "error", "template.unknown_filter", f"{label}: there is no test '{name}'")
        variable = self.variable
        uses = {
            name: VarUse(variable.setdefault(name, name), path, self.current, self.in_route, name in info.guarded)
            for name in sorted(info.names)
        }
        self.facts.uses.extend(uses.values())
        self.facts.numeric.extend((uses[name], how) for name, how in info.numeric if name in uses)
        self.facts.reads.extend((uses[name], keys) for name, keys in info.reads if name in uses)

    # ── the step graph ─────────────────────────────────────────────────────────────────────────────

    def reachability(self) -> None:
        start = self.facts.start  # None: no steps at all
        if start is None or not self.facts.sound:
            return  # a step of the wrong shape may route anywhere: warning about the rest would mislead
        # Every step is sound here, so step() recorded its routes: the steps' data is not read again.
        routes = self.facts.routes
        seen = reachable(routes, start)
        for section, doing in (("cancel", "cancelled"), ("expire", "closed after the wait")):
            settings = self.data.get(section)
            root = self._key(settings.get("step")) if isinstance(settings, dict) else None
            if root is None:
                continue
            closing = reachable(routes, root)
            seen |= closing
            questions = [n for n in self.steps if n in closing and kinds.get(self.kinds[n]).waits]
            if questions:
                self.add(
                    (section, "step"),
                    "warning",
                    "flow.closing_question",
                    f"the {section} step '{root}' leads to the question '{questions[0]}', but nobody can "
                    f"answer while the conversation is being {doing}: it stops there",
                )
        for name in self.steps:
            if name not in seen:
                self.add(
                    ("steps", name),
                    "warning",
                    "step.unreachable",
                    f"step '{name}' is never reached: no 'next', 'on' or 'on_fail' leads to it",
                    key=True,
                )
        self.facts.reached = seen

    def endless_loops(self) -> None:
        """Steps that go round in a circle with no question and no way out: the step limit would stop them."""
        if not self.steps or not self.facts.sound:
            return
        exits: dict[str, set[str] | None] = {}  # step -> where it may go; None when it may stop or leave
        names = set(self.steps)
        for name, step in self.steps.items():
            kind = kinds.get(self.kinds[name])
            if kind.waits or kind.leaves:
                exits[name] = None
                continue
            # Every step is sound here, so step() recorded its routes: not the step's keys read again.
            goes_to = {target for target, _ in self.facts.routes[name]}
            if not goes_to or not goes_to <= names:
                exits[name] = None
            elif isinstance(step.get("next"), list) and all("if" in r for r in step["next"]):
                exits[name] = None  # no default route: when no condition holds the walk stops
            elif kind.may_stop is not None and kind.may_stop(step, self.registry):
                exits[name] = None  # e.g. an action outcome without a route stops the walk
            else:
                exits[name] = goes_to
        written = {name: i for i, name in enumerate(self.steps)}  # each loop is named in the order written
        for loop in closed_groups(exits):
            first = min(loop, key=written.__getitem__)
            circle = (
                f"step '{first}' only leads to itself"
                if len(loop) == 1
                else f"steps {flow_schema.and_list(sorted(loop, key=written.__getitem__))} only lead to each other"
            )
            self.add(
                ("steps", first),
                "error",
                "step.endless_loop",
                f"{circle}, with no question and no way out: the conversation would go round until it is "
                f"stopped with an apology. Route {'it' if len(loop) == 1 else 'one of them'} to a question "
                f"or an end",
                key=True,
            )


class StepChecker:
    """What a step kind's checks see of the file checker: one step, paths relative to it."""

    def __init__(self, checker: _FileChecker, name: str) -> None:
        self.checker = checker
        self.name = name
        self.base: Path = ("steps", name)
        self.label = f"step '{name}'"
        self.registry = checker.registry
        self.step: dict = checker.steps[name]

    def add(self, path: Path, severity: str, code: str, message: str, *, key: bool = False) -> None:
        """Record a problem at path, relative to the step (("expect", "amount", "max"))."""
        self.checker.add(self.base + tuple(path), severity, code, message, key=key)

    def message(self, path: Path | str, text: str, limit: int | None = MAX_TEXT_BODY) -> None:
        """Check a template the step holds, and the length WhatsApp allows for it (None: no limit here)."""
        where = (path,) if isinstance(path, str) else tuple(path)
        self.checker.template(self.base + where, text, self.label, text_limit=limit)

    def saves(self, kind: str, why: str = "", table: Any = None) -> None:
        """Say what the step's `save` keeps (see Saved), for the checks of how later steps read it."""
        saved = self.checker.facts.saved[self.step["save"]]
        saved[-1] = Saved(self.name, kind, why, table)

    def dead_end(self, consequence: str) -> None:
        """Warn when the step has no `next`, saying what happens then."""
        self.checker.dead_end(self.name, self.step, consequence)

    def handover(self, flow: str) -> None:
        """Note a hand-over to another flow, checked once every file is read."""
        self.checker.facts.handovers.append((flow, self.base + ("flow",), self.name))


def _filters() -> list[str]:
    return list(env.filters)


def check_file(source: Source, registry: ActionRegistry) -> FileFacts:
    """Shape and meaning of one parsed file (source.data must be a mapping)."""
    problems, kinds, sound = flow_schema.check(source)
    facts = _FileChecker(source, kinds, sound, registry).run()
    facts.problems[:0] = problems
    return facts


def check_set(all_facts: list[FileFacts]) -> list[Problem]:
    """Checks across files loaded together: unique names and triggers, hand-overs (variables: variable_check)."""
    problems: list[Problem] = []
    names: dict[str, FileFacts] = {}
    for facts in all_facts:
        if facts.name is None:
            continue
        first = names.setdefault(facts.name, facts)
        if first is not facts:
            problems.append(
                facts.source.problem(
                    ("flow",),
                    "error",
                    "flow.duplicate_name",
                    f"another flow is already named '{facts.name}' ({first.source.file}): flow names must be unique",
                )
            )
    claimed: dict[str, tuple[FileFacts, Path]] = {}
    for facts in all_facts:
        mine: set[str] = set()
        for norm, phrase, path in facts.triggers:
            if norm in mine:
                continue
            mine.add(norm)
            owner, owner_path = claimed.setdefault(norm, (facts, path))
            if owner.source.file != facts.source.file:
                problems.append(
                    facts.source.problem(
                        path,
                        "error",
                        "flow.duplicate_trigger",
                        f"the trigger '{phrase}' is already claimed by flow '{owner.name or '?'}' "
                        f"({owner.source.file}:{owner.source.where(owner_path)[0]}): a message can start only one flow",
                    )
                )
    for facts in all_facts:
        for target, path, step in facts.handovers:
            if target not in names:
                problems.append(
                    facts.source.problem(
                        path,
                        "error",
                        "flow.unknown_flow",
                        f"step '{step}': there is no flow '{target}' to hand over to"
                        f"{flow_schema.suggest(target, names)}",
                    )
                )
    return problems


# What another file may hold: while a file does not parse, these are follow-ons, not the author's mistakes.
FOLLOW_ONS = frozenset({"flow.unknown_flow", "template.undefined", "template.not_saved_yet"})


def not_checked(problems: list[Problem], unparsed: list[str]) -> list[Problem]:
    """problems, with those a file that does not parse may cause replaced by one "not checked" per file."""
    if not unparsed:
        return problems
    names = ", ".join(os.path.basename(f) for f in unparsed)
    has = "has a YAML error, so" if len(unparsed) == 1 else "have YAML errors, so"
    fixed = "it is fixed" if len(unparsed) == 1 else "they are fixed"
    kept: list[Problem] = []
    noted: set[str] = set()
    for p in problems:
        if p.code not in FOLLOW_ONS:
            kept.append(p)
        elif p.file not in noted:
            noted.add(p.file)
            kept.append(
                Problem(
                    p.file,
                    p.line,
                    p.col,
                    "warning",
                    "flow.not_checked",
                    f"not checked: {names} {has} hand-overs and variables are checked once {fixed}",
                )
            )
    return kept


__all__ = [
    "FileFacts",
    "VarUse",
    "StepChecker",
    "BUILTIN_VARS",
    "check_file",
    "check_set",
    "not_checked",
    "parse_duration",
    "Saved",
]
