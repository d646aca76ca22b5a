import click
from click.testing import CliRunner

import cli


def test_help_lists_the_command_group():
    result = CliRunner().invoke(cli.main, ["--help"])
    assert result.exit_code == 0
    assert "convoflow" in result.output


def test_every_named_command_is_found_under_its_name():
    # cli.COMMANDS imports a command's module only when asked for: a wrong module or attribute shows here
    group = cli.main
    with click.Context(group) as ctx:
        for name in cli.COMMANDS:
            command = group.get_command(ctx, name)
            assert isinstance(command, click.Command), name
            assert command.name == name
    assert sorted(cli.COMMANDS) == group.list_commands(click.Context(group))


def test_help_lists_every_command_without_importing_them_first():
    result = CliRunner().invoke(cli.main, ["--help"])
    assert result.exit_code == 0
    for name in cli.COMMANDS:
        assert f"\n  {name} " in result.output, name
