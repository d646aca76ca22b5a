"""What every command shares: the one error that ends a command (its line printed once, its exit code), the
checked settings, and the database opened with one handler for what can go wrong with it.

Only click is imported here at module level: `flows --help` must stay fast.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

import click

if TYPE_CHECKING:
    from engine.registry import ActionRegistry


class CliError(click.ClickException):
    """A command failed: click prints `flows: <message>` once on stderr (nothing when the command already
    printed everything, e.g. validate's problems) and exits with exit_code (1: invalid input or a failed check).
    """

    def __init__(self, message: str = "", exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        if self.message:
            click.echo(f"flows: {self.message}", file=file, err=file is None)


def checked_settings():
    """The settings from the environment and .env, checked; a bad one is a CliError naming it."""
    from storage.settings import Settings, SettingsError

    try:
        return Settings.from_env()
    except SettingsError as e:
        raise CliError(f"{e} (see `flows config` and .env.example)") from None


def load_actions(lazy: bool = False) -> ActionRegistry:
    """Register every action (actions.load_all) and return the registry they are in; a broken action module
    or plug-in is one line saying which. lazy=True: the shipped action modules and the plug-ins are left for
    the registry to import when a name is looked up (run those lookups inside plugin_errors)."""
    import actions

    try:
        if lazy:
            return actions.load_all(defer=True)
        registry = actions.load_all()
        registry.load_entry_points()
        return registry
    except Exception as e:
        raise _not_loaded(e) from None


@contextmanager
def plugin_errors() -> Iterator[None]:
    """A plug-in or deferred action module that fails to load at a lookup (the registry's RegistryError) is the
    same one line."""
    from engine.registry import RegistryError

    try:
        yield
    except RegistryError as e:
        raise _not_loaded(e) from None


def _not_loaded(e: Exception) -> click.ClickException:
    return click.ClickException(f"could not load the actions: {type(e).__name__}: {e}")


@contextmanager
def database_errors() -> Iterator[None]:
    """Whatever goes wrong opening, checking or upgrading DATABASE_URL becomes one CliError line: a bad setting
    or schema says itself; anything else (an unreachable server, an unwritable file) says the first line of
    its reason, never the URL (it may hold a password).
    """
    from storage.migrations import SchemaError
    from storage.settings import SettingsError

    try:
        yield
    except CliError:
        raise
    except (SettingsError, SchemaError, ValueError) as e:  # ValueError: a URL that is neither sqlite nor postgres
        raise CliError(str(e)) from None
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CliError(f"cannot use the database ({reason}): check DATABASE_URL") from None


def database(upgrade: bool = False, url: str | None = None, **options) -> list[str]:
    """Open DATABASE_URL (or url, with open_database's options), then upgrade its schema (upgrade=True:
    returns the migrations applied) or check it is current. Any failure: a CliError (database_errors).
    """
    from storage.db import open_database
    from storage.migrations import check
    from storage.migrations import upgrade as upgrade_schema
    from storage.settings import Settings

    with database_errors():
        db = open_database(url or Settings.from_env().database_url, **options)
        if upgrade:
            return upgrade_schema(db)
        check(db)
        return []
