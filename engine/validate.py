"""The meaning of a flow: checks beyond its shape, each with a stable dotted code.

check_file() looks at one parsed file whose shape flow_schema has checked: step targets, reachability,
dead ends, actions against their registered contracts, input checks, templates and WhatsApp's limits.
It returns the problems plus the facts the cross-file checks need (name, triggers, saved variables,
template variables used, hand-overs); check_set() runs those across every file loaded together.

Every check looks only at steps whose shape is right, so one typo gives one problem, not a cascade.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import jsonschema

from . import flow_schema
from .lookups import normalise
from .problems import Problem
from .registry import ActionRegistry, ActionSpec
from .templates import env
from .template_check import TemplateInfo, inspect_expression, inspect_template, is_template, literal_text
from .flow_graph import closed_groups, reachable, targets
from .whatsapp_limits import MAX_INTERACTIVE_BODY, MAX_TEXT_BODY, check_step_limits
from .yaml_source import Path, Source

# Variables every template can read without a step saving them (the runner sets them on every turn).
BUILTIN_VARS = frozenset({"contact"})
DURATION = re.compile(r"\s*([0-9]+)\s*([smhd])\s*")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class VarUse:
    """A template reading a top-level variable, where it is written."""

    name: str
    line: int
    col: int
    where: str  # "step 'ask_amount'", "cancel message", …


@dataclass
class FileFacts:
    """One file's problems and what the checks across files need from it."""

    source: Source
    kinds: dict[str, str | None] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    name: str | None = None
    triggers: list[tuple[str, str, int, int]] = field(default_factory=list)  # (normalised, as written, line, col)
    saves: set[str] = field(default_factory=set)
    uses: list[VarUse] = field(default_factory=list)
    handovers: list[tuple[str, int, int, str]] = field(default_factory=list)  # (flow, line, col, step)

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
        self.facts = FileFacts(source=source, kinds=kinds)

    def add(self, path: Path, severity: str, code: str, message: str, *, key: bool = False) -> None:
        self.facts.problems.append(self.source.problem(path, severity, code, message, key=key))

    def run(self) -> FileFacts:
        self.flow_settings()
        for name, step in self.steps.items():
            if name in self.sound:
                self.step(name, step)
            elif isinstance(step, dict) and isinstance(step.get("save"), str):
                # Still a variable the author means to have: no "nobody saves it" warnings for it elsewhere.
                self.facts.saves.add(step["save"])
        self.reachability()
        self.endless_loops()
        return self.facts

    # ── flow-level settings ────────────────────────────────────────────────────────────────────────

    def flow_settings(self) -> None:
        data, facts = self.data, self.facts
        if isinstance(data.get("flow"), str):
            facts.name = data["flow"]
        triggers = data.get("triggers")
        if isinstance(triggers, list):
            for i, phrase in enumerate(triggers):
                if isinstance(phrase, str):
                    line, col = self.source.where(("triggers", i))
                    facts.triggers.append((normalise(phrase), phrase, line, col))
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
        if isinstance(expire, dict) and isinstance(expire.get("after"), str) and parse_duration(expire["after"]) is None:
            self.add(("expire", "after"), "error", "flow.bad_duration",
                     f"'after: {expire['after']}' is not a duration: write a number then s, m, h or d, e.g. 10m, 2h or 1d")

    # ── one step ───────────────────────────────────────────────────────────────────────────────────

    def step(self, name: str, step: dict) -> None:
        kind = self.kinds[name]
        base = ("steps", name)
        label = f"step '{name}'"
        for route_path, target in targets(step, base):
            self.target(route_path, target, label)
        self.conditions(step, base, label)
        if isinstance(step.get("save"), str):
            self.facts.saves.add(step["save"])
            if step["save"] in BUILTIN_VARS:
                self.add(base + ("save",), "error", "save.reserved",
                         f"{label}: '{step['save']}' is set by convoflow itself: save into another name")
        if kind == "say":
            self.template(base + ("say",), step["say"], label, text_limit=MAX_TEXT_BODY)
            self.dead_end(name, step, "the conversation ends after this message")
        elif kind == "end" and isinstance(step["end"], str):
            self.template(base + ("end",), step["end"], label, text_limit=MAX_TEXT_BODY)
        elif kind == "ask":
            self.ask(name, step, base, label)
        elif kind == "action":
            self.action(name, step, base, label)
        elif kind == "flow":
            line, col = self.source.where(base + ("flow",))
            self.facts.handovers.append((step["flow"], line, col, name))

    def ask(self, name: str, step: dict, base: Path, label: str) -> None:
        has_choices = "buttons" in step or "options" in step
        self.template(base + ("ask",), step["ask"], label, text_limit=MAX_INTERACTIVE_BODY if has_choices else MAX_TEXT_BODY)
        if isinstance(step.get("retry"), str):
            self.template(base + ("retry",), step["retry"], label, text_limit=MAX_INTERACTIVE_BODY if has_choices else MAX_TEXT_BODY)
        if "buttons" in step and "options" in step:
            self.add(base + ("options",), "error", "ask.buttons_and_options",
                     f"{label} has both 'buttons' and 'options': WhatsApp shows one or the other, keep one", key=True)
        for path, text in _choice_texts(step, base):
            self.template(path, text, label)
        if isinstance(step.get("list_button"), str):
            self.template(base + ("list_button",), step["list_button"], label)
        for problem in check_step_limits(step, base, label):
            self.add(*problem)
        if "expect" in step:
            self.expect(step["expect"], base + ("expect",), label)
            if has_choices:
                self.add(base + ("expect",), "warning", "ask.expect_with_choices",
                         f"{label}: with buttons or options the answer is one of them, so 'expect' is never used; "
                         f"remove it", key=True)
        self.dead_end(name, step, "the conversation ends once the answer is saved")

    def expect(self, expect: Any, path: Path, label: str) -> None:
        if not isinstance(expect, dict):
            return
        (kind, args), = expect.items()
        args_path = path + (kind,)
        if kind == "regex":
            pattern = args if isinstance(args, str) else args["pattern"]
            where = args_path if isinstance(args, str) else args_path + ("pattern",)
            try:
                re.compile(pattern)
            except re.error as e:
                self.add(where, "error", "expect.bad_regex", f"{label}: the regex '{pattern}' is not valid: {e}")
            return
        if not isinstance(args, dict):
            return
        bounds = {}
        for arg in ("min", "max", "min_length", "max_length"):
            value = args.get(arg)
            if isinstance(value, str) and is_template(value):
                self.template(args_path + (arg,), value, label)
            elif value is not None:
                number = _number(value)
                if number is None:
                    self.add(args_path + (arg,), "error", "expect.bad_number",
                             f"{label}: '{arg}: {value}' is not a number (write e.g. {arg}: \"10\", or a template)")
                else:
                    bounds[arg.replace("_length", "")] = number
        if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
            self.add(args_path, "error", "expect.bad_range",
                     f"{label}: the smallest allowed value is above the largest, so no answer can pass")

    def action(self, name: str, step: dict, base: Path, label: str) -> None:
        spec = self.registry.get(step["action"])
        params = step.get("with") or {}
        self.params_templates(params, base + ("with",), label, spec)
        if spec is None:
            hint = self.registry.suggest(step["action"])
            self.add(base + ("action",), "error", "action.unknown",
                     f"{label}: unknown action '{step['action']}'" + (f" — did you mean '{hint}'?" if hint else ""))
            if "on" not in step:
                self.dead_end(name, step, "the conversation stops after the action")
            return
        self.params_schema(spec, params, base + ("with",), label)
        on = step.get("on") or {}
        for outcome in on:
            if outcome not in spec.outcomes:
                self.add(base + ("on", outcome), "error", "action.unknown_outcome",
                         f"{label}: action '{spec.name}' never returns '{outcome}' (it returns "
                         f"{', '.join(spec.outcomes)}){flow_schema.suggest(outcome, spec.outcomes)}",
                         key=True)
        if "next" in step:
            return
        if not on:
            self.dead_end(name, step, f"every outcome of '{spec.name}' stops the conversation with an apology")
            return
        for outcome in spec.outcomes:
            if outcome not in on:
                self.add(base + ("on",), "warning", "action.unhandled_outcome",
                         f"{label}: action '{spec.name}' may return '{outcome}', which 'on' does not handle and "
                         f"there is no 'next': the conversation would stop with an apology", key=True)

    def params_templates(self, params: dict, path: Path, label: str, spec: ActionSpec | None) -> None:
        for key, value in params.items():
            for value_path, text in _strings(value, path + (key,)):
                if not is_template(text):
                    continue
                if spec is not None and key not in spec.templates:
                    if key not in (spec.params.get("properties") or {}):
                        continue  # an unknown parameter: params_schema says so, once
                    self.add(value_path, "error", "action.param_not_template",
                             f"{label}: '{key}' of action '{spec.name}' is sent exactly as written, so it cannot "
                             f"hold a template ({{{{ … }}}})")
                    continue
                self.template(value_path, text, label)

    def params_schema(self, spec: ActionSpec, params: dict, path: Path, label: str) -> None:
        # A templated value is judged when the conversation runs (or, where the action takes no template,
        # by action.param_not_template already).
        templated = {k for k, v in params.items() if any(is_template(t) for _, t in _strings(v, ()))}
        required_seen: set[Path] = set()
        for err in _params_validator(spec).iter_errors(params):
            where = tuple(err.absolute_path)
            if where and where[0] in templated:
                continue
            if err.validator == "required":
                if where in required_seen:
                    continue  # jsonschema reports each missing parameter apart; one line names them all
                required_seen.add(where)
                missing = [r for r in err.validator_value if r not in err.instance] or list(err.validator_value)
                message = f"action '{spec.name}' needs {flow_schema.and_list(missing)} in 'with'"
            elif err.validator == "additionalProperties":
                known = list(err.schema.get("properties", {}))
                extras = [k for k in err.instance if k not in known]
                for extra in extras:
                    self.add(path + where + (extra,), "error", "action.bad_params",
                             f"{label}: action '{spec.name}' takes no '{extra}'{flow_schema.suggest(extra, known)}", key=True)
                continue
            else:
                message = _param_words(err, str(where[-1]) if where else "with")
            self.add(path + where, "error", "action.bad_params", f"{label}: {message}")

    def dead_end(self, name: str, step: dict, consequence: str) -> None:
        if "next" not in step:
            self.add(("steps", name), "warning", "step.dead_end",
                     f"step '{name}' has no 'next': {consequence}. Add 'next: <step>', or use an 'end:' step "
                     f"if the conversation is meant to finish here", key=True)

    # ── targets, conditions, templates ─────────────────────────────────────────────────────────────

    def target(self, path: Path, target: str, label: str) -> None:
        if self.steps and target not in self.steps:  # no steps at all is reported once, by the schema
            self.add(path, "error", "step.unknown_target",
                     f"{label}: there is no step '{target}'{flow_schema.suggest(target, self.steps)}")

    def conditions(self, step: dict, base: Path, label: str) -> None:
        routes = step.get("next")
        if not isinstance(routes, list):
            return
        for i, route in enumerate(routes):
            if isinstance(route.get("if"), str):
                self.expression(base + ("next", i, "if"), route["if"], label)
        if all("if" in route for route in routes):
            self.add(base + ("next",), "warning", "step.no_default_route",
                     f"{label}: when none of the conditions holds there is nowhere to go and the conversation "
                     f"stops with an apology; end the list with '- goto: <step>'", key=True)

    def expression(self, path: Path, source: str, label: str) -> None:
        info = inspect_expression(source)
        bare = " ".join(source.replace("{{", "").replace("}}", "").split())
        if info.error is not None and "{{" in source and bare and inspect_expression(bare).error is None:
            self.add(path, "error", "template.syntax",
                     f"{label}: a condition is written without {{{{ }}}}, e.g. if: {bare}")
            return
        self._report_template(path, info, label, "condition")

    def template(self, path: Path, text: str, label: str, *, text_limit: int | None = None) -> None:
        if text_limit is not None:
            literal = literal_text(text)
            if len(literal) > text_limit:
                self.add(path, "error", "whatsapp.text_too_long",
                         f"{label}: the message is {len(literal)} characters; WhatsApp allows {text_limit}"
                         + (" when it has buttons or options" if text_limit == MAX_INTERACTIVE_BODY else ""))
        if is_template(text):
            self._report_template(path, inspect_template(text), label, "template")

    def _report_template(self, path: Path, info: TemplateInfo, label: str, what: str) -> None:
        if info.error is not None:
            line_note = f" (line {info.error_line} of the text)" if info.error_line > 1 else ""
            self.add(path, "error", "template.syntax", f"{label}: the {what} does not parse: {info.error}{line_note}")
            return
        for name in info.unknown_filters:
            self.add(path, "error", "template.unknown_filter",
                     f"{label}: there is no filter '{name}'{flow_schema.suggest(name, _filters())}")
        for name in info.unknown_tests:
            self.add(path, "error", "template.unknown_filter", f"{label}: there is no test '{name}'")
        line, col = self.source.where(path)
        self.facts.uses.extend(VarUse(name, line, col, label) for name in sorted(info.names))

    # ── the step graph ─────────────────────────────────────────────────────────────────────────────

    def reachability(self) -> None:
        if not self.steps or any(name not in self.sound for name in self.steps):
            return  # a step of the wrong shape may route anywhere: warning about the rest would mislead
        start = self.data.get("start")
        seen = reachable(self.steps, start if isinstance(start, str) and start in self.steps else next(iter(self.steps)))
        for section, doing in (("cancel", "cancelled"), ("expire", "closed after the wait")):
            settings = self.data.get(section)
            root = settings.get("step") if isinstance(settings, dict) else None
            if not isinstance(root, str) or root not in self.steps:
                continue
            closing = reachable(self.steps, root)
            seen |= closing
            questions = [n for n in self.steps if n in closing and self.kinds.get(n) == "ask"]
            if questions:
                self.add((section, "step"), "warning", "flow.closing_question",
                         f"the {section} step '{root}' leads to the question '{questions[0]}', but nobody can "
                         f"answer while the conversation is being {doing}: it stops there")
        for name in self.steps:
            if name not in seen:
                self.add(("steps", name), "warning", "step.unreachable",
                         f"step '{name}' is never reached: no 'next', 'on' or 'on_fail' leads to it", key=True)


    def endless_loops(self) -> None:
        """Steps that go round in a circle with no question and no way out: the step limit would stop them."""
        if not self.steps or any(name not in self.sound for name in self.steps):
            return
        exits: dict[str, set[str] | None] = {}  # step -> where it may go; None when it may stop or leave
        names = set(self.steps)
        for name, step in self.steps.items():
            goes_to = {t for _, t in targets(step, ())}
            if self.kinds[name] in ("ask", "end", "flow") or not goes_to or not goes_to <= names:
                exits[name] = None
            elif isinstance(step.get("next"), list) and all("if" in r for r in step["next"]):
                exits[name] = None  # no default route: when no condition holds the walk stops
            elif self.kinds[name] == "action" and "next" not in step and not self._routes_every_outcome(step):
                exits[name] = None  # an outcome without a route stops the walk
            else:
                exits[name] = goes_to
        for loop in closed_groups(exits):
            first = min(loop, key=list(self.steps).index)
            circle = (f"step '{first}' only leads to itself" if len(loop) == 1 else
                      f"steps {flow_schema.and_list(sorted(loop, key=list(self.steps).index))} only lead to each other")
            self.add(("steps", first), "error", "step.endless_loop",
                     f"{circle}, with no question and no way out: the conversation would go round until it is "
                     f"stopped with an apology. Route {'it' if len(loop) == 1 else 'one of them'} to a question "
                     f"or an end", key=True)

    def _routes_every_outcome(self, step: dict) -> bool:
        spec = self.registry.get(step["action"])
        return spec is not None and all(o in (step.get("on") or {}) for o in spec.outcomes)


