"""Conversations written as YAML transcripts (tests/engine/transcripts/*.yaml), run through the real
loader and runner: each entry sends a message (or moves the clock, or expires the conversation) and
states the replies the user gets, and optionally the buttons/options, status, flow, attempts, actions
called and event codes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import actions
from engine.load import load_text
from engine.model import FlowSet
from engine.registry import registry
from engine.runner import expire

from flowkit import Chat

actions.load_all()
TRANSCRIPTS = sorted((Path(__file__).parent / "transcripts").glob("*.yaml"))
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def load_flows(texts: list[str], file: Path) -> FlowSet:
    flows = []
    for n, text in enumerate(texts):
        flow, problems = load_text(text, f"{file.name}#{n}", registry)
        errors = [str(p) for p in problems if p.severity == "error"]
        assert flow is not None and not errors, errors
        flows.append(flow)
    return FlowSet.of(flows)


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
def test_transcript(path):
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    chat = Chat(load_flows(spec["flows"], path), registry=registry)
    for number, entry in enumerate(spec["transcript"], start=1):
        where = f"{path.name} entry {number}: {entry}"
        if "advance" in entry:
            amount, unit = re.fullmatch(r"(\d+)([smhd])", entry["advance"]).groups()
            chat.clock.advance(**{UNITS[unit]: int(amount)})
            continue
        if entry.get("expire"):
            result = expire(chat.flows, chat.conversation, chat.ctx)
            chat.conversation = result.conversation
        else:
            result = chat.send(str(entry["send"]))
        assert [o.text for o in result.outbound] == entry["replies"], where
        if "buttons" in entry:
            assert [b.title for b in result.outbound[-1].buttons] == entry["buttons"], where
        if "options" in entry:
            assert [o.title for o in result.outbound[-1].options] == entry["options"], where
        conversation = result.conversation
        assert conversation.status == entry.get("status", "active"), where
        if "flow" in entry:
            assert conversation.flow == entry["flow"], where
        if "attempts" in entry:
            assert conversation.attempts == entry["attempts"], where
        assert [a.name for a in result.actions] == entry.get("actions", []), where
        assert [e.code for e in result.events] == entry.get("events", []), where


def test_every_transcript_is_run():
    assert {p.stem for p in TRANSCRIPTS} >= {"checks", "cancel_and_menu", "errors_and_expiry"}
