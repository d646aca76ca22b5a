"""The `flows` command: the only place that prints for humans and picks exit codes.

Exit codes: 0 success, 1 invalid input or failed check, 2 usage error (click's own).
Imports of heavy modules happen inside commands so `flows --help` starts fast.
"""
from __future__ import annotations

import sys

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="convoflow", prog_name="flows")
@click.pass_context
def main(ctx: click.Context) -> None:
    """convoflow: WhatsApp conversations written as YAML.

    Start here: `flows demo` runs the payment conversation in this terminal on a local SQLite database
    and the built-in O'mari sandbox; `flows init DIR` starts a project of your own.
    """
    if ctx.invoked_subcommand != "init":  # a new project needs no settings; every other command reads them
        _settings()


def _settings():
    """The settings from the environment and .env, checked: or one line naming the bad setting and exit 1."""
    from storage.settings import Settings, SettingsError

    try:
        return Settings.from_env()
    except SettingsError as e:
        click.echo(f"flows: {e} (see `flows config` and .env.example)", err=True)
        sys.exit(1)


# ── flows init / flows config (issue 13: a new project, the effective settings) ─────────────────────


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, writable=True))
def init(directory: str) -> None:
    """Start a new project in DIRECTORY: a menu and an example flow, a conversation test, .env.example
    and a README. Refuses to overwrite a file that is already there.

        flows init my-flows && cd my-flows && flows validate
    """
    from importlib import resources
    from pathlib import Path

    from storage.settings import env_example

    target = Path(directory)
    starter = resources.files("flows").joinpath("starter")
    files = dict(_package_files(starter))
    files[".env.example"] = env_example()
    clashes = sorted(name for name in files if (target / name).exists())
    if clashes:
        click.echo(f"flows: {directory} already has {', '.join(clashes)}: nothing written", err=True)
        sys.exit(1)
    try:
        for name, text in sorted(files.items()):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_text(text, encoding="utf-8")
    except OSError as e:  # a read-only place, a file where a folder should be: one line, no traceback
        click.echo(f"flows: cannot write in {directory}: {e.strerror or e}", err=True)
        sys.exit(1)
    click.echo(f"created {directory}: " + ", ".join(sorted(files)))
    click.echo(f"next: cd {directory} && flows validate && flows chat")


def _package_files(folder, prefix: str = ""):
    """(relative path, text) of every file under a package-data folder, however the package is installed."""
    for entry in folder.iterdir():
        if entry.name.startswith(("_", ".")):
            continue
        if entry.is_dir():
            yield from _package_files(entry, f"{prefix}{entry.name}/")
        else:
            yield f"{prefix}{entry.name}", entry.read_text(encoding="utf-8")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object, variable: value (secrets masked).")
@click.option("--env-example", is_flag=True,
              help="Print .env.example instead: every setting, its help and default (regenerate the "
                   "repository's with `flows config --env-example > .env.example`).")
def config(as_json: bool, env_example: bool) -> None:
    """The effective settings (environment, then .env, then defaults), secrets masked."""
    import json

    from storage.settings import env_example as example_text

    if env_example:
        click.echo(example_text(), nl=False)
        return
    described = list(_settings().described())
    if as_json:
        click.echo(json.dumps({name: shown or None for name, shown, _ in described}, indent=2))
        return
    for name, shown, help_ in described:
        click.echo(f"{name + '=' + shown:<50} # {help_}")


# ── flows validate / flows chat (issue 2: the flow language) ────────────────────────────────────────


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, dir_okay=True, readable=True))
@click.option("--format", "output", type=click.Choice(["text", "json", "sarif"]), default="text", show_default=True,
              help="text: one `file:line:col: severity[code] message` line per problem; json: a list for tools; "
                   "sarif: SARIF 2.1.0 for code-review tools (GitHub code scanning and the like).")
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
def validate(paths: tuple[str, ...], output: str, strict: bool) -> None:
    """Check flow files: shape, steps, actions, templates and WhatsApp limits.

    PATHS are flow files or directories (every *.yaml / *.yml in them); default: $FLOWS_DIR or flows/.
    Exit 0 when valid, 1 when there are errors (or warnings with --strict), 2 for a usage error.
    """
    import json
    import os

    import actions
    from engine.load import load_paths
    from storage.settings import Settings

    if not paths:
        default = Settings.from_env().flows_dir
        if not os.path.isdir(default):
            raise click.UsageError(f"no flows directory '{default}': give flow files or set FLOWS_DIR")
        paths = (default,)
    try:
        actions.load_all()
    except Exception as e:  # a broken action module or plug-in: say which, without a traceback
        raise click.ClickException(f"could not load the actions: {type(e).__name__}: {e}") from None
    report = load_paths(list(paths))
    failed = not report.ok or (strict and bool(report.warnings))
    if output == "json":
        click.echo(json.dumps({
            "ok": not failed,
            "files": report.files,
            "errors": len(report.errors),
            "warnings": len(report.warnings),
            "problems": [p.as_dict() for p in report.problems],
        }, indent=2))
    elif output == "sarif":
        click.echo(json.dumps(_sarif(report.problems), indent=2, ensure_ascii=False))
    else:
        for problem in report.problems:
            click.echo(str(problem))
        if report.problems:
            click.echo(_summary(len(report.files), len(report.errors), len(report.warnings)))
        else:
            for file in report.files:
                click.echo(f"{file}: ok")
            if not report.files:
                click.echo("no flow files (*.yaml, *.yml) found")
    if failed or not report.files:
        sys.exit(1)


