"""The WhatsApp webhook: a Flask app that checks, parses and stores what Meta sends, and answers at once.

The request path does one thing: in one transaction it records the contacts, inserts each message into
the inbox (unique on the WhatsApp message id, so a redelivery changes nothing) and records delivery
receipts on the outbox rows they name. Conversations run later in the workers (channels/worker.py):
no turn and no O'mari call ever happens inside a webhook request, so Meta gets its 200 in milliseconds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import weakref
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Callable

import peewee
from flask import Flask, Response, request

from engine.context import utcnow
from storage import deadletters, events, inbox, outbox
from storage.contacts import change_number, resolve
from storage.db import DEFAULT_WAIT, database, describe, is_postgres, limit_wait, write_transaction
from storage.events import EventRecord
from storage.heartbeat import beat
from storage.settings import Settings
from storage.text import storable

from .metrics import Metrics, database_gauges
from .payloads import PayloadError, Received, Webhook, inbox_payload, message_fields, parse_webhook
from .sender import log_undelivered

log = logging.getLogger("convoflow.whatsapp")

MAX_BODY_BYTES = 3 * 1024 * 1024  # Meta batches up to a few hundred items; anything far larger is not Meta

_STATUS_LINES = {
    200: "200 OK",
    400: "400 Bad Request",
    401: "401 Unauthorized",
    403: "403 Forbidden",
    413: "413 Request Entity Too Large",
    503: "503 Service Unavailable",
}

# A store that fails with one of these failed because of what the delivery holds, not because the database
# is down: the same body would fail on every retry, so it is kept as a dead letter instead (issue 10.2).
_POISON = (ValueError, RecursionError, OverflowError, peewee.DataError, peewee.IntegrityError)


class StoreBusy(RuntimeError):
    """The database could not take a delivery within the bounded wait (DATABASE_WAIT)."""


class _SqliteWriter:
    """`with _SqliteWriter(wait)`: take the open SQLite database's writer lock (storage/db.py) within wait
    seconds (or by the time.monotonic() deadline of a wait that began earlier), or StoreBusy. A class, not a
    generator under contextlib.contextmanager: each delivery takes it, and the generator's frames cost about
    twice as much."""

    __slots__ = ("wait", "deadline", "writer")

    def __init__(self, wait: float, deadline: float | None = None) -> None:
        self.wait, self.deadline = wait, deadline

    def __enter__(self) -> None:
        self.writer = database.obj.writer
        wait = self.wait if self.deadline is None else max(0.0, self.deadline - time.monotonic())
        if not self.writer.acquire(timeout=wait):
            raise StoreBusy(f"no turn at the SQLite write lock within {self.wait:g} s")

    def __exit__(self, *exc: object) -> None:
        self.writer.release()


def keyed_hmac(secret: str) -> hmac.HMAC:
    """HMAC-SHA256 under the app secret with nothing fed yet, for signature_ok to copy: the key's padded
    blocks are hashed once here instead of once a delivery (about a fifth of a signature check)."""
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def signature_ok(keyed: hmac.HMAC, body: bytes, header: str) -> bool:
    """True when header is `sha256=<hex HMAC-SHA256 of body>` under keyed's secret (keyed_hmac; a copy is
    fed the body, keyed itself is left as it is); a constant-time compare."""
    mac = keyed.copy()
    mac.update(body)
    return hmac.compare_digest(("sha256=" + mac.hexdigest()).encode(), header.strip().encode("utf-8", "replace"))


def store_webhook(hook: Webhook, now: datetime, wait: float = DEFAULT_WAIT) -> tuple[int, int]:
    """Record one webhook's contacts, messages, events and receipts in one transaction. Returns (new,
    duplicate) counted over messages and events. On SQLite, raises StoreBusy after waiting `wait` seconds
    for the other webhook threads' writes."""
    if not hook.messages and not hook.statuses:
        return 0, 0
    postgres = is_postgres()
    if len(hook.messages) == 1 and not hook.statuses and hook.messages[0].event is None:
        # The usual delivery, one message from someone who wrote before: one statement, no transaction (on
        # SQLite, one transaction for every such delivery waiting for the writer lock: JoinedWrites).
        r = hook.messages[0]
        i, who = r.inbound, r.sender
        known = (who.wa_id, who.user_id, who.profile_name, i.message_id, message_fields(r), i.timestamp or now, now)
        known += (who.parent_user_id, who.username)
        if inbox.add_for_known_contact(*known) if postgres else joined().store(known, wait):
            return 1, 0
    new = dup = 0
    with nullcontext() if postgres else _SqliteWriter(wait), write_transaction():
        # A redelivered event stops here, before its sender is looked up: after a number change the old
        # number names nobody any more, and looking it up would make a new contact.
        seen = inbox.known_ids([r.inbound.message_id for r in hook.messages if r.event])
        items = [r for r in hook.messages if r.inbound.message_id not in seen]
        dup = len(hook.messages) - len(items)
        # Sorted: two requests naming the same contacts or messages lock them in the same order.
        people = sorted({r.sender.key: r.sender for r in items}.values(), key=lambda c: c.key)
        contacts = {c.key: resolve(c, now) for c in people}
        for r in sorted(items, key=lambda r: r.inbound.message_id):
            inserted = _store_message(r, *contacts[r.sender.key], now)
            new, dup = new + inserted, dup + (not inserted)
        log_undelivered(outbox.record_deliveries(((s.wamid, s.status, s.error) for s in hook.statuses), now))
    return new, dup


