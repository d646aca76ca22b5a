"""`flows serve` and `flows worker` as a user runs them: start-up refusals in one line, a real server
process that answers Meta, replies through the Graph API stand-in and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import requests
from click.testing import CliRunner

from cli import main

import whatsapp_fakes as wa
from channel_harness import FLOWS, REPO, store_flows, wait_until

GOOD = {
    "WHATSAPP_APP_SECRET": wa.SECRET,
    "WHATSAPP_VERIFY_TOKEN": wa.VERIFY_TOKEN,
    "WHATSAPP_ACCESS_TOKEN": wa.ACCESS_TOKEN,
    "WHATSAPP_PHONE_NUMBER_ID": wa.PHONE_NUMBER_ID,
    "OMARI_MERCHANT_KEY": "",
    "OMARI_API_BASE_URL": "",
}
PAYNOW_ONLY = {
    "PAYNOW_INTEGRATION_ID": "1201",
    "PAYNOW_INTEGRATION_KEY": "paynow-key-456",
    "PAYNOW_AUTH_EMAIL": "merchant@example.com",
}


def run(args: list[str], env: dict, tmp_path) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, args, env={"DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", **env}, catch_exceptions=False
    )
    return result.exit_code, result.output


@pytest.mark.parametrize(
    "env, args, line",
    [
        ({**GOOD, "WHATSAPP_APP_SECRET": ""}, ["serve", "--sandbox"], "flows: WHATSAPP_APP_SECRET is not set"),
        ({**GOOD, "WHATSAPP_VERIFY_TOKEN": ""}, ["serve", "--sandbox"], "flows: WHATSAPP_VERIFY_TOKEN is not set"),
        ({**GOOD, "WHATSAPP_ACCESS_TOKEN": ""}, ["worker", "--sandbox"], "flows: WHATSAPP_ACCESS_TOKEN is not set"),
        (
            {**GOOD, "WHATSAPP_PHONE_NUMBER_ID": "my-number"},
            ["serve", "--sandbox"],
            "flows: WHATSAPP_PHONE_NUMBER_ID must be the number's id from Meta (digits only)",
        ),
        (
            GOOD,
            ["serve"],
            "flows: no payment provider is configured (OMARI_API_BASE_URL is not set; "
            "PAYNOW_INTEGRATION_ID is not set): refusing to start without one (",
        ),
        (
            {**GOOD, "OMARI_MERCHANT_KEY": "live-key-123"},
            ["serve"],
            "flows: OMARI_API_BASE_URL is not set while OMARI_MERCHANT_KEY is",
        ),
        (
            {**GOOD, "OMARI_MERCHANT_KEY": "live-key-123"},
            ["serve", "--sandbox"],
            "flows: OMARI_MERCHANT_KEY is set but --sandbox was given",
        ),
        (
            {**GOOD, "WHATSAPP_API_URL": "graph.facebook.com"},
            ["worker", "--sandbox"],
            "flows: WHATSAPP_API_URL must start with https://",
        ),
        (GOOD, ["serve", "--sandbox"], "run `flows db upgrade`"),
        ({**GOOD, **PAYNOW_ONLY}, ["serve"], "run `flows db upgrade`"),  # Paynow alone is a payment provider
        ({**GOOD, **PAYNOW_ONLY, "PAYNOW_AUTH_EMAIL": ""}, ["worker"], "PAYNOW_AUTH_EMAIL is not set"),
        (
            {**GOOD, "LOG_FORMAT": "xml"},
            ["worker", "--sandbox"],
            "flows: LOG_FORMAT must be one of text, json (got 'xml')",
        ),
    ],
)
def test_start_up_refuses_in_one_line_naming_the_setting(tmp_path, env, args, line):
    code, output = run(args, env, tmp_path)
    assert code == 1
    assert line in output and output.count("\n") == 1, output
    assert (
        "live-key-123" not in output
        and "paynow-key-456" not in output
        and wa.ACCESS_TOKEN not in output
        and wa.SECRET not in output
    )


def test_serve_refuses_a_database_without_flows(sqlite_db, tmp_path):
    code, output = run(["serve", "--sandbox"], {**GOOD, "DATABASE_URL": f"sqlite:///{sqlite_db.database}"}, tmp_path)
    assert (code, output) == (1, "flows: no flows are loaded in this database: run `flows load` first\n")


@pytest.mark.slow
def test_flows_serve_answers_meta_and_stops_on_sigterm(sqlite_db, graph, tmp_path):
    store_flows(os.path.join(FLOWS, "greet.yaml"))
    sqlite_db.close()
    env = {
        **os.environ,
        **GOOD,
        "DATABASE_URL": f"sqlite:///{sqlite_db.database}",
        "WHATSAPP_API_URL": graph.url,
        "LOG_FORMAT": "json",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--port", "0", "--sandbox"],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line, logged = "", []
        for _ in range(50):  # bounded: the ready line comes after a few log lines
            line = proc.stderr.readline()
            if "convoflow serving" in line or not line:
                break
            logged.append(json.loads(line))  # LOG_FORMAT=json: every log line is one JSON object
        assert any(entry["logger"] == "convoflow.worker" for entry in logged), logged
        assert (
            "convoflow serving http://127.0.0.1:" in line
            and "with 2 worker thread(s) (payments on the O'mari sandbox)" in line
        )
        url = line.split("serving ")[1].split("/webhook")[0]
        with requests.Session() as http:
            assert http.get(url + "/healthz").text == "ok\n"
            challenge = http.get(
                url + "/webhook",
                params={"hub.mode": "subscribe", "hub.verify_token": wa.VERIFY_TOKEN, "hub.challenge": "42"},
            )
            assert challenge.text == "42"
            body = wa.body_of(wa.envelope([wa.text("263771234567", "hi")], [wa.contact("263771234567")]))
            assert (
                http.post(url + "/webhook", data=body, headers={"X-Hub-Signature-256": wa.sign(body)}).status_code
                == 200
            )
            graph.wait_for(1)
            assert graph.texts_to("263771234567") == ["What is your name?"]
            assert wait_until(lambda: "convoflow_messages_out_total 1" in http.get(url + "/metrics").text)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert wa.ACCESS_TOKEN not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_app_factory_for_gunicorn_runs_the_same_service(sqlite_db, graph, monkeypatch):
    from channels.whatsapp import create_from_env

    store_flows(os.path.join(FLOWS, "greet.yaml"))
    for name, value in {
        **GOOD,
        "DATABASE_URL": f"sqlite:///{sqlite_db.database}",
        "WHATSAPP_API_URL": graph.url,
    }.items():
        monkeypatch.setenv(name, value)
    app = create_from_env(workers=1, sandbox=True)
    server = wa.ServerThread(app)
    try:
        body = wa.body_of(wa.envelope([wa.text("263771234567", "hi")], [wa.contact("263771234567")]))
        assert (
            requests.post(
                server.url + "/webhook", data=body, headers={"X-Hub-Signature-256": wa.sign(body)}
            ).status_code
            == 200
        )
        graph.wait_for(1)
        assert graph.texts_to("263771234567") == ["What is your name?"]
    finally:
        app.extensions["convoflow.workers"].stop()
        server.close()


def test_serve_on_a_port_in_use_says_so(sqlite_db, tmp_path):
    import socket

    store_flows(os.path.join(FLOWS, "greet.yaml"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = run(
            ["serve", "--sandbox", "--port", str(port)],
            {**GOOD, "DATABASE_URL": f"sqlite:///{sqlite_db.database}"},
            tmp_path,
        )
    assert code == 1
    assert output.splitlines()[-1] == f"flows: cannot listen on 127.0.0.1:{port}: Address already in use"
