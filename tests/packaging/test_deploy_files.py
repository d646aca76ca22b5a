"""The container and service files (issue 13.4, 13.8). Docker is not run here: these check what can be
checked without it — the YAML, the commands each container runs (parsed by the real `flows` command), the
non-root user, the health check, and that the systemd unit in the guide is one systemd can read."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import click
import pytest
import yaml

import cli

REPO = Path(__file__).resolve().parents[2]


def parses_as_flows_command(args: list[str]) -> None:
    """Raise click.UsageError unless `args` ("flows", sub-command…, options) is a line `flows` accepts."""
    assert args[0] == "flows", args
    command, tokens = cli.main, list(args[1:])
    parent = click.Context(cli.main, info_name="flows")
    while isinstance(command, click.Group):
        name = tokens.pop(0) if tokens else ""
        sub = command.get_command(parent, name)
        if sub is None:
            raise click.UsageError(f"no command '{name}'")
        parent, command = click.Context(sub, info_name=name, parent=parent), sub
    command.make_context(parent.info_name, tokens, parent=parent.parent)


def compose() -> dict:
    return yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8"))


def flows_lines(command: list[str]) -> list[list[str]]:
    if command[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in command[2].split("&&")]
    return [command]


def test_compose_runs_postgres_migrations_once_then_serve_and_scalable_workers():
    services = compose()["services"]
    assert set(services) == {"db", "migrate", "serve", "worker"}
    assert services["db"]["image"].startswith("postgres:")
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert services["migrate"]["restart"] == "no"
    for name in ("serve", "worker"):
        assert services[name]["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
        assert services[name]["environment"]["DATABASE_URL"].startswith("postgresql://convoflow:")
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]  # --scale worker=N
    assert [flows_lines(services[n]["command"]) for n in ("migrate", "serve", "worker")] == [
        [["flows", "db", "upgrade"], ["flows", "load"]],
        [["flows", "serve", "--host", "0.0.0.0", "--port", "8080", "--workers", "2"]],
        [["flows", "worker", "--workers", "2"]],
    ]


@pytest.mark.parametrize("service", ["migrate", "serve", "worker"])
def test_each_container_command_is_one_flows_accepts(service):
    for line in flows_lines(compose()["services"][service]["command"]):
        parses_as_flows_command(line)


def test_a_wrong_command_would_be_caught():
    with pytest.raises(click.UsageError):
        parses_as_flows_command(["flows", "serve", "--threads", "2"])
    with pytest.raises(click.UsageError):
        parses_as_flows_command(["flows", "db", "migrate"])


def test_dockerfile_slim_non_root_with_a_healthcheck_on_healthz():
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert bases and all(re.fullmatch(r"python:3\.\d+-slim", base) for base in bases)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*http://127\.0\.0\.1:8080/healthz", text, re.M)
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M).group(1)
    parses_as_flows_command(yaml.safe_load(cmd))
    assert ".env" in (REPO / ".dockerignore").read_text(encoding="utf-8").split()


def test_the_systemd_unit_in_the_guide_has_no_comment_after_a_value():
    guide = (REPO / "docs" / "deploying.md").read_text(encoding="utf-8")
    unit = guide[guide.index("[Service]") :]
    unit = unit[: unit.index("[Install]")]
    settings = [line.strip() for line in unit.splitlines() if "=" in line and not line.strip().startswith("#")]
    assert settings, "no systemd [Service] settings found in docs/deploying.md"
    for line in settings:
        assert "#" not in line, f"systemd reads everything after '=' as the value, a '#' included: {line}"
    working = next(line for line in settings if line.startswith("WorkingDirectory="))
    assert working == "WorkingDirectory=/srv/convoflow"


def test_compose_config_accepts_the_file_where_compose_is_installed(tmp_path):
    """`docker compose config` (or docker-compose) checks the file against the Compose specification without
    a Docker daemon. Skipped where neither is installed."""
    if shutil.which("docker-compose"):
        command = ["docker-compose"]
    elif (
        shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        command = ["docker", "compose"]
    else:
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    for name in ("compose.yaml", "Dockerfile", ".env.example"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / ".env").write_text((REPO / ".env.example").read_text() + "POSTGRES_PASSWORD=only-for-this-test\n")
    done = subprocess.run([*command, "config"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "postgresql://convoflow:only-for-this-test@db:5432/convoflow" in done.stdout
