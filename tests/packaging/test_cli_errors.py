"""Issue 12.5: every command fails through one path: one `flows: …` line on stderr, exit 1, and a database that
cannot be used is said the same way by every command (first line of the reason, never the URL's password)."""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner

import cli

WHATSAPP = {
    "WHATSAPP_APP_SECRET": "app-secret-91b2",
    "WHATSAPP_VERIFY_TOKEN": "verify-me-0c4d",
    "WHATSAPP_ACCESS_TOKEN": "EAAG-token-55e1",
    "WHATSAPP_PHONE_NUMBER_ID": "1234567890",
    "OMARI_MERCHANT_KEY": "",
    "OMARI_API_BASE_URL": "",
    "DATABASE_WAIT": "1",
}


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "args",
    [
        ["db", "status"],
        ["db", "upgrade"],
        ["bookings", "list"],
        ["payments", "show", "x"],
        ["history", "menu"],
        ["dead-letters"],
        ["load", "--dry-run", "flows"],
        ["serve", "--sandbox"],
        ["worker", "--sandbox"],
    ],
)
def test_an_unreachable_database_is_one_line_from_every_command(args):
    url = f"postgresql://convoflow:pg-pass-3e8d@127.0.0.1:{closed_port()}/convoflow"
    result = CliRunner().invoke(cli.main, args, env={**WHATSAPP, "DATABASE_URL": url}, catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith('flows: cannot use the database (connection to server at "127.0.0.1"')
    assert result.stderr.endswith("): check DATABASE_URL\n")
    assert "pg-pass-3e8d" not in result.output


def test_a_failed_command_prints_its_line_once_and_exits_1(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'flows.db'}"}
    assert CliRunner().invoke(cli.main, ["db", "upgrade"], env=env).exit_code == 0
    result = CliRunner().invoke(cli.main, ["bookings", "show", " bk-404 "], env=env, catch_exceptions=False)
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", "flows: no booking with reference 'bk-404'\n")


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_broken_action_module_stops_serve_and_worker_in_one_line(command, tmp_path, monkeypatch):
    import actions
    from engine.registry import RegistryError

    def broken() -> None:
        raise RegistryError("action 'omari.initiate' is registered twice")

    monkeypatch.setattr(actions, "load_all", broken)
    env = {**WHATSAPP, "DATABASE_URL": f"sqlite:///{tmp_path / 'flows.db'}"}
    result = CliRunner().invoke(cli.main, [command, "--sandbox"], env=env, catch_exceptions=False)
    assert (result.exit_code, result.output) == (
        1,
        "Error: could not load the actions: RegistryError: action 'omari.initiate' is registered twice\n",
    )
