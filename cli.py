"""The `flows` command: the only place that prints for humans and picks exit codes.

Exit codes: 0 success, 1 invalid input or failed check, 2 usage error (click's own).
Imports of heavy modules happen inside commands so `flows --help` starts fast.
"""
from __future__ import annotations

import sys

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", prog_name="flows")
def main() -> None:
    """convoflow: WhatsApp conversations written as YAML.

    Start here: `flows demo` runs the payment conversation in this terminal on a local SQLite database
    and the built-in O'mari sandbox.
    """


# ── flows validate / flows chat (issue 2: the flow language) ────────────────────────────────────────


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, dir_okay=True, readable=True))
@click.option("--format", "output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: one `file:line:col: severity[code] message` line per problem; json: a list for tools.")
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
    actions.load_all()
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


def _summary(files: int, errors: int, warnings: int) -> str:
    def count(n: int, noun: str) -> str:
        return f"{n} {noun}" if n == 1 else f"{n} {noun}s"

    return f"{count(files, 'file')}, {count(errors, 'error')}, {count(warnings, 'warning')}"

# ── flows db / flows load / flows list / flows bookings (issue 3: storage) ──────────────────────────

# ── flows payments / flows demo (issue 4: O'mari payments) ───────────────────────────────────────────

# ── flows serve / flows worker (issue 5: WhatsApp channel) ───────────────────────────────────────────


if __name__ == "__main__":
    sys.exit(main())
