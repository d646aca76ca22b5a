"""The terminal as a phone: talk to flows from a shell (`flows chat`, `flows demo`).

The loop is independent of where conversations live: it takes a turn function (Inbound -> TurnResult).
MemoryTurns keeps one conversation per contact in memory; the persisted turn path (channels/turns.py)
is another turn function with the same shape.

    turns = MemoryTurns(flows, ctx)
    chat_loop(turns, "263771234567", sys.stdin, sys.stdout, interactive=sys.stdin.isatty(),
              opening=lambda: turns.start("263771234567", "omari_payment"))

Replies are printed as WhatsApp would show them, with buttons and list rows numbered ("1. Ecocash"); the
user may answer with the number. When standard input is not a terminal, each line is one message and
the line is echoed ("> pay") before its replies, so a scripted chat reads as a transcript.
"""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass, field
from typing import Callable, TextIO

from engine.context import TurnContext
from engine.messages import Conversation, Event, Inbound, Outbound, TurnResult
from engine.model import FlowSet
from engine.runner import run_turn, start

PROMPT = "you> "
Turn = Callable[[Inbound], TurnResult]


def render_outbound(message: Outbound) -> str:
    """One outbound message as text: the body, then its buttons or list rows numbered from 1."""
    lines = [message.text]
    if message.options and message.list_button:
        lines.append(f"[{message.list_button}]")
    for number, choice in enumerate(message.buttons or message.options, start=1):
        row = f"{number}. {choice.title}"
        if choice.description:
            row += f" — {choice.description}"
        lines.append(row)
    return "\n".join(lines)


def render_event(event: Event) -> str:
    return f"[{event.level} {event.code}] {event.message}"


@dataclass
class MemoryTurns:
    """A turn function that keeps each contact's conversation in memory (for chats and tests)."""

    flows: FlowSet
    ctx: TurnContext
    conversations: dict[str, Conversation | None] = field(default_factory=dict)

    def __call__(self, inbound: Inbound) -> TurnResult:
        result = run_turn(self.flows, self.conversations.get(inbound.contact), inbound, self.ctx)
        self.conversations[inbound.contact] = result.conversation
        return result

    def start(self, contact: str, flow: str) -> TurnResult:
        """Open flow for contact directly, as if its trigger had been sent."""
        result = start(self.flows, contact, flow, self.ctx, message_id=f"start-{uuid.uuid4().hex}")
        self.conversations[contact] = result.conversation
        return result


def _line_reader(input_stream: TextIO, output_stream: TextIO, interactive: bool) -> Callable[[], str | None]:
    """A function returning the next line, or None at the end of input.

    At a real terminal, input() with readline gives the person line editing and history; other streams
    (pipes, tests) are read line by line, with the prompt written by hand when interactive.
    """
    if interactive and input_stream is sys.stdin and output_stream is sys.stdout:
        try:
            import readline  # noqa: F401  (imported for its side effect on input())
        except ImportError:
            pass
        return lambda: input(PROMPT)

    def read() -> str | None:
        if interactive:
            output_stream.write(PROMPT)
            output_stream.flush()
        return input_stream.readline() or None

    return read


def new_message_id() -> str:
    return f"chat-{uuid.uuid4().hex}"


def chat_loop(
    turn: Turn,
    contact: str,
    input_stream: TextIO,
    output_stream: TextIO,
    interactive: bool,
    opening: Callable[[], TurnResult] | None = None,
    events: TextIO | None = None,
    message_id: Callable[[], str] = new_message_id,
) -> int:
    """Read messages (one per line) until end of input, printing each turn's replies; returns how many
    messages were handled. Blank lines are skipped: WhatsApp has no empty messages. Error events of a
    turn (a template error, a failed action) go to `events` when given, for the flow's author.
    """

    def show(result: TurnResult) -> None:
        for message in result.outbound:
            output_stream.write(render_outbound(message) + "\n\n")
        output_stream.flush()
        if events is not None:
            for event in result.events:
                if event.level != "info":
                    events.write(render_event(event) + "\n")
            events.flush()

    if opening is not None:
        show(opening())
    read = _line_reader(input_stream, output_stream, interactive)
    handled = 0
    while True:
        try:
            line = read()
        except (KeyboardInterrupt, EOFError):
            break
        if line is None:
            break
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        if not interactive:
            output_stream.write(f"> {text}\n")
        show(turn(Inbound(contact=contact, message_id=message_id(), text=text)))
        handled += 1
    if interactive:
        output_stream.write("\n")
        output_stream.flush()
    return handled


# ── the chat's own store (`flows chat` never publishes) ─────────────────────────────────────────────

CHAT_STORE = "convoflow-chat.db"
DEMO_STORE = "convoflow-demo.db"


class ChatStoreError(ValueError):
    """The chat store named is the live database: a preview must never write there."""


def chat_store_url(path: str, live_url: str, who: str = "the chat") -> str:
    """The SQLite URL of the chat's (or the demo's) own store at path: its flow copies, conversations,
    bookings and payments. Refused when path is the live database's file (DATABASE_URL).
    """
    chat = os.path.realpath(path)
    live = live_url[len("sqlite:///") :] if live_url.startswith("sqlite:///") else None
    if live and os.path.realpath(live) == chat:
        raise ChatStoreError(f"'{path}' is the live database (DATABASE_URL): give {who} a file of its own")
    return f"sqlite:///{chat}"


def forget_conversations() -> int:
    """End every conversation in the chat store (`flows chat --reset`); returns how many there were."""
    from storage.models import Session

    return Session.delete().execute()


__all__ = [
    "chat_loop",
    "render_outbound",
    "render_event",
    "MemoryTurns",
    "PROMPT",
    "CHAT_STORE",
    "DEMO_STORE",
    "chat_store_url",
    "forget_conversations",
    "ChatStoreError",
]