def _choice_texts(step: dict, base: Path) -> Iterable[tuple[Path, str]]:
    for field_ in ("buttons", "options"):
        choices = step.get(field_)
        items = choices.items() if isinstance(choices, dict) else enumerate(choices or ())
        for key, choice in items:
            if isinstance(choice, str):
                yield base + (field_, key), choice
            elif isinstance(choice, dict):
                for part in ("title", "description"):
                    if isinstance(choice.get(part), str):
                        yield base + (field_, key, part), choice[part]


def _strings(value: Any, path: Path) -> Iterable[tuple[Path, str]]:
    """Every string inside a parameter value, with its path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, path + (i,))


def _param_words(err: jsonschema.ValidationError, label: str) -> str:
    """Plain words for a parameter that breaks its action's schema; actions' patterns carry no prose."""
    if err.validator == "pattern":
        return f"'{label}' is '{err.instance}', which is not in the form the action needs ({err.validator_value})"
    if err.validator == "type" and isinstance(err.instance, int | float) and "string" in str(err.validator_value):
        return f"'{label}' must be text: put {err.instance} in quotes"
    return flow_schema.plain_words(err, label)[1]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip().replace(",", "").lstrip("$"))
    except ValueError:
        return None


# One compiled validator per action contract; the spec is kept alongside so its id stays its own.
_validators: dict[int, tuple[ActionSpec, jsonschema.Draft202012Validator]] = {}


def _params_validator(spec: ActionSpec) -> jsonschema.Draft202012Validator:
    entry = _validators.get(id(spec))
    if entry is None or entry[0] is not spec:
        entry = _validators[id(spec)] = (spec, jsonschema.Draft202012Validator(spec.params))
    return entry[1]


def _filters() -> list[str]:
    return list(env.filters)


def check_file(source: Source, registry: ActionRegistry) -> FileFacts:
    """Shape and meaning of one parsed file (source.data must be a mapping)."""
    problems, kinds, sound = flow_schema.check(source)
    facts = _FileChecker(source, kinds, sound, registry).run()
    facts.problems[:0] = problems
    return facts


def undefined_variables(facts: FileFacts, known: set[str]) -> list[Problem]:
    """template.undefined warnings for the variables facts' templates read that nothing provides."""
    problems: list[Problem] = []
    seen: set[tuple[str, int, int]] = set()
    for use in facts.uses:
        if use.name in known or use.name in BUILTIN_VARS or (use.name, use.line, use.col) in seen:
            continue
        seen.add((use.name, use.line, use.col))
        hint = flow_schema.suggest(use.name, known | BUILTIN_VARS)
        problems.append(Problem(facts.source.file, use.line, use.col, "warning", "template.undefined",
                                f"{use.where}: no step saves '{use.name}', so this would stop the conversation "
                                f"with an apology{hint}"))
    return problems


