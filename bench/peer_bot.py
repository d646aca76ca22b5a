"""The peer the benchmarks hold convoflow against: the same four-step conversation (bench/flows/
four_steps.yaml) written by hand as a Flask + sqlite3 bot, the way a careful developer would without a
framework.

Honest about durability, like convoflow: the webhook signature is checked, a redelivered message id
changes nothing, and each message's new state is committed (one transaction, the same SQLite settings as
storage/db.py) before the reply is posted to the Graph API and before Meta gets its 200. The reply is
posted inside the request, as such a bot does, on one keep-alive connection per server thread.

    python bench/peer_bot.py --db /tmp/peer.db --port 8090     # environment: WHATSAPP_* as for flows serve
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sqlite3
import threading
from decimal import Decimal, InvalidOperation

import requests
from flask import Flask, Response, request

SCHEMA = """
CREATE TABLE IF NOT EXISTS session (wa_id TEXT PRIMARY KEY, step TEXT NOT NULL, vars TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen (message_id TEXT PRIMARY KEY);
"""
PRAGMAS = ("journal_mode=wal", "synchronous=normal", "foreign_keys=1", "busy_timeout=10000")


def turn(step: str | None, saved: dict, text: str) -> tuple[str | None, dict, str]:
    """The conversation: (step, saved answers, text in) -> (next step, saved answers, reply)."""
    if step is None or text.strip().lower() == "start":
        return "name", {}, "Welcome! What is your name?"
    if step == "name":
        return "reference", {"name": text}, f"Thanks {text}. What is your booking reference?"
    if step == "reference":
        return "amount", {**saved, "reference": text}, f"How much would you like to pay for {text}?"
    try:
        amount = Decimal(text.strip().replace(",", ""))
    except InvalidOperation:
        amount = Decimal(0)
    if not Decimal("0.01") <= amount <= Decimal(10000) or amount != amount.quantize(Decimal("0.01")):
        return step, saved, "Please send an amount like 50 or 50.00."
    return None, {}, f"Noted, {saved['name']}: ${amount.quantize(Decimal('0.01')):,.2f} for {saved['reference']}."


class Store:
    """One sqlite3 connection per thread; a message is one BEGIN IMMEDIATE … COMMIT."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self.connection().executescript(SCHEMA)

    def connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            for pragma in PRAGMAS:
                conn.execute(f"PRAGMA {pragma}")
        return conn

    def handle(self, wa_id: str, message_id: str, text: str) -> str | None:
        """Run one message's turn and commit it; the reply, or None for a message seen before."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("INSERT INTO seen VALUES (?) ON CONFLICT DO NOTHING", (message_id,)).rowcount == 0:
                conn.execute("ROLLBACK")
                return None
            row = conn.execute("SELECT step, vars FROM session WHERE wa_id = ?", (wa_id,)).fetchone()
            step, saved, reply = turn(row[0] if row else None, json.loads(row[1]) if row else {}, text)
            conn.execute(
                "INSERT INTO session VALUES (?, ?, ?) ON CONFLICT (wa_id) DO UPDATE SET step = "
                "excluded.step, vars = excluded.vars",
                (wa_id, step or "", json.dumps(saved)),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return reply


def create_app(store: Store, secret: str, graph_url: str, token: str) -> Flask:
    app = Flask("peer")
    local = threading.local()

    def post_reply(to: str, text: str) -> None:
        if not hasattr(local, "http"):
            local.http = requests.Session()  # keep-alive: one connection per server thread
        resp = local.http.post(
            graph_url,
            json={"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": text}},
            headers={"Authorization": f"Bearer {token}"},
            timeout=20,
        )
        resp.raise_for_status()

    @app.post("/webhook")
    def webhook() -> Response:
        body = request.get_data()
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-Hub-Signature-256", "")):
            return Response("bad signature\n", status=403)
        for entry in json.loads(body).get("entry", []):
            for change in entry.get("changes", []):
                for message in change.get("value", {}).get("messages", []):
                    text = (message.get("text") or {}).get("body", "")
                    reply = store.handle(message["from"], message["id"], text)
                    if reply is not None:
                        post_reply(message["from"], reply)
        return Response("OK", status=200)

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok\n")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=4, help="waitress threads (flows serve uses 4)")
    args = parser.parse_args()
    from waitress import serve

    graph = f"{os.environ['WHATSAPP_API_URL']}/{os.environ['WHATSAPP_PHONE_NUMBER_ID']}/messages"
    app = create_app(Store(args.db), os.environ["WHATSAPP_APP_SECRET"], graph, os.environ["WHATSAPP_ACCESS_TOKEN"])
    serve(app, host="127.0.0.1", port=args.port, threads=args.threads, _quiet=True)


if __name__ == "__main__":
    main()
