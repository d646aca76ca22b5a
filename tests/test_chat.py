"""`flows chat` and the terminal channel: what a person at the terminal (or a script) sees."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from channels.terminal import MemoryTurns, chat_loop, render_outbound
from engine.context import TurnContext
from engine.load import load_text
from engine.messages import Choice, Outbound
from engine.model import FlowSet
from engine.registry import registry

MENU = """\
flow: main_menu
title: Main menu
triggers: [hi, hello]
steps:
  welcome:
    ask: "Hello! What would you like to do?"
    buttons: {pay: Make a payment, help: Get help}
    save: choice
    next:
      - if: choice == "pay"
        goto: to_pay
      - goto: help
  to_pay:
    flow: pay
  help:
    end: "Call us on 0800 123 456."
"""

PAY = """\
flow: pay
title: Pay
triggers: [pay, payment]
steps:
  ask_reference:
    ask: "Your booking reference?"
    save: reference
    next: ask_amount
  ask_amount:
    ask: "How much would you like to pay for {{ reference }}?"
    expect: {amount: {min: "1", max: "500"}}
    save: amount
    next: ask_channel
  ask_channel:
    ask: "Choose how you will pay."
    buttons: {ecocash: Ecocash, onemoney: OneMoney, zimswitch: ZimSwitch}
    save: channel
    next: done
  done:
    end: "Thanks! Paying {{ amount | money }} for {{ reference }} by {{ channel }}."
