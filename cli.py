"""The `flows` command: the only place that prints for humans and picks exit codes.

Exit codes: 0 success, 1 invalid input or failed check, 2 usage error (click's own). A command that fails
raises channels.commands.base.CliError (or click's own exceptions); click prints it once and exits.
The commands live in channels/commands/, one module per subject. Imports of heavy modules happen inside
commands so `flows --help` starts fast.
"""

from __future__ import annotations

import sys

import click

from channels.commands import authoring, bookings, channel, chat, db, payments, project, publishing
from channels.commands.base import checked_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="convoflow", prog_name="flows")
@click.pass_context
def main(ctx: click.Context) -> None:
    """convoflow: WhatsApp conversations written as YAML.

    Start here: `flows demo` runs the payment conversation in this terminal on a local SQLite database
    and the built-in O'mari sandbox; `flows init DIR` starts a project of your own.
    """
    if ctx.invoked_subcommand != "init":  # a new project needs no settings; every other command reads them
        checked_settings()


for command in (
    project.init,
    project.config,
    authoring.validate,
    authoring.graph,
    authoring.test_flows,
    chat.chat,
    chat.demo,
    db.db,
    publishing.load,
    publishing.list_flows,
    publishing.history,
    publishing.show,
    publishing.rollback,
    bookings.bookings,
    payments.payments,
    channel.dead_letters,
    channel.serve,
    channel.worker,
):
    main.add_command(command)


if __name__ == "__main__":
    sys.exit(main())
