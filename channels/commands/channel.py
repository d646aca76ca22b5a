"""The WhatsApp channel's commands: `flows serve`, `flows worker`, `flows dead-letters`."""

from __future__ import annotations

import click

from .base import CliError, checked_settings, database, load_actions


def _printable(text: str) -> str:
    """Text from outside shown as is, but never a control character that would drive the terminal."""
    return "".join(c if c.isprintable() or c in "\n\t" else f"\\x{ord(c):02x}" for c in text)


@click.command("dead-letters")
@click.option(
    "--limit", type=click.IntRange(1), default=20, show_default=True, help="At most this many (newest first)."
)
@click.option("--show", "show_id", type=int, metavar="ID", help="Print one dead letter in full: its reason and body.")
def dead_letters(limit: int, show_id: int | None) -> None:
    """Webhook deliveries that could never be stored (answered 200 so that Meta stops retrying), newest first."""
    from storage import deadletters

    database()
    rows = deadletters.recent(limit) if show_id is None else [r for r in [deadletters.get(show_id)] if r]
    if show_id is not None and not rows:
        raise CliError(f"no dead letter #{show_id} (see `flows dead-letters`)")
    if not rows:
        click.echo("no dead letters")
    for r in rows:
        click.echo(
            _printable(
                f"#{r.id}  {r.received_at:%Y-%m-%d %H:%M:%S}  {len(r.body):>8} bytes  "
                f"{r.item or 'whole body'}: {r.reason}"
            )
        )
    if show_id is not None:
        click.echo(_printable(rows[0].body.decode("utf-8", "replace")))


def _channel_setup(sandbox: bool, http: bool, workers: int, http_threads: int | None = None):
    """Settings checked, logging on, database open and upgraded already: or one line and exit 1."""
    import dataclasses

    from channels.whatsapp import pool_size
    from channels.worker import check_settings
    from storage import logs
    from storage.settings import SettingsError

    settings = checked_settings()
    logs.configure(settings.log_level, settings.log_format)
    if http_threads:
        settings = dataclasses.replace(settings, http_threads=http_threads)
    load_actions()  # check_settings asks the payment providers, which register with the actions
    try:
        check_settings(settings, http=http, sandbox=sandbox)
    except SettingsError as e:
        raise CliError(str(e)) from None
    database(url=settings.database_url, wait=settings.database_wait, max_connections=pool_size(settings, workers))
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


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for all).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option(
    "--workers",
    default=2,
    show_default=True,
    type=click.IntRange(0, 64),
    help="Turn threads in this process (0: only answer the webhook; run `flows worker` elsewhere).",
)
@click.option(
    "--http-threads",
    type=click.IntRange(1, 256),
    default=None,
    help="Threads answering HTTP (default: HTTP_THREADS; unset, 4 on SQLite and 8 on PostgreSQL).",
)
@click.option("--sandbox", is_flag=True, help="Take payments on the built-in O'mari sandbox (no OMARI_MERCHANT_KEY).")
def serve(host: str, port: int, workers: int, http_threads: int | None, sandbox: bool) -> None:
    """Serve the WhatsApp webhook (waitress) and run the workers and the sender.

    Configuration comes from the environment and .env (see docs/deploying.md); the database must be
    upgraded (`flows db upgrade`) and hold flows (`flows load`). Routes: GET/POST /webhook, GET /healthz
    (liveness), GET /readyz (readiness: a write commits), GET /metrics. Stops cleanly on Ctrl-C or SIGTERM.
    """
    from channels.whatsapp import serve as run
    from channels.worker import NoFlowsLoaded
    from channels.flowcache import FlowsNotLoaded

    settings = _channel_setup(sandbox, http=True, workers=workers, http_threads=http_threads)
    _stop_on_sigterm()
    payments = " (payments on the O'mari sandbox)" if sandbox else ""

    def ready(url: str) -> None:
        click.echo(f"convoflow serving {url}/webhook with {workers} worker thread(s){payments}", err=True)

    try:
        run(settings, host=host, port=port, workers=workers, sandbox=sandbox, sms=_sandbox_sms, ready=ready)
    except (NoFlowsLoaded, FlowsNotLoaded) as e:
        raise CliError(str(e)) from None
    except OSError as e:
        raise CliError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


@click.command()
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="Turn threads.")
@click.option("--sandbox", is_flag=True, help="Take payments on the built-in O'mari sandbox (no OMARI_MERCHANT_KEY).")
def worker(workers: int, sandbox: bool) -> None:
    """Run turn threads and the sender without HTTP (more capacity next to `flows serve`, PostgreSQL)."""
    import threading

    from channels.metrics import Metrics
    from channels.flowcache import FlowsNotLoaded
    from channels.worker import NoFlowsLoaded, start_workers

    settings = _channel_setup(sandbox, http=False, workers=workers)
    _stop_on_sigterm()
    try:
        background = start_workers(settings, sandbox=sandbox, threads=workers, metrics=Metrics(), sms=_sandbox_sms)
    except (NoFlowsLoaded, FlowsNotLoaded) as e:
        raise CliError(str(e)) from None
    click.echo(f"convoflow worker running {workers} turn thread(s) and the sender", err=True)
    try:
        threading.Event().wait()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        background.stop()