class _Waiting:
    """A delivery waiting for the SQLite writer lock: add_for_known_contact's arguments and, once written,
    its answer (None: not written yet; _ALONE: the joint write failed, write it on its own)."""

    __slots__ = ("known", "stored")

    def __init__(self, known: tuple) -> None:
        self.known, self.stored = known, None


_ALONE = object()


class JoinedWrites:
    """SQLite: the usual deliveries (one message from a known contact) that queue for the writer lock are
    written together, in one transaction, by one of them, the leader: one commit for the lot instead of
    one each. Only the leader waits for the writer lock; the others wait for the leader's word, so a batch
    costs one turn at the lock, not one each (every hand-off of the lock wakes a thread). Each request
    still answers only once its own message is committed: the leader gives the answers after the commit.
    When the joint write fails, each request writes its own message alone, as before, so an error stays
    with the delivery that caused it."""

    def __init__(self) -> None:
        # Held by `with self._lock`, waited on through _cond: Condition.__enter__ is a Python call around the
        # lock's own (about 4k instructions each time, three times a delivery).
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._waiting: list[_Waiting] = []
        self._leader = False  # a request holds or waits for the writer lock for everyone waiting

    def store(self, known: tuple, wait: float) -> bool:
        """inbox.add_for_known_contact(*known), alone or with others waiting; StoreBusy after `wait` s."""
        mine = _Waiting(known)
        deadline = time.monotonic() + wait
        with self._lock:
            self._waiting.append(mine)
            while mine.stored is None and self._leader:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._give_up(mine)
                    raise StoreBusy(f"no turn at the SQLite write lock within {wait:g} s")
                self._cond.wait(left)
            lead = mine.stored is None
            if lead:
                self._leader = True
        if lead:
            try:
                with _SqliteWriter(wait, deadline):
                    with self._lock:
                        batch, self._waiting = self._waiting, []
                    if batch:  # this one's included (taken by no one else: one leader at a time)
                        self._write(batch)
                    if mine.stored is _ALONE:
                        mine.stored = inbox.add_for_known_contact(*known)
            except StoreBusy:
                with self._lock:
                    self._give_up(mine)
                raise
            finally:
                with self._lock:  # after the commit: the batch's answers are given
                    self._leader = False
                    self._cond.notify_all()
        if mine.stored is _ALONE:  # the leader's joint write failed: this one on its own
            with _SqliteWriter(wait, deadline):
                mine.stored = inbox.add_for_known_contact(*known)
        return mine.stored

    def _give_up(self, mine: _Waiting) -> None:
        """A request that answers 503 leaves the queue (called holding _lock), so it is not written later."""
        if mine in self._waiting:
            self._waiting.remove(mine)

    @staticmethod
    def _write(batch: list[_Waiting]) -> None:
        if len(batch) == 1:  # on its own: one statement, its own implicit transaction
            batch[0].stored = _ALONE
            return
        try:
            with write_transaction():
                stored = [inbox.add_for_known_contact(*w.known) for w in batch]
        except Exception as e:
            log.info(
                "webhook: %d deliveries written together failed (%s); each is written alone",
                len(batch),
                type(e).__name__,
            )
            stored = [_ALONE] * len(batch)
        for w, answer in zip(batch, stored):
            w.stored = answer