def _sarif(problems: list) -> dict:
    """The problems as one SARIF 2.1.0 run: a rule per code (its meaning and fix), a result per problem."""
    import os
    from importlib.metadata import version

    from engine.codes import CODES

    used = sorted({p.code for p in problems})
    rules = [{"id": code, "shortDescription": {"text": CODES[code].meaning if code in CODES else code},
              "help": {"text": CODES[code].fix if code in CODES else ""},
              "defaultConfiguration": {"level": CODES[code].severity if code in CODES else "error"}}
             for code in used]
    results = [{"ruleId": p.code, "ruleIndex": used.index(p.code), "level": p.severity,
                "message": {"text": p.message},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": p.file.replace(os.sep, "/")},
                                                    "region": {"startLine": p.line, "startColumn": p.col}}}]}
               for p in problems]
    driver = {"name": "convoflow", "version": version("convoflow"), "rules": rules}
    return {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0",
            "runs": [{"tool": {"driver": driver}, "results": results}]}


def _summary(files: int, errors: int, warnings: int) -> str:
    def count(n: int, noun: str) -> str:
        return f"{n} {noun}" if n == 1 else f"{n} {noun}s"

    return f"{count(files, 'file')}, {count(errors, 'error')}, {count(warnings, 'warning')}"


@main.command()
@click.argument("flow", required=False)
@click.option("--contact", default="263770000000", show_default=True, metavar="ID",
              help="The phone number the conversation is with (vars.contact in templates).")
@click.option("--reset", is_flag=True, help="Start over: forget the conversations this chat left open.")
@click.option("--store", default=None, metavar="FILE",
              help="The chat's own SQLite file (default: convoflow-chat.db here); never DATABASE_URL.")
@click.option("--real-omari", is_flag=True,
              help="Pay through the O'mari API configured (OMARI_API_BASE_URL, OMARI_MERCHANT_KEY), not the sandbox.")
def chat(flow: str | None, contact: str, reset: bool, store: str | None, real_omari: bool) -> None:
    """Try the flows on disk in this terminal, with the same runner WhatsApp uses. Never publishes.

    Runs the files in $FLOWS_DIR (default flows/) as they are now. The chat keeps its own copies of the
    flows and its own conversations in a separate file (convoflow-chat.db, or --store), never in
    DATABASE_URL: customers on WhatsApp see nothing of it, and `flows list` shows no new version. A chat
    left half-way picks up where it stopped; --reset starts over. Payments go to the built-in O'mari
    sandbox, which "texts" its code here; the demo booking BK-SLYKER-TECH-20251023 is there to pay.
    FLOW starts that flow directly; otherwise send a trigger phrase or `menu`. Buttons and list options
    are numbered: send the number, the title or the id. When standard input is not a terminal, each line
    is one message:

        printf 'pay\\nBK-1\\n' | flows chat
    """
    from dataclasses import replace

    from channels import turns as persisted
    from channels.terminal import CHAT_STORE, chat_loop
    from channels.worker import turn_context
    from engine.registry import registry
    from storage.settings import Settings

    settings = Settings.from_env()
    where, on_disk = _open_chat_store(settings, store or CHAT_STORE, reset)
    stored = persisted.load_flowset(registry)  # a flow whose file was deleted since the last chat is left out
    flows = replace(stored, versions={name: v for name, v in stored.versions.items() if name in on_disk})
    if flow is not None and flows.latest(flow) is None:
        import difflib

        close = difflib.get_close_matches(flow, list(flows.versions), n=1)
        hint = f" — did you mean '{close[0]}'?" if close else f" (flows: {', '.join(sorted(flows.versions))})"
        raise click.UsageError(f"no flow named '{flow}'{hint}")
    ctx = turn_context(_chat_services(settings, real_omari))
    interactive = sys.stdin.isatty()
    if interactive:
        payments = "the O'mari API configured" if real_omari else "the O'mari sandbox"
        click.echo(f"Chatting as {contact} with the flows in {settings.flows_dir}: a preview, nothing is published.\n"
                   f"Conversations are kept in {where} (--reset starts over); payments go to {payments}. "
                   "Ctrl-D to leave.\n")
    chat_loop(
        lambda inbound: persisted.handle_message(inbound, flows, ctx),
        contact,
        sys.stdin,
        sys.stdout,
        interactive=interactive,
        opening=(lambda: persisted.start_flow(contact, flow, flows, ctx)) if flow else None,
        events=sys.stderr,
    )


def _open_chat_store(settings, path: str, reset: bool) -> tuple[str, set[str]]:
    """Check the flow files, open the chat's own store (never DATABASE_URL), copy the flows into it as they
    are on disk, add the demo booking; with reset, forget its conversations. Returns the store's path and
    the names of the flows on disk.
    """
    import actions
    from channels.terminal import ChatStoreError, chat_store_url, forget_conversations
    from engine.load import load_paths
    from storage.bookings import BookingExists, add_booking
    from storage.db import open_database, utcnow
    from storage.flowstore import store
    from storage.migrations import upgrade

    actions.load_all()
    report = load_paths([settings.flows_dir])
    for problem in report.problems:
        click.echo(str(problem), err=True)
    if not report.ok:
        click.echo(f"the flows in {settings.flows_dir} have errors: fix them (see `flows validate`)", err=True)
        sys.exit(1)
    if not report.flows:
        click.echo(f"no flow files (*.yaml, *.yml) in {settings.flows_dir}", err=True)
        sys.exit(1)
    try:
        upgrade(open_database(chat_store_url(path, settings.database_url)))
    except ChatStoreError as e:
        raise click.BadParameter(str(e), param_hint="--store") from None
    except Exception as e:  # an unwritable folder: say which file, without a traceback
        raise click.ClickException(f"cannot use the chat store {path}: {type(e).__name__}: {e}") from None
    if reset:
        forget_conversations()
    now = utcnow()
    for name, (file, text) in sorted(report.sources.items()):
        store(name, text, file, now)
    try:
        add_booking(*DEMO_BOOKING)
    except BookingExists:
        pass
    return path, set(report.sources)


