from click.testing import CliRunner

import cli


def test_help_lists_the_command_group():
    result = CliRunner().invoke(cli.main, ["--help"])
    assert result.exit_code == 0
    assert "convoflow" in result.output