_joined: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_joined_lock = threading.Lock()
# The last database asked about (a weak reference, as _joined's keys) and its JoinedWrites: every delivery
# asks, nearly always about the same database, and the lock and the WeakKeyDictionary's Python get cost
# about 5k instructions a delivery. One tuple, replaced whole: threads read it without the lock.
_last_joined: tuple[Callable[[], object], JoinedWrites | None] = (lambda: None, None)


def joined() -> JoinedWrites:
    """The open SQLite database's JoinedWrites (one per database, as its writer lock)."""
    global _last_joined
    db = database.obj
    ref, writes = _last_joined
    if ref() is db and writes is not None:
        return writes
    with _joined_lock:
        writes = _joined.get(db)
        if writes is None:
            writes = _joined[db] = JoinedWrites()
        _last_joined = (weakref.ref(db), writes)
    return writes


def _store_message(r: Received, contact_id: int, key: str, now: datetime) -> bool:
    """One item of `messages`: a message goes to the inbox for a turn; an event (a reaction, a revoke, an
    edit, a system notice) is recorded as already handled, so it is never an answer and a redelivery
    stops at its id. A number change moves the contact to its new number. True when the item is new."""
    i = r.inbound
    payload = inbox_payload(r, contact=key)
    if r.event is None:
        return inbox.add(contact_id, i.message_id, payload, i.timestamp or now, now)[1]
    if not inbox.add_event(contact_id, i.message_id, payload, i.timestamp or now, now):
        return False
    if r.new_wa_id:
        moved = change_number(contact_id, r.new_wa_id)
        events.record(
            EventRecord(
                now,
                "contact.number_changed" if moved else "contact.number_change_refused",
                key,
                None,
                {"level": "info" if moved else "warning", "from": r.sender.wa_id, "to": r.new_wa_id},
            )
        )
        if not moved:
            log.warning("contact %s changed number, but another contact already has the new one", contact_id)
    return True


def store_apart(hook: Webhook, body: bytes, now: datetime) -> tuple[int, int, int]:
    """After store_webhook failed on poison: store each message (with its sender) on its own and the
    receipts together, keeping each part that still fails as a dead letter (with the whole body), so the
    messages next to a poison one are kept. Returns (new, duplicate, dead letters).
    """
    parts = [(r.inbound.message_id, replace(hook, messages=(r,), statuses=())) for r in hook.messages]
    if hook.statuses:
        parts.append(("statuses", replace(hook, messages=())))
    new = dup = dead = 0
    for item, part in parts:
        try:
            n, d = store_webhook(part, now)
        except _POISON as e:
            reason = f"the database refused it ({type(e).__name__}: {storable(str(e)).strip()[:500]})"
            log.error("webhook: %s of a delivery kept as a dead letter: %s", storable(item), reason)
            dead += deadletters.keep(body, reason, now, item=item)
            continue
        new, dup = new + n, dup + d
    return new, dup, dead


