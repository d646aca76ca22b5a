"""`flows init` and `flows config`: a new project, the effective settings."""

from __future__ import annotations

import click

from .base import CliError, checked_settings


@click.command()
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
        raise CliError(f"{directory} already has {', '.join(clashes)}: nothing written")
    try:
        for name, text in sorted(files.items()):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_text(text, encoding="utf-8")
    except OSError as e:  # a read-only place, a file where a folder should be: one line, no traceback
        raise CliError(f"cannot write in {directory}: {e.strerror or e}") from None
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


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object, variable: value (secrets masked).")
@click.option(
    "--env-example",
    is_flag=True,
    help="Print .env.example instead: every setting, its help and default (regenerate the "
    "repository's with `flows config --env-example > .env.example`).",
)
def config(as_json: bool, env_example: bool) -> None:
    """The effective settings (environment, then .env, then defaults), secrets masked."""
    import json

    from storage.settings import env_example as example_text

    if env_example:
        click.echo(example_text(), nl=False)
        return
    described = list(checked_settings().described())
    if as_json:
        click.echo(json.dumps({name: shown or None for name, shown, _ in described}, indent=2))
        return
    for name, shown, help_ in described:
        click.echo(f"{name + '=' + shown:<50} # {help_}")
