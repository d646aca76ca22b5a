"""Log lines for the people who run convoflow: text or JSON lines, each tagged with what it is about.

`configure(level, fmt)` gives the root logger one handler on stderr; `flows serve`, `flows worker` and the
gunicorn app factory call it with LOG_LEVEL and LOG_FORMAT (and channels/gunicorn_conf.py routes gunicorn's
own loggers to the same handler), so they all write the same lines. The turn path (and the expiry, which
ends a conversation as a turn would) tags its work with `context(contact=…, conversation=…, flow=…)`, and
the payment clients add `tag(payment=…)`; every line written inside carries those fields:

    {"time": "2026-01-05T09:14:03.120Z", "level": "INFO", "logger": "convoflow.omari",
     "message": "omari POST /auth status=200 …", "contact": "2637****4567", "flow": "omari_payment", …}

Work on a payment outside a turn (reconcile) opens a `context(payment=…)` of its own: a tag outside any
context is dropped. Callers pass values that are safe to write (the contact masked, a payment's our-side
reference); no OTP, key or token is ever a field.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import datetime, timezone
from typing import Callable, TextIO

FIELDS = ("contact", "conversation", "flow", "step", "payment")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(tags)s"

# The innermost context's fields: a dict of text values, or for a context made by `context.later` the pair
# (make, args) whose make(*args) gives that dict, worked out by _made when a line is written.
_context: contextvars.ContextVar[dict | tuple] = contextvars.ContextVar("convoflow_log_context", default={})


def _fields(fields: dict[str, object]) -> dict[str, str]:
    return {k: str(v) for k, v in fields.items() if v is not None}


def _made(fields: dict | tuple) -> dict[str, str]:
    """A context's fields as a dict: a `later` context's worked out now (each time a line asks: lines are few)."""
    if type(fields) is tuple:
        make, args = fields
        return _fields(make(*args))
    return fields


class context:
    """Tag every log line written inside (in this thread) with these fields; None values are left out."""

    __slots__ = ("_fields", "_token")

    def __init__(self, **fields: object) -> None:
        self._fields = _fields(fields)

    @classmethod
    def later(cls, make: Callable[..., dict[str, object]], *args: object) -> context:
        """A context whose fields are `make(*args)`, worked out only when a line is written inside (most turns
        write none): a turn's, whose masked number and conversation would cost more to make than the rest
        of its tags (two deferred values and their dict were about 7k instructions of every turn)."""
        made = cls.__new__(cls)
        made._fields = (make, args)
        return made

    def __enter__(self) -> None:
        outer = _context.get()
        self._token = _context.set({**_made(outer), **_made(self._fields)} if outer else self._fields)

    def __exit__(self, *exc: object) -> None:
        _context.reset(self._token)


def tag(**fields: object) -> None:
    """Add fields to the current context until the enclosing `context()` ends (e.g. a payment reference
    learnt halfway through a turn). Outside any context they are dropped: nothing would end them, and every
    later line of the thread (the workers' housekeeping, a command) would carry them."""
    fields_now = _context.get(None)
    if fields_now is not None:
        _context.set({**_made(fields_now), **_fields(fields)})


def current() -> dict:
    """The fields the next log line in this thread would carry."""
    return dict(_made(_context.get()))  # a copy: a record's fields are its own


class _Tags(logging.Filter):
    """Copies the context's fields onto each record (record.tags holds them as ` key=value` text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = current()
        record.convoflow = fields
        record.tags = ("  [" + " ".join(f"{k}={fields[k]}" for k in FIELDS if k in fields) + "]") if fields else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, then the context's fields."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, timezone.utc)
        line = {
            "time": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "convoflow", None) or current())
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def handler(fmt: str, stream: TextIO | None = None) -> logging.Handler:
    """A stream handler (stderr by default) writing `fmt` lines ("text" or "json") with the context's tags."""
    out = logging.StreamHandler(stream or sys.stderr)
    out.addFilter(_Tags())
    out.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    out.convoflow_handler = True
    return out


def configure(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send every logger's lines through one handler on the root logger. Calling it again replaces the
    handler it installed before (never one a host such as gunicorn installed on its own loggers)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "convoflow_handler", False)]:
        root.removeHandler(old)
    root.addHandler(handler(fmt, stream))
    root.setLevel(level)
    # peewee's DEBUG lines are every query with its parameters: customers' answers, OTPs and wallet numbers.
    logging.getLogger("peewee").setLevel(max(logging.INFO, logging.getLevelName(level)))