"""


@pytest.fixture
def flows_dir(tmp_path, monkeypatch):
    d = tmp_path / "flows"
    d.mkdir()
    (d / "main_menu.yaml").write_text(MENU)
    (d / "pay.yaml").write_text(PAY)
    monkeypatch.setenv("FLOWS_DIR", str(d))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'chat.db'}")
    monkeypatch.chdir(tmp_path)
    return d


def memory_turns() -> MemoryTurns:
    flows = []
    for text, file in ((MENU, "main_menu.yaml"), (PAY, "pay.yaml")):
        flow, problems = load_text(text, file, registry)
        assert flow is not None, problems
        flows.append(flow)
    return MemoryTurns(FlowSet.of(flows), TurnContext(registry=registry))


# ── rendering ──────────────────────────────────────────────────────────────────────────────────────


def test_buttons_are_shown_numbered():
    message = Outbound(
        "2637", "Choose how you will pay.", buttons=(Choice("ecocash", "Ecocash"), Choice("onemoney", "OneMoney"))
    )
    assert render_outbound(message) == "Choose how you will pay.\n1. Ecocash\n2. OneMoney"


def test_list_options_are_shown_numbered_with_descriptions_and_the_list_label():
    message = Outbound(
        "2637",
        "Which tour?",
        list_button="Tours",
        options=(Choice("t1", "Victoria Falls", "Full day"), Choice("t2", "Hwange")),
    )
    assert render_outbound(message) == "Which tour?\n[Tours]\n1. Victoria Falls — Full day\n2. Hwange"


# ── the loop ───────────────────────────────────────────────────────────────────────────────────────


def test_a_scripted_chat_prints_a_transcript():
    out = io.StringIO()
    script = io.StringIO("pay\nBK-1\n\n600\n50\n3\n")
    handled = chat_loop(memory_turns(), "263771234567", script, out, interactive=False)
    assert handled == 5
    assert out.getvalue() == (
        "> pay\nYour booking reference?\n\n"
        "> BK-1\nHow much would you like to pay for BK-1?\n\n"
        "> 600\nPlease send an amount between $1.00 and $500.00.\n\n"
        "> 50\nChoose how you will pay.\n1. Ecocash\n2. OneMoney\n3. ZimSwitch\n\n"
        "> 3\nThanks! Paying $50.00 for BK-1 by zimswitch.\n\n"
    )


def test_an_interactive_chat_prompts_and_can_open_a_flow_directly():
    turns = memory_turns()
    out = io.StringIO()
    chat_loop(
        turns,
        "263771234567",
        io.StringIO("BK-9\n"),
        out,
        interactive=True,
        opening=lambda: turns.start("263771234567", "pay"),
    )
    assert out.getvalue() == "Your booking reference?\n\nyou> How much would you like to pay for BK-9?\n\nyou> \n"


def test_error_events_go_to_the_events_stream():
    bad = 'flow: oops\ntriggers: [go]\nsteps:\n  s:\n    end: "{{ 1 / 0 }}"\n'
    flow, problems = load_text(bad, "oops.yaml", registry)
    turns = MemoryTurns(FlowSet.of([flow]), TurnContext(registry=registry))
    out, errors = io.StringIO(), io.StringIO()
    chat_loop(turns, "2637", io.StringIO("go\n"), out, interactive=False, events=errors)
    assert "Sorry, something went wrong on our side." in out.getvalue()
    assert errors.getvalue().startswith("[error template.error] flow 'oops' step 's': ZeroDivisionError")


def test_each_contact_keeps_its_own_conversation():
    turns = memory_turns()
    a, b = io.StringIO(), io.StringIO()
    chat_loop(turns, "263771111111", io.StringIO("pay\n"), a, interactive=False)
    chat_loop(turns, "263772222222", io.StringIO("hi\n"), b, interactive=False)
    chat_loop(turns, "263771111111", io.StringIO("BK-1\n"), a, interactive=False)
    assert a.getvalue().endswith("How much would you like to pay for BK-1?\n\n")
    assert turns.conversations["263772222222"].flow == "main_menu"


# ── the command ────────────────────────────────────────────────────────────────────────────────────


def test_flows_chat_reads_one_message_per_line(flows_dir):
    result = CliRunner().invoke(cli.main, ["chat"], input="hi\n1\nBK-7\n")
    assert result.exit_code == 0, result.output
    assert result.output == (
        "> hi\nHello! What would you like to do?\n1. Make a payment\n2. Get help\n\n"
        "> 1\nYour booking reference?\n\n"
        "> BK-7\nHow much would you like to pay for BK-7?\n\n"
    )


def test_flows_chat_starts_the_named_flow_for_the_contact(flows_dir):
    result = CliRunner().invoke(cli.main, ["chat", "pay", "--contact", "263779999999"], input="BK-1\n")
    assert result.exit_code == 0
    assert result.output.startswith("Your booking reference?\n\n> BK-1\n")


def test_flows_chat_with_an_unknown_flow_is_a_usage_error(flows_dir):
    result = CliRunner().invoke(cli.main, ["chat", "pya"])
    assert result.exit_code == 2
    assert "no flow named 'pya' — did you mean 'pay'?" in result.output


def test_flows_chat_refuses_flows_with_errors_and_says_where(flows_dir):
    (flows_dir / "pay.yaml").write_text(PAY.replace("next: ask_channel", "next: ask_chanel"))
    result = CliRunner().invoke(cli.main, ["chat"], input="pay\n")
    assert result.exit_code == 1
    assert "pay.yaml:13:" in result.output and "ask_chanel" in result.output
    assert "have errors" in result.output


def test_flows_chat_without_flows_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWS_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli.main, ["chat"], input="pay\n")
    assert result.exit_code == 1
    assert "no flow files" in result.output


FLOWS_CMD = [sys.executable, "-c", "import sys, cli; sys.exit(cli.main())"]


def test_a_shell_pipe_into_flows_chat(flows_dir):
    """`printf 'pay\\nBK-1\\n' | flows chat` in a real process, its standard input a pipe."""
    repo = Path(cli.__file__).parent
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run(
        FLOWS_CMD + ["chat"],
        input="pay\nBK-1\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=flows_dir.parent,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "> pay\nYour booking reference?\n\n> BK-1\nHow much would you like to pay for BK-1?\n\n"


def test_a_terminal_gets_a_prompt(flows_dir):
    repo = Path(cli.__file__).parent
    env = {**os.environ, "PYTHONPATH": str(repo)}
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        FLOWS_CMD + ["chat"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        cwd=flows_dir.parent,
        close_fds=True,
    )
    os.close(follower)
    seen = b""

    def read_until(needle: bytes, seconds: float = 30, times: int = 1) -> None:
        nonlocal seen
        deadline = time.monotonic() + seconds
        while seen.count(needle) < times and time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(leader, 4096)
                except OSError:
                    break

    try:
        read_until(b"you> ")
        os.write(leader, b"pay\r")
        read_until(b"Your booking reference?")
        # Ctrl-D only once the next prompt is up: sent while readline switches the terminal's mode, it can
        # be taken as a plain byte instead of end of input.
        read_until(b"you> ", times=2)
        os.write(leader, b"\x04")
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    assert b"Chatting as 263770000000" in seen
    assert b"you> " in seen and b"Your booking reference?" in seen
    assert proc.returncode == 0


# ── a preview never publishes (issue 11) ───────────────────────────────────────────────────────────


def test_flows_chat_picks_up_where_it_stopped_and_reset_starts_over(flows_dir):
    first = CliRunner().invoke(cli.main, ["chat"], input="pay\n")
    assert first.output.endswith("Your booking reference?\n\n")
    again = CliRunner().invoke(cli.main, ["chat"], input="BK-2\n")
    assert again.output == "> BK-2\nHow much would you like to pay for BK-2?\n\n"
    fresh = CliRunner().invoke(cli.main, ["chat", "--reset"], input="BK-2\n")
    assert fresh.exit_code == 0
    assert fresh.output.startswith("> BK-2\nSorry, I did not understand that.")


def test_flows_chat_runs_the_files_as_they_are_now(flows_dir):
    CliRunner().invoke(cli.main, ["chat"], input="hi\n")
    (flows_dir / "main_menu.yaml").write_text(MENU.replace("Hello! What", "Welcome back! What"))
    again = CliRunner().invoke(cli.main, ["chat", "--reset"], input="hi\n")
    assert again.output.startswith("> hi\nWelcome back! What would you like to do?")


def test_flows_chat_refuses_the_live_database_as_its_store(flows_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'live.db'}")
    result = CliRunner().invoke(cli.main, ["chat", "--store", str(tmp_path / "live.db")], input="hi\n")
    assert result.exit_code == 2
    assert "is the live database (DATABASE_URL): give the chat a file of its own" in result.output
    assert not (tmp_path / "live.db").exists()


def test_flows_chat_pays_on_the_sandbox_unless_told_otherwise(tmp_path, monkeypatch):
    shipped = Path(cli.__file__).parent / "flows"
    monkeypatch.setenv("FLOWS_DIR", str(shipped))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'live.db'}")
    monkeypatch.delenv("OMARI_MERCHANT_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    script = "pay\nBK-SLYKER-TECH-20251023\n50\n1\n263771234567\n"
    result = CliRunner().invoke(cli.main, ["chat"], input=script)
    assert result.exit_code == 0, result.output
    assert "[O'mari sandbox SMS to 2637****4567]" in result.output
    assert "O'mari has sent a one-time code to 263771234567" in result.output
    assert not (tmp_path / "live.db").exists()
    real = CliRunner().invoke(cli.main, ["chat", "--real-omari"], input="pay\n")
    assert real.exit_code == 1
    assert "--real-omari needs the O'mari API" in real.output


def test_a_flow_file_deleted_since_the_last_chat_is_gone_from_the_next(flows_dir):
    assert CliRunner().invoke(cli.main, ["chat"], input="pay\n").output.endswith("Your booking reference?\n\n")
    (flows_dir / "pay.yaml").unlink()
    (flows_dir / "main_menu.yaml").write_text(MENU.replace("    flow: pay\n", "    end: Soon.\n"))
    again = CliRunner().invoke(cli.main, ["chat"], input="BK-1\npay\n")
    assert again.exit_code == 0, again.output
    assert again.stdout == (
        "> BK-1\nSorry, I did not understand that. Send *menu* to see what I can do.\n\n"
        "> pay\nSorry, I did not understand that. Send *menu* to see what I can do.\n\n"
    )
    assert "[warning conversation.lost] conversation at flow 'pay' step 'ask_reference'" in again.stderr
