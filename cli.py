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


@main.command()
@click.argument("flow", required=False)
@click.option("--contact", default="263770000000", show_default=True, metavar="ID",
              help="The phone number the conversation is with (vars.contact in templates).")
def chat(flow: str | None, contact: str) -> None:
    """Talk to the flows in this terminal, with the same runner WhatsApp uses.

    Flows come from $FLOWS_DIR (default flows/) and conversations are kept in memory. FLOW starts that
    flow directly; otherwise send a trigger phrase or `menu`. Buttons and list options are numbered: send
    the number, the title or the id. When standard input is not a terminal, each line is one message:

        printf 'pay\\nBK-1\\n' | flows chat
    """
    import actions
    from channels.terminal import MemoryTurns, chat_loop
    from engine.context import TurnContext
    from engine.load import load_paths
    from engine.model import FlowSet
    from engine.registry import registry
    from storage.settings import Settings

    settings = Settings.from_env()
    actions.load_all()
    report = load_paths([settings.flows_dir], registry)
    for problem in report.problems:
        click.echo(str(problem), err=True)
    if not report.ok:
        click.echo(f"the flows in {settings.flows_dir} have errors: fix them (see `flows validate`)", err=True)
        sys.exit(1)
    if not report.flows:
        click.echo(f"no flow files (*.yaml, *.yml) in {settings.flows_dir}", err=True)
        sys.exit(1)
    flows = FlowSet.of(report.flows)
    if flow is not None and flows.latest(flow) is None:
        import difflib

        close = difflib.get_close_matches(flow, list(flows.versions), n=1)
        hint = f" — did you mean '{close[0]}'?" if close else f" (flows: {', '.join(sorted(flows.versions))})"
        raise click.UsageError(f"no flow named '{flow}'{hint}")
    turns = MemoryTurns(flows, TurnContext(registry=registry, services={"settings": settings}))
    interactive = sys.stdin.isatty()
    if interactive:
        click.echo(f"Chatting as {contact} with the flows in {settings.flows_dir}. Ctrl-D to leave.\n")
    chat_loop(
        turns,
        contact,
        sys.stdin,
        sys.stdout,
        interactive=interactive,
        opening=(lambda: turns.start(contact, flow)) if flow else None,
        events=sys.stderr,
    )

# ── flows db / flows load / flows list / flows bookings (issue 3: storage) ──────────────────────────

# ── flows payments / flows demo (issue 4: O'mari payments) ───────────────────────────────────────────

# ── flows serve / flows worker (issue 5: WhatsApp channel) ───────────────────────────────────────────


def _channel_setup(sandbox: bool, http: bool):
    """Settings checked, logging on, database open and upgraded already: or one line and exit 1."""
    import logging

    from channels.worker import check_settings
    from storage.db import open_database
    from storage.migrations import SchemaError, check
    from storage.settings import Settings, SettingsError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
        check_settings(settings, http=http, sandbox=sandbox)
        check(open_database(settings.database_url))
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
@click.option("--sandbox", is_flag=True, help="Take payments on the built-in O'mari sandbox (no OMARI_MERCHANT_KEY).")
def serve(host: str, port: int, workers: int, sandbox: bool) -> None:
    """Serve the WhatsApp webhook (waitress) and run the workers and the sender.

    Configuration comes from the environment and .env (see docs/deploying.md); the database must be
    upgraded (`flows db upgrade`) and hold flows (`flows load`). Routes: GET/POST /webhook, GET /healthz,
    GET /metrics. Stops cleanly on Ctrl-C or SIGTERM.
    """
    from channels.whatsapp import serve as run
    from channels.worker import NoFlowsLoaded
    from channels.turns import FlowsNotLoaded

    settings = _channel_setup(sandbox, http=True)
    _stop_on_sigterm()
    payments = " (payments on the O'mari sandbox)" if sandbox else ""

    def ready(url: str) -> None:
        click.echo(f"convoflow serving {url}/webhook with {workers} worker thread(s){payments}", err=True)

    try:
        run(settings, host=host, port=port, workers=workers, sandbox=sandbox, sms=_sandbox_sms, ready=ready)
    except (NoFlowsLoaded, FlowsNotLoaded, OSError) as e:
        click.echo(f"flows: {e}", err=True)
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

    settings = _channel_setup(sandbox, http=False)
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
