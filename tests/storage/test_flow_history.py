"""`flows load --dry-run`, the load's impact report, `flows history`, `flows show`, `flows rollback` and
`flows list --json`, as an author runs them, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import cli
from engine.registry import registry
from storage import flowstore
from storage.models import Session
from storage_kit import say

VISITOR = """\
flow: visitor
triggers: [hello, hi]
title: Visitor book
steps:
  ask_name:
    save: name
    ask: What is your name?
    next: ask_town
  ask_town:
    ask: Which town are you in, {{ name }}?
    save: town
    next: bye
  bye:
    end: "Nice to meet you, {{ name }} from {{ town }}."
"""
RENAMED = VISITOR.replace("What is your name?", "Your name, please?")


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli.main, list(args), input=input)


@pytest.fixture
def env(db, monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", db.url)
    monkeypatch.chdir(tmp_path)
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "visitor.yaml").write_text(VISITOR)
    monkeypatch.setenv("FLOWS_DIR", str(flows))
    return flows


def session(contact_key: str) -> Session:
    from storage.models import Contact

    return Session.get(Session.contact == Contact.get(Contact.key == contact_key))


# ── flows load --dry-run and the impact report ──────────────────────────────────────────────────────


def test_dry_run_on_a_database_that_does_not_exist_says_new_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "visitor.yaml").write_text(VISITOR)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'live.db'}")
    result = run("load", "--dry-run", str(flows))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "visitor                  new        would become v1",
        "dry run: nothing was written",
    ]
    assert not (tmp_path / "live.db").exists()


def test_dry_run_shows_the_changed_step_and_who_waits_on_it_and_writes_nothing(env):
    assert run("load").exit_code == 0
    say("263771111111", "hello")  # waits at ask_name
    say("263772222222", "hi")  # waits at ask_name
    say("263773333333", "hi")
    say("263773333333", "Rudo")  # waits at ask_town, which does not change
    (env / "visitor.yaml").write_text(RENAMED)

    result = run("load", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "visitor                  changed    live v1, would become v2",
        "    ~ step ask_name",
        "        -ask: What is your name?",
        "        +ask: Your name, please?",
        "    2 active conversations wait on a step that changes or disappears: ask_name (v1): 2. "
        "They finish on the version they started with.",
        "dry run: nothing was written",
    ]
    assert [(r.name, r.version) for r in flowstore.latest_versions()] == [("visitor", 1)]

    plain = run("load")
    assert plain.exit_code == 0
    assert plain.stdout.splitlines()[0].split() == ["visitor", "v2", "updated"]
    assert plain.stdout.splitlines()[1:] == result.stdout.splitlines()[1:-1]
    assert [(r.name, r.version) for r in flowstore.latest_versions()] == [("visitor", 2)]


def test_a_removed_step_counts_its_waiting_conversations_and_unchanged_flows_say_so(env):
    run("load")
    say("263771111111", "hello")
    say("263771111111", "Rudo")  # waits at ask_town
    (env / "visitor.yaml").write_text(
        VISITOR.replace("next: ask_town", "next: bye")
        .replace("  ask_town:\n    ask: Which town are you in, {{ name }}?\n    save: town\n    next: bye\n", "")
        .replace(" from {{ town }}", "")
    )
    lines = run("load", "--dry-run").stdout.splitlines()
    assert "    - step ask_town (removed)" in lines
    assert "    ~ step ask_name" in lines and "    ~ step bye" in lines
    assert lines[-2].startswith(
        "    1 active conversation waits on a step that changes or disappears: ask_town (v1): 1."
    )
    run("load")
    assert run("load", "--dry-run").stdout.splitlines() == [
        "visitor                  unchanged  live v2",
        "dry run: nothing was written",
    ]


def test_dry_run_with_an_error_loads_nothing_and_says_where(env):
    run("load")
    (env / "visitor.yaml").write_text(VISITOR.replace("next: bye", "next: by"))
    result = run("load", "--dry-run")
    assert result.exit_code == 1
    assert "visitor.yaml:12:" in result.stdout and "nothing loaded" in result.stdout


# ── flows chat is a preview: it never publishes ───────────────────────────────────────────────────


def test_flows_chat_never_publishes_nor_touches_a_live_conversation(env, db):
    """A chat with an edited flow, as a contact who is mid-way through the live one, leaves the stored
    versions, `flows list` and that contact's conversation as they were.
    """
    from storage.db import open_database

    run("load")
    assert say("263771234567", "hello") == "What is your name?"
    listed = run("list", "--json").stdout
    before = {k: getattr(session("263771234567"), k) for k in ("flow", "flow_version", "step", "vars", "updated_at")}
    (env / "visitor.yaml").write_text(RENAMED)

    chat = run("chat", "--contact", "263771234567", input="hello\nRudo\n")
    assert chat.exit_code == 0, chat.output
    assert chat.output == "> hello\nYour name, please?\n\n> Rudo\nWhich town are you in, Rudo?\n\n"

    open_database(db.url)
    assert [(r.name, r.version) for r in flowstore.latest_versions()] == [("visitor", 1)]
    assert {k: getattr(session("263771234567"), k) for k in before} == before
    assert run("list", "--json").stdout == listed
    assert (env.parent / "convoflow-chat.db").exists()


# ── history, show, rollback ────────────────────────────────────────────────────────────────────────


def test_history_show_and_rollback(env):
    run("load")
    say("263771111111", "hello")  # on v1
    (env / "visitor.yaml").write_text(RENAMED)
    run("load")
    say("263772222222", "hello")  # on v2
    say("263773333333", "hello")

    lines = run("history", "visitor").stdout.splitlines()
    assert lines[0].split() == ["version", "loaded", "(UTC)", "active", "file"]
    assert [line.split()[0] for line in lines[1:]] == ["v1", "v2"]
    assert [line.split()[3] for line in lines[1:]] == ["1", "2"]
    assert lines[2].endswith("← live") and not lines[1].endswith("← live")

    assert run("show", "visitor").stdout == RENAMED
    assert run("show", "visitor", "--version", "1").stdout == VISITOR

    back = run("rollback", "visitor", "--to", "1")
    assert back.exit_code == 0, back.output
    assert back.stdout.strip() == (
        "visitor: v3 is live, with the content of v1. Conversations already running stay on their version."
    )
    assert flowstore.source("visitor", 3) == VISITOR
    assert session("263772222222").flow_version == 2  # running conversations stay on theirs
    assert say("263772222222", "Tino").startswith("Which town are you in, Tino?")
    assert say("263774444444", "hello") == "What is your name?"  # new ones get v1's content, as v3
    assert session("263774444444").flow_version == 3
    again = run("rollback", "visitor", "--to", "3")
    assert again.stdout.strip() == "visitor: v3 already has the content of v3; nothing changed"


def test_history_show_and_rollback_name_what_is_missing(env):
    run("load")
    missing = run("history", "greter")
    assert missing.exit_code == 1
    assert "no flow named 'greter' is stored (stored flows: visitor)" in missing.output
    assert (
        run("show", "visitor", "--version", "7").output.strip()
        == "Error: flow 'visitor' has no version 7 (it has v1 to v1)"
    )
    bad = run("rollback", "visitor", "--to", "4")
    assert bad.exit_code == 1 and "has no version 4" in bad.output
    assert run("rollback", "visitor").exit_code == 2  # --to is required


def test_rollback_refuses_a_version_that_no_longer_loads(env, monkeypatch):
    (env / "visitor.yaml").write_text(
        VISITOR.replace(
            "  bye:\n", "  note:\n    action: core.log\n    with: {message: hi}\n    next: bye\n  bye:\n"
        ).replace("next: bye\n  note", "next: note\n  note")
    )
    run("load")
    (env / "visitor.yaml").write_text(VISITOR)
    run("load")
    monkeypatch.setattr(registry, "_specs", {k: v for k, v in registry._specs.items() if k != "core.log"})
    result = run("rollback", "visitor", "--to", "1")
    assert result.exit_code == 1
    assert "unknown action 'core.log'" in result.output
    assert "version 1 of 'visitor' no longer loads: nothing changed" in result.output
    assert [r.version for r in flowstore.latest_versions()] == [2]


def test_list_json_gives_flow_live_version_and_active_conversations(env):
    assert json.loads(run("list", "--json").stdout) == []
    run("load")
    say("263771111111", "hello")
    (env / "visitor.yaml").write_text(RENAMED)
    run("load")
    say("263772222222", "hello")
    say("263773333333", "hello")
    listed = json.loads(run("list", "--json").stdout)
    assert [{k: row[k] for k in ("flow", "version", "active", "active_by_version", "triggers")} for row in listed] == [
        {
            "flow": "visitor",
            "version": 2,
            "active": 3,
            "active_by_version": {"v1": 1, "v2": 2},
            "triggers": ["hello", "hi"],
        }
    ]