def fresh_only(hook: Webhook, oldest: datetime) -> tuple[Webhook, int]:
    """The hook without messages sent before `oldest` (replays of old signed bodies; Meta itself stops
    retrying after 7 days), and how many were dropped. A message without a timestamp is kept."""
    for r in hook.messages:  # a loop that stops at the first old one: nearly every delivery has none
        if r.inbound.timestamp is not None and r.inbound.timestamp < oldest:
            break
    else:
        return hook, 0
    old = {id(r) for r in hook.messages if r.inbound.timestamp is not None and r.inbound.timestamp < oldest}
    for r in hook.messages:
        if id(r) in old:
            log.warning(
                "webhook message %s refused: sent %s, before %s (a replay?)",
                storable(r.inbound.message_id),
                r.inbound.timestamp.isoformat(),
                oldest.isoformat(timespec="seconds"),
            )
    return replace(hook, messages=tuple(r for r in hook.messages if id(r) not in old)), len(old)


@dataclass(frozen=True)
class Intake:
    """What the webhook does with a signed delivery: store it (odd parts as dead letters, old messages
    refused), keep an unreadable one as a dead letter, or answer 503 when the database cannot store."""

    metrics: Metrics
    on_inbox: Callable[[], None] | None
    max_age: timedelta  # WHATSAPP_MAX_MESSAGE_AGE_DAYS
    wait: float = DEFAULT_WAIT  # DATABASE_WAIT: how long a delivery waits for the database before a 503

    def take(self, body: bytes, now: datetime) -> tuple[int, str]:
        """The answer to a signed POST /webhook as (status, short text)."""
        limit_wait(self.wait)
        try:
            hook = parse_webhook(body)
        except PayloadError as e:  # signed, so Meta's: a 400 would only make it retry for days
            return self.dead_letter(body, str(e), now)
        except Exception as e:  # e.g. RecursionError for JSON nested ~1,000 deep: the body's fault, not ours
            return self.dead_letter(body, f"the body could not be read ({type(e).__name__})", now)
        return self.store(hook, body, now)

    def store(self, hook: Webhook, body: bytes, now: datetime) -> tuple[int, str]:
        hook, too_old = fresh_only(hook, now - self.max_age)
        if too_old:
            self.metrics.too_old.inc(too_old)
        try:
            try:
                new, dup = store_webhook(hook, now, self.wait)
            except _POISON:
                new, dup, dead = store_apart(hook, body, now)
                self.metrics.dead_letters.inc(dead)
        except Exception as e:
            return self.unavailable(e)
        if new:
            self.metrics.messages_in.inc(new)
            if self.on_inbox is not None:
                self.on_inbox()
        if dup:
            self.metrics.duplicates.inc(dup)
        for s in hook.statuses:
            self.metrics.statuses.inc(status=s.status)
        return 200, "OK"

    def dead_letter(self, body: bytes, reason: str, now: datetime) -> tuple[int, str]:
        """A signed body that can never be stored: kept for a person and answered 200, so Meta stops."""
        try:
            deadletters.keep(body, reason, now)
        except Exception as e:
            return self.unavailable(e)
        self.metrics.dead_letters.inc()
        log.error("webhook delivery kept as a dead letter (see `flows dead-letters`): %s", reason)
        return 200, "OK"

    def unavailable(self, e: Exception) -> tuple[int, str]:
        # The database is down or broken: Meta retries anything that is not a 200.
        log.error("webhook could not store a delivery (%s); Meta will deliver it again", storable(describe(e)))
        self.metrics.webhook_rejected.inc(reason="503")
        return 503, "could not store the delivery, try again"


