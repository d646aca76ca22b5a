"""`flows config`, `.env.example`, settings checked at start, and `flows init` (issue 13.2, 13.3)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import cli
from storage.settings import Settings, env_example

REPO = Path(__file__).resolve().parents[2]
SECRETS = {
    "OMARI_MERCHANT_KEY": "mk-live-7f3a9c",
    "WHATSAPP_ACCESS_TOKEN": "EAAG-token-55e1",
    "WHATSAPP_APP_SECRET": "app-secret-91b2",
    "WHATSAPP_VERIFY_TOKEN": "verify-me-0c4d",
}


def run(*args: str):
    return CliRunner().invoke(cli.main, list(args))


@pytest.fixture
def clean(monkeypatch, tmp_path):
    """No settings of the developer's, and a working directory without a .env."""
    for f in dataclasses.fields(Settings):
        monkeypatch.delenv(f.metadata["env"], raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_repository_env_example_is_current():
    written = (REPO / ".env.example").read_text(encoding="utf-8")
    assert written == env_example(), (
        ".env.example is out of date with storage/settings.py: regenerate it with "
        "`python -m cli config --env-example > .env.example`"
    )


def test_env_example_lists_every_setting_with_its_help_and_default_and_no_value():
    text = env_example()
    for f in dataclasses.fields(Settings):
        line = next(x for x in text.splitlines() if x.startswith(f"{f.metadata['env']}="))
        comment = text.splitlines()[text.splitlines().index(line) - 1]
        assert comment.startswith("# ") and f.metadata["help"] in comment
        assert line == f"{f.metadata['env']}="  # copying the file pins nothing
        if f.default is not None:
            assert f"default: {f.default}" in comment


def test_config_shows_the_effective_settings_with_secrets_masked(clean, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    (clean / ".env").write_text("OMARI_CHANNEL=pos\nLOG_FORMAT=json\n")
    for args in (["config"], ["config", "--json"]):
        shown = run(*args)
        assert shown.exit_code == 0, shown.output
        for value in SECRETS.values():
            assert value not in shown.output
    assert "OMARI_CHANNEL=POS" in run("config").output
    assert "WHATSAPP_APP_SECRET=********" in run("config").output
    assert '"LOG_FORMAT": "json"' in run("config", "--json").output


@pytest.mark.parametrize("command", [["list"], ["validate"], ["config"], ["bookings", "list"]])
def test_a_bad_setting_stops_every_command_with_its_name_and_no_traceback(clean, monkeypatch, command):
    monkeypatch.setenv("LOG_LEVEL", "LOUD")
    done = run(*command)
    assert done.exit_code == 1
    assert done.output == (
        "flows: LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR (got 'LOUD') "
        "(see `flows config` and .env.example)\n"
    )


def test_a_metrics_folder_that_does_not_exist_is_named(clean, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(clean / "nowhere"))
    done = run("config")
    assert done.exit_code == 1
    assert done.output.startswith(
        f"flows: PROMETHEUS_MULTIPROC_DIR must be an existing folder (got '{clean / 'nowhere'}')"
    )


def test_init_makes_a_project_that_validates_at_once(clean, monkeypatch):
    made = run("init", "shop")
    assert made.exit_code == 0, made.output
    shop = clean / "shop"
    assert sorted(str(p.relative_to(shop)) for p in shop.rglob("*") if p.is_file()) == [
        ".env.example",
        "README.md",
        "flows/main_menu.yaml",
        "flows/tests/tour_enquiry.test.yaml",
        "flows/tour_enquiry.yaml",
    ]
    assert (shop / ".env.example").read_text(encoding="utf-8") == env_example()
    assert len((shop / "README.md").read_text(encoding="utf-8").strip().splitlines()) == 5
    assert "# " in (shop / "flows" / "tour_enquiry.yaml").read_text(encoding="utf-8")
    tests = yaml.safe_load((shop / "flows" / "tests" / "tour_enquiry.test.yaml").read_text(encoding="utf-8"))
    assert tests["tests"][0]["conversation"][0] == {"user": "hi"}
    monkeypatch.chdir(shop)
    checked = run("validate")
    assert checked.exit_code == 0, checked.output
    assert checked.output == "flows/main_menu.yaml: ok\nflows/tour_enquiry.yaml: ok\n"
    tested = run("test", "--coverage")
    assert tested.exit_code == 0, tested.output
    assert "2 tests: 2 passed, 0 failed" in tested.output and "no test visits" not in tested.output


def test_init_never_overwrites(clean):
    (clean / "shop").mkdir()
    (clean / "shop" / "README.md").write_text("mine\n")
    done = run("init", "shop")
    assert done.exit_code == 1
    assert "README.md" in done.output and "nothing written" in done.output
    assert (clean / "shop" / "README.md").read_text() == "mine\n"
    assert not (clean / "shop" / "flows").exists()


def test_init_where_it_cannot_write_says_so_in_one_line(clean):
    (clean / "shop").mkdir()
    (clean / "shop" / "flows").write_text("a file where the folder goes\n")
    done = run("init", "shop")
    assert done.exit_code == 1
    assert done.output.startswith("flows: cannot write in shop: ") and done.output.count("\n") == 1
