"""Lookups the runner needs on every turn, computed once per FlowSet / Flow object.

Flows are frozen after loading, so what can be derived from them (normalised triggers, the answers each
ask step accepts) is built once and kept for as long as that object lives, made with the object itself:
a flow's in Flow.lookups, a flow set's in FlowSet.lookups (their __post_init__). A reloaded flow set is a
new object and gets fresh lookups. per_object caches what other modules derive from such an object.
"""

from __future__ import annotations

import unicodedata
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping, TypeVar

from .inputs import NO, YES

if TYPE_CHECKING:
    from .messages import Choice
    from .model import Flow, FlowSet

K = TypeVar("K")
V = TypeVar("V")


def per_object(build: Callable[[K], V]) -> Callable[[K], V]:
    """build(obj), cached by the identity of obj and dropped when obj is garbage-collected.

    Action specs and the objects they hold are not always hashable; identity is also the right key (two
    equal objects made twice are cheap to index twice). A function, not an object with __call__, and the
    miss in a function of its own: an action step asks on every call, and calling an instance (slot_tp_call)
    plus the cells the miss's callback closes over cost 1.1k instructions more a call.
    """
    entries: dict[int, tuple[weakref.ref, V]] = {}

    def add(obj: K) -> V:
        value = build(obj)
        key = id(obj)
        entries[key] = (weakref.ref(obj, lambda _ref: entries.pop(key, None)), value)
        return value

    def cached(obj: K) -> V:
        entry = entries.get(id(obj))
        if entry is not None and entry[0]() is obj:
            return entry[1]
        return add(obj)

    return cached


def normalise(text: str | None) -> str:
    """A message as triggers and command words compare it: any case, inner runs of space collapsed,
    surrounding space and punctuation dropped. Emoji and inner punctuation stay ("make-payment", "👋").
    """
    if not text:
        return ""
    if text.isalnum():
        # One word of letters and digits ("pay", "50"): nothing to collapse or strip, and a letter or digit
        # never casefolds to space or punctuation. Skips the split, the join and the edge checks.
        return text.casefold()
    folded = " ".join(text.split()).casefold()
    if folded[:1].isalnum() and folded[-1:].isalnum():
        return folded  # the common case: a letter or digit at each end is neither space nor punctuation
    start, end = 0, len(folded)
    while start < end and _edge(folded[start]):
        start += 1
    while end > start and _edge(folded[end - 1]):
        end -= 1
    return folded[start:end]


def _edge(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch).startswith("P")


@dataclass(frozen=True)
class FlowSetLookups:
    """Which flow a whole message starts: its triggers, and the menu flow's menu word."""

    triggers: Mapping[str, Flow]  # normalised phrase -> the flow it starts (its latest version)


def index_flowset(flows: FlowSet) -> FlowSetLookups:
    """The lookups of a flow set, made with it (FlowSet.lookups)."""
    triggers: dict[str, Flow] = {}
    # Sorted so that a phrase two flows claim (a validation error) still resolves the same way each time.
    for name in sorted(flows.versions):
        flow = flows.latest(name)
        for phrase in flow.triggers:
            triggers.setdefault(normalise(phrase), flow)
    menu = flows.latest(flows.menu_flow) if flows.menu_flow else None
    if menu is not None:
        triggers[normalise(menu.menu_word)] = menu
    return FlowSetLookups(triggers=triggers)


@dataclass(frozen=True)
class FlowLookups:
    """Per ask step with buttons/options: every accepted answer (id, title, 1-based number) -> choice id."""

    choices: Mapping[str, Mapping[str, str]]  # step name -> normalised answer -> choice id
    choice_ids: Mapping[str, frozenset[str]]  # step name -> the ids a button/list reply may carry
    cancel_words: frozenset[str]
    menu_word: str


def without_symbols(text: str) -> str:
    """text without its emoji and other symbols, normalised: "📱 Mobile Payment" -> "mobile payment"."""
    kept = "".join(ch for ch in text if not unicodedata.category(ch).startswith(("S", "C", "M")) or ch.isspace())
    return normalise(kept)


def _answers(choices: tuple[Choice, ...]) -> dict[str, str]:
    answers: dict[str, str] = {}
    # Weakest first, each later kind overrides: the words of the yes_no check for a Yes/No button, row
    # numbers, titles without their emoji, titles, ids (a button titled "2" means that button, not row 2).
    for c in choices:
        for word in yes_no_words(normalise(c.id)) | yes_no_words(without_symbols(c.title)):
            answers[word] = c.id
    for number, c in enumerate(choices, start=1):
        answers[str(number)] = c.id
    for c in choices:
        answers.setdefault(without_symbols(c.title), c.id)
    for c in choices:
        answers[normalise(c.title)] = c.id
    for c in choices:
        answers[normalise(c.id)] = c.id
    return answers


def yes_no_words(word: str) -> frozenset[str]:
    """The words the yes_no check takes as word's meaning ("yes" -> yes, y, ok, …), else nothing."""
    for words in (YES, NO):
        if word in words and not word.isdigit():
            return words - {w for w in words if w.isdigit()}
    return frozenset()


def index_flow(flow: Flow) -> FlowLookups:
    """The lookups of a flow, made with it (Flow.lookups)."""
    choices: dict[str, dict[str, str]] = {}
    ids: dict[str, frozenset[str]] = {}
    for name, step in flow.steps.items():
        offered = step.buttons or step.options
        if offered:
            choices[name] = _answers(offered)
            ids[name] = frozenset(c.id for c in offered)
    return FlowLookups(
        choices=choices,
        choice_ids=ids,
        cancel_words=frozenset(normalise(w) for w in flow.cancel_words),
        menu_word=normalise(flow.menu_word),
    )
