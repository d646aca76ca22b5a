"""Conversation tests an author writes in YAML, run against flows with mocked actions and a fake clock.

    tests:
      - name: an unknown reference is named
        actions:                          # mocked actions: the outcome, and the data the step saves
          booking.lookup: {outcome: not_found, data: {reference: NOPE-1}}
        conversation:
          - user: pay
          - bot: booking reference        # the bot's next message contains this (any case); /…/ is a regex
          - user: NOPE-1
          - bot: NOPE-1
          - wait: 11m                     # the clock moves on (expiry, timeouts)

A mock may also be a list of results, used in turn for successive calls (the last one repeats), e.g. a
wrong code then the right one. Each test starts with no conversation, a fresh clock and its own mocks; an
action without a mock fails the test unless the host passes a real invoker (`flows test --real-actions`).
A failure names the line of the item that failed; a test stops at its first failure, the others still run.

Pure like the rest of the engine: the host gives the flows, how to render a message, and (optionally) how
to run an action for real.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator, Mapping

import yaml

from .context import Invoke, TurnContext
from .messages import ACTIVE, Conversation, Inbound, Outbound, TurnResult
from .model import Flow, FlowSet
from .registry import ActionContext, ActionRegistry, ActionSpec, Result
from .runner import expire, run_turn
from .validate import parse_duration
from .yaml_source import parse

START = datetime(2026, 1, 5, 9, 0, 0)  # a Monday morning; every test starts here
CONTACT = "263770000000"
TEST_KEYS = ("name", "actions", "conversation", "contact")
ITEM_KEYS = ("user", "bot", "wait")
MOCK_KEYS = ("outcome", "data")
EMPTY = "the file is empty: a test file starts with 'tests:' followed by a list of '- name: …' tests"


@dataclass(frozen=True)
class Failure:
    """One failed test (or a test file that cannot be read), at the line the author should look at."""

    file: str
    line: int
    test: str | None
    message: str

    def __str__(self) -> str:
        where = f"test '{self.test}': " if self.test is not None else ""
        return f"{self.file}:{self.line}: {where}{self.message}"


@dataclass(frozen=True)
class Item:
    kind: str  # user | bot | wait
    value: str
    line: int


@dataclass(frozen=True)
class ConversationTest:
    file: str
    name: str
    line: int
    mocks: Mapping[str, tuple[Result, ...]]
    items: tuple[Item, ...]
    contact: str = CONTACT


@dataclass
class SuiteReport:
    """Every failure, how many tests ran, and every (flow, step) some test walked through."""

    failures: list[Failure] = field(default_factory=list)
    ran: int = 0
    visited: set[tuple[str, str]] = field(default_factory=set)

    @property
    def passed(self) -> int:
        return self.ran - len(self.failures)  # a test stops at its first failure


class NotMocked(Exception):
    """An action ran without a mock while real actions are not allowed."""


# ── reading test files ─────────────────────────────────────────────────────────────────────────────


def _text(node: yaml.Node) -> str | None:
    """A scalar exactly as written (so `50.00` stays "50.00" and `yes` stays "yes"); None for a non-scalar."""
    return node.value if isinstance(node, yaml.ScalarNode) else None


def _pairs(node: yaml.Node) -> Iterator[tuple[str | None, yaml.Node, int]]:
    for key, value in node.value if isinstance(node, yaml.MappingNode) else ():
        yield _text(key), value, key.start_mark.line + 1


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def read_tests(text: str, file: str, registry: ActionRegistry) -> tuple[list[ConversationTest], list[Failure]]:
    """The tests in one file, and every problem with it (a test with a problem is left out)."""
    source = parse(text, file)
    if source.problems:
        return [], [
            Failure(file, p.line, None, EMPTY if p.code == "yaml.empty" else p.message) for p in source.problems
        ]
    tests_node = next((v for k, v, _ in _pairs(yaml.compose(text, Loader=yaml.SafeLoader)) if k == "tests"), None)
    if not isinstance(tests_node, yaml.SequenceNode):
        return [], [Failure(file, 1, None, EMPTY.split(": ", 1)[1])]
    tests: list[ConversationTest] = []
    failures: list[Failure] = []
    for number, node in enumerate(tests_node.value, start=1):
        test, problems = _read_test(node, file, number, registry)
        failures.extend(problems)
        if test is not None and not problems:
            tests.append(test)
    return tests, failures


def _read_test(node: yaml.Node, file: str, number: int, registry: ActionRegistry):
    fields = {k: (v, line) for k, v, line in _pairs(node)}
    name = _text(fields["name"][0]) if "name" in fields else None
    name = name or f"#{number}"
    problems = [
        Failure(file, line, name, f"unknown key '{k}' (a test has {', '.join(TEST_KEYS)})")
        for k, (_, line) in fields.items()
        if k not in TEST_KEYS
    ]
    if not isinstance(node, yaml.MappingNode) or "conversation" not in fields:
        return None, problems + [Failure(file, _line(node), name, "a test needs 'name:' and 'conversation:'")]
    mocks = dict(_read_mocks(fields["actions"][0], file, name, registry, problems)) if "actions" in fields else {}
    items = tuple(_read_items(fields["conversation"][0], file, name, problems))
    contact = _text(fields["contact"][0]) if "contact" in fields else CONTACT
    return ConversationTest(file, name, _line(node), mocks, items, contact or CONTACT), problems


def _read_mocks(node: yaml.Node, file: str, test: str, registry: ActionRegistry, problems: list[Failure]):
    for action, value, line in _pairs(node):
        spec = registry.get(action or "")
        if spec is None:
            close = registry.suggest(action or "")
            problems.append(
                Failure(
                    file,
                    line,
                    test,
                    f"no action named '{action}' to mock" + (f" — did you mean '{close}'?" if close else ""),
                )
            )
            continue
        results = value.value if isinstance(value, yaml.SequenceNode) else [value]
        mocked = tuple(r for r in (_read_mock(n, spec, file, test, problems) for n in results) if r is not None)
        if len(mocked) == len(results) and mocked:
            yield spec.name, mocked


def _read_mock(node: yaml.Node, spec: ActionSpec, file: str, test: str, problems: list[Failure]) -> Result | None:
    fields = {k: v for k, v, _ in _pairs(node)}
    outcome = _text(fields["outcome"]) if "outcome" in fields else None
    if outcome not in spec.outcomes:
        got = f"'{outcome}' is not one of its outcomes" if outcome else "it needs an 'outcome:'"
        problems.append(Failure(file, _line(node), test, f"mock of '{spec.name}': {got} ({', '.join(spec.outcomes)})"))
        return None
    extra = [k for k in fields if k not in MOCK_KEYS]
    if extra:
        problems.append(
            Failure(
                file,
                _line(node),
                test,
                f"mock of '{spec.name}': unknown key '{extra[0]}' (a mock has outcome: and data:)",
            )
        )
        return None
    data = yaml.safe_load(yaml.serialize(fields["data"])) if "data" in fields else None
    return Result(outcome, data)


def _read_items(node: yaml.Node, file: str, test: str, problems: list[Failure]) -> Iterator[Item]:
    for entry in node.value if isinstance(node, yaml.SequenceNode) else ():
        pairs = list(_pairs(entry))
        if len(pairs) != 1 or pairs[0][0] not in ITEM_KEYS or _text(pairs[0][1]) is None:
            problems.append(
                Failure(
                    file,
                    _line(entry),
                    test,
                    "each line of a conversation is one of "
                    "'- user: what the customer sends', '- bot: what the reply contains', '- wait: 10m'",
                )
            )
            continue
        kind, value, line = pairs[0]
        if not (_text(value) or "").strip():
            problems.append(
                Failure(
                    file,
                    line,
                    test,
                    f"'{kind}:' is empty: write what the "
                    + (
                        "customer sends"
                        if kind == "user"
                        else "reply contains"
                        if kind == "bot"
                        else "time that passes"
                    ),
                )
            )
            continue
        if kind == "wait" and parse_duration(_text(value) or "") is None:
            problems.append(
                Failure(file, line, test, f"wait: '{_text(value)}' is not a duration like 30s, 11m, 2h or 1d")
            )
            continue
        yield Item(kind, _text(value) or "", line)
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        problems.append(Failure(file, _line(node), test, "'conversation:' needs a list of '- user:' / '- bot:' lines"))


# ── running tests ──────────────────────────────────────────────────────────────────────────────────


class _Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class _Mocks:
    """The turn's action invoker: the test's mocks in order, else the real invoker when allowed."""

    def __init__(self, mocks: Mapping[str, tuple[Result, ...]], real: Invoke | None) -> None:
        self.mocks = mocks
        self.real = real
        self.calls: dict[str, int] = {}
        self.unmocked: list[str] = []

    def __call__(self, spec: ActionSpec, params: dict, actx: ActionContext) -> Result:
        results = self.mocks.get(spec.name)
        if results:
            n = self.calls.get(spec.name, 0)
            self.calls[spec.name] = n + 1
            return results[min(n, len(results) - 1)]
        if self.real is None:
            self.unmocked.append(spec.name)
            raise NotMocked(spec.name)
        return self.real(spec, params, actx)


class _Visited(Mapping):
    """A flow's steps that note each step the runner looks up as it walks (Turn.walk: `steps.get(name)`)."""

    def __init__(self, steps: Mapping, flow: str, visited: set[tuple[str, str]]) -> None:
        self._steps, self._flow, self._visited = steps, flow, visited

    def __getitem__(self, name: str):
        return self._steps[name]

    def __iter__(self):
        return iter(self._steps)

    def __len__(self) -> int:
        return len(self._steps)

    def get(self, name, default=None):
        step = self._steps.get(name, default)
        if step is not None:
            self._visited.add((self._flow, name))
        return step


