"""Outbox delivery through the WhatsApp Cloud API, with retries, back-off and per-contact order.

How a row leaves:
1. Claim (one UPDATE … RETURNING): the oldest pending, due row of each contact that has no older pending
   row — so one contact's messages leave in order, one per round. Claiming moves next_attempt_at forward
   by a lease; no database lock is held during the HTTP calls. On PostgreSQL the candidates are taken
   with FOR UPDATE SKIP LOCKED, so several processes share the outbox without taking the same row.
2. Send (no transaction): POST each message; different contacts in parallel.
3. Record (one UPDATE for every row sent): the returned wamid and "sent"; or a retry time with
   exponential back-off; or "failed" with the reason.

A process killed between 2 and 3 leaves the row pending: when the lease runs out it is sent again. The
Cloud API has no idempotency key, so that rare case can deliver a message twice; it never loses one.
A message that WhatsApp's limits make into several parts (see payloads.py) is resent whole on a retry.
"""
from __future__ import annotations

import json
import logging
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

import urllib3

from engine.context import utcnow
from engine.messages import Outbound
from storage import outbox
from storage.db import execute, is_postgres
from storage.settings import Settings

from .metrics import Metrics
from .payloads import to_cloud_api

log = logging.getLogger("convoflow.sender")

# Graph error codes worth another try: throughput (130429), too many messages to one user (131056),
# service trouble (131016, 131000). Anything else in a 4xx is our fault or the user's: retrying won't help.
RETRY_CODES = frozenset({130429, 131056, 131016, 131000})
# A round is one statement out and one back, written as SQL that both databases run.
# Claim: lease the first pending, due row of each contact whose earlier rows are all sent or failed (so
# one contact's messages leave in order). On PostgreSQL the candidates are locked with SKIP LOCKED, so
# two senders never take the same row; the UPDATE then moves them out of reach for the lease.
_CLAIM = (
    'UPDATE "outbox_message" SET "next_attempt_at" = ? WHERE "id" IN ('
    'SELECT f."id" FROM "outbox_message" f WHERE f."status" = \'pending\' AND f."next_attempt_at" <= ? '
    'AND NOT EXISTS (SELECT 1 FROM "outbox_message" p WHERE p."contact_id" = f."contact_id" '
    'AND p."status" = \'pending\' AND p."id" < f."id") ORDER BY f."id" LIMIT ?{lock}) '
    'RETURNING "id", "payload", "attempts", '
    '(SELECT c."key" FROM "contact" c WHERE c."id" = "outbox_message"."contact_id"), '
    '(SELECT COALESCE(c."wa_id", c."user_id") FROM "contact" c WHERE c."id" = "outbox_message"."contact_id")'
)
# Record: every row the Graph API accepted, with its wamid, in one statement.
_SENT = (
    'WITH v ("id", "wamid") AS (VALUES {values}) '
    'UPDATE "outbox_message" SET "status" = \'sent\', '
    '"channel_message_id" = (SELECT v."wamid" FROM v WHERE v."id" = "outbox_message"."id"), '
    '"sent_at" = ?, "attempts" = "attempts" + 1, "error" = NULL WHERE "id" IN (SELECT "id" FROM v)'
)
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


@dataclass(frozen=True)
class Claimed:
    """An outbox row taken for sending."""

    id: int
    contact_key: str
    to: str
    payload: str
    attempts: int


