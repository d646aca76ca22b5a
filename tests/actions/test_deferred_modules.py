"""Action modules the registry imports when a name of their namespace is first looked up (registry.defer):
`flows validate` defers the shipped ones, so a flow that names only `core.*` is checked without the payment
gateways' modules (issue 14.4). Each module here is a real file on sys.path, imported by its name."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest

from engine.registry import ActionRegistry, RegistryError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def registering(*names: str) -> str:
    """A module's text that registers names (each with outcome ok) in the test's registry."""
    lines = ["from cf_deferred_target import registry", ""]
    for name in names:
        lines += [f"registry.action({name!r})(lambda ctx, params: None)"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """A registry whose modules cf_def_acme (acme.*) and cf_def_shop (shop.*) are deferred, written in tmp_path."""
    registry = ActionRegistry()
    monkeypatch.setitem(sys.modules, "cf_deferred_target", types.SimpleNamespace(registry=registry))
    monkeypatch.syspath_prepend(str(tmp_path))
    for module in ("cf_def_acme", "cf_def_shop"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    registry.defer({"acme": "cf_def_acme", "shop": "cf_def_shop"})
    return registry


def test_a_name_imports_only_its_namespace_module(fresh, tmp_path):
    (tmp_path / "cf_def_acme.py").write_text(registering("acme.ping"), encoding="utf-8")
    (tmp_path / "cf_def_shop.py").write_text(registering("shop.buy"), encoding="utf-8")
    assert fresh.get("acme.ping").outcomes == ("ok",)
    assert "cf_def_acme" in sys.modules and "cf_def_shop" not in sys.modules
    assert fresh.names() == ["acme.ping", "shop.buy"]  # every name: every deferred module is imported
    assert "cf_def_shop" in sys.modules


def test_a_name_registered_outside_its_modules_namespace_is_still_found(fresh, tmp_path):
    (tmp_path / "cf_def_acme.py").write_text(registering("acme.ping"), encoding="utf-8")
    (tmp_path / "cf_def_shop.py").write_text(registering("shop.buy", "acme.pong"), encoding="utf-8")
    assert fresh.get("acme.pong") is not None
    assert fresh.get("acme.pnog") is None and fresh.suggest("acme.pnog") == "acme.pong"


def test_an_unknown_name_imports_every_deferred_module_before_it_is_unknown(fresh, tmp_path):
    (tmp_path / "cf_def_acme.py").write_text(registering("acme.ping"), encoding="utf-8")
    (tmp_path / "cf_def_shop.py").write_text(registering("shop.buy"), encoding="utf-8")
    assert fresh.get("other.thing") is None
    assert {"cf_def_acme", "cf_def_shop"} <= set(sys.modules)


def test_a_broken_module_fails_every_lookup_that_needs_it_and_never_reads_as_unknown(fresh, tmp_path):
    (tmp_path / "cf_def_acme.py").write_text("import cf_no_such_module\n", encoding="utf-8")
    (tmp_path / "cf_def_shop.py").write_text(registering("shop.buy"), encoding="utf-8")
    assert fresh.get("shop.buy") is not None  # its own module: the broken one is not needed
    for _ in range(2):
        with pytest.raises(RegistryError, match=r"action module 'cf_def_acme' could not be loaded: ModuleNotFound"):
            fresh.get("acme.ping")
    with pytest.raises(RegistryError):
        fresh.names()


def _in_new_process(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def test_the_shipped_names_are_the_same_deferred_and_at_once():
    listing = "import actions\nprint(' '.join(actions.load_all({}).names()))\n"
    deferred = _in_new_process(listing.format("defer=True"))
    assert deferred == _in_new_process(listing.format("")) and "omari.initiate" in deferred


FLOW = """\
flow: shipped
triggers: [shipped]
steps:
  note:
    action: {action}
    with: {{{params}: hi}}
    on: {{{outcome}: bye}}
  bye:
    end: Bye.
"""


def _validate(tmp_path, action: str, params: str, outcome: str) -> list[str]:
    """What `flows validate` prints in a new process, then the action modules and logging it imported."""
    flow = tmp_path / "shipped.yaml"
    flow.write_text(FLOW.format(action=action, params=params, outcome=outcome), encoding="utf-8")
    return _in_new_process(
        "import sys, cli\n"
        f"sys.argv = ['flows', 'validate', {str(flow)!r}]\n"
        "try:\n    cli.main()\nexcept SystemExit as e:\n    print('exit', e.code)\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith(('actions.', 'logging')))))\n"
    )


def test_flows_validate_imports_only_the_module_of_the_actions_a_flow_names(tmp_path):
    assert _validate(tmp_path, "core.log", "message", "ok")[-3:] == ["exit", "0", "actions.core"]
    out = _validate(tmp_path, "omari.cancel", "reference", "cancelled")
    assert "warning[action.unhandled_outcome]" in out and "error[" not in " ".join(out)  # found: its outcomes known
    assert out[out.index("exit") : out.index("exit") + 2] == ["exit", "0"]
    assert "actions.omari" in out and "actions.paynow" not in out


def test_flows_validate_suggests_from_every_shipped_action(tmp_path):
    out = " ".join(_validate(tmp_path, "core.lgo", "message", "ok"))
    assert "'core.lgo'" in out and "'core.log'" in out and "exit 1" in out
    assert {"actions.core", "actions.omari", "actions.paynow", "actions.booking"} <= set(out.split())
