"""Broken flows beside the exact lines `flows validate` must print for them (tests/engine/broken/).

Each case is NAME.yaml (or a directory NAME/ of flows checked together) and NAME.expected. Adding a
problem code to engine.codes without a case here fails the suite.
"""

from __future__ import annotations

import pytest

from engine.codes import CODES
from engine.load import load_paths, load_text
from engine.variable_check import CODES as VARIABLE_CODES
from validation_kit import BROKEN, validation_registry

CASES = sorted(p.name for p in BROKEN.iterdir() if p.suffix == ".yaml" or p.is_dir())
# Codes no file can show through load_paths' normal reading: covered by unit tests in test_load.py.
COVERED_ELSEWHERE = {"file.unreadable"}


def _stem(case: str) -> str:
    return case[:-5] if case.endswith(".yaml") else case


def _expected(case: str) -> list[str]:
    return (BROKEN / f"{_stem(case)}.expected").read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("case", CASES)
def test_broken_flow_gives_exactly_its_expected_lines(case, monkeypatch):
    monkeypatch.chdir(BROKEN)
    report = load_paths([case], validation_registry())
    assert [str(p) for p in report.problems] == _expected(case)
    assert report.ok is not any("error[" in line for line in _expected(case))
    failed = {p.file for p in report.errors}
    assert all(f.file not in failed for f in report.flows)
    assert len(report.flows) + len(failed) == len(report.files)


@pytest.mark.parametrize("case", [c for c in CASES if c.endswith(".yaml")])
def test_load_text_reports_the_same_for_one_file(case):
    raw = (BROKEN / case).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        pytest.skip("load_text takes text; the bytes case is load_paths'")
    flow, problems = load_text(text, case, validation_registry())
    # A file judged alone (a stored version loading at run time) gets the variable checks as warnings.
    alone = [
        line.replace(f"error[{code}]", f"warning[{code}]")
        for line in _expected(case)
        for code in [next((c for c in VARIABLE_CODES if f"[{c}]" in line), "-")]
    ]
    assert [str(p) for p in problems] == alone
    assert (flow is None) == any(p.severity == "error" for p in problems)


def test_every_code_has_a_broken_case_and_every_case_uses_known_codes():
    seen = set()
    for case in CASES:
        for line in _expected(case):
            seen.add(line.split("[", 1)[1].split("]", 1)[0])
    assert seen - set(CODES) == set(), "codes printed but missing from engine.codes"
    assert set(CODES) - seen - COVERED_ELSEWHERE == set(), "codes without a broken flow in tests/engine/broken"


def test_codes_have_the_severity_the_cases_show():
    for case in CASES:
        for line in _expected(case):
            severity, rest = line.split(": ", 1)[1].split("[", 1)
            assert CODES[rest.split("]", 1)[0]].severity == severity, line