class Sender:
    """Delivers due outbox rows. Call run_once() from a loop (channels/worker.py does)."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = utcnow,
        policy: SendPolicy = SendPolicy(),
        jitter: Callable[[], float] = random.random,
        batch: int = 64,
        parallel: int = 8,
    ) -> None:
        for name, value in (
            ("WHATSAPP_ACCESS_TOKEN", settings.whatsapp_access_token),
            ("WHATSAPP_PHONE_NUMBER_ID", settings.whatsapp_phone_number_id),
        ):
            if not value:
                raise SenderConfigError(f"{name} is not set: the sender cannot reach the WhatsApp Cloud API")
        self._url = f"{settings.whatsapp_api_url}/{settings.whatsapp_phone_number_id}/messages"
        # urllib3 rather than requests: the same connection pooling at about a third of the CPU per call,
        # which is most of the sender's cost. One keep-alive connection per sending thread.
        self._http = urllib3.PoolManager(
            maxsize=parallel,
            headers={"Authorization": f"Bearer {settings.whatsapp_access_token}", "Content-Type": "application/json"},
        )
        self._timeout = urllib3.Timeout(connect=policy.connect_timeout, read=policy.read_timeout)
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.policy = policy
        self.jitter = jitter
        self.batch = batch
        self._pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="convoflow-send")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._http.clear()

    # ── one round ──────────────────────────────────────────────────────────────────────────────────

    def run_once(self) -> int:
        """Claim due rows, send them (different contacts in parallel) and record the outcomes. Returns how
        many rows were attempted."""
        claimed = self.claim()
        if claimed:
            self._record(list(zip(claimed, self._pool.map(self.deliver, claimed))))
        return len(claimed)

    def claim(self) -> list[Claimed]:
        """Lease the next rows to send: the oldest pending, due row of each contact with no older pending
        row (see the module docstring). One statement, no explicit transaction: the UPDATE is atomic."""
        now = self.clock()
        sql = _CLAIM.format(lock=" FOR UPDATE OF f SKIP LOCKED" if is_postgres() else "")
        rows = execute(sql, (now + timedelta(seconds=self.policy.lease), now, self.batch)).fetchall()
        claimed = []
        # The contact's address as Meta expects it: its phone number, else its user id (sent as `recipient`).
        for row_id, payload, attempts, key, address in sorted(rows):
            claimed.append(Claimed(id=row_id, contact_key=key, to=address or key, payload=payload, attempts=attempts))
        return claimed

    # ── HTTP ───────────────────────────────────────────────────────────────────────────────────────

    def deliver(self, row: Claimed) -> Attempt:
        """Post the Cloud API messages for one outbox row, in order. The last part's wamid is kept."""
        try:
            messages = to_cloud_api(Outbound.from_dict(json.loads(row.payload)), to=row.to)
        except (ValueError, KeyError, TypeError) as e:
            return Attempt(ok=False, reason=f"unreadable outbox payload ({type(e).__name__})")
        wamid = None
        for message in messages:
            attempt = self._post(message)
            if not attempt.ok:
                return attempt
            wamid = attempt.wamid
        return Attempt(ok=True, wamid=wamid)

    def _post(self, message: dict) -> Attempt:
        try:
            resp = self._http.request(
                "POST",
                self._url,
                body=json.dumps(message, ensure_ascii=False).encode(),
                timeout=self._timeout,
                retries=False,  # our own back-off decides; a blind resend could deliver twice
            )
        except urllib3.exceptions.HTTPError as e:
            # The exception text may carry the URL but never the headers, so naming its type is enough.
            return Attempt(ok=False, retry=True, reason=f"no answer from the Graph API ({type(e).__name__})")
        try:
            doc = json.loads(resp.data)
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
        return Attempt(ok=False, retry=retry, code=code, reason=reason)

    # ── recording ─────────────────────────────────────────────────────────────────────────────────

    def _record(self, outcomes: list[tuple[Claimed, Attempt]]) -> None:
        """Write a round's outcomes: the sent rows in one statement, the rest one by one (rare)."""
        now = self.clock()
        sent = [(row.id, attempt.wamid) for row, attempt in outcomes if attempt.ok]
        if sent:
            values = ", ".join(["(?, ?)"] * len(sent))
            execute(_SENT.format(values=values), [x for pair in sent for x in pair] + [now])
        for row, attempt in outcomes:
            if attempt.ok:
                continue
            if attempt.retry and row.attempts + 1 < self.policy.max_attempts:
                delay = self.policy.delay(row.attempts + 1, self.jitter())
                outbox.retry_later(row.id, now + timedelta(seconds=delay), attempt.reason or "")
                log.warning(
                    "send of outbox message %s failed (attempt %d), retrying in %.0f s: %s",
                    row.id, row.attempts + 1, delay, attempt.reason,
                )
            else:
                outbox.mark_failed(row.id, attempt.reason or "")
                why = f"gave up after {row.attempts + 1} attempts" if attempt.retry else "not retryable"
                note = (
                    " — the 24-hour window is closed: only an approved template can reach this contact"
                    if attempt.code == WINDOW_CLOSED else ""
                )
                log.error("send of outbox message %s failed, %s: %s%s", row.id, why, attempt.reason, note)
        for row, attempt in outcomes:
            if attempt.ok:
                self.metrics.messages_out.inc()
            else:
                gave_up = not attempt.retry or row.attempts + 1 >= self.policy.max_attempts
                self.metrics.send_failures.inc(outcome="gave_up" if gave_up else "retry", code=str(attempt.code or ""))
