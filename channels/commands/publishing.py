"""Flows in the database: `flows load`, `list`, `history`, `show`, `rollback`.

Which commands change the schema: `flows db upgrade`, and `flows load` (and the demo), which upgrade first
because loading flows into a new database is how one starts. Every other command leaves the schema alone
and, when it is missing or behind, exits 1 with "run `flows db upgrade`".
"""

from __future__ import annotations

import click

from .authoring import summary
from .base import CliError, database, database_errors, load_actions


def _checked_flows(paths: list[str]):
    """Check the flow files with every check of `flows validate`, printing problems like validate; on any
    error (or no flow files) exit 1. Returns the LoadReport.
    """
    from engine.load import load_paths

    report = load_paths(paths, load_actions())
    for problem in report.problems:
        click.echo(str(problem))
    if not report.ok:
        click.echo(f"{summary(len(report.files), len(report.errors), len(report.warnings))}: nothing loaded")
        raise CliError()  # the problems and the summary are the message, on stdout like validate's
    if not report.flows:
        click.echo(f"no flow files (*.yaml, *.yml) in {', '.join(paths)}: nothing loaded")
        raise CliError()
    return report


def load_flows(paths: list[str], impact: bool = False, url: str | None = None) -> list:
    """Check the flow files (see _checked_flows) and store new or changed ones as new versions in
    DATABASE_URL (or url: the demo's own store). With impact=True, print each flow's line and what changes
    for the conversations running now.
    """
    from channels.publish import describe, plan_load
    from storage.db import utcnow
    from storage.flowstore import store

    report = _checked_flows(paths)
    database(upgrade=True, url=url)
    plans = {name: plan_load(name, text) for name, (_, text) in report.sources.items()} if impact else {}
    now = utcnow()
    stored = [store(name, text, file, now) for name, (file, text) in sorted(report.sources.items())]
    for flow in stored if impact else ():
        click.echo(f"{flow.name:<24} v{flow.version:<4} {flow.status}")
        for line in describe(plans[flow.name]):
            click.echo(line)
    return stored


@click.command()
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
        load_flows(paths, impact=True)


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
    if url.startswith("sqlite:///") and not os.path.exists(url[len("sqlite:///") :]):
        return False
    with database_errors():
        db = open_database(url)
        return db.table_exists(FlowVersion._meta.table_name) and db.table_exists(Session._meta.table_name)


@click.command("list")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="A JSON array: one object per flow with flow, version (the live one), active, triggers, loaded_at.",
)
def list_flows(as_json: bool) -> None:
    """Each stored flow: its latest version, its triggers and the active conversations per version."""
    from engine.load import load_text
    from storage.flowstore import active_by_version, latest_versions, source

    database()
    registry = load_actions()
    active = active_by_version()
    rows = latest_versions()
    if as_json:
        click.echo(_flows_json(rows, active, registry))
        return
    if not rows:
        click.echo("no flows loaded: run `flows load`")
        return
    for row in rows:
        flow, _ = load_text(source(row.name, row.version), row.file, registry, version=row.version)
        triggers = ", ".join(flow.triggers) if flow is not None else "(does not load: see `flows validate`)"
        counts = sorted((version, n) for (name, version), n in active.items() if name == row.name)
        running = ", ".join(f"v{version}: {n}" for version, n in counts) or "none"
        click.echo(f"{row.name:<24} v{row.version:<4} triggers: {triggers or '-'}   active: {running}")


def _flows_json(rows, active: dict, registry) -> str:
    """`flows list --json`: per flow its live version, active conversations (all versions and per version)."""
    import json

    from engine.load import load_text
    from storage.flowstore import source

    listed = []
    for row in rows:
        flow, _ = load_text(source(row.name, row.version), row.file, registry, version=row.version)
        per_version = {f"v{v}": n for (name, v), n in sorted(active.items()) if name == row.name}
        listed.append(
            {
                "flow": row.name,
                "version": row.version,
                "active": sum(per_version.values()),
                "active_by_version": per_version,
                "triggers": list(flow.triggers) if flow else None,
                "file": row.file,
                "loaded_at": row.loaded_at.isoformat(timespec="seconds"),
            }
        )
    return json.dumps(listed, indent=2, ensure_ascii=False)


# ── flows history / show / rollback (issue 11: authors change a live system safely) ─────────────────


@click.command()
@click.argument("flow")
def history(flow: str) -> None:
    """Every stored version of FLOW: its number, when it was loaded, and the conversations running on it."""
    from storage.flowstore import NoSuchVersion, history as versions, version_source

    database()
    try:
        live, _ = version_source(flow)
    except NoSuchVersion as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{'version':<9} {'loaded (UTC)':<20} {'active':>6}  file")
    for v in versions(flow):
        mark = "  ← live" if v.version == live else ""
        click.echo(f"v{v.version:<8} {v.loaded_at:%Y-%m-%d %H:%M:%S} {v.active:>6}  {v.file}{mark}")


@click.command()
@click.argument("flow")
@click.option("--version", "version", type=click.IntRange(1), metavar="N", help="This version (default: the live one).")
def show(flow: str, version: int | None) -> None:
    """Print the YAML of FLOW as stored: the live version, or version N."""
    from storage.flowstore import NoSuchVersion, version_source

    database()
    try:
        _, text = version_source(flow, version)
    except NoSuchVersion as e:
        raise click.ClickException(str(e)) from None
    click.echo(text, nl=not text.endswith("\n"))


@click.command()
@click.argument("flow")
@click.option("--to", "to", type=click.IntRange(1), required=True, metavar="N", help="The version to make live again.")
def rollback(flow: str, to: int) -> None:
    """Make version N of FLOW live again, as a new version with N's content.

    New conversations start on it; conversations already running stay on the version they started with.
    Version N is checked like `flows load` first: a version that no longer loads (an action it uses is
    gone) is refused.
    """
    from engine.load import load_text
    from storage.db import utcnow
    from storage.flowstore import NoSuchVersion, rollback as make_live, version_source

    database()
    registry = load_actions()
    try:
        _, text = version_source(flow, to)
    except NoSuchVersion as e:
        raise click.ClickException(str(e)) from None
    loaded, problems = load_text(text, f"{flow} v{to}", registry)
    errors = [p for p in problems if p.severity == "error"]
    for problem in errors:
        click.echo(str(problem), err=True)
    if loaded is None or errors:
        raise click.ClickException(f"version {to} of '{flow}' no longer loads: nothing changed")
    stored = make_live(flow, to, utcnow())
    if stored.status == "unchanged":
        click.echo(f"{flow}: v{stored.version} already has the content of v{to}; nothing changed")
    else:
        click.echo(
            f"{flow}: v{stored.version} is live, with the content of v{to}. "
            "Conversations already running stay on their version."
        )
