"""The author's commands on flow files: `flows validate`, `flows graph`, `flows test`."""

from __future__ import annotations

import click

from .base import CliError, load_actions, plugin_errors


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, dir_okay=True, readable=True))
@click.option(
    "--format",
    "output",
    type=click.Choice(["text", "json", "sarif"]),
    default="text",
    show_default=True,
    help="text: one `file:line:col: severity[code] message` line per problem; json: a list for tools; "
    "sarif: SARIF 2.1.0 for code-review tools (GitHub code scanning and the like).",
)
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
def validate(paths: tuple[str, ...], output: str, strict: bool) -> None:
    """Check flow files: shape, steps, actions, templates and WhatsApp limits.

    PATHS are flow files or directories (every *.yaml / *.yml in them); default: $FLOWS_DIR or flows/.
    Exit 0 when valid, 1 when there are errors (or warnings with --strict), 2 for a usage error.
    """
    import json
    import os

    from engine.load import load_paths
    from storage.settings import Settings

    if not paths:
        default = Settings.from_env().flows_dir
        if not os.path.isdir(default):
            raise click.UsageError(f"no flows directory '{default}': give flow files or set FLOWS_DIR")
        paths = (default,)
    registry = load_actions(lazy=True)  # an action's module is imported when the flows name one of its actions
    with plugin_errors():
        report = load_paths(list(paths), registry, build=False)
    failed = not report.ok or (strict and bool(report.warnings))
    if output == "json":
        click.echo(
            json.dumps(
                {
                    "ok": not failed,
                    "files": report.files,
                    "errors": len(report.errors),
                    "warnings": len(report.warnings),
                    "problems": [p.as_dict() for p in report.problems],
                },
                indent=2,
            )
        )
    elif output == "sarif":
        click.echo(json.dumps(_sarif(report.problems), indent=2, ensure_ascii=False))
    else:
        for problem in report.problems:
            click.echo(str(problem))
        if report.problems:
            click.echo(summary(len(report.files), len(report.errors), len(report.warnings)))
        else:
            for file in report.files:
                click.echo(f"{file}: ok")
            if not report.files:
                click.echo("no flow files (*.yaml, *.yml) found")
    if failed or not report.files:
        raise CliError()  # the problems above are the message


def _sarif(problems: list) -> dict:
    """The problems as one SARIF 2.1.0 run: a rule per code (its meaning and fix), a result per problem."""
    import os
    from importlib.metadata import version

    from engine.codes import CODES

    used = sorted({p.code for p in problems})
    rules = [
        {
            "id": code,
            "shortDescription": {"text": CODES[code].meaning if code in CODES else code},
            "help": {"text": CODES[code].fix if code in CODES else ""},
            "defaultConfiguration": {"level": CODES[code].severity if code in CODES else "error"},
        }
        for code in used
    ]
    results = [
        {
            "ruleId": p.code,
            "ruleIndex": used.index(p.code),
            "level": p.severity,
            "message": {"text": p.message},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": p.file.replace(os.sep, "/")},
                        "region": {"startLine": p.line, "startColumn": p.col},
                    }
                }
            ],
        }
        for p in problems
    ]
    driver = {"name": "convoflow", "version": version("convoflow"), "rules": rules}
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{"tool": {"driver": driver}, "results": results}],
    }


def summary(files: int, errors: int, warnings: int) -> str:
    def count(n: int, noun: str) -> str:
        return f"{n} {noun}" if n == 1 else f"{n} {noun}s"

    return f"{count(files, 'file')}, {count(errors, 'error')}, {count(warnings, 'warning')}"


@click.command()
@click.argument("flow")
@click.option(
    "--format",
    "output",
    type=click.Choice(["mermaid", "dot"]),
    default="mermaid",
    show_default=True,
    help="mermaid: paste into GitHub, GitLab or mermaid.live; dot: Graphviz (`dot -Tsvg`).",
)
def graph(flow: str, output: str) -> None:
    """Draw FLOW as a diagram: every step a box, every way onward an arrow with its label.

    FLOW is a flow's name (from the files in $FLOWS_DIR) or a flow file. Reads files only, no database.
    """
    from engine.graph import dot, mermaid

    chosen = _flow_on_disk(flow)
    click.echo(mermaid(chosen) if output == "mermaid" else dot(chosen), nl=False)


