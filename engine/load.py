"""Loading flows: YAML text to checked Flow objects, with every problem located at file:line:col.

    flow, problems = load_text(text, "flows/pay.yaml", registry)     # one file
    report = load_paths(["flows/"], registry)                         # many, checked together
    if report.ok: FlowSet.of(report.flows)

Neither raises for bad input: a file that cannot be read, is not UTF-8, is not YAML or is not a flow
becomes problems. A flow with any error is left out (None / not in report.flows); warnings do not stop it.
Checks that need every flow (unique names and triggers, hand-overs, variables saved in another flow)
run only in load_paths. load_text judges one file alone, as a stored version is loaded at run time: there
the variable checks (engine.variable_check) only warn, so a published version never stops loading.
"""

from __future__ import annotations

import functools
import gc
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path as FilePath
from typing import TYPE_CHECKING, Any, Callable, Iterable, TypeVar

from .problems import Problem
from .registry import ActionRegistry
from .steps import kinds
from .validate import FileFacts, check_file, check_set, not_checked, parse_duration
from .variable_check import check_variables
from .yaml_source import Source, decode, parse

if TYPE_CHECKING:
    from .model import Flow, Route, Step

FLOW_SUFFIXES = (".yaml", ".yml")
F = TypeVar("F", bound=Callable[..., Any])


def _without_gc_pauses(load: F) -> F:
    """Run load with the cyclic garbage collector paused.

    Loading builds hundreds of thousands of small objects (YAML nodes, paths, schema errors) and frees
    almost none: each automatic collection then walks everything built so far, which made a 5,000-step
    flow cost 6-7x a 1,000-step one instead of 5x. Nothing loading builds needs the collector (no
    cycles are left behind that reference counting cannot free), and it is switched back on after.
    """

    @functools.wraps(load)
    def paused(*args: Any, **kwargs: Any) -> Any:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return load(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return paused  # type: ignore[return-value]


@dataclass(frozen=True)
class LoadReport:
    """The flows that loaded, every problem found, and each loaded flow's file and text (for storing)."""

    flows: list[Flow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    sources: dict[str, tuple[str, str]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]


def _facts(text: str, file: str, registry: ActionRegistry) -> FileFacts:
    source = parse(text, file)
    if source.data is None:
        return FileFacts(source=source, problems=list(source.problems))
    facts = check_file(source, registry)
    facts.problems[:0] = source.problems
    return facts


@_without_gc_pauses
def load_text(text: str, file: str, registry: ActionRegistry, version: int = 0) -> tuple[Flow | None, list[Problem]]:
    """Check and build one flow from its YAML text against the actions in registry (the caller's: there is
    no default to fall back on). Variables are judged against this file's saves only."""
    facts = _facts(text, file, registry)
    facts.problems.extend(check_variables([facts], complete=False))
    problems = sorted(facts.problems)
    if facts.has_errors:
        return None, problems
    return build_flow(facts.source, facts.kinds, version), problems


def flow_files(paths: Iterable[str]) -> list[str]:
    """paths with each directory replaced by the *.yaml / *.yml files in it, sorted by name."""
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            files.extend(str(p) for p in sorted(FilePath(path).iterdir()) if p.suffix in FLOW_SUFFIXES and p.is_file())
        else:
            files.append(str(path))
    return files


@_without_gc_pauses
def load_paths(paths: list[str], registry: ActionRegistry, *, build: bool = True) -> LoadReport:
    """Load every flow file under paths and check them together (names, triggers, hand-overs, variables).
    build=False only checks: the report has the problems and files, no flows (what `flows validate` needs)."""
    all_facts: list[FileFacts] = []
    texts: dict[str, str] = {}
    problems: list[Problem] = []
    files = flow_files(paths)
    for file in files:
        try:
            raw = FilePath(file).read_bytes()
        except OSError as e:
            problems.append(
                Problem(file, 1, 1, "error", "file.unreadable", f"cannot read this file: {e.strerror or e}")
            )
            continue
        text, decode_problems = decode(raw, file)
        if text is None:
            problems.extend(decode_problems)
            continue
        texts[file] = text
        all_facts.append(_facts(text, file, registry))
    unparsed = [f.source.file for f in all_facts if f.source.data is None]
    problems.extend(not_checked(check_set(all_facts) + check_variables(all_facts), unparsed))
    for facts in all_facts:
        problems.extend(facts.problems)
    failed = {p.file for p in problems if p.severity == "error"}
    flows: list[Flow] = []
    sources: dict[str, tuple[str, str]] = {}
    for facts in all_facts if build else ():
        file = facts.source.file
        if file not in failed:
            flow = build_flow(facts.source, facts.kinds, 0)
            flows.append(flow)
            sources[flow.name] = (file, texts[file])
    return LoadReport(flows=flows, problems=sorted(problems), sources=sources, files=files)


# ── building the model from a checked document ─────────────────────────────────────────────────────


def build_flow(source: Source, kinds: dict[str, str | None], version: int) -> Flow:
    """The Flow a checked document describes (only called when it has no errors)."""
    # engine.model here, not at the top: `flows validate` builds no flow, and its dataclasses (Step's
    # twenty fields) cost a new process about 1.7 % of its instructions to create.
    from .model import DEFAULT_CANCEL_MESSAGE, DEFAULT_CANCEL_WORDS, DEFAULT_MENU_WORD, Flow

    data = source.data
    places = source.key_places(("steps",))
    steps = {name: _step(name, kinds[name] or "", spec, places[name]) for name, spec in data["steps"].items()}
    cancel = data.get("cancel") or {}
    expire = data.get("expire") or {}
    after = parse_duration(expire["after"]) if "after" in expire else None
    return Flow(
        name=data["flow"],
        title=data.get("title") or data["flow"].replace("_", " ").capitalize(),
        steps=steps,
        start=data.get("start") or next(iter(steps)),
        triggers=tuple(data.get("triggers") or ()),
        cancel_words=tuple(cancel.get("words", DEFAULT_CANCEL_WORDS)),
        cancel_message=cancel.get("say", DEFAULT_CANCEL_MESSAGE),
        cancel_step=cancel.get("step"),
        menu_word=data.get("menu", DEFAULT_MENU_WORD),
        expire_after=timedelta(seconds=after) if after else None,
        expire_message=expire.get("say"),
        expire_step=expire.get("step"),
        version=version,
        file=source.file,
    )


def _step(name: str, kind: str, spec: dict, place: tuple[int, int]) -> Step:
    from .model import Step

    line, col = place
    return Step(name=name, kind=kind, line=line, col=col, next=_routes(spec.get("next")), **kinds.get(kind).build(spec))


def _routes(value: Any) -> tuple[Route, ...]:
    from .model import Route

    if value is None:
        return ()
    if isinstance(value, str):
        return (Route(goto=value),)
    return tuple(Route(goto=r["goto"], when=r.get("if")) for r in value)


__all__ = ["LoadReport", "load_text", "load_paths", "flow_files", "build_flow"]
