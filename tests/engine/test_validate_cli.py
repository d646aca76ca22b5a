"""`flows validate` as a user runs it: the lines printed, the JSON, the exit codes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import cli
from validation_kit import FIXTURES

GOOD = (
    "flow: hello\ntriggers: [hi]\nsteps:\n  greet:\n    say: 'Hi {{ contact }}'\n    next: bye\n  bye:\n    end: Bye\n"
)
WARNED = "flow: warned\nsteps:\n  greet:\n    say: 'Hi {{ contact }}'\n"
BROKEN = "flow: broken\nsteps:\n  greet:\n    say: Hi\n    next: by\n  bye:\n    end: Bye\n"


def run(*args: str, **kw) -> "CliRunner.invoke":
    return CliRunner().invoke(cli.main, ["validate", *args], **kw)


@pytest.fixture
def flows_dir(tmp_path):
    d = tmp_path / "flows"
    d.mkdir()
    return d


def test_valid_files_print_ok_and_exit_0(flows_dir):
    (flows_dir / "hello.yaml").write_text(GOOD)
    result = run(str(flows_dir))
    assert result.exit_code == 0, result.output
    assert result.output == f"{flows_dir / 'hello.yaml'}: ok\n"


def test_errors_print_located_lines_and_a_summary_and_exit_1(flows_dir):
    (flows_dir / "broken.yaml").write_text(BROKEN)
    result = run(str(flows_dir / "broken.yaml"))
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{flows_dir / 'broken.yaml'}:5:11: error[step.unknown_target] step 'greet': there is no step 'by' — did you mean 'bye'?",
        f"{flows_dir / 'broken.yaml'}:6:3: warning[step.unreachable] step 'bye' is never reached: no 'next', 'on' or "
        "'on_fail' leads to it",
        "1 file, 1 error, 1 warning",
    ]


def test_warnings_pass_unless_strict(flows_dir):
    (flows_dir / "warned.yaml").write_text(WARNED)
    relaxed = run(str(flows_dir))
    assert relaxed.exit_code == 0
    assert "warning[step.dead_end]" in relaxed.output and relaxed.output.endswith("1 file, 0 errors, 1 warning\n")
    assert run("--strict", str(flows_dir)).exit_code == 1


def test_json_output_lists_every_problem_with_its_place(flows_dir):
    (flows_dir / "broken.yaml").write_text(BROKEN)
    (flows_dir / "warned.yaml").write_text(WARNED)
    result = run("--format", "json", str(flows_dir))
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["ok"] is False and data["errors"] == 1 and data["warnings"] == 2
    assert [(p["file"].rsplit("/", 1)[1], p["line"], p["col"], p["severity"], p["code"]) for p in data["problems"]] == [
        ("broken.yaml", 5, 11, "error", "step.unknown_target"),
        ("broken.yaml", 6, 3, "warning", "step.unreachable"),
        ("warned.yaml", 3, 3, "warning", "step.dead_end"),
    ]
    assert all(set(p) == {"file", "line", "col", "severity", "code", "message"} for p in data["problems"])


def test_json_output_of_valid_flows(flows_dir):
    (flows_dir / "hello.yaml").write_text(GOOD)
    data = json.loads(run("--format", "json", str(flows_dir)).output)
    assert data == {"ok": True, "files": [str(flows_dir / "hello.yaml")], "errors": 0, "warnings": 0, "problems": []}


def test_a_path_that_does_not_exist_is_a_usage_error(tmp_path):
    result = run(str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2 and "does not exist" in result.output


def test_default_is_flows_dir_from_the_environment(flows_dir, monkeypatch):
    monkeypatch.chdir(flows_dir.parent)
    (flows_dir / "hello.yaml").write_text(GOOD)
    monkeypatch.setenv("FLOWS_DIR", str(flows_dir))
    result = run()
    assert result.exit_code == 0 and result.output == f"{flows_dir / 'hello.yaml'}: ok\n"


def test_missing_default_directory_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLOWS_DIR", str(tmp_path / "absent"))
    result = run()
    assert result.exit_code == 2 and "FLOWS_DIR" in result.output


def test_a_directory_without_flows_fails(flows_dir):
    result = run(str(flows_dir))
    assert result.exit_code == 1 and "no flow files" in result.output


def test_garbage_is_reported_not_a_traceback(flows_dir):
    (flows_dir / "junk.yaml").write_bytes(b"\xff\xfe\x00garbage: [")
    (flows_dir / "tabs.yml").write_text("flow: t\nsteps:\n\thello: {end: true}\n")
    result = run(str(flows_dir))
    assert result.exit_code == 1
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert "error[yaml.encoding]" in result.output and "error[yaml.syntax]" in result.output


def test_real_actions_are_known(tmp_path):
    """The command registers the shipped actions itself: core.log is known without any setup."""
    (tmp_path / "log.yaml").write_text(
        "flow: log\nsteps:\n  note:\n    action: core.log\n    with: {message: hi}\n    next: bye\n  bye: {end: true}\n"
    )
    result = run(str(tmp_path / "log.yaml"))
    assert result.exit_code == 0, result.output


def test_the_fixture_flows_pass_against_the_real_actions():
    result = run(str(FIXTURES))
    assert result.exit_code == 0, result.output


def test_a_broken_action_module_is_one_line_not_a_traceback(flows_dir, monkeypatch):
    import actions
    from engine.registry import RegistryError

    def broken(defer: bool = False) -> None:
        raise RegistryError("action 'omari.initiate' is registered twice")

    monkeypatch.setattr(actions, "load_all", broken)
    (flows_dir / "hello.yaml").write_text(GOOD)
    result = run(str(flows_dir))
    assert result.exit_code == 1
    assert (
        result.output
        == "Error: could not load the actions: RegistryError: action 'omari.initiate' is registered twice\n"
    )


# A new `flows validate` process: what it printed, its exit code, and whether it imported jsonschema.
_IN_A_NEW_PROCESS = """
import sys
import cli
try:
    cli.main(["validate", *sys.argv[1:]])
except SystemExit as e:
    print("exit", e.code, "jsonschema" in sys.modules)
"""


def _new_process(*paths: str) -> list[str]:
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(
        [sys.executable, "-c", _IN_A_NEW_PROCESS, *paths], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert done.stderr == "", done.stderr
    return done.stdout.splitlines()


def test_a_new_process_judges_valid_flows_without_importing_jsonschema(flows_dir):
    (flows_dir / "hello.yaml").write_text(GOOD)
    (flows_dir / "pay.yaml").write_text(
        "flow: pay\ntriggers: [pay]\nsteps:\n  log:\n    action: core.log\n    with: {message: 'hi {{ contact }}'}\n"
        "    next: bye\n  bye:\n    end: Bye\n"
    )
    assert _new_process(str(flows_dir)) == [
        f"{flows_dir / 'hello.yaml'}: ok",
        f"{flows_dir / 'pay.yaml'}: ok",
        "exit 0 False",
    ]


def test_a_new_process_still_explains_a_refused_shape_and_params(flows_dir):
    (flows_dir / "bad.yaml").write_text(
        "flow: bad\nsteps:\n  log:\n    action: core.log\n    with: {level: loud}\n    next: bye\n  bye:\n    end: Bye\n    attempts: 2\n"
    )
    lines = _new_process(str(flows_dir / "bad.yaml"))
    assert lines[-1] == "exit 1 True"
    assert any("[action.bad_params]" in line for line in lines), lines
    assert any("[field.unknown]" in line and "'attempts'" in line for line in lines), lines