def check_set(all_facts: list[FileFacts]) -> list[Problem]:
    """Checks across files loaded together: unique names and triggers, hand-overs, variables."""
    problems: list[Problem] = []
    names: dict[str, FileFacts] = {}
    for facts in all_facts:
        if facts.name is None:
            continue
        first = names.setdefault(facts.name, facts)
        if first is not facts:
            problems.append(facts.source.problem(("flow",), "error", "flow.duplicate_name",
                                                 f"another flow is already named '{facts.name}' ({first.source.file}): "
                                                 f"flow names must be unique"))
    claimed: dict[str, tuple[str, str, int]] = {}
    for facts in all_facts:
        mine: set[str] = set()
        for norm, phrase, line, col in facts.triggers:
            if norm in mine:
                continue
            mine.add(norm)
            owner = claimed.setdefault(norm, (facts.name or "?", facts.source.file, line))
            if owner[1] != facts.source.file:
                problems.append(Problem(facts.source.file, line, col, "error", "flow.duplicate_trigger",
                                        f"the trigger '{phrase}' is already claimed by flow '{owner[0]}' "
                                        f"({owner[1]}:{owner[2]}): a message can start only one flow"))
    for facts in all_facts:
        for target, line, col, step in facts.handovers:
            if target not in names:
                problems.append(Problem(facts.source.file, line, col, "error", "flow.unknown_flow",
                                        f"step '{step}': there is no flow '{target}' to hand over to"
                                        f"{flow_schema.suggest(target, names)}"))
    saved = set().union(*(f.saves for f in all_facts)) if all_facts else set()
    for facts in all_facts:
        problems.extend(undefined_variables(facts, saved))
    return problems


__all__ = ["FileFacts", "VarUse", "BUILTIN_VARS", "check_file", "check_set", "undefined_variables", "parse_duration"]