def _chat_services(settings, real_omari: bool) -> dict:
    """The sandboxes (O'mari's SMS printed here), or with real_omari the payment APIs configured."""
    if not real_omari:
        return sandbox_services(settings)
    from actions.providers import providers

    clients, missing = providers.clients(settings)
    if "omari" in missing:
        raise click.ClickException(f"{missing['omari']}: --real-omari needs the O'mari API (see docs/operations.md)")
    return {**clients, "settings": settings}

# ── flows db / flows load / flows list / flows bookings (issue 3: storage) ──────────────────────────
#
# Which commands change the schema: `flows db upgrade`, and `flows load` (and the demo), which upgrade
# first because loading flows into a new database is how one starts. Every other command leaves the
# schema alone and, when it is missing or behind, exits 1 with "run `flows db upgrade`".


def _database(upgrade: bool = False) -> list[str]:
    """Open DATABASE_URL, then upgrade its schema (upgrade=True: returns the migrations applied) or check it
    is current. Any failure: one line on stderr and exit 1.
    """
    from storage.db import open_database
    from storage.migrations import SchemaError, check
    from storage.migrations import upgrade as upgrade_schema
    from storage.settings import Settings, SettingsError

    try:
        db = open_database(Settings.from_env().database_url)
        if upgrade:
            return upgrade_schema(db)
        check(db)
        return []
    except (SettingsError, SchemaError, ValueError) as e:  # ValueError: a URL that is neither sqlite nor postgres
        click.echo(f"flows: {e}", err=True)
    except Exception as e:  # unreachable server, unwritable file: say which, never the URL (it may hold a password)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        click.echo(f"flows: cannot use the database ({reason}): check DATABASE_URL", err=True)
    sys.exit(1)


@main.group()
def db() -> None:
    """Create, migrate and inspect the database schema (DATABASE_URL, default sqlite:///convoflow.db)."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create the schema or apply the migrations it lacks. Safe to run again, and from two places at once."""
    from storage.migrations import MIGRATIONS

    applied = _database(upgrade=True)
    for name in applied:
        click.echo(f"applied {name}")
    if not applied:
        click.echo(f"the schema is up to date ({len(MIGRATIONS)} migrations applied)")


@db.command("status")
@click.option("--json", "as_json", is_flag=True,
              help="A JSON list: name, description, applied_at (ISO 8601 UTC, null when pending).")
def db_status(as_json: bool) -> None:
    """List every migration and when it was applied (or that it is pending)."""
    import json

    from storage.db import open_database
    from storage.migrations import status
    from storage.settings import Settings

    try:
        rows = status(open_database(Settings.from_env().database_url))
    except Exception as e:
        click.echo(f"flows: cannot use the database ({type(e).__name__}): check DATABASE_URL", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps([{"name": row.name, "description": row.description,
                                "applied_at": row.applied_at.isoformat() + "Z" if row.applied_at else None}
                               for row in rows], indent=2))
        return
    for row in rows:
        when = f"applied {row.applied_at:%Y-%m-%d %H:%M:%S} UTC" if row.applied_at else "pending"
        click.echo(f"{row.name:<28} {when:<32} {row.description}")
    pending = sum(1 for row in rows if row.applied_at is None)
    if pending:
        click.echo(f"{pending} pending: run `flows db upgrade`")


def _checked_flows(paths: list[str]):
    """Check the flow files with every check of `flows validate`, printing problems like validate; on any
    error (or no flow files) exit 1. Returns the LoadReport.
    """
    import actions
    from engine.load import load_paths

    actions.load_all()
    report = load_paths(paths)
    for problem in report.problems:
        click.echo(str(problem))
    if not report.ok:
        click.echo(f"{_summary(len(report.files), len(report.errors), len(report.warnings))}: nothing loaded")
        sys.exit(1)
    if not report.flows:
        click.echo(f"no flow files (*.yaml, *.yml) in {', '.join(paths)}: nothing loaded")
        sys.exit(1)
    return report