def _recording(flows: FlowSet, visited: set[tuple[str, str]]) -> FlowSet:
    """The same flows, noting every step walked into `visited` (for --coverage)."""
    return replace(
        flows,
        versions={
            name: {v: replace(f, steps=_Visited(f.steps, f.name, visited)) for v, f in by_version.items()}
            for name, by_version in flows.versions.items()
        },
    )


def unvisited(flows: FlowSet, visited: set[tuple[str, str]]) -> dict[str, list[str]]:
    """Per flow (latest versions), the steps no test walked through, in file order."""
    missed = {}
    for name in sorted(flows.versions):
        flow: Flow = flows.latest(name)
        steps = [step for step in flow.steps if (name, step) not in visited]
        if steps:
            missed[name] = steps
    return missed


def run_tests(
    tests: list[ConversationTest],
    flows: FlowSet,
    registry: ActionRegistry,
    render: Callable[[Outbound], str],
    real: Invoke | None = None,
    services: Mapping[str, Any] | None = None,
    before_each: Callable[[], None] | None = None,
) -> SuiteReport:
    """Run every test; before_each (e.g. a fresh database for real actions) runs before each one."""
    report = SuiteReport()
    recording = _recording(flows, report.visited)
    for test in tests:
        report.ran += 1
        if before_each is not None:
            before_each()
        failure = _run_one(test, recording, registry, render, real, services or {})
        if failure is not None:
            report.failures.append(failure)
    return report