class WebhookEndpoint:
    """POST /webhook, its one entry point, straight on WSGI: Meta's deliveries are the hot path and Flask's
    request machinery would be a third of their cost. The signature is checked, then Intake stores the body."""

    def __init__(self, secret: str, intake: Intake, metrics: Metrics, clock: Callable[[], datetime]) -> None:
        self.keyed, self.intake, self.metrics, self.clock = keyed_hmac(secret), intake, metrics, clock

    def refused(self, status: int, reason: str, remote: str | None) -> tuple[int, str]:
        self.metrics.webhook_rejected.inc(reason=str(status))
        log.warning("webhook refused (%d %s) from %s", status, reason, remote)
        return status, reason

    def receive(self, body: bytes, header: str | None, remote: str | None) -> tuple[int, str]:
        """The POST /webhook answer as (status, short text)."""
        if not header:
            return self.refused(401, "missing X-Hub-Signature-256", remote)
        if not signature_ok(self.keyed, body, header):
            return self.refused(403, "bad signature", remote)
        return self.intake.take(body, self.clock())

    def __call__(self, environ: dict, start_response: Callable) -> list[bytes]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length > MAX_BODY_BYTES:
            status, text = 413, "body too large"
        elif length < 0:
            status, text = 400, "bad Content-Length"
        else:
            body = environ["wsgi.input"].read(length) if length else b""
            status, text = self.receive(body, environ.get("HTTP_X_HUB_SIGNATURE_256"), environ.get("REMOTE_ADDR"))
        data = (text if status == 200 else text + "\n").encode()
        start_response(
            _STATUS_LINES[status], [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))]
        )
        return [data]


def create_app(
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    on_inbox: Callable[[], None] | None = None,
    clock: Callable[[], datetime] = utcnow,
    background: Callable[[], dict] | None = None,
) -> Flask:
    """The webhook app. The database must already be open (storage.db.open_database).

    on_inbox is called after new messages are committed (the in-process workers wake up at once instead
    of waiting for their next poll). background describes the process's workers and sender for /readyz
    (channels.worker.Workers.state).
    """
    if not settings.whatsapp_app_secret or not settings.whatsapp_verify_token:
        raise ValueError("the webhook needs WHATSAPP_APP_SECRET and WHATSAPP_VERIFY_TOKEN")
    app = Flask("convoflow")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    metrics = metrics or Metrics()
    metrics.gauges_from(_gauges_or_down)
    verify_token, wait = settings.whatsapp_verify_token, settings.database_wait
    intake = Intake(metrics, on_inbox, timedelta(days=settings.whatsapp_max_message_age_days), wait)
    endpoint = WebhookEndpoint(settings.whatsapp_app_secret, intake, metrics, clock)

    @app.get("/webhook")
    def verify() -> Response:
        token = request.args.get("hub.verify_token", "")
        if request.args.get("hub.mode") == "subscribe" and hmac.compare_digest(
            token.encode("utf-8", "replace"), verify_token.encode()
        ):
            log.info("webhook verified by Meta")
            return Response(request.args.get("hub.challenge", ""), status=200, mimetype="text/plain")
        status, reason = endpoint.refused(403, "verification failed", request.remote_addr)
        return Response(reason + "\n", status=status, mimetype="text/plain")

    flask_wsgi = app.wsgi_app

    def wsgi(environ: dict, start_response: Callable) -> list[bytes]:
        if environ.get("REQUEST_METHOD") == "POST" and environ.get("PATH_INFO") == "/webhook":
            return endpoint(environ, start_response)
        return flask_wsgi(environ, start_response)

    app.wsgi_app = wsgi
    _health_routes(app, metrics, wait=wait, clock=clock, background=background)
    app.extensions["convoflow.metrics"] = metrics
    return app


def _health_routes(
    app: Flask, metrics: Metrics, *, wait: float, clock: Callable[[], datetime], background: Callable[[], dict] | None
) -> None:
    """GET /healthz (liveness), /readyz (readiness) and /metrics."""

    @app.get("/healthz")
    def healthz() -> Response:
        """Liveness: this process answers HTTP. It does not touch the database: while the database is down
        the process waits for it and resumes by itself, so restarting it would not help (/readyz says 503)."""
        return Response("ok\n", status=200, mimetype="text/plain")

    @app.get("/readyz")
    def readyz() -> Response:
        """Ready to take deliveries: a write committed within DATABASE_WAIT. Also reports the inbox backlog
        and this process's workers and sender. 503 when the write failed."""
        limit_wait(wait)
        started = time.perf_counter()
        try:
            beat(clock())
            written = time.perf_counter() - started
            report = {
                "ready": True,
                "database": "writable",
                "write_ms": round(written * 1000, 1),
                "inbox_backlog": inbox.backlog(),
            }
        except Exception as e:  # any failure means "cannot store a delivery now"; say which kind, never the URL
            log.warning("readiness check: the database cannot take a write (%s)", type(e).__name__)
            report = {"ready": False, "database": f"cannot write ({type(e).__name__})"}
        if background is not None:
            report.update(background())
        return Response(json.dumps(report) + "\n", status=200 if report["ready"] else 503, mimetype="application/json")

    @app.get("/metrics")
    def metrics_page() -> Response:
        return Response(metrics.render(), status=200, mimetype="text/plain; version=0.0.4")