def _load_flows(paths: list[str], impact: bool = False) -> list:
    """Check the flow files (see _checked_flows) and store new or changed ones as new versions. With
    impact=True, print each flow's line and what changes for the conversations running now.
    """
    from channels.publish import describe, plan_load
    from storage.db import utcnow
    from storage.flowstore import store

    report = _checked_flows(paths)
    _database(upgrade=True)
    plans = {name: plan_load(name, text) for name, (_, text) in report.sources.items()} if impact else {}
    now = utcnow()
    stored = [store(name, text, file, now) for name, (file, text) in sorted(report.sources.items())]
    for flow in stored if impact else ():
        click.echo(f"{flow.name:<24} v{flow.version:<4} {flow.status}")
        for line in describe(plans[flow.name]):
            click.echo(line)
    return stored


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, dir_okay=True, readable=True))
@click.option("--dry-run", is_flag=True, help="Check and say what would change (and for whom); write nothing.")
def load(paths: tuple[str, ...], dry_run: bool) -> None:
    """Store flows in the database so `flows serve` and `flows worker` run them.

    PATHS are flow files or directories; default: $FLOWS_DIR or flows/. Runs every check of `flows
    validate`: any error loads nothing (exit 1). A changed flow becomes a new version (conversations
    already running stay on theirs); an unchanged one is left alone. Creates or upgrades the schema first.
    Prints, per flow, the steps that change and how many active conversations wait on one of them.
    """
    from storage.settings import Settings

    paths = list(paths) or [Settings.from_env().flows_dir]
    if dry_run:
        _dry_run_load(paths)
    else:
        _load_flows(paths, impact=True)


def _dry_run_load(paths: list[str]) -> None:
    """`flows load --dry-run`: the load report without storing anything or touching the schema."""
    from channels.publish import NEW, UNCHANGED, LoadPlan, describe, plan_load
    from engine.flow_diff import StepChanges, steps_of

    report = _checked_flows(paths)
    readable = _stored_flows_readable()
    for name, (_, text) in sorted(report.sources.items()):
        plan = plan_load(name, text) if readable else LoadPlan(name, NEW, None, StepChanges(tuple(steps_of(text))), {})
        if plan.status == NEW:
            click.echo(f"{name:<24} {NEW:<10} would become v1")
        elif plan.status == UNCHANGED:
            click.echo(f"{name:<24} {UNCHANGED:<10} live v{plan.live}")
        else:
            click.echo(f"{name:<24} {plan.status:<10} live v{plan.live}, would become v{plan.live + 1}")
        for line in describe(plan):
            click.echo(line)
    click.echo("dry run: nothing was written")


def _stored_flows_readable() -> bool:
    """Open DATABASE_URL for reading only: False when it has no stored flows to compare with (a SQLite file
    that does not exist is not created). A database that cannot be opened: one line and exit 1.
    """
    import os

    from storage.db import open_database
    from storage.models import FlowVersion, Session
    from storage.settings import Settings

    url = Settings.from_env().database_url
    if url.startswith("sqlite:///") and not os.path.exists(url[len("sqlite:///"):]):
        return False
    try:
        db = open_database(url)
        return db.table_exists(FlowVersion._meta.table_name) and db.table_exists(Session._meta.table_name)
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        click.echo(f"flows: cannot use the database ({reason}): check DATABASE_URL", err=True)
        sys.exit(1)


@main.command("list")
@click.option("--json", "as_json", is_flag=True,
              help="A JSON array: one object per flow with flow, version (the live one), active, triggers, loaded_at.")
def list_flows(as_json: bool) -> None:
    """Each stored flow: its latest version, its triggers and the active conversations per version."""
    import actions
    from engine.load import load_text
    from storage.flowstore import active_by_version, latest_versions, source

    _database()
    actions.load_all()
    active = active_by_version()
    rows = latest_versions()
    if as_json:
        click.echo(_flows_json(rows, active))
        return
    if not rows:
        click.echo("no flows loaded: run `flows load`")
        return
    for row in rows:
        flow, _ = load_text(source(row.name, row.version), row.file, version=row.version)
        triggers = ", ".join(flow.triggers) if flow is not None else "(does not load: see `flows validate`)"
        counts = sorted((version, n) for (name, version), n in active.items() if name == row.name)
        running = ", ".join(f"v{version}: {n}" for version, n in counts) or "none"
        click.echo(f"{row.name:<24} v{row.version:<4} triggers: {triggers or '-'}   active: {running}")


def _flows_json(rows, active: dict) -> str:
    """`flows list --json`: per flow its live version, active conversations (all versions and per version)."""
    import json

    from engine.load import load_text
    from storage.flowstore import source

    listed = []
    for row in rows:
        flow, _ = load_text(source(row.name, row.version), row.file, version=row.version)
        per_version = {f"v{v}": n for (name, v), n in sorted(active.items()) if name == row.name}
        listed.append({"flow": row.name, "version": row.version, "active": sum(per_version.values()),
                       "active_by_version": per_version, "triggers": list(flow.triggers) if flow else None,
                       "file": row.file, "loaded_at": row.loaded_at.isoformat(timespec="seconds")})
    return json.dumps(listed, indent=2, ensure_ascii=False)


@main.command()
@click.argument("flow")
@click.option("--format", "output", type=click.Choice(["mermaid", "dot"]), default="mermaid", show_default=True,
              help="mermaid: paste into GitHub, GitLab or mermaid.live; dot: Graphviz (`dot -Tsvg`).")
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

    import actions
    from engine.load import load_paths
    from storage.settings import Settings

    actions.load_all()
    folder = Settings.from_env().flows_dir
    is_file = os.path.isfile(flow)  # a file is checked with its neighbours, as its hand-overs need them
    report = load_paths([os.path.dirname(flow) or "."] if is_file else [folder])
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


