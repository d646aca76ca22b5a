"""`flows db upgrade` and `flows db status`: the schema."""

from __future__ import annotations

import click

from .base import database, database_errors


@click.group()
def db() -> None:
    """Create, migrate and inspect the database schema (DATABASE_URL, default sqlite:///convoflow.db)."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create the schema or apply the migrations it lacks. Safe to run again, and from two places at once."""
    from storage.migrations import MIGRATIONS

    applied = database(upgrade=True)
    for name in applied:
        click.echo(f"applied {name}")
    if not applied:
        click.echo(f"the schema is up to date ({len(MIGRATIONS)} migrations applied)")


@db.command("status")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="A JSON list: name, description, applied_at (ISO 8601 UTC, null when pending).",
)
def db_status(as_json: bool) -> None:
    """List every migration and when it was applied (or that it is pending)."""
    import json

    from storage.db import open_database
    from storage.migrations import status
    from storage.settings import Settings

    with database_errors():
        rows = status(open_database(Settings.from_env().database_url))
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": row.name,
                        "description": row.description,
                        "applied_at": row.applied_at.isoformat() + "Z" if row.applied_at else None,
                    }
                    for row in rows
                ],
                indent=2,
            )
        )
        return
    for row in rows:
        when = f"applied {row.applied_at:%Y-%m-%d %H:%M:%S} UTC" if row.applied_at else "pending"
        click.echo(f"{row.name:<28} {when:<32} {row.description}")
    pending = sum(1 for row in rows if row.applied_at is None)
    if pending:
        click.echo(f"{pending} pending: run `flows db upgrade`")
