"""`--json` for scripts on `flows list`, `bookings list`, `db status`; `flows validate --format sarif`
(issue 13.7). Each is parsed as JSON and checked against what the text listing says."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

import cli

REPO = Path(__file__).resolve().parents[2]
BROKEN = REPO / "tests" / "engine" / "broken"


def run(*args: str):
    return CliRunner().invoke(cli.main, list(args))


def test_db_status_json(blank_db, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", blank_db.url)
    pending = json.loads(run("db", "status", "--json").stdout)
    assert pending and all(row["applied_at"] is None for row in pending)
    assert pending[0]["name"] == "0001_initial" and pending[0]["description"]
    assert run("db", "upgrade").exit_code == 0
    applied = json.loads(run("db", "status", "--json").stdout)
    assert [row["name"] for row in applied] == [row["name"] for row in pending]
    assert all(row["applied_at"].endswith("Z") for row in applied)


def test_flows_list_json(db, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db.url)
    assert json.loads(run("list", "--json").stdout) == []
    assert run("load", str(REPO / "flows")).exit_code == 0
    listed = {item["flow"]: item for item in json.loads(run("list", "--json").stdout)}
    assert sorted(listed) == ["main_menu", "omari_payment", "paynow_payment"]
    assert listed["main_menu"]["version"] == 1 and "menu" in listed["main_menu"]["triggers"]
    assert listed["omari_payment"]["active"] == 0 and listed["omari_payment"]["active_by_version"] == {}


def test_bookings_list_json(db, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db.url)
    assert json.loads(run("bookings", "list", "--json").stdout) == []
    assert (
        run(
            "bookings", "add", "BK-2", "--customer", "Ann", "--tour", "Hwange", "--total", "300", "--paid", "50"
        ).exit_code
        == 0
    )
    assert run("bookings", "add", "BK-1", "--customer", "Ben", "--tour", "Falls", "--total", "99.5").exit_code == 0
    listed = json.loads(run("bookings", "list", "--json").stdout)
    assert [b["reference"] for b in listed] == ["BK-1", "BK-2"]
    assert listed[1]["balance_due"] == "250.00" and listed[1]["payment_status"] == "PARTIAL"
    assert listed[0] == json.loads(run("bookings", "show", "BK-1", "--json").stdout)
    partial = json.loads(run("bookings", "list", "--status", "partial", "--json").stdout)
    assert [b["reference"] for b in partial] == ["BK-2"]


def test_validate_sarif_names_each_problem_at_its_place():
    files = [str(BROKEN / "action_bad_params.yaml"), str(BROKEN / "step_unreachable.yaml")]
    done = run("validate", "--format", "sarif", *files)
    assert done.exit_code == 1
    sarif = json.loads(done.stdout)
    assert sarif["version"] == "2.1.0"
    run_ = sarif["runs"][0]
    assert run_["tool"]["driver"]["name"] == "convoflow"
    rules = [rule["id"] for rule in run_["tool"]["driver"]["rules"]]
    text = run("validate", *files).stdout.splitlines()[:-1]
    assert len(run_["results"]) == len(text)
    for result, line in zip(run_["results"], text):
        where = result["locations"][0]["physicalLocation"]
        region = where["region"]
        assert line == (
            f"{where['artifactLocation']['uri']}:{region['startLine']}:{region['startColumn']}: "
            f"{result['level']}[{result['ruleId']}] {result['message']['text']}"
        )
        assert rules[result["ruleIndex"]] == result["ruleId"]
    assert {"error", "warning"} <= {r["level"] for r in run_["results"]}


def test_validate_sarif_of_clean_flows_has_no_results():
    done = run("validate", "--format", "sarif", str(REPO / "flows"))
    assert done.exit_code == 0
    assert json.loads(done.stdout)["runs"][0]["results"] == []