@main.command("test")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, dir_okay=True, readable=True))
@click.option("--real-actions", is_flag=True,
              help="Run actions without a mock for real: a fresh in-memory database per test, O'mari sandbox.")
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
    summary = f"{report.ran} test{'' if report.ran == 1 else 's'}: {report.passed} passed, {len(report.failures)} failed"
    click.echo(summary + (f"; {len(problems)} problems in the test files (those tests did not run)" if problems else ""))
    if coverage:
        missed = unvisited(flows, report.visited)
        click.echo("steps no test visits:" if missed else "every step is visited by a test")
        for name, steps in missed.items():
            click.echo(f"  {name}: {', '.join(steps)}")
    if problems or report.failures:
        sys.exit(1)


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
    import actions
    from engine.load import load_paths
    from engine.model import FlowSet

    actions.load_all()
    report = load_paths([folder])
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

    return {"real": call_handler, "services": sandbox_services(settings, fixed_otp="123456"),
            "before_each": fresh_store}


# ── flows history / show / rollback (issue 11: authors change a live system safely) ─────────────────


@main.command()
@click.argument("flow")
def history(flow: str) -> None:
    """Every stored version of FLOW: its number, when it was loaded, and the conversations running on it."""
    from storage.flowstore import NoSuchVersion, history as versions, version_source

    _database()
    try:
        live, _ = version_source(flow)
    except NoSuchVersion as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{'version':<9} {'loaded (UTC)':<20} {'active':>6}  file")
    for v in versions(flow):
        mark = "  ← live" if v.version == live else ""
        click.echo(f"v{v.version:<8} {v.loaded_at:%Y-%m-%d %H:%M:%S} {v.active:>6}  {v.file}{mark}")


@main.command()
@click.argument("flow")
@click.option("--version", "version", type=click.IntRange(1), metavar="N", help="This version (default: the live one).")
def show(flow: str, version: int | None) -> None:
    """Print the YAML of FLOW as stored: the live version, or version N."""
    from storage.flowstore import NoSuchVersion, version_source

    _database()
    try:
        _, text = version_source(flow, version)
    except NoSuchVersion as e:
        raise click.ClickException(str(e)) from None
    click.echo(text, nl=not text.endswith("\n"))


@main.command()
@click.argument("flow")
@click.option("--to", "to", type=click.IntRange(1), required=True, metavar="N", help="The version to make live again.")
def rollback(flow: str, to: int) -> None:
    """Make version N of FLOW live again, as a new version with N's content.

    New conversations start on it; conversations already running stay on the version they started with.
    Version N is checked like `flows load` first: a version that no longer loads (an action it uses is
    gone) is refused.
    """
    import actions
    from engine.load import load_text
    from storage.db import utcnow
    from storage.flowstore import NoSuchVersion, rollback as make_live, version_source

    _database()
    actions.load_all()
    try:
        _, text = version_source(flow, to)
    except NoSuchVersion as e:
        raise click.ClickException(str(e)) from None
    loaded, problems = load_text(text, f"{flow} v{to}")
    errors = [p for p in problems if p.severity == "error"]
    for problem in errors:
        click.echo(str(problem), err=True)
    if loaded is None or errors:
        raise click.ClickException(f"version {to} of '{flow}' no longer loads: nothing changed")
    stored = make_live(flow, to, utcnow())
    if stored.status == "unchanged":
        click.echo(f"{flow}: v{stored.version} already has the content of v{to}; nothing changed")
    else:
        click.echo(f"{flow}: v{stored.version} is live, with the content of v{to}. "
                   "Conversations already running stay on their version.")


@main.group()
def bookings() -> None:
    """Add, import, list and show the bookings customers pay for."""


def _booking_line(b) -> str:
    from storage.bookings import as_dict

    d = as_dict(b)
    return (f"{d['reference']:<28} {d['payment_status']:<8} {d['currency']} total {d['total_amount']:>10}  "
            f"paid {d['amount_paid']:>10}  due {d['balance_due']:>10}  {d['customer']} — {d['tour']}")


@bookings.command("add")
@click.argument("reference")
@click.option("--customer", required=True, help="The customer's name.")
@click.option("--tour", required=True, help="The tour booked.")
@click.option("--total", required=True, help="The total price, e.g. 300 or 300.00.")
@click.option("--paid", default="0", show_default=True, help="Already paid.")
@click.option("--currency", type=click.Choice(["USD", "ZWG"], case_sensitive=False), default="USD", show_default=True)
def bookings_add(reference: str, customer: str, tour: str, total: str, paid: str, currency: str) -> None:
    """Add one booking (its REFERENCE is unique, ignoring case)."""
    from storage.bookings import BookingError, add_booking

    _database()
    try:
        booking = add_booking(reference, customer, tour, total, paid=paid, currency=currency.upper())
    except BookingError as e:
        click.echo(f"flows: {e}", err=True)
        sys.exit(1)
    click.echo(f"added {_booking_line(booking)}")


@bookings.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8-sig"))
def bookings_import(file) -> None:
    """Import bookings from a CSV FILE with the header reference,customer,tour,total,paid,currency.

    All or nothing: a bad row is reported by its line number and nothing is imported (exit 1).
    """
    from storage.bookings import BookingImportError, import_csv

    _database()
    try:
        count = import_csv(file)
    except BookingImportError as e:
        for problem in e.problems:
            click.echo(f"{file.name}:{problem.line}: {problem.message}", err=True)
        click.echo(f"{file.name}: {len(e.problems)} bad row(s): nothing imported", err=True)
        sys.exit(1)
    click.echo(f"imported {count} booking{'s' if count != 1 else ''} from {file.name}")


@bookings.command("list")
@click.option("--status", type=click.Choice(["UNPAID", "PARTIAL", "PAID"], case_sensitive=False),
              help="Only bookings with this payment status.")