def _flow_on_disk(flow: str):
    """The checked Flow named FLOW in $FLOWS_DIR (or in the file FLOW); problems printed and exit 1 otherwise."""
    import difflib
    import os

    from engine.load import load_paths
    from storage.settings import Settings

    registry = load_actions()
    folder = Settings.from_env().flows_dir
    is_file = os.path.isfile(flow)  # a file is checked with its neighbours, as its hand-overs need them
    report = load_paths([os.path.dirname(flow) or "."] if is_file else [folder], registry)
    found = next((f for f in report.flows if (os.path.samefile(f.file, flow) if is_file else f.name == flow)), None)
    if found is not None:
        return found
    for problem in report.errors:
        click.echo(str(problem), err=True)
    if report.errors:
        raise click.ClickException(f"'{flow}' could not be read: fix the errors above (see `flows validate`)")
    names = [f.name for f in report.flows]
    close = difflib.get_close_matches(flow, names, n=1)
    hint = f" — did you mean '{close[0]}'?" if close else f" (flows: {', '.join(sorted(names)) or 'none'})"
    raise click.UsageError(f"no flow named '{flow}' in {folder}{hint}")


@click.command("test")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, dir_okay=True, readable=True))
@click.option(
    "--real-actions",
    is_flag=True,
    help="Run actions without a mock for real: a fresh in-memory database per test, O'mari sandbox.",
)
@click.option("--coverage", is_flag=True, help="Also list the steps no test walks through.")
def test_flows(paths: tuple[str, ...], real_actions: bool, coverage: bool) -> None:
    """Run conversation tests (*.test.yaml) against the flows in $FLOWS_DIR.

    PATHS are test files or folders; default: every *.test.yaml under $FLOWS_DIR/tests/. Each test starts
    afresh with a fake clock; actions answer with the test's mocks. Every failure is printed as
    `file:line: test 'name': expected … got …`. Exit 0 when all pass, 1 otherwise.
    """
    from pathlib import Path

    from channels.terminal import render_outbound
    from engine.conversation_tests import run_tests, unvisited
    from engine.registry import registry
    from storage.settings import Settings

    settings = Settings.from_env()
    flows = _flows_to_run(settings.flows_dir)
    default = Path(settings.flows_dir) / "tests"
    files = _test_files([Path(p) for p in paths] or ([default] if default.is_dir() else []))
    if not files:
        raise click.UsageError(f"no *.test.yaml files in {', '.join(paths) or default}")
    tests, problems = [], []
    for file in files:
        found, wrong = _read_test_file(file, registry)
        tests += found
        problems += wrong
    report = run_tests(tests, flows, registry, render_outbound, **(_real_actions(settings) if real_actions else {}))
    for failure in problems + report.failures:
        click.echo(str(failure))
    summary = (
        f"{report.ran} test{'' if report.ran == 1 else 's'}: {report.passed} passed, {len(report.failures)} failed"
    )
    click.echo(
        summary + (f"; {len(problems)} problems in the test files (those tests did not run)" if problems else "")
    )
    if coverage:
        missed = unvisited(flows, report.visited)
        click.echo("steps no test visits:" if missed else "every step is visited by a test")
        for name, steps in missed.items():
            click.echo(f"  {name}: {', '.join(steps)}")
    if problems or report.failures:
        raise CliError()  # the failures above are the message


def _read_test_file(path, registry) -> tuple[list, list]:
    """read_tests for one file; a file that cannot be read or is not UTF-8 is one problem, not a traceback."""
    from engine.conversation_tests import Failure, read_tests
    from engine.yaml_source import decode

    try:
        text, problems = decode(path.read_bytes(), str(path))
    except OSError as e:
        return [], [Failure(str(path), 1, None, f"cannot read this file: {e.strerror or e}")]
    if text is None:
        return [], [Failure(p.file, p.line, None, p.message) for p in problems]
    return read_tests(text, str(path), registry)


def _test_files(paths: list) -> list:
    files = []
    for path in paths:
        files += sorted(path.rglob("*.test.yaml")) if path.is_dir() else [path]
    return files


def _flows_to_run(folder: str):
    """The FlowSet of the flow files in folder, as they are on disk; problems printed and exit 1 on errors."""
    from engine.load import load_paths
    from engine.model import FlowSet

    report = load_paths([folder], load_actions())
    for problem in report.errors:
        click.echo(str(problem), err=True)
    if not report.ok:
        raise click.ClickException(f"the flows in {folder} have errors: fix them first (see `flows validate`)")
    if not report.flows:
        raise click.ClickException(f"no flow files (*.yaml, *.yml) in {folder}")
    return FlowSet.of(report.flows)


def _real_actions(settings) -> dict:
    """run_tests' arguments for real actions: handlers called directly, a fresh in-memory SQLite database
    before each test, O'mari on the sandbox (its code is always 123456).
    """
    from engine.context import call_handler
    from storage.db import open_database
    from storage.migrations import upgrade

    def fresh_store() -> None:
        upgrade(open_database("sqlite:///:memory:"))

    from .chat import sandbox_services

    return {
        "real": call_handler,
        "services": sandbox_services(settings, fixed_otp="123456"),
        "before_each": fresh_store,
    }
