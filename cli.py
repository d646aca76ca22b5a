"""The `flows` command: the only place that prints for humans and picks exit codes.

Exit codes: 0 success, 1 invalid input or failed check, 2 usage error (click's own). A command that fails
raises channels.commands.base.CliError (or click's own exceptions); click prints it once and exits.
The commands live in channels/commands/, one module per subject, and a module is imported only when one of
its commands runs (or `--help` lists them), so `flows validate` loads none of the others. Imports of heavy
modules happen inside commands so `flows --help` starts fast.
"""

from __future__ import annotations

import importlib
import sys

import click

from channels.commands.base import checked_settings

# Each command by name: "module:attribute" under channels.commands.
COMMANDS = {
    "init": "project:init",
    "config": "project:config",
    "validate": "authoring:validate",
    "graph": "authoring:graph",
    "test": "authoring:test_flows",
    "chat": "chat:chat",
    "demo": "chat:demo",
    "db": "db:db",
    "load": "publishing:load",
    "list": "publishing:list_flows",
    "history": "publishing:history",
    "show": "publishing:show",
    "rollback": "publishing:rollback",
    "bookings": "bookings:bookings",
    "payments": "payments:payments",
    "dead-letters": "channel:dead_letters",
    "serve": "channel:serve",
    "worker": "channel:worker",
}


class LazyGroup(click.Group):
    """A group whose commands are imported by name when asked for (click's "lazily loading subcommands")."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in COMMANDS:
            module, attribute = COMMANDS[name].split(":")
            self.add_command(getattr(importlib.import_module(f"channels.commands.{module}"), attribute), name)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="convoflow", prog_name="flows")
@click.pass_context
def main(ctx: click.Context) -> None:
    """convoflow: WhatsApp conversations written as YAML.

    Start here: `flows demo` runs the payment conversation in this terminal on a local SQLite database
    and the built-in O'mari sandbox; `flows init DIR` starts a project of your own.
    """
    if ctx.invoked_subcommand != "init":  # a new project needs no settings; every other command reads them
        checked_settings()


if __name__ == "__main__":
    sys.exit(main())