@click.option("--json", "as_json", is_flag=True, help="A JSON list of the objects `bookings show --json` prints.")
def bookings_list(status: str | None, as_json: bool) -> None:
    """Every booking, by reference."""
    import json

    from storage.bookings import as_dict, list_bookings

    _database()
    found = list(list_bookings(status.upper() if status else None))
    if as_json:
        click.echo(json.dumps([as_dict(b) for b in found], indent=2, ensure_ascii=False))
        return
    for booking in found:
        click.echo(_booking_line(booking))
    if not found:
        click.echo("no bookings")


@bookings.command("show")
@click.argument("reference")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (amounts as strings with two decimals).")
def bookings_show(reference: str, as_json: bool) -> None:
    """One booking by REFERENCE (any case, surrounding space ignored)."""
    import json

    from storage.bookings import as_dict, find_booking

    _database()
    booking = find_booking(reference)
    if booking is None:
        click.echo(f"flows: no booking with reference '{reference.strip()}'", err=True)
        sys.exit(1)
    d = as_dict(booking)
    if as_json:
        click.echo(json.dumps(d, indent=2, ensure_ascii=False))
        return
    for key in ("reference", "customer", "tour", "currency", "total_amount", "amount_paid", "balance_due",
                "payment_status"):
        click.echo(f"{key.replace('_', ' ') + ':':<16} {d[key]}")

# ── flows payments / flows demo (issue 4: O'mari payments) ───────────────────────────────────────────

DEMO_BOOKING = ("BK-SLYKER-TECH-20251023", "Slyker Tech", "Victoria Falls 3-day safari", "300.00")
DEMO_CONTACT = "263771234567"
from storage.payments import STATUSES as PAYMENT_STATUSES  # noqa: E402 (the one list of payment statuses)


@main.group()
def payments() -> None:
    """Payments (O'mari, Paynow): list them, show one, settle the unfinished ones (reconcile)."""


@payments.command("list")
@click.option("--status", type=click.Choice(PAYMENT_STATUSES, case_sensitive=False), help="Only payments in this status.")
@click.option("--needs-person", is_flag=True, help="Only payments marked as needing a person.")
@click.option("--limit", type=click.IntRange(1), default=None, help="At most this many (newest first).")
@click.option("--json", "as_json", is_flag=True, help="A JSON list, amounts as \"50.00\" strings.")
def payments_list(status: str | None, needs_person: bool, limit: int | None, as_json: bool) -> None:
    """Payments, newest first; a payment that needs a person says so (NEEDS A PERSON: why)."""
    import json

    from storage import payments as store

    _database()
    rows = [store.as_dict(row) for row in store.list_payments(status, limit, needing_person=needs_person)]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        which = " ".join(filter(None, [f"with status {status.upper()}" if status else "",
                                       "marked as needing a person" if needs_person else ""]))
        click.echo("no payments" + (f" {which}" if which else ""))
        return
    for p in rows:
        mark = f"  NEEDS A PERSON: {p['needs_person']}" if p["needs_person"] else ""
        click.echo(f"{p['created_at']}  {p['reference']}  {p['booking']:<24} {p['amount']:>10} {p['currency']}  "
                   f"{p['provider']:<6} {p['wallet']:<9} {p['status']:<9} {p['response_code'] or '':<4} {p['error_message'] or ''}{mark}".rstrip())


@payments.command("show")
@click.argument("reference")
@click.option("--json", "as_json", is_flag=True, help="One JSON object, amounts as \"50.00\" strings.")
def payments_show(reference: str, as_json: bool) -> None:
    """One payment by its reference (our UUID): its fields and its status history."""
    import json

    from storage import payments as store

    _database()
    row = store.get(reference)
    if row is None:
        click.echo(f"flows: no payment with reference '{reference.strip()}' (see `flows payments list`)", err=True)
        sys.exit(1)
    p = store.as_dict(row)
    if as_json:
        click.echo(json.dumps(p, indent=2, ensure_ascii=False))
        return
    for key, value in p.items():
        if key != "status_history":
            click.echo(f"{key + ':':<19}{'' if value is None else value}")
    click.echo("history:")
    for entry in p["status_history"]:
        click.echo(f"  {entry['at']}  {entry['status']}")


