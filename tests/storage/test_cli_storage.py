"""`flows db`, `flows load`, `flows list`, `flows bookings` as a user runs them: output lines and exit codes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import cli
from storage import flowstore
from storage.migrations import MIGRATIONS
from storage_kit import say

GREETER = """\
flow: greeter
title: Greeter
triggers: [hello, hi]
steps:
  ask_name:
    ask: What is your name?
    save: name
    next: bye
  bye:
    end: "Nice to meet you, {{ name }}."
"""

SURVEY = """\
flow: survey
title: Survey
triggers: [survey]
steps:
  ask_score:
    ask: Score us from 1 to 5.
    expect: {integer: {min: 1, max: 5}}
    save: score
    next: thanks
  thanks:
    end: Thank you!
"""


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli.main, list(args), input=input)


@pytest.fixture
def env(db, monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", db.url)
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "greeter.yaml").write_text(GREETER)
    (flows / "survey.yaml").write_text(SURVEY)
    monkeypatch.setenv("FLOWS_DIR", str(flows))
    return flows


def test_db_upgrade_creates_the_schema_once_and_status_shows_it(blank_db, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", blank_db.url)
    status = run("db", "status")
    assert status.exit_code == 0
    assert "0001_initial" in status.stdout and "pending" in status.stdout
    assert "run `flows db upgrade`" in status.stdout

    first = run("db", "upgrade")
    assert first.exit_code == 0
    assert first.stdout.splitlines() == [f"applied {m.name}" for m in MIGRATIONS]
    again = run("db", "upgrade")
    assert again.exit_code == 0
    assert again.stdout.strip() == f"the schema is up to date ({len(MIGRATIONS)} migrations applied)"
    lines = run("db", "status").stdout.splitlines()
    assert len(lines) == len(MIGRATIONS) and all(" applied " in line for line in lines)


def test_commands_on_a_database_without_schema_say_to_upgrade(blank_db, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", blank_db.url)
    for args in (["list"], ["bookings", "list"], ["bookings", "show", "BK-1"]):
        result = run(*args)
        assert result.exit_code == 1, args
        assert "run `flows db upgrade`" in result.stderr


def test_load_stores_new_then_updated_and_unchanged_versions(env):
    first = run("load")
    assert first.exit_code == 0, first.output
    assert [line.split() for line in first.stdout.splitlines()] == [["greeter", "v1", "new"], ["survey", "v1", "new"]]

    (env / "greeter.yaml").write_text(GREETER.replace("What is your name?", "Your name, please?"))
    second = run("load", str(env))
    # The flow lines; the indented lines under them say what changed (tests/storage/test_flow_history.py).
    assert [line.split() for line in second.stdout.splitlines() if not line.startswith(" ")] == [
        ["greeter", "v2", "updated"],
        ["survey", "v1", "unchanged"],
    ]
    assert flowstore.source("greeter", 1) == GREETER


def test_load_with_an_error_anywhere_loads_nothing_and_says_where(env):
    (env / "survey.yaml").write_text(SURVEY.replace("next: thanks", "next: thank"))
    result = run("load")
    assert result.exit_code == 1
    assert "survey.yaml:" in result.stdout and "'thank'" in result.stdout
    assert "nothing loaded" in result.stdout
    assert flowstore.latest_versions() == []


def test_list_shows_latest_version_triggers_and_active_conversations_per_version(env):
    assert run("list").stdout.strip() == "no flows loaded: run `flows load`"
    run("load")
    assert "What is your name?" in say("263771234567", "hello")
    (env / "greeter.yaml").write_text(GREETER.replace("What is your name?", "Your name, please?"))
    run("load")
    say("263779999999", "hi")

    lines = run("list").stdout.splitlines()
    assert lines[0].split() == ["greeter", "v2", "triggers:", "hello,", "hi", "active:", "v1:", "1,", "v2:", "1"]
    assert lines[1].split() == ["survey", "v1", "triggers:", "survey", "active:", "none"]


def test_chat_picks_up_a_conversation_left_earlier(env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("chat", "--contact", "263771234567", input="hello\n").exit_code == 0
    again = run("chat", "--contact", "263771234567", input="Rudo\n")
    assert "Nice to meet you, Rudo." in again.stdout


def test_bookings_add_list_show(env):
    added = run(
        "bookings",
        "add",
        "BK-SLYKER-TECH-20251023",
        "--customer",
        "Tendai Moyo",
        "--tour",
        "Victoria Falls",
        "--total",
        "300",
        "--paid",
        "50.5",
    )
    assert added.exit_code == 0, added.output
    assert "BK-SLYKER-TECH-20251023" in added.stdout and "PARTIAL" in added.stdout

    shown = run("bookings", "show", "  bk-slyker-tech-20251023 ", "--json")
    assert shown.exit_code == 0
    assert json.loads(shown.stdout) == {
        "reference": "BK-SLYKER-TECH-20251023",
        "customer": "Tendai Moyo",
        "tour": "Victoria Falls",
        "currency": "USD",
        "total_amount": "300.00",
        "amount_paid": "50.50",
        "balance_due": "249.50",
        "payment_status": "PARTIAL",
    }
    text = run("bookings", "show", "BK-SLYKER-TECH-20251023").stdout
    assert "balance due:     249.50" in text

    listed = run("bookings", "list").stdout.splitlines()
    assert len(listed) == 1 and listed[0].startswith("BK-SLYKER-TECH-20251023")


@pytest.mark.parametrize(
    "args,message",
    [
        (["bookings", "show", "BK-NOPE"], "no booking with reference 'BK-NOPE'"),
        (["bookings", "add", "BK-1", "--customer", "A", "--tour", "T", "--total", "12.345"], "more than two decimals"),
        (
            ["bookings", "add", "BK-1", "--customer", "A", "--tour", "T", "--total", "10", "--paid", "20"],
            "paid 20.00 is more than the total 10.00",
        ),
    ],
)
def test_bookings_refusals_exit_1_with_a_clear_message(env, args, message):
    result = run(*args)
    assert result.exit_code == 1
    assert message in result.stderr.replace("at most two decimals", "more than two decimals")


def test_bookings_add_twice_is_refused(env):
    run("bookings", "add", "BK-1", "--customer", "A", "--tour", "T", "--total", "10")
    again = run("bookings", "add", "bk-1", "--customer", "B", "--tour", "T", "--total", "10")
    assert again.exit_code == 1 and "already exists" in again.stderr


def test_bookings_import_is_all_or_nothing_with_bad_rows_by_line(env, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "reference,customer,tour,total,paid,currency\nBK-1,A,T,100,0,USD\nBK-2,B,T,abc,0,USD\nBK-3,C,T,100,0,EUR\n"
    )
    result = run("bookings", "import", str(bad))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{bad}:3: 'abc' is not an amount like 300 or 300.00 (at most two decimals, not negative)",
        f"{bad}:4: currency 'EUR' is not one of USD, ZWG",
        f"{bad}: 2 bad row(s): nothing imported",
    ]
    assert run("bookings", "list").stdout.strip() == "no bookings"

    good = tmp_path / "good.csv"
    good.write_text("reference,customer,tour,total,paid,currency\nBK-1,A,T,100,0,USD\nBK-2,B,T,200,200,ZWG\n")
    imported = run("bookings", "import", str(good))
    assert imported.exit_code == 0 and imported.stdout.strip() == f"imported 2 bookings from {good}"
    assert [line.split()[:2] for line in run("bookings", "list").stdout.splitlines()] == [
        ["BK-1", "UNPAID"],
        ["BK-2", "PAID"],
    ]
    assert [line.split()[:2] for line in run("bookings", "list", "--status", "paid").stdout.splitlines()] == [
        ["BK-2", "PAID"]
    ]
