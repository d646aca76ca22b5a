"""Outbox delivery through the WhatsApp Cloud API: a continuous pipeline, Meta's rate, retries, order.

How a row leaves:
1. Claim (one UPDATE … RETURNING, storage/outbox.py): the oldest pending, due row of each contact that
   has no older pending row, so one contact's messages leave in order. Claiming moves next_attempt_at
   forward by a lease; no database lock is held during the HTTP calls. On PostgreSQL the candidates are
   taken with FOR UPDATE SKIP LOCKED, so several processes share the outbox without taking the same row.
2. Send (no transaction): POST each message on a pool of threads sharing keep-alive connections, never
   faster than the number's rate (WHATSAPP_SEND_RATE) and pausing every thread after a 429.
3. Record (one transaction for every outcome finished since the last one, which also claims the next
   rows: one commit for both): the returned wamid and "sent"; or a retry time with exponential back-off;
   or "failed" with the reason. An outcome that cannot be written (a locked SQLite, a lost connection)
   is kept and written again; its row is not sent again meanwhile.

There is no round: pump() records what finished and claims as many rows as there are free senders, so
a reply goes out as soon as it is due and one contact's next message as soon as the previous is recorded.
A pump that only records (`look=False`: woken by a finished send, nothing queued since) claims only when
a recorded row freed its contact's next one, or its last claim was full: the claim statement that found
nothing was most of a sender's statements at a steady load. And while this process's turns are queueing
replies, the worker's loop lets finished sends wait a moment (WorkerOptions.record_wait) for the next rows
they queue, so one statement records the ones and claims the others.

A process killed between 2 and 3 leaves the row pending: when the lease runs out it is sent again. The
Cloud API has no idempotency key, so that rare case can deliver a message twice; it never loses one.
A message that WhatsApp's limits make into several parts (see payloads.py) is resent whole on a retry.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import ssl
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable
from urllib.parse import urlsplit

import peewee
from urllib3.util.wait import wait_for_read

from engine.context import utcnow
from engine.messages import Outbound
from storage import outbox
from storage.db import is_postgres, write_transaction
from storage.outbox import Claimed
from storage.settings import Settings
from storage.text import compact_json, stored_json

from .metrics import Metrics
from .payloads import to_cloud_api

log = logging.getLogger("convoflow.sender")
_receipts_log = logging.getLogger("convoflow.whatsapp")  # where the webhook has always reported them


def log_undelivered(rows: list[tuple[int, str]]) -> None:
    """Meta's word that messages it accepted never reached the person ((outbox row id, error) from a `failed`
    receipt), whether the webhook recorded it or the sweep did (storage.outbox.apply_early_receipts)."""
    for row_id, error in rows:
        _receipts_log.warning("whatsapp: message %s was not delivered: %s", row_id, error)


__all__ = ["Attempt", "Claimed", "RateLimiter", "SendPolicy", "Sender", "SenderConfigError"]

# Graph error codes worth another try: throughput (130429), too many messages to one user (131056),
# service trouble (131016, 131000). Anything else in a 4xx is our fault or the user's: retrying won't help.
RETRY_CODES = frozenset({130429, 131056, 131016, 131000})
THROTTLED = 130429  # the number's own throughput limit: every thread pauses, not only this row
WINDOW_CLOSED = 131047  # more than 24 h since the user last wrote: only an approved template may be sent


class SenderConfigError(ValueError):
    """A setting the sender needs is missing (the message names it)."""


@dataclass(frozen=True)
class SendPolicy:
    """Retry and timing rules. Back-off: base_delay * 2^(attempt-1), capped, with ±25 % jitter."""

    max_attempts: int = 10
    base_delay: float = 2.0
    max_delay: float = 600.0
    lease: float = 120.0  # longer than the HTTP timeouts, so a row is never sent by two live senders
    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    throttle_pause: float = 1.0  # after a 429 every thread waits this long, doubled while 429s go on
    record_tries: int = 5  # writes of a round's outcomes run_once tries before it gives up (pump: 1 a call)

    def delay(self, attempts: int, jitter: float) -> float:
        base = min(self.max_delay, self.base_delay * 2 ** max(0, attempts - 1))
        return base * (0.75 + 0.5 * jitter)


@dataclass(frozen=True)
class Attempt:
    """The outcome of posting one outbox row."""

    ok: bool
    wamid: str | None = None
    retry: bool = False
    code: int | None = None
    reason: str | None = None
    throttled: bool = False


class RateLimiter:
    """At most `rate` posts a second (a short burst of a tenth of a second's worth allowed), and a shared
    pause after Meta says 429. Threads wait in acquire(); the clock and sleep are injectable for tests."""

    def __init__(
        self,
        rate: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate
        self.tolerance = max(0.0, 0.1 - self.interval)
        self.monotonic, self.sleep = monotonic, sleep
        self._lock = threading.Lock()
        self._next = 0.0  # the theoretical time of the next post (GCRA)
        self._paused_until = 0.0
        self._pause = 0.0

    def acquire(self) -> None:
        with self._lock:
            now = self.monotonic()
            at = max(now, self._next - self.tolerance, self._paused_until)
            self._next = max(self._next, at) + self.interval
        if at > now:
            self.sleep(at - now)

    def throttled(self, base: float) -> float:
        """Meta refused for throughput: pause everyone, longer each time in a row. Returns the pause."""
        with self._lock:
            self._pause = min(60.0, self._pause * 2 if self._pause else base)
            self._paused_until = max(self._paused_until, self.monotonic() + self._pause)
            return self._pause

    def accepted(self) -> None:
        self._pause = 0.0


class Sender:
    """Delivers due outbox rows. A worker loop calls pump() whenever it is woken (a turn queued replies,
    a send finished: on_done) or its poll runs out; run_once() is one round that waits for its sends
    (tests, a one-off drain)."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = utcnow,
        policy: SendPolicy = SendPolicy(),
        jitter: Callable[[], float] = random.random,
        batch: int = 64,
        parallel: int = 32,
        limiter: RateLimiter | None = None,
        pause: Callable[[float], None] = time.sleep,
    ) -> None:
        for name, value in (
            ("WHATSAPP_ACCESS_TOKEN", settings.whatsapp_access_token),
            ("WHATSAPP_PHONE_NUMBER_ID", settings.whatsapp_phone_number_id),
        ):
            if not value:
                raise SenderConfigError(f"{name} is not set: the sender cannot reach the WhatsApp Cloud API")
        self._url = f"{settings.whatsapp_api_url}/{settings.whatsapp_phone_number_id}/messages"
        # http.client itself, one keep-alive connection per sending thread, reused: urllib3's pool around it
        # cost about as much CPU again per post, the largest part of the sender's work.
        url = urlsplit(self._url)
        self._path = url.path + (f"?{url.query}" if url.query else "")
        self._connect_to = (
            url.hostname or "",
            url.port,
            ssl.create_default_context() if url.scheme == "https" else None,
        )
        self._headers = {
            "Authorization": f"Bearer {settings.whatsapp_access_token}",
            "Content-Type": "application/json",
        }
        self._local = threading.local()
        self._connections: dict[int, http.client.HTTPConnection] = {}  # by sending thread, to close at the end
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.policy = policy
        self.jitter = jitter
        self.batch = batch
        self.parallel = parallel
        self.limiter = limiter or RateLimiter(settings.whatsapp_send_rate)
        self.on_done: Callable[[], None] | None = None  # called from a sending thread when a send finished
        self._pause = pause  # between tries of a bookkeeping write
        self._pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="convoflow-send")
        self._lock = threading.Lock()
        self._in_flight: dict[int, Future] = {}
        self._finished: list[tuple[Claimed, Attempt]] = []  # sent or refused, not written down yet
        self.more_due = False  # the last pump() claimed all it could take: pump again without waiting
        self._filled = True  # the last claim took as many rows as it asked for: the next pump claims again
        self._cancelled: list[int] = []

    def close(self) -> None:
        """Let the sends under way finish and record them; rows not started yet are handed back."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        try:
            self._record(tries=1)
            with self._lock:
                cancelled, self._cancelled = self._cancelled, []
            outbox.release(cancelled, self.clock())
        except peewee.PeeweeException as e:
            log.warning(
                "sender stopping: could not record the last outcomes (%s); their rows are sent again after the lease",
                type(e).__name__,
            )
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
        for conn in connections:
            conn.close()

    # ── the pipeline ───────────────────────────────────────────────────────────────────────────────

    def pump(self, look: bool = True) -> int:
        """Record every send finished since the last call and claim due rows for the free senders, in one
        transaction (one commit for both), then start them; returns how many rows were recorded or started
        (0: nothing to do until woken). look=False: claim only if what was recorded may have made a row
        due (a contact's next row, or more than the last claim could take); the caller looks at least
        every so often for rows nothing here woke it for (queued by another process, a retry come due)."""
        with self._lock:
            room = 2 * self.parallel - len(self._in_flight)  # a few queued, so no sender waits for a claim
        limit = min(room, self.batch)
        try:
            recorded, claimed = self._record(tries=1, claim=limit, look=look or self._filled)
        except (peewee.OperationalError, peewee.InterfaceError) as e:
            log.warning(
                "sender: could not record send outcomes (%s); they are kept and written on the next "
                "try, their rows not sent again",
                type(e).__name__,
            )
            return 0
        self.more_due = len(claimed) == self.batch  # a full claim: more rows may be due at once
        self._filled = len(claimed) >= limit
        for row in claimed:
            self._submit(row)
        return recorded + len(claimed)

    def only_records(self) -> bool:
        """True when sends finished and a pump without a look would only write them down (their rows may
        free a contact's next one, but the last claim was not full: no more rows are known to be due)."""
        with self._lock:
            return bool(self._finished) and not self._filled

    def run_once(self) -> int:
        """One round, waited for: claim due rows, send them (different contacts in parallel) and record
        the outcomes. Returns how many rows were attempted."""
        claimed = self.claim()
        wait([self._submit(row) for row in claimed])
        self._record(tries=self.policy.record_tries)
        return len(claimed)

    def claim(self, limit: int | None = None) -> list[Claimed]:
        """Lease the next rows to send (see storage.outbox.claim), leaving out any this process is still
        sending or has an unwritten outcome for."""
        now = self.clock()
        return self._not_held(outbox.claim(now, now + timedelta(seconds=self.policy.lease), limit or self.batch))

    def _not_held(self, rows: list[Claimed]) -> list[Claimed]:
        with self._lock:
            held = set(self._in_flight) | {row.id for row, _ in self._finished}
        return [row for row in rows if row.id not in held]

    def _submit(self, row: Claimed) -> Future:
        with self._lock:
            future = self._in_flight[row.id] = self._pool.submit(self._send, row)
        future.add_done_callback(lambda f: self._cancelled.append(row.id) if f.cancelled() else None)
        return future

    def _send(self, row: Claimed) -> None:
        try:
            attempt = self.deliver(row)
        except Exception as e:  # a bug must not lose the row: it is tried again like a network failure
            log.exception("sender: unexpected error sending outbox message %s", row.id)
            attempt = Attempt(ok=False, retry=True, reason=f"unexpected error ({type(e).__name__})")
        with self._lock:
            self._finished.append((row, attempt))
            self._in_flight.pop(row.id, None)
        if self.on_done is not None:
            self.on_done()

    # ── HTTP ───────────────────────────────────────────────────────────────────────────────────────

    def deliver(self, row: Claimed) -> Attempt:
        """Post the Cloud API messages for one outbox row, in order, each within the rate. The last
        part's wamid is kept."""
        try:
            messages = to_cloud_api(Outbound.from_dict(stored_json(row.payload)), to=row.to)
        except (ValueError, KeyError, TypeError) as e:
            return Attempt(ok=False, reason=f"unreadable outbox payload ({type(e).__name__})")
        wamid = None
        for message in messages:
            self.limiter.acquire()
            attempt = self._post(message)
            if attempt.throttled:
                pause = self.limiter.throttled(self.policy.throttle_pause)
                log.warning(
                    "the Graph API says too many messages (%s): every sender pauses %.1f s", attempt.reason, pause
                )
            if not attempt.ok:
                return attempt
            self.limiter.accepted()
            wamid = attempt.wamid
        return Attempt(ok=True, wamid=wamid)

    def _post(self, message: dict) -> Attempt:
        # compact_json's encoder is built once; json.dumps with an option builds one a call (about a fifth of
        # the row's Python before its HTTP exchange)
        body = compact_json(message).encode()
        try:
            conn = self._connection()
            conn.request("POST", self._path, body=body, headers=self._headers)
            resp = conn.getresponse()
            data = resp.read()  # no blind resend on a failure: our own back-off decides (it could deliver twice)
        except (OSError, http.client.HTTPException) as e:
            self._drop_connection()
            # The exception text may carry the host but never the headers, so naming its type is enough.
            return Attempt(ok=False, retry=True, reason=f"no answer from the Graph API ({type(e).__name__})")
        return self._answer(resp, data)

    def _connection(self) -> http.client.HTTPConnection:
        """This thread's keep-alive connection; a new one when there is none or the server closed it while
        it sat idle (it is readable then: a reused dead connection would fail a send that never left)."""
        conn = self._local.__dict__.get("conn")
        if conn is not None and (conn.sock is None or wait_for_read(conn.sock, timeout=0.0)):
            self._drop_connection()
            conn = None
        if conn is None:
            host, port, context = self._connect_to
            timeout = self.policy.connect_timeout
            if context is None:
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
            else:
                conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
            self._local.conn = conn
            with self._lock:
                self._connections[threading.get_ident()] = conn
            conn.connect()
            conn.sock.settimeout(self.policy.read_timeout)
        return conn

    def _drop_connection(self) -> None:
        conn = self._local.__dict__.pop("conn", None)
        if conn is not None:
            conn.close()

    def _answer(self, resp: http.client.HTTPResponse, data: bytes) -> Attempt:
        """The Attempt a Graph API answer means: its wamid, or why it failed and whether to try again."""
        try:
            doc = json.loads(data)
        except ValueError:
            doc = {}
        doc = doc if isinstance(doc, dict) else {}
        if 200 <= resp.status < 300:
            ids = [m.get("id") for m in doc.get("messages") or [] if isinstance(m, dict)]
            return Attempt(ok=True, wamid=ids[0] if ids else None)
        err = doc.get("error") if isinstance(doc.get("error"), dict) else {}
        code = err.get("code") if isinstance(err.get("code"), int) else None
        detail = (err.get("error_data") or {}).get("details") if isinstance(err.get("error_data"), dict) else None
        text = str(err.get("message") or resp.reason or "")[:300]
        reason = f"HTTP {resp.status}" + (f", code {code}" if code is not None else "") + (f": {text}" if text else "")
        if detail:
            reason += f" ({str(detail)[:200]})"
        retry = resp.status == 429 or resp.status >= 500 or code in RETRY_CODES or err.get("is_transient") is True
        return Attempt(
            ok=False, retry=retry, code=code, reason=reason, throttled=resp.status == 429 or code == THROTTLED
        )

    # ── recording ─────────────────────────────────────────────────────────────────────────────────

    def _record(self, tries: int, claim: int = 0, look: bool = True) -> tuple[int, list[Claimed]]:
        """Write every finished outcome in one transaction (on PostgreSQL, when every send was accepted, one
        statement), trying `tries` times (a locked SQLite, a lost connection), and lease up to `claim` rows
        to send next in the same transaction (with look=False
        only when an outcome freed its contact's next row); outcomes that could not be written are kept
        for the next call, and the error raised. Returns (how many were written, the rows leased)."""
        with self._lock:
            outcomes, self._finished = self._finished, []
        if not outcomes:
            return 0, self.claim(claim) if claim > 0 and look else []
        now = self.clock()
        plan = [(row, attempt, self._next_try(row, attempt)) for row, attempt in outcomes]
        # Every send accepted, on PostgreSQL: the marks and the claim in one statement (no BEGIN, no COMMIT).
        alone = is_postgres() and all(attempt.ok for _, attempt, _ in plan)
        for n in range(tries):
            try:
                if alone:
                    sent = [(row.id, attempt.wamid) for row, attempt, _ in plan]
                    lease = now + timedelta(seconds=self.policy.lease)
                    claimed = []
                    if claim > 0:
                        claimed = self._not_held(outbox.record_sent_and_claim(sent, now, lease, claim, look))
                    else:
                        outbox.record_sent(sent, now)
                    break
                with write_transaction():
                    freed = self._write(plan, now)
                    claimed = self.claim(claim) if claim > 0 and (look or freed) else []
                break
            except (peewee.OperationalError, peewee.InterfaceError) as e:
                if n + 1 >= tries:
                    with self._lock:
                        self._finished[:0] = outcomes
                    raise
                log.warning("sender: could not record %d send outcomes (%s); trying again", len(plan), type(e).__name__)
                self._pause(min(2.0, 0.1 * 2**n))
        self._report(plan)
        return len(plan), claimed

    def _next_try(self, row: Claimed, attempt: Attempt) -> float | None:
        """Seconds until the row's next try; None when it is sent or given up."""
        if attempt.ok or not attempt.retry or row.attempts + 1 >= self.policy.max_attempts:
            return None
        return self.policy.delay(row.attempts + 1, self.jitter())

    @staticmethod
    def _write(plan: list[tuple[Claimed, Attempt, float | None]], now: datetime) -> bool:
        """Write the outcomes; True when one may have freed its contact's next row (sent with a later row
        pending, or given up: a retried row stays its contact's first)."""
        freed = outbox.record_sent([(row.id, attempt.wamid) for row, attempt, _ in plan if attempt.ok], now)
        for row, attempt, delay in plan:
            if attempt.ok:
                continue
            if delay is not None:
                outbox.retry_later(row.id, now + timedelta(seconds=delay), attempt.reason or "")
            else:
                outbox.mark_failed(row.id, attempt.reason or "")
                freed = True
        return freed

    def _report(self, plan: list[tuple[Claimed, Attempt, float | None]]) -> None:
        for row, attempt, delay in plan:
            if attempt.ok:
                self.metrics.messages_out.inc()
                continue
            self.metrics.send_failures.inc(
                outcome="retry" if delay is not None else "gave_up", code=str(attempt.code or "")
            )
            if delay is not None:
                log.warning(
                    "send of outbox message %s failed (attempt %d), retrying in %.0f s: %s",
                    row.id,
                    row.attempts + 1,
                    delay,
                    attempt.reason,
                )
                continue
            why = f"gave up after {row.attempts + 1} attempts" if attempt.retry else "not retryable"
            note = (
                " — the 24-hour window is closed: only an approved template can reach this contact"
                if attempt.code == WINDOW_CLOSED
                else ""
            )
            log.error("send of outbox message %s failed, %s: %s%s", row.id, why, attempt.reason, note)