@payments.command("reconcile")
@click.option("--limit", type=click.IntRange(1), default=None, help="Settle at most this many (oldest first).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: every payment checked and the counts.")
def payments_reconcile(limit: int | None, as_json: bool) -> None:
    """Ask each payment's provider (O'mari /query, Paynow's poll URL) about PENDING payments and OTP_SENT
    ones past the payer's 10 minutes.

    Paid ones become SUCCESS and are applied to their booking once; refused ones FAILED (a stale OTP_SENT:
    EXPIRED); the customer is told through the outbox. No answer: left for the next run. An answer that
    cannot be believed (an unknown status word, another amount) leaves the payment PENDING and marks it as
    needing a person. Safe from cron, twice at once, and after a crash. Exit 0 when it ran and nothing
    needs a person, 1 when something does (or the settings are missing).
    """
    import json
    import logging

    from actions.providers import providers
    from actions.reconcile import reconcile
    from storage.db import utcnow
    from storage.settings import Settings, SettingsError

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _database()
    try:
        clients, missing = providers.clients(Settings.from_env())
    except SettingsError as e:
        clients, missing = {}, {"settings": str(e)}
    if not clients:
        click.echo(f"flows: {'; '.join(missing.values())}: reconcile needs a payment provider's API "
                   "(see docs/operations.md)", err=True)
        sys.exit(1)
    report = reconcile(clients, now=utcnow(), limit=limit)
    counts = report.summary()
    if as_json:
        click.echo(json.dumps({"settlements": [s.as_dict() for s in report.settlements], "summary": counts},
                              indent=2, ensure_ascii=False))
    else:
        for kind, title in (("settled", "settled"), ("pending", "still pending"), ("needs_person", "needs a person")):
            for s in report.of_kind(kind):
                change = f"{s.before} → {s.after}" if s.after != s.before else f"{s.before} (unchanged)"
                told = "  customer told" if s.notified else ""
                click.echo(f"{title + ':':<16}{s.reference}  {change:<22} {s.note}{told}")
        click.echo(f"{counts['checked']} checked: {counts['settled']} settled ({counts['paid']} paid, {counts['failed']} failed, "
                   f"{counts['expired']} expired), {counts['still_pending']} still pending, "
                   f"{counts['needs_person']} need a person")
    if counts["needs_person"]:
        click.echo(f"flows: {counts['needs_person']} payment(s) need a person: see `flows payments list --needs-person` "
                   "and docs/operations.md", err=True)
        sys.exit(1)


def _printable(text: str) -> str:
    """Text from outside shown as is, but never a control character that would drive the terminal."""
    return "".join(c if c.isprintable() or c in "\n\t" else f"\\x{ord(c):02x}" for c in text)


@main.command("dead-letters")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True, help="At most this many (newest first).")
@click.option("--show", "show_id", type=int, metavar="ID", help="Print one dead letter in full: its reason and body.")
def dead_letters(limit: int, show_id: int | None) -> None:
    """Webhook deliveries that could never be stored (answered 200 so that Meta stops retrying), newest first."""
    from storage import deadletters

    _database()
    rows = deadletters.recent(limit) if show_id is None else [r for r in [deadletters.get(show_id)] if r]
    if show_id is not None and not rows:
        click.echo(f"flows: no dead letter #{show_id} (see `flows dead-letters`)", err=True)
        sys.exit(1)
    if not rows:
        click.echo("no dead letters")
    for r in rows:
        click.echo(_printable(f"#{r.id}  {r.received_at:%Y-%m-%d %H:%M:%S}  {len(r.body):>8} bytes  "
                              f"{r.item or 'whole body'}: {r.reason}"))
    if show_id is not None:
        click.echo(_printable(rows[0].body.decode("utf-8", "replace")))


def sandbox_services(settings, fixed_otp: str | None = None) -> dict:
    """Action services for a terminal chat: every payment provider is its in-process sandbox; O'mari's OTP
    texts are printed on stdout among the replies ("[O'mari sandbox SMS to 2637****4567] Your O'mari OTP is …").
    """
    from actions.omari_sandbox import sms_line
    from actions.providers import providers

    def sms(msisdn: str, text: str) -> None:
        click.echo(sms_line(msisdn, text))

    return providers.services(settings, sandbox=True, sms=sms, fixed_otp=fixed_otp)


@main.command()
@click.option("--contact", default=DEMO_CONTACT, show_default=True, metavar="ID", help="The phone number you chat as.")
@click.option("--otp", metavar="CODE", help="Make the sandbox send this code every time (for scripts), e.g. 123456.")
def demo(contact: str, otp: str | None) -> None:
    """Pay for a demo booking in this terminal: no WhatsApp, no O'mari account needed.

    Upgrades the database (DATABASE_URL, default sqlite:///convoflow.db), loads the shipped flows, adds the
    demo booking BK-SLYKER-TECH-20251023 ($300.00) when missing, and opens the chat on the built-in O'mari
    sandbox, which "texts" the one-time code to this terminal. Scriptable: with standard input not a
    terminal, each line is one message; --otp fixes the code so a script can type it:

        printf 'pay\\nBK-SLYKER-TECH-20251023\\n50\\n1\\n263771234567\\n123456\\n' | flows demo --otp 123456
    """
    from importlib import resources

    from channels import turns as persisted
    from channels.terminal import chat_loop
    from channels.worker import turn_context
    from engine.registry import registry
    from engine.templates import money
    from storage import payments as store
    from storage.bookings import BookingExists, add_booking, find_booking
    from storage.settings import Settings

    settings = Settings.from_env()
    with resources.as_file(resources.files("flows")) as shipped:  # package data: also in an installed wheel
        loaded = _load_flows([str(shipped)])
    try:
        add_booking(*DEMO_BOOKING)
    except BookingExists:
        pass
    booking = find_booking(DEMO_BOOKING[0])
    flows = persisted.load_flowset(registry)

    if otp is not None and not (otp.isdigit() and 4 <= len(otp) <= 8):
        raise click.BadParameter("a code is 4 to 8 digits", param_hint="--otp")
    services = sandbox_services(settings, fixed_otp=otp)
    ctx = turn_context(services)
    # The sandbox starts empty each run: a payment left waiting for its code last time cannot finish now.
    left_open = persisted.close_conversation(contact, flows, ctx)
    due = money(store.balance_due(booking), booking.currency)
    click.echo(
        "convoflow demo: the O'mari payment conversation, in this terminal.\n"
        f"  database  {settings.database_url.split('://', 1)[0]} (schema upgraded); flows: "
        + ", ".join(f"{s.name} v{s.version}" for s in loaded) + "\n"
        f"  booking   {booking.reference}, {booking.tour}: balance due {due}\n"
        "  payments  go to the built-in O'mari sandbox: nothing leaves this machine. When a payment starts,\n"
        "            the sandbox \"texts\" the one-time code here, on a line starting [O'mari sandbox SMS …].\n"
        f"Try: pay → {booking.reference} → 50 → 1 (Ecocash) → {DEMO_CONTACT} → the code from the SMS line.\n"
        "Send cancel to stop a payment, menu for the menu"
        + (", Ctrl-D to leave.\n" if sys.stdin.isatty() else ".\n")
        + ("(The conversation you left open last time has been closed.)\n" if left_open else "")
    )
    chat_loop(
        lambda inbound: persisted.handle_message(inbound, flows, ctx),
        contact,
        sys.stdin,
        sys.stdout,
        interactive=sys.stdin.isatty(),
        events=sys.stderr,
    )