def _gauges_or_down() -> dict:
    """The database gauges plus convoflow_database_up: while the database is down /metrics still answers
    (with the counters and up 0) instead of failing the scrape."""
    up = ("convoflow_database_up", "1 when this process could read the database at scrape time, else 0.")
    try:
        gauges = database_gauges()
    except Exception as e:
        log.warning("metrics: database gauges unavailable (%s)", type(e).__name__)
        return {up: {(): 0}}
    return {up: {(): 1}, **gauges}


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int,
    sandbox: bool,
    sms: Callable[[str, str], None] | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Run `flows serve` until KeyboardInterrupt or SystemExit in the calling thread (the CLI turns
    SIGTERM into SystemExit): the webhook on waitress plus `workers` turn threads and the sender.
    The database must be open and upgraded; settings already checked (channels.worker.check_settings).
    waitress is sized by the HTTP_* settings (docs/deploying.md, "Sizing the server").
    """
    from waitress.server import create_server

    from .worker import start_workers

    metrics = Metrics()
    background = (
        start_workers(settings, sandbox=sandbox, threads=workers, metrics=metrics, sms=sms) if workers else None
    )
    try:
        app = create_app(
            settings,
            metrics=metrics,
            on_inbox=background.wake if background else None,
            background=background.state if background else None,
        )
        # waitress warns "Task queue depth is N" whenever a request waits for a thread: under a burst from
        # Meta that is every request, and the log line would cost more than the request itself.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        server = create_server(
            app,
            host=host,
            port=port,
            ident="convoflow",
            threads=settings.serving_threads(),
            connection_limit=settings.http_connection_limit,
            backlog=settings.http_backlog,
            channel_timeout=settings.http_channel_timeout,
            asyncore_use_poll=True,
        )  # select() stops at 1,024 sockets; poll() has no limit
        if ready is not None:
            ready(f"http://{host}:{server.effective_port}")
        server.run()  # returns after KeyboardInterrupt / SystemExit, once waitress has shut its threads
    finally:
        if background is not None:
            background.stop()


def pool_size(settings: Settings, workers: int) -> int:
    """PostgreSQL connections a serving process may hold: one per HTTP thread and turn thread, the sender,
    the housekeeping sweep, and a few spare."""
    return settings.serving_threads() + workers + 4


def create_from_env(workers: int = 2, sandbox: bool = False) -> Flask:
    """The app for another WSGI server (gunicorn on Linux): settings from the environment, checked; the
    database opened and its schema checked; `workers` turn threads and the sender started in this
    process. Raises SettingsError / SchemaError / NoFlowsLoaded like `flows serve` refuses to start.

        gunicorn -w 1 --threads 8 -b 127.0.0.1:8080 'channels.whatsapp:create_from_env(workers=2)'
    """
    import atexit

    from storage import logs
    from storage.db import open_database
    from storage.migrations import check

    from .worker import check_settings, start_workers

    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
    check_settings(settings, http=True, sandbox=sandbox)
    check(
        open_database(settings.database_url, wait=settings.database_wait, max_connections=pool_size(settings, workers))
    )
    metrics = Metrics()
    background = start_workers(settings, sandbox=sandbox, threads=workers, metrics=metrics) if workers else None
    app = create_app(
        settings,
        metrics=metrics,
        on_inbox=background.wake if background else None,
        background=background.state if background else None,
    )
    if background is not None:
        atexit.register(background.stop)
        app.extensions["convoflow.workers"] = background
    return app
