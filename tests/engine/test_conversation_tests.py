"""`flows test`: conversation tests in YAML, as an author writes and runs them (exit code and lines printed)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli

SHIPPED = Path(cli.__file__).parent / "flows"

SURVEY = """\
flow: survey
title: Survey
triggers: [survey]
expire:
  after: 10m
  say: "Survey closed: no answer for 10 minutes."
steps:
  ask_score:
    ask: Score us from 1 to 5.
    expect: {integer: {min: 1, max: 5}}
    save: score
    next:
      - if: score <= 2
        goto: sorry
      - goto: note
  note:
    action: core.set
    with: {value: {stars: "{{ score }}"}}
    save: result
    next: thanks
  sorry:
    end: We are sorry to hear that.
  thanks:
    end: "Thank you for {{ result.stars }} stars!"
"""


def run(*args: str):
    return CliRunner().invoke(cli.main, list(args))


@pytest.fixture
def flows(tmp_path, monkeypatch):
    folder = tmp_path / "flows"
    (folder / "tests").mkdir(parents=True)
    (folder / "survey.yaml").write_text(SURVEY)
    monkeypatch.setenv("FLOWS_DIR", str(folder))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'live.db'}")
    monkeypatch.chdir(tmp_path)
    return folder


def write(folder: Path, text: str, name: str = "survey.test.yaml") -> Path:
    path = folder / "tests" / name
    path.write_text(text)
    return path


def test_the_shipped_flows_pass_their_tests_and_every_step_is_visited(monkeypatch, tmp_path):
    monkeypatch.setenv("FLOWS_DIR", str(SHIPPED))
    monkeypatch.chdir(tmp_path)
    result = run("test", "--coverage")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-2:] == ["30 tests: 30 passed, 0 failed", "every step is visited by a test"]


def test_flows_validate_leaves_the_tests_folder_alone():
    result = run("validate", str(SHIPPED))
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        f"{SHIPPED}/main_menu.yaml: ok",
        f"{SHIPPED}/omari_payment.yaml: ok",
        f"{SHIPPED}/paynow_payment.yaml: ok",
    ]


def test_every_failure_is_printed_with_the_line_of_its_bot_line_and_exit_1(flows):
    path = write(
        flows,
        """\
tests:
  - name: a low score is answered kindly
    conversation:
      - user: survey
      - bot: score us
      - user: 1
      - bot: glad
  - name: a high score is thanked
    actions:
      core.set: {outcome: ok, data: {stars: "5"}}
    conversation:
      - user: survey
      - user: 5
      - bot: /Thank you for \\d stars/
  - name: nothing is said before the survey starts
    conversation:
      - bot: Score
""",
    )
    result = run("test")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{path}:7: test 'a low score is answered kindly': expected a message containing 'glad', "
        "got 'We are sorry to hear that.'",
        f"{path}:17: test 'nothing is said before the survey starts': expected a message containing 'Score', "
        "got no message (the conversation has not started)",
        "3 tests: 1 passed, 2 failed",
    ]


def test_a_wait_moves_the_fake_clock_and_expires_the_conversation(flows):
    write(
        flows,
        """\
tests:
  - name: nine minutes is not too long
    conversation:
      - user: survey
      - wait: 9m
      - user: 1
      - bot: sorry to hear
  - name: eleven minutes closes the survey
    conversation:
      - user: survey
      - wait: 11m
      - bot: Survey closed
      - user: 1
      - bot: did not understand
""",
    )
    result = run("test")
    assert result.exit_code == 0, result.output
    assert result.output == "2 tests: 2 passed, 0 failed\n"


def test_an_action_without_a_mock_fails_unless_real_actions_are_allowed(flows):
    path = write(
        flows,
        """\
tests:
  - name: five stars
    conversation:
      - user: survey
      - user: 5
      - bot: Thank you for 5 stars!
""",
    )
    result = run("test")
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == (
        f"{path}:5: test 'five stars': action 'core.set' has no mock: add it under 'actions:' "
        "(its outcome and data), or run `flows test --real-actions`"
    )
    assert run("test", "--real-actions").exit_code == 0


def test_real_actions_use_a_fresh_database_not_the_live_one(monkeypatch, tmp_path):
    monkeypatch.setenv("FLOWS_DIR", str(SHIPPED))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'live.db'}")
    monkeypatch.chdir(tmp_path)
    test = tmp_path / "real.test.yaml"
    test.write_text("""\
tests:
  - name: the demo booking is not in a fresh store
    conversation:
      - user: pay
      - user: BK-SLYKER-TECH-20251023
      - bot: I could not find a booking with the reference BK-SLYKER-TECH-20251023
