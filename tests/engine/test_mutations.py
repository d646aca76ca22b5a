"""Hundreds of random edits to real flows: each result is a valid flow or located problems, never a crash.

The edits are what a person (or a bad copy-paste) does to a YAML file: delete a line or a key with its
block, swap lines or values, put a value of the wrong kind, break the indentation, rename a key, cut the
file short, drop garbage bytes into it. The seed is fixed, so a failure reproduces; its number is in the
test id.
"""

from __future__ import annotations

import random
import re

import pytest

import actions
from engine.codes import CODES
from engine.load import load_paths, load_text
from engine.model import Flow
from engine.registry import registry as REGISTRY
from validation_kit import FIXTURES, SHIPPED

SEED = 20261126
TEXT_MUTATIONS = 400
BYTE_MUTATIONS = 100
# The shipped flows are checked against the actions they really call.
actions.load_all()
ORIGINALS = [
    (f"{path.parent.name}/{path.name}", path.read_text(encoding="utf-8"))
    for path in sorted([*SHIPPED.glob("*.yaml"), *FIXTURES.glob("*.yaml")])
]
WRONG_VALUES = [
    "123",
    "[]",
    "{}",
    "true",
    "null",
    "''",
    "'{{'",
    "'{% if %}'",
    "[a, [b]]",
    "{x: {y: z}}",
    "-1",
    "1e9",
    "*nowhere",
    "&anchor",
    "!!binary aGk=",
    "'{{ 7*7 }}'",
    "|",
    ">-",
]
KEY = re.compile(r"^(\s*)(-\s+)?([^\s:#][^:#]*):(\s.*)?$")


def _keyed(lines: list[str]) -> list[int]:
    return [i for i, line in enumerate(lines) if KEY.match(line)] or [0]


def _block_end(lines: list[str], i: int) -> int:
    indent = len(lines[i]) - len(lines[i].lstrip())
    j = i + 1
    while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
        j += 1
    return j


def mutate(text: str, rng: random.Random) -> tuple[str, str]:
    """One random edit of text; returns (what was done, the new text)."""
    lines = text.split("\n")
    i = rng.randrange(len(lines))
    kind = rng.choice(
        [
            "delete_line",
            "delete_key",
            "swap_lines",
            "swap_values",
            "wrong_value",
            "indent",
            "rename_key",
            "truncate",
            "duplicate_line",
            "duplicate_key",
            "garbage",
        ]
    )
    if kind == "delete_line":
        del lines[i]
    elif kind == "delete_key":
        k = rng.choice(_keyed(lines))
        del lines[k : _block_end(lines, k)]
    elif kind == "swap_lines":
        j = rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == "swap_values":
        a, b = rng.choice(_keyed(lines)), rng.choice(_keyed(lines))
        ma, mb = KEY.match(lines[a]), KEY.match(lines[b])
        if ma and mb:
            lines[a] = lines[a][: ma.end(3) + 1] + (mb.group(4) or "")
            lines[b] = lines[b][: mb.end(3) + 1] + (ma.group(4) or "")
    elif kind == "wrong_value":
        k = rng.choice(_keyed(lines))
        m = KEY.match(lines[k])
        if m:
            lines[k] = lines[k][: m.end(3) + 1] + " " + rng.choice(WRONG_VALUES)
    elif kind == "indent":
        lines[i] = rng.choice(["  ", "\t", " ", ""]) + (lines[i][2:] if rng.random() < 0.5 else lines[i])
    elif kind == "rename_key":
        k = rng.choice(_keyed(lines))
        m = KEY.match(lines[k])
        if m:
            name = m.group(3)
            typo = name[:-1] if len(name) > 1 and rng.random() < 0.5 else name + rng.choice(["x", "_", "s"])
            lines[k] = lines[k][: m.start(3)] + typo + lines[k][m.end(3) :]
    elif kind == "truncate":
        return kind, text[: rng.randrange(len(text))]
    elif kind == "duplicate_line":
        lines.insert(i, lines[i])
    elif kind == "duplicate_key":
        k = rng.choice(_keyed(lines))
        lines[k:k] = lines[k : _block_end(lines, k)]
    else:
        at = rng.randrange(len(text) + 1)
        junk = "".join(
            chr(rng.choice([0, 7, 0x1B, 0xFEFF, 0xFFFE, 0x202E, 0xD7FF, 0x85, ord("{"), ord("%")]))
            for _ in range(rng.randint(1, 4))
        )
        return kind, text[:at] + junk + text[at:]
    return kind, "\n".join(lines)


def _assert_located(flow, problems, file: str, text_lines: int) -> None:
    assert isinstance(problems, list)
    for p in problems:
        assert p.file == file
        assert 1 <= p.line <= text_lines + 1, p
        assert p.col >= 1, p
        assert p.severity in ("error", "warning") and p.code in CODES, p
        assert p.message and "Traceback" not in p.message
        str(p)
    has_errors = any(p.severity == "error" for p in problems)
    assert (flow is None) == has_errors
    if flow is not None:
        assert isinstance(flow, Flow) and flow.start in flow.steps


def _cases(count: int, seed: int) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    cases = []
    for n in range(count):
        name, text = ORIGINALS[n % len(ORIGINALS)]
        # Up to three edits on top of each other: single edits alone rarely reach the deeper checks.
        done = []
        for _ in range(rng.choice([1, 1, 2, 3])):
            kind, text = mutate(text, rng)
            done.append(kind)
        cases.append((f"{n}-{name}-{'+'.join(done)}", name, text))
    return cases


def test_the_originals_are_valid():
    assert ORIGINALS, "no flows to mutate"
    for name, text in ORIGINALS:
        flow, problems = load_text(text, name, REGISTRY)
        assert flow is not None, [str(p) for p in problems]


@pytest.mark.parametrize("case", _cases(TEXT_MUTATIONS, SEED), ids=lambda c: c[0])
def test_mutated_text_is_valid_or_located_problems(case):
    _, name, text = case
    flow, problems = load_text(text, name, REGISTRY)
    _assert_located(flow, problems, name, text.count("\n") + 1)


def test_mutations_reach_many_different_checks():
    codes = set()
    for _, name, text in _cases(TEXT_MUTATIONS, SEED):
        codes.update(p.code for p in load_text(text, name, REGISTRY)[1])
    assert len(codes) >= 15, sorted(codes)


def _byte_cases(count: int, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed + 1)
    cases = []
    for n in range(count):
        name, text = ORIGINALS[n % len(ORIGINALS)]
        raw = bytearray(text.encode("utf-8"))
        for _ in range(rng.randint(1, 5)):
            at = rng.randrange(len(raw) + 1)
            raw[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        if rng.random() < 0.3:
            raw = raw[: rng.randrange(len(raw))]
        cases.append((f"{n}-{name}", bytes(raw)))
    return cases


@pytest.mark.parametrize("case", _byte_cases(BYTE_MUTATIONS, SEED), ids=lambda c: c[0])
def test_garbage_bytes_are_valid_or_located_problems(case, tmp_path):
    name, raw = case
    path = tmp_path / "flow.yaml"
    path.write_bytes(raw)
    report = load_paths([str(path)], REGISTRY)
    lines = raw.count(b"\n") + raw.count(b"\r") + raw.count("\u2028".encode()) + raw.count("\x85".encode()) + 1
    flow = report.flows[0] if report.flows else None
    _assert_located(flow, report.problems, str(path), lines)