# ── flows serve / flows worker (issue 5: WhatsApp channel) ───────────────────────────────────────────


def _channel_setup(sandbox: bool, http: bool, workers: int, http_threads: int | None = None):
    """Settings checked, logging on, database open and upgraded already: or one line and exit 1."""
    import dataclasses

    from channels.whatsapp import pool_size
    from channels.worker import check_settings
    from storage import logs
    from storage.db import open_database
    from storage.migrations import SchemaError, check
    from storage.settings import SettingsError

    settings = _settings()
    logs.configure(settings.log_level, settings.log_format)
    try:
        if http_threads:
            settings = dataclasses.replace(settings, http_threads=http_threads)
        check_settings(settings, http=http, sandbox=sandbox)
        check(open_database(settings.database_url, wait=settings.database_wait,
                            max_connections=pool_size(settings, workers)))
    except (SettingsError, SchemaError, ValueError) as e:
        click.echo(f"flows: {e}", err=True)
        sys.exit(1)
    except Exception as e:  # the database is unreachable: say so in one line, never with its URL's password
        click.echo(f"flows: cannot open the database ({type(e).__name__}): check DATABASE_URL", err=True)
        sys.exit(1)
    return settings


def _stop_on_sigterm() -> None:
    """SIGTERM (systemd, docker, Windows service wrappers) stops like Ctrl-C: finish work, then exit."""
    import signal

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)


def _sandbox_sms(msisdn: str, text: str) -> None:
    from actions.omari_sandbox import sms_line

    click.echo(sms_line(msisdn, text), err=True)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for all).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(0, 64),
              help="Turn threads in this process (0: only answer the webhook; run `flows worker` elsewhere).")
@click.option("--http-threads", type=click.IntRange(1, 256), default=None,
              help="Threads answering HTTP (default: HTTP_THREADS, 8).")
@click.option("--sandbox", is_flag=True, help="Take payments on the built-in O'mari sandbox (no OMARI_MERCHANT_KEY).")
def serve(host: str, port: int, workers: int, http_threads: int | None, sandbox: bool) -> None:
    """Serve the WhatsApp webhook (waitress) and run the workers and the sender.

    Configuration comes from the environment and .env (see docs/deploying.md); the database must be
    upgraded (`flows db upgrade`) and hold flows (`flows load`). Routes: GET/POST /webhook, GET /healthz
    (liveness), GET /readyz (readiness: a write commits), GET /metrics. Stops cleanly on Ctrl-C or SIGTERM.
    """
    from channels.whatsapp import serve as run
    from channels.worker import NoFlowsLoaded
    from channels.turns import FlowsNotLoaded

    settings = _channel_setup(sandbox, http=True, workers=workers, http_threads=http_threads)
    _stop_on_sigterm()
    payments = " (payments on the O'mari sandbox)" if sandbox else ""

    def ready(url: str) -> None:
        click.echo(f"convoflow serving {url}/webhook with {workers} worker thread(s){payments}", err=True)

    try:
        run(settings, host=host, port=port, workers=workers, sandbox=sandbox, sms=_sandbox_sms, ready=ready)
    except (NoFlowsLoaded, FlowsNotLoaded) as e:
        click.echo(f"flows: {e}", err=True)
        sys.exit(1)
    except OSError as e:
        click.echo(f"flows: cannot listen on {host}:{port}: {e.strerror or e}", err=True)
        sys.exit(1)


@main.command()
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="Turn threads.")
@click.option("--sandbox", is_flag=True, help="Take payments on the built-in O'mari sandbox (no OMARI_MERCHANT_KEY).")
def worker(workers: int, sandbox: bool) -> None:
    """Run turn threads and the sender without HTTP (more capacity next to `flows serve`, PostgreSQL)."""
    import threading

    from channels.metrics import Metrics
    from channels.turns import FlowsNotLoaded
    from channels.worker import NoFlowsLoaded, start_workers

    settings = _channel_setup(sandbox, http=False, workers=workers)
    _stop_on_sigterm()
    try:
        background = start_workers(settings, sandbox=sandbox, threads=workers, metrics=Metrics(), sms=_sandbox_sms)
    except (NoFlowsLoaded, FlowsNotLoaded) as e:
        click.echo(f"flows: {e}", err=True)
        sys.exit(1)
    click.echo(f"convoflow worker running {workers} turn thread(s) and the sender", err=True)
    try:
        threading.Event().wait()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        background.stop()



if __name__ == "__main__":
    sys.exit(main())
