"""The flow language as frozen dataclasses: what a checked YAML flow becomes.

A flow file (one flow per file):

    flow: omari_payment                 # unique name: lowercase letters, digits, underscores
    title: Omari Mobile Payment
    triggers: [pay, payment]            # whole-message match, any case, surrounding space/punctuation ignored
    start: ask_reference                # optional; default: the first step
    cancel:                             # optional; defaults shown
      words: [cancel, stop]
      say: "Okay, cancelled. Send menu to start again."
      step: on_cancel                   # optional: a step to run on cancel (e.g. to void a payment)
    menu: menu                          # the word that returns to the main menu from any question
    expire:                             # optional: after this long without a message the conversation expires
      after: 10m                        # s, m, h, d
      say: "This payment timed out."
      step: on_expire                   # optional: a step to run when it expires
    steps:
      <name>:                           # the kind is the key the step carries, exactly one of:
        say: "Hello {{ name }}"         #   send a message, then go on (next)
        ask: "Your phone number?"       #   send a question and wait for the answer
        action: booking.lookup          #   call a registered action
        flow: omari_payment             #   hand over to another flow (its start step)
        end: "Goodbye"                  #   end the conversation, optionally with a message (end: true)
                                        #   a step with only `next:` is a branch step
      # ask fields: save, expect, buttons | options (+ list_button), retry, attempts (default 3), on_fail
      # action fields: with (params, may be templates), save, on {outcome: step}, next (default route)
      # every kind but end/flow: next: <step> | [{if: "<jinja expression>", goto: <step>}, …, {goto: <step>}]

expect: the name of an input check (engine/inputs.py: phone_zw, amount, date, email, …), or a mapping with
    one of them and its settings: {amount: {min: "0.01", max: "{{ booking.balance_due }}"}}, {regex: "^BK-"}
buttons/options: a mapping id -> title (options: title or {title, description}), or a list of titles
    (ids are then the titles, lowercased). The answer may be the id, the title in any case, or its number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Mapping

from .messages import Choice

DEFAULT_CANCEL_WORDS = ("cancel", "stop")
DEFAULT_CANCEL_MESSAGE = "Okay, I have stopped here. Send *menu* to see what I can do."
DEFAULT_MENU_WORD = "menu"
DEFAULT_ATTEMPTS = 3
DEFAULT_REPLY = "Sorry, I did not understand that. Send *menu* to see what I can do."


@dataclass(frozen=True)
class Route:
    """One way onward: go to `goto` when `when` (a Jinja expression) is true; when None, always."""

    goto: str
    when: str | None = None


@dataclass(frozen=True)
class Expect:
    """An input check: a built-in kind with its arguments (min/max may be templates)."""

    kind: str  # the name of an input check (engine.inputs.checks), e.g. amount
    args: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # `rendered`: the arguments an answer renders before the check, those the check takes as templates
        # whose value may hold one. Worked out with the expect, so an answer to literal limits ("0.01",
        # "10000") renders nothing; set as Flow sets its lookups (object.__setattr__, the values kept inline).
        from .inputs import checks  # here: engine.inputs imports the templates (Jinja)

        entry = checks.get(self.kind)
        templates = entry.templates if entry is not None else frozenset()
        rendered = tuple(k for k, v in self.args.items() if k in templates and (not isinstance(v, str) or "{" in v))
        object.__setattr__(self, "rendered", rendered)


@dataclass(frozen=True)
class Step:
    """One step of a flow. Fields not used by its kind stay at their defaults."""

    name: str
    kind: str  # the name of a step kind (engine.steps.kinds), e.g. ask
    text: str | None = None  # say/ask/end message (a template)
    save: str | None = None  # ask: variable for the answer; action: variable for the result data
    expect: Expect | None = None
    buttons: tuple[Choice, ...] = ()
    options: tuple[Choice, ...] = ()
    list_button: str | None = None
    retry: str | None = None  # ask: re-prompt (a template); default: built from the check
    attempts: int = DEFAULT_ATTEMPTS
    on_fail: str | None = None  # ask: step when attempts run out; default: end politely
    action: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)  # action `with:`
    on: Mapping[str, str] = field(default_factory=dict)  # action outcome -> step
    target_flow: str | None = None  # flow: hand over to this flow
    next: tuple[Route, ...] = ()
    line: int = 0
    col: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)  # settings of a kind that has no field above


@dataclass(frozen=True)
class Flow:
    """A checked flow, ready to run."""

    name: str
    title: str
    steps: Mapping[str, Step]
    start: str
    triggers: tuple[str, ...] = ()
    cancel_words: tuple[str, ...] = DEFAULT_CANCEL_WORDS
    cancel_message: str = DEFAULT_CANCEL_MESSAGE
    cancel_step: str | None = None
    menu_word: str = DEFAULT_MENU_WORD
    expire_after: timedelta | None = None
    expire_message: str | None = None
    expire_step: str | None = None
    version: int = 0
    file: str = ""

    def __post_init__(self) -> None:
        # What the runner looks up in the flow on every answer (engine/lookups.py): made with the flow and
        # kept inline in it. Set by object.__setattr__ (the flow is frozen), which keeps Python 3.11's
        # inline values, so the flow's attribute reads stay specialised (cached_property would not).
        from .lookups import index_flow  # here: engine.lookups imports the templates (Jinja)

        object.__setattr__(self, "lookups", index_flow(self))


@dataclass(frozen=True)
class FlowSet:
    """Every loaded flow, by name and version. `latest` runs new conversations; running ones stay on
    the version they started with.
    """

    versions: Mapping[str, Mapping[int, Flow]]
    default_reply: str = DEFAULT_REPLY
    menu_flow: str | None = "main_menu"

    def __post_init__(self) -> None:
        # Which flow a message starts (engine/lookups.py), asked at every turn outside a question: made with
        # the flow set and kept inline in it, as Flow keeps its lookups.
        from .lookups import index_flowset

        object.__setattr__(self, "lookups", index_flowset(self))

    def latest(self, name: str) -> Flow | None:
        by_version = self.versions.get(name)
        return by_version[max(by_version)] if by_version else None

    def get(self, name: str, version: int | None = None) -> Flow | None:
        if version is None:
            return self.latest(name)
        return (self.versions.get(name) or {}).get(version) or self.latest(name)

    @classmethod
    def of(cls, flows: list[Flow], **kw: Any) -> "FlowSet":
        versions: dict[str, dict[int, Flow]] = {}
        for f in flows:
            versions.setdefault(f.name, {})[f.version] = f
        return cls(versions=versions, **kw)