""")
    result = run("test", "--real-actions", str(test))
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "live.db").exists()


def test_a_list_of_mocked_results_is_used_in_turn(flows):
    (flows / "survey.yaml").write_text(
        SURVEY.replace("next: thanks", "next: again").replace(
            "  sorry:",
            '  again:\n    action: core.set\n    with: {value: {stars: "0"}}\n    save: result\n'
            "    next: thanks\n  sorry:",
        )
    )
    write(
        flows,
        """\
tests:
  - name: the second call gets the second result
    actions:
      core.set:
        - {outcome: ok, data: {stars: "4"}}
        - {outcome: ok, data: {stars: "two"}}
    conversation:
      - user: survey
      - user: 4
      - bot: Thank you for two stars!
""",
    )
    result = run("test")
    assert result.exit_code == 0, result.output


def test_mistakes_in_a_test_file_are_named_where_they_are(flows):
    path = write(
        flows,
        """\
tests:
  - name: a misspelt action
    actions:
      core.sett: {outcome: ok}
    conversation:
      - user: survey
  - name: a wrong outcome
    actions:
      core.set: {outcome: done}
    conversation:
      - user: survey
  - name: odd lines
    expect: nothing
    conversation:
      - say: hello
      - wait: soon
""",
    )
    broken = write(
        flows, "tests:\n  - name: x\n    conversation:\n      - user: survey\n      - bot: a: b\n", "b.test.yaml"
    )
    result = run("test")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{broken}:5: a ':' is not allowed here: put text that contains ': ' in quotes, or check the "
        "indentation of this line",
        f"{path}:4: test 'a misspelt action': no action named 'core.sett' to mock — did you mean 'core.set'?",
        f"{path}:9: test 'a wrong outcome': mock of 'core.set': 'done' is not one of its outcomes (ok)",
        f"{path}:13: test 'odd lines': unknown key 'expect' (a test has name, actions, conversation, contact)",
        f"{path}:15: test 'odd lines': each line of a conversation is one of '- user: what the customer sends', "
        "'- bot: what the reply contains', '- wait: 10m'",
        f"{path}:16: test 'odd lines': wait: 'soon' is not a duration like 30s, 11m, 2h or 1d",
        "0 tests: 0 passed, 0 failed; 6 problems in the test files (those tests did not run)",
    ]


def test_coverage_lists_the_steps_no_test_visits(flows):
    write(flows, "tests:\n  - name: low\n    conversation:\n      - user: survey\n      - user: 2\n")
    result = run("test", "--coverage")
    assert result.exit_code == 0
    assert result.output.splitlines()[-2:] == ["steps no test visits:", "  survey: note, thanks"]


def test_no_test_files_is_a_usage_error(flows):
    result = run("test")
    assert result.exit_code == 2
    assert "no *.test.yaml files in" in result.output


def test_flows_with_errors_are_named_before_any_test_runs(flows):
    write(flows, "tests:\n  - name: low\n    conversation:\n      - user: survey\n")
    (flows / "survey.yaml").write_text(SURVEY.replace("goto: sorry", "goto: sory"))
    result = run("test")
    assert result.exit_code == 1
    assert "survey.yaml:14:15:" in result.output and "'sory'" in result.output
    assert "have errors: fix them first" in result.output


def test_the_example_folder_can_be_copied_and_run(tmp_path, monkeypatch):
    """What docs/writing-flows.md tells an author to do: copy the shipped flows and their tests, run them."""
    shutil.copytree(SHIPPED, tmp_path / "flows")
    monkeypatch.setenv("FLOWS_DIR", str(tmp_path / "flows"))
    monkeypatch.chdir(tmp_path)
    assert run("test", "flows/tests/omari_payment.test.yaml").output.endswith("12 tests: 12 passed, 0 failed\n")


def test_the_example_in_the_guide_passes_against_the_shipped_flows(tmp_path, monkeypatch):
    guide = (Path(cli.__file__).parent / "docs" / "writing-flows.md").read_text(encoding="utf-8")
    [example] = [b for b in re.findall(r"```yaml\n(.*?)```", guide, re.DOTALL) if b.startswith("tests:")]
    (tmp_path / "guide.test.yaml").write_text(example)
    monkeypatch.setenv("FLOWS_DIR", str(SHIPPED))
    monkeypatch.chdir(tmp_path)
    result = run("test", "guide.test.yaml")
    assert result.exit_code == 0, result.output
    assert result.output == "2 tests: 2 passed, 0 failed\n"