def _run_one(
    test: ConversationTest,
    flows: FlowSet,
    registry: ActionRegistry,
    render: Callable[[Outbound], str],
    real: Invoke | None,
    services: Mapping[str, Any],
) -> Failure | None:
    clock, mocks = _Clock(), _Mocks(test.mocks, real)
    ids = iter(range(1, 1_000_000))
    ctx = TurnContext(
        registry=registry, clock=clock, new_id=lambda: f"test-{next(ids)}", services=services, invoke=mocks
    )
    conversation: Conversation | None = None
    replies: list[str] = []
    errors: list[str] = []
    for n, item in enumerate(test.items):
        if item.kind == "bot":
            problem = _expect(item.value, replies, errors, conversation)
            if problem is not None:
                return Failure(test.file, item.line, test.name, problem)
            replies.pop(0)
            continue
        result = _act(item, n, test.contact, conversation, flows, ctx, clock)
        if mocks.unmocked:
            return Failure(
                test.file,
                item.line,
                test.name,
                f"action '{mocks.unmocked[0]}' has no mock: add it "
                "under 'actions:' (its outcome and data), or run `flows test --real-actions`",
            )
        if result is not None:
            conversation = result.conversation or conversation
            replies = [render(message) for message in result.outbound]
            errors = [f"{e.code}: {e.message}" for e in result.events if e.level == "error"]
    return None


def _act(
    item: Item, n: int, contact: str, conversation: Conversation | None, flows: FlowSet, ctx: TurnContext, clock: _Clock
) -> TurnResult | None:
    """A `user:` line is one message; a `wait:` moves the clock and expires the conversation when due."""
    if item.kind == "user":
        return run_turn(
            flows, conversation, Inbound(contact=contact, message_id=f"test-message-{n}", text=item.value), ctx
        )
    clock.now += timedelta(seconds=parse_duration(item.value) or 0)
    due = (
        conversation is not None
        and conversation.status == ACTIVE
        and conversation.expires_at is not None
        and conversation.expires_at <= clock.now
    )
    return expire(flows, conversation, ctx) if due else None


def _expect(expected: str, replies: list[str], errors: list[str], conversation: Conversation | None) -> str | None:
    """None when the next reply matches `expected`, else what went wrong, in the author's words."""
    wanted = f"a message matching {expected}" if _is_regex(expected) else f"a message containing '{expected}'"
    if not replies:
        where = (
            "the conversation has not started"
            if conversation is None
            else (
                f"the bot waits at step '{conversation.step}'"
                if conversation.status == ACTIVE
                else f"the conversation has {conversation.status}"
            )
        )
        return f"expected {wanted}, got no message ({where})" + _errors(errors)
    got = replies[0]
    if _is_regex(expected):
        try:
            found = re.search(expected[1:-1], got) is not None
        except re.error as e:
            return f"{expected} is not a valid pattern: {e}"
    else:
        found = expected.casefold() in got.casefold()
    if found:
        return None
    shown = got.replace("\n", " / ")
    shown = shown if len(shown) <= 160 else shown[:157] + "…"
    return f"expected {wanted}, got '{shown}'" + _errors(errors)


def _is_regex(expected: str) -> bool:
    return len(expected) >= 2 and expected.startswith("/") and expected.endswith("/")


def _errors(errors: list[str]) -> str:
    return f" (error {errors[0]})" if errors else ""


__all__ = ["ConversationTest", "Failure", "SuiteReport", "read_tests", "run_tests", "unvisited", "START"]
