"""Outbox delivery through the WhatsApp Cloud API, with retries, back-off and per-contact order.

How a row leaves:
1. Claim (one short transaction): the oldest pending, due row of each contact that has no older pending
   row — so one contact's messages leave in order — plus that contact's later due rows. Claiming moves
   next_attempt_at forward by a lease; no database lock is held during the HTTP calls. On PostgreSQL the
   claim uses FOR UPDATE SKIP LOCKED so several processes share the outbox without taking the same row.
2. Send (no transaction): POST each message; different contacts in parallel, one contact's in order.
3. Record (one short transaction per round): the returned wamid and "sent"; or a retry time with
   exponential back-off; or "failed" with the reason.

A process killed between 2 and 3 leaves the row pending: when the lease runs out it is sent again. The
Cloud API has no idempotency key, so that rare case can deliver a message twice; it never loses one.
A message that WhatsApp's limits make into several parts (see payloads.py) is resent whole on a retry.
"""
from __future__ import annotations

import json
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

import urllib3
from peewee import SQL, fn

from engine.context import utcnow
from engine.messages import Outbound
from storage import outbox
from storage.db import execute, is_postgres, write_transaction
from storage.models import Contact, OutboxMessage
from storage.settings import Settings

from .metrics import Metrics
from .payloads import to_cloud_api

log = logging.getLogger("convoflow.sender")

# Graph error codes worth another try: throughput (130429), too many messages to one user (131056),
# service trouble (131016, 131000). Anything else in a 4xx is our fault or the user's: retrying won't help.
RETRY_CODES = frozenset({130429, 131056, 131016, 131000})
# The two statements of every round, as plain SQL: a round records up to a few hundred rows.
_SENT = ('UPDATE "outbox_message" SET "status" = \'sent\', "channel_message_id" = ?, "sent_at" = ?, '
         '"attempts" = "attempts" + 1, "error" = NULL WHERE "id" = ?')
_RELEASE = 'UPDATE "outbox_message" SET "next_attempt_at" = ? WHERE "id" = ?'
MAX_PER_CONTACT = 3  # rows of one contact per round, so one slow contact does not hold a round for long
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
        """Claim due rows, send them and record the outcomes. Returns how many rows were attempted."""
        claimed = self.claim()
        if not claimed:
            return 0
        by_contact: dict[str, list[Claimed]] = {}
        for row in claimed:
            by_contact.setdefault(row.contact_key, []).append(row)
        outcomes = [o for contact in self._pool.map(self._send_contact, by_contact.values()) for o in contact]
        # One transaction for the round: concurrent small commits would only queue on the database lock.
        self._record(outcomes)
        return sum(1 for _, a in outcomes if a is not None)

    def claim(self) -> list[Claimed]:
        """Lease the next rows to send (see the module docstring)."""
        now = self.clock()
        O = OutboxMessage
        older = O.alias()
        blocked = older.select(SQL("1")).where(
            (older.contact == O.contact) & (older.status == "pending") & (older.id < O.id)
        )
        firsts = (
            O.select(O.id, O.contact)
            .where((O.status == "pending") & (O.next_attempt_at <= now) & ~fn.EXISTS(blocked))
            .order_by(O.id)
            .limit(self.batch)
        )
        if is_postgres():
            firsts = firsts.for_update(skip_locked=True)
        with write_transaction():
            contacts = [c for _, c in firsts.tuples()]
            if not contacts:
                return []
            # Only the holder of a contact's oldest pending row may take its later rows: for everyone
            # else they are blocked by that row, so this needs no further lock.
            rows = []
            taken: dict[str, int] = {}
            for row in (
                O.select(O.id, O.payload, O.attempts, Contact.key, Contact.wa_id)
                .join(Contact)
                .where(O.contact.in_(contacts) & (O.status == "pending") & (O.next_attempt_at <= now))
                .order_by(O.id)
                .tuples()
            ):
                # A bounded run per contact keeps a round (all timeouts in a row) well inside the lease.
                if taken.get(row[3], 0) < MAX_PER_CONTACT:
                    taken[row[3]] = taken.get(row[3], 0) + 1
                    rows.append(row)
            O.update(next_attempt_at=now + timedelta(seconds=self.policy.lease)).where(
                O.id.in_([r[0] for r in rows])
            ).execute()
        return [Claimed(id=i, contact_key=key, to=wa_id or key, payload=p, attempts=a) for i, p, a, key, wa_id in rows]

    def _send_contact(self, rows: list[Claimed]) -> list[tuple[Claimed, Attempt | None]]:
        """Send one contact's rows in order; stop at the first that does not go through (None: not tried)."""
        outcomes: list[tuple[Claimed, Attempt | None]] = []
        stopped = False
        # Past half the lease, leave the rest for the next round rather than risk a second sender.
        deadline = time.monotonic() + self.policy.lease / 2
        for row in rows:
            stopped = stopped or time.monotonic() > deadline
            if stopped:
                outcomes.append((row, None))
                continue
            attempt = self.deliver(row)
            outcomes.append((row, attempt))
            stopped = not attempt.ok
        return outcomes

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

    def _record(self, outcomes: list[tuple[Claimed, Attempt | None]]) -> None:
        now = self.clock()
        with write_transaction():
            for row, attempt in outcomes:
                if attempt is None:  # not tried because an earlier message to this contact did not go
                    execute(_RELEASE, (now, row.id))
                elif attempt.ok:
                    execute(_SENT, (attempt.wamid, now, row.id))
                elif attempt.retry and row.attempts + 1 < self.policy.max_attempts:
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
            if attempt is None:
                continue
            if attempt.ok:
                self.metrics.messages_out.inc()
            else:
                gave_up = not attempt.retry or row.attempts + 1 >= self.policy.max_attempts
                self.metrics.send_failures.inc(outcome="gave_up" if gave_up else "retry", code=str(attempt.code or ""))
