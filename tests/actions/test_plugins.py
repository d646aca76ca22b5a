"""Plug-in actions (the `convoflow.actions` entry-point group) are imported the first time the registry is
asked for a name it does not know, or at once by load_entry_points (serve and worker): a flow that names only
shipped actions is checked without reading every installed package's entry points (issue 14.4). Each plug-in here
is a real installed distribution: a *.dist-info folder with its entry_points.txt on sys.path."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest

from engine.registry import ActionRegistry, RegistryError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def install_plugin(folder, module: str, body: str, group: str = "convoflow.actions") -> None:
    """A distribution named after module whose entry point in group names that module, written into folder."""
    (folder / f"{module}.py").write_text(body, encoding="utf-8")
    info = folder / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[{group}]\n{module} = {module}\n", encoding="utf-8")


PING = """\
from cf_plugin_target import registry

@registry.action("acme.ping", outcomes=["pong"])
def ping(ctx, params):
    return None
"""


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """A registry with one shipped action and a plug-in group of its own, the plug-ins' folder on sys.path."""
    registry = ActionRegistry(plugins="cf_test.actions")
    registry.action("core.echo")(lambda ctx, params: None)
    monkeypatch.setitem(sys.modules, "cf_plugin_target", types.SimpleNamespace(registry=registry))
    monkeypatch.syspath_prepend(str(tmp_path))
    return registry


def test_a_shipped_name_is_found_without_importing_the_plugins(fresh, tmp_path, monkeypatch):
    install_plugin(tmp_path, "cf_acme_one", PING, group="cf_test.actions")
    monkeypatch.delitem(sys.modules, "cf_acme_one", raising=False)
    assert fresh.get("core.echo").name == "core.echo"
    assert "cf_acme_one" not in sys.modules
    assert fresh.get("acme.ping").outcomes == ("pong",)  # not shipped: the plug-ins are imported, it is there
    assert "cf_acme_one" in sys.modules
    assert fresh.get("acme.pnig") is None and fresh.suggest("acme.pnig") == "acme.ping"
    assert fresh.names() == ["acme.ping", "core.echo"]


def test_names_and_suggestions_include_the_plugins(fresh, tmp_path, monkeypatch):
    install_plugin(tmp_path, "cf_acme_two", PING.replace("acme.ping", "acme.tick"), group="cf_test.actions")
    monkeypatch.delitem(sys.modules, "cf_acme_two", raising=False)
    assert fresh.suggest("acme.tik") == "acme.tick"
    assert "acme.tick" in fresh and fresh.names() == ["acme.tick", "core.echo"]


def test_a_broken_plugin_fails_every_lookup_that_needs_it_and_never_reads_as_unknown(fresh, tmp_path, monkeypatch):
    install_plugin(tmp_path, "cf_acme_broken", "import cf_no_such_module\n", group="cf_test.actions")
    monkeypatch.delitem(sys.modules, "cf_acme_broken", raising=False)
    assert fresh.get("core.echo") is not None  # shipped: no plug-in is needed to find it
    for _ in range(2):
        with pytest.raises(RegistryError, match=r"plug-in 'cf_acme_broken' \(cf_acme_broken\) could not be loaded"):
            fresh.get("acme.ping")
    with pytest.raises(RegistryError):
        fresh.names()


def test_a_registry_without_a_group_imports_no_plugins(tmp_path, monkeypatch):
    install_plugin(tmp_path, "cf_acme_three", "raise SystemExit('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = ActionRegistry()
    assert registry.get("acme.ping") is None and registry.names() == []


FLOW = """\
flow: plug
triggers: [plug]
steps:
  ping:
    action: {action}
    with: {{message: hi}}
    on: {{{outcome}: bye}}
  bye:
    end: Bye.
"""


def _validate(tmp_path, action: str, outcome: str, plugin: str) -> subprocess.CompletedProcess:
    """`python -m cli validate` in a new process (whose registry has read no entry points yet), with a
    plug-in distribution installed on its PYTHONPATH."""
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site, "cf_acme_cli", plugin)
    flow = tmp_path / "plug.yaml"
    flow.write_text(FLOW.format(action=action, outcome=outcome), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), ROOT]), "DATABASE_URL": "sqlite:///x.db"}
    return subprocess.run(
        [sys.executable, "-m", "cli", "validate", str(flow)], cwd=tmp_path, env=env, capture_output=True, text=True
    )


def test_flows_validate_finds_a_plugin_action(tmp_path):
    plugin = PING.replace("from cf_plugin_target import registry", "from engine.registry import registry")
    done = _validate(tmp_path, "acme.ping", "pong", plugin)
    assert (done.returncode, done.stdout.strip()) == (0, f"{tmp_path / 'plug.yaml'}: ok"), done.stderr


def test_flows_validate_says_in_one_line_that_a_plugin_it_needs_is_broken(tmp_path):
    done = _validate(tmp_path, "acme.ping", "pong", "import cf_no_such_module\n")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "Error: could not load the actions: RegistryError: plug-in 'cf_acme_cli' (cf_acme_cli) could not be "
        "loaded: ModuleNotFoundError: No module named 'cf_no_such_module'\n"
    )


def test_flows_validate_checks_a_flow_of_shipped_actions_without_the_plugins(tmp_path):
    done = _validate(tmp_path, "core.log", "ok", "import cf_no_such_module\n")
    assert done.returncode == 0, done.stdout + done.stderr
