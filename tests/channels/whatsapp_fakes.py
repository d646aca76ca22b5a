"""Test helpers for the WhatsApp channel: Meta-shaped webhook bodies, signing, a Graph API stand-in on
loopback and a waitress server in a thread. Also used by bench/webhook.py.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"
ACCESS_TOKEN = "test-access-token-SECRET-1234"
PHONE_NUMBER_ID = "106540352242922"

_ids = itertools.count(1)

# The default message time: an hour before the run, on a whole minute, well inside the webhook's replay
# window (WHATSAPP_MAX_MESSAGE_AGE_DAYS), so tests keep fixed relative timestamps (TS + n).
TS = int(time.time()) // 60 * 60 - 3600
TS_UTC = datetime.fromtimestamp(TS, timezone.utc).replace(tzinfo=None)  # TS as the naive UTC time stored


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def envelope(messages: list[dict] = (), contacts: list[dict] = (), statuses: list[dict] = ()) -> dict:
    """A webhook body as Meta sends it: one entry, one change."""
    value: dict = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": PHONE_NUMBER_ID},
    }
    if contacts:
        value["contacts"] = list(contacts)
    if messages:
        value["messages"] = list(messages)
    if statuses:
        value["statuses"] = list(statuses)
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA1", "changes": [{"field": "messages", "value": value}]}],
    }


def contact(wa_id: str | None, name: str = "Tendai", user_id: str | None = None) -> dict:
    c: dict = {"profile": {"name": name}}
    if wa_id:
        c["wa_id"] = wa_id
    if user_id:
        c["user_id"] = user_id
    return c


def new_wamid() -> str:
    return f"wamid.HBgLMjYzNzcxMjM0NTY3FQIAEhgg{next(_ids):012d}"


def message(
    wa_id: str | None,
    mtype: str,
    content: dict | None,
    ts: int = TS,
    mid: str | None = None,
    user_id: str | None = None,
) -> dict:
    m: dict = {"id": mid or new_wamid(), "timestamp": str(ts), "type": mtype}
    if wa_id:
        m["from"] = wa_id
    if user_id:
        m["from_user_id"] = user_id
    if content is not None:
        m[mtype] = content
    return m


def text(wa_id: str, body: str, **kw) -> dict:
    return message(wa_id, "text", {"body": body}, **kw)


def button_reply(wa_id: str, reply_id: str, title: str, **kw) -> dict:
    return message(
        wa_id, "interactive", {"type": "button_reply", "button_reply": {"id": reply_id, "title": title}}, **kw
    )


def list_reply(wa_id: str, reply_id: str, title: str, description: str = "", **kw) -> dict:
    return message(
        wa_id,
        "interactive",
        {"type": "list_reply", "list_reply": {"id": reply_id, "title": title, "description": description}},
        **kw,
    )


def template_button(wa_id: str, payload: str, text_: str, **kw) -> dict:
    return message(wa_id, "button", {"payload": payload, "text": text_}, **kw)


def image(wa_id: str, **kw) -> dict:
    return message(wa_id, "image", {"mime_type": "image/jpeg", "sha256": "abc", "id": "1234567890"}, **kw)


def status(wamid: str, state: str, recipient: str = "263771234567", errors: list | None = None) -> dict:
    s = {"id": wamid, "status": state, "timestamp": str(TS + 100), "recipient_id": recipient}
    if errors:
        s["errors"] = errors
    return s


def body_of(doc: dict) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


# ── the Graph API stand-in ───────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Sent:
    path: str
    authorization: str | None
    body: dict


class GraphStandIn:
    """A tiny Graph API on 127.0.0.1 that records every message posted to it.

    By default it accepts everything with a fresh wamid; `fail_next(status, error)` queues answers
    (e.g. a 500 and then normal service, or a 400 with a Graph error code).
    """

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self._script: deque[tuple[int, dict]] = deque()
        self._lock = threading.Lock()
        self._count = itertools.count(1)
        self._held = threading.Event()
        self._held.set()
        self.arrived = threading.Condition(self._lock)
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                status, answer = stand_in._answer(self.path, self.headers.get("Authorization"), raw)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v21.0"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def fail_next(self, status: int, error: dict | None = None, times: int = 1) -> None:
        with self._lock:
            for _ in range(times):
                self._script.append((status, {"error": error or {"message": "stand-in failure", "code": 1}}))

    def hold_answers(self) -> None:
        """From now on, accept messages but keep the answers back until release() (a sender killed while
        waiting for Meta's answer)."""
        self._held.clear()

    def release(self) -> None:
        self._held.set()

    def _answer(self, path: str, auth: str | None, raw: bytes) -> tuple[int, dict]:
        with self._lock:
            if self._script:
                return self._script.popleft()
            body = json.loads(raw)
            self.sent.append(Sent(path, auth, body))
            self.arrived.notify_all()
            to = body.get("to") or body.get("recipient")
        self._held.wait(30)
        with self._lock:
            return 200, {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to}],
                "messages": [{"id": f"wamid.out.{next(self._count)}"}],
            }

    def wait_for(self, n: int, timeout: float = 20.0) -> list[Sent]:
        """Block until at least n messages were accepted (bounded by timeout); returns them."""
        with self._lock:
            self.arrived.wait_for(lambda: len(self.sent) >= n, timeout)
            return list(self.sent)

    def texts_to(self, to: str) -> list[str]:
        """What a recipient saw, in order: text bodies and interactive bodies."""
        out = []
        for s in list(self.sent):
            b = s.body
            if (b.get("to") or b.get("recipient")) != to:
                continue
            out.append(b["text"]["body"] if b["type"] == "text" else b["interactive"]["body"]["text"])
        return out

    def close(self) -> None:
        self._held.set()
        self.server.shutdown()
        self.server.server_close()


class ServerThread:
    """A waitress server for a WSGI app on a free loopback port, in a background thread."""

    def __init__(self, app, threads: int = 4) -> None:
        from waitress.server import create_server

        self.server = create_server(app, host="127.0.0.1", port=0, threads=threads)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self._thread = threading.Thread(target=self.server.run, daemon=True)
        self._thread.start()

    def close(self) -> None:
        from waitress import wasyncore

        # Close every socket inside the server's own loop thread (closing them from here races its select);
        # the loop ends once its map is empty.
        try:
            self.server.trigger.pull_trigger(lambda: wasyncore.close_all(self.server._map))
        except OSError:
            # The trigger's descriptor is already gone (seen now and then under load; its loop has then
            # stopped with it): close what is left from here.
            wasyncore.close_all(self.server._map)
        self._thread.join(5)
        self.server.task_dispatcher.shutdown()


@contextmanager
def held_by_another_thread(lock):
    """The lock held by another thread of this process (a thread already holding it may take it again)."""
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            done.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(30)
    try:
        yield
    finally:
        done.set()
        holder.join(30)
