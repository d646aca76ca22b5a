"""The background work of a convoflow process: turn threads, the sender and the housekeeping sweep.

- N turn threads call channels.inbox_turns.process_inbox one message at a time (so each turn's latency is
  measured). The persisted turn path takes care of one-contact-at-a-time and timestamp order; several
  threads and several processes (PostgreSQL) share the inbox.
- One sender thread delivers the outbox (channels/sender.py).
- One housekeeping thread expires idle conversations (channels.expiry.expire_due), picks up flows
  loaded with `flows load` while the process runs, and records the delivery receipts that came before
  their sends were recorded (storage.outbox.apply_early_receipts).

Idle threads wait for a wake-up with a timeout: the webhook (same process) wakes one turn thread for each
delivery it stored; a thread that took a message looks again after its turn, and wakes one more idle
thread, only when another message was waiting beside it; it looks again alone when its save found the
contact's next message (PostgreSQL); a look again spends a wake-up kept for a message it can see; the
turn threads and the sweep wake the sender.
The timeout is the poll for work written by other processes. stop() lets each thread finish what it is
doing (a turn, a send round) and returns within a bound.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Callable, Mapping

from peewee import fn

from engine.context import TurnContext, utcnow
from storage import outbox
from storage.db import describe, empty_wal, unavailable
from storage.models import FlowVersion
from storage.settings import DEFAULT_WHATSAPP_API_URL, Settings, SettingsError

from .metrics import Metrics
from .sender import Sender, log_undelivered

log = logging.getLogger("convoflow.worker")


@dataclass(frozen=True)
class WorkerOptions:
    """How many turn threads, and the waits that keep idle threads cheap."""

    threads: int = 2
    poll_interval: float = 0.5  # seconds an idle thread waits for a wake-up before looking again
    # seconds a finished send's mark may wait for the next rows this process's turns queue, so that one
    # statement writes the one and claims the others (only while the turns are queueing: see _sender_loop)
    record_wait: float = 0.025
    error_pause: float = 1.0  # after an unexpected error, so a persistent fault does not spin
    housekeeping_interval: float = 15.0  # expiry sweep and flow reload check
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


class Outage:
    """Says once that the database went away and once that it came back, instead of a traceback every
    round while it is down (the loops keep going round and resume by themselves)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.since: float | None = None

    def failed(self, error: BaseException) -> bool:
        """True (and logged once) when error means the database is unavailable; False for anything else."""
        if not unavailable(error):
            return False
        if self.since is None:
            self.since = time.monotonic()
            log.warning("%s: database unavailable (%s); retrying", self.name, describe(error))
        return True

    def ok(self) -> None:
        if self.since is not None:
            log.info("%s: database available again after %.1f s", self.name, time.monotonic() - self.since)
            self.since = None


def set_once(event: threading.Event) -> None:
    """event.set(), left out when the event is set already: a no-op then (nobody waits on a set event), but
    Event.set takes its Condition and notifies all the same, about 7k instructions (cachegrind), once a send
    and twice a turn thread's round. Reading the flag first is as safe as setting it: a clear() that follows
    the read finds the event as it would after a set() made at that moment."""
    if not event.is_set():
        event.set()


class Wakeups:
    """Wake-ups for the turn threads, one thread for each: an Event's set() woke every waiting thread, and
    all but the one that took the new message looked at the inbox for nothing (a pick statement each, in
    this process and in its database backend). A wake-up with no thread waiting is kept (up to `limit`,
    the number of threads) for the next thread about to wait, so one that lands during a look is not lost.
    """

    def __init__(self, limit: int) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._kept = 0
        self._waiting = 0
        self._limit = max(1, limit)
        self._all = False

    def wake(self) -> None:
        """One thread: a waiting one, else the next to wait."""
        with self._cond:
            self._kept = min(self._kept + 1, self._limit)
            self._cond.notify()

    def nudge(self) -> None:
        """One waiting thread, if any waits (not kept: the threads at work look again anyway)."""
        with self._cond:
            if self._waiting > self._kept:
                self._kept += 1
                self._cond.notify()

    def take(self) -> None:
        """A thread about to look without waiting: one kept wake-up that no waiting thread will take is
        spent on that look, which sees every message committed before it, as the woken look would."""
        with self._cond:
            if self._kept > self._waiting:
                self._kept -= 1

    def wake_all(self) -> None:
        """Every thread, now and from now on (stop)."""
        with self._cond:
            self._all = True
            self._cond.notify_all()

    def wait(self, timeout: float) -> None:
        """Until a wake-up (a kept one counts) or the timeout."""
        with self._cond:
            if not (self._kept or self._all):
                self._waiting += 1
                self._cond.wait(timeout)
                self._waiting -= 1
            if self._kept:
                self._kept -= 1


class NoFlowsLoaded(RuntimeError):
    """The database holds no flows: every message would get the default reply."""


class Workers:
    """Runs the turn threads, the sender and the housekeeping sweep until stop()."""

    def __init__(
        self,
        services: Mapping[str, Any],
        *,
        sender: Sender | None,
        metrics: Metrics | None = None,
        options: WorkerOptions = WorkerOptions(),
    ) -> None:
        from channels import expiry, flowcache, inbox_turns

        self._inbox_turns, self._expiry = inbox_turns, expiry
        self.services = services
        self.sender = sender
        self.metrics = metrics or (sender.metrics if sender else Metrics())
        self.options = options
        self.ctx = turn_context(services)  # replaceable: tests give it a clock they can move
        self.flow_cache = flowcache.FlowCache(self.ctx.registry)  # the flows parsed against the turns' actions
        self._stop = threading.Event()
        self._inbox_wake = Wakeups(options.threads)
        self._outbox_wake = threading.Event()
        self._outbox_queued = threading.Event()  # rows were queued here since the sender last looked
        self._queued_at = float("-inf")  # when rows were last queued here (time.monotonic())
        self._backfilled_at = float("-inf")  # when the sweep last backfilled expiry checks (time.monotonic())
        if sender is not None:
            # a finished send frees a sender and maybe its contact's next row
            sender.on_done = partial(set_once, self._outbox_wake)
        self._threads: list[threading.Thread] = []
        self._flows_lock = threading.Lock()
        self._flows_signature: tuple | None = None
        self.flows = None
        self.sender_ok_at: datetime | None = None  # the end of the sender's last round that could use the database
        self.sender_error: str | None = None  # the kind of error that ended its last round, if it failed

    # ── control ────────────────────────────────────────────────────────────────────────────────────

    def start(self) -> None:
        self.refresh_flows()
        for i in range(self.options.threads):
            self._spawn(f"convoflow-turns-{i}", self._turn_loop, f"{self.options.worker_id}:{i}")
        if self.sender is not None:
            self._spawn("convoflow-sender", self._sender_loop)
        self._spawn("convoflow-housekeeping", self._housekeeping_loop)
        log.info("workers started: %d turn threads%s", self.options.threads, " and the sender" if self.sender else "")

    def wake(self) -> None:
        """New inbox rows were committed (the webhook calls this): one idle turn thread looks."""
        self._inbox_wake.wake()

    def stop(self, timeout: float = 30.0) -> bool:
        """Ask every thread to finish its current piece of work; True when all ended within timeout."""
        self._stop.set()
        self._inbox_wake.wake_all()
        self._outbox_wake.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            log.warning("workers still busy at shutdown: %s", ", ".join(alive))
        if self.sender is not None:
            self.sender.close()
        return not alive

    def _spawn(self, name: str, target: Callable, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    # ── loops ──────────────────────────────────────────────────────────────────────────────────────

    def _turn_loop(self, worker_id: str) -> None:
        outage = Outage(f"turn thread {worker_id}")
        while not self._stop.is_set():
            more: list[bool] = []  # True: another message beside the one taken; False: the contact's next
            try:
                self.run_turn(worker_id, on_more=lambda: more.append(True), on_next=lambda: more.append(False))
            except Exception as e:
                if not outage.failed(e):
                    log.exception("turn thread %s: unexpected error; the message stays in the inbox", worker_id)
                self.metrics.turn_errors.inc()
                self._stop.wait(self.options.error_pause)
                continue
            outage.ok()
            # Another message was waiting beside the one taken: one idle thread for it, and look again. The
            # save found the contact's next message (stored during the turn, so every look meanwhile found
            # the contact held): look again, this thread alone. Else wait: a message that arrived meanwhile
            # has left a wake-up, so the wait returns at once.
            if not more:
                self._inbox_wake.wait(self.options.poll_interval)
                continue
            # The look again sees every message committed so far, so it spends a wake-up kept for one of
            # them: kept, that wake-up made this thread's next wait return at once for a look that mostly
            # found nothing (three processes on PostgreSQL, a burst: picks that found nothing 0.26 a
            # message against 0.41, docs/deploying.md, "a twelfth pass").
            self._inbox_wake.take()
            if True in more:
                self._inbox_wake.nudge()

    def run_turn(
        self, worker_id: str, on_more: Callable[[], None] | None = None, on_next: Callable[[], None] | None = None
    ) -> int:
        """Handle one inbox message, or on SQLite a group of several contacts' messages saved together
        (channels.inbox_turns.group_size); returns how many were handled. on_more, on_next: see
        channels.inbox_turns.process_inbox."""
        started = time.perf_counter()
        done = self._inbox_turns.process_inbox(
            self.ctx,
            self.flows,
            limit=self._inbox_turns.group_size(),
            worker_id=worker_id,
            on_more=on_more,
            on_next=on_next,
        )
        if done:
            took = time.perf_counter() - started  # each message of a group is saved at the group's commit
            for _ in range(done):
                self.metrics.turn_latency.observe(took)
            self.metrics.turns.inc(done)
            self._queued()
        return done

    def _queued(self) -> None:
        """Outbox rows were committed here: the sender claims at once."""
        self._queued_at = time.monotonic()
        set_once(self._outbox_queued)
        set_once(self._outbox_wake)

    def _sender_loop(self) -> None:
        assert self.sender is not None
        outage = Outage("sender")
        looked = float("-inf")
        wait = self.options.record_wait
        while not self._stop.is_set():
            self._outbox_wake.clear()
            now = time.monotonic()
            if (
                now - self._queued_at < wait
                and now - looked < self.options.poll_interval
                and self.sender.only_records()
            ):
                # Woken by finished sends alone, with no claim due, while this process's turns are queueing
                # replies (the last within record_wait): their marks wait that long at most for the next rows
                # queued here, and one statement (on SQLite one transaction) writes them and claims those,
                # instead of one for the marks and one for the claim. A reply queued here is never held up
                # (its queueing ends the wait); a row the marks free for another process's claim, at most
                # record_wait; a process killed meanwhile sends those rows again after their lease, as it
                # would between a send and its mark.
                self._outbox_queued.wait(wait)
            # A pump woken only by a finished send claims only when that send freed a row; rows queued by
            # this process's turns or the sweep are claimed at once, anything else (another process's rows,
            # a retry come due, a lease run out) at least every poll_interval.
            look = self._outbox_queued.is_set() or time.monotonic() - looked >= self.options.poll_interval
            if look:
                self._outbox_queued.clear()  # before the claim: rows committed after it set it again
                looked = time.monotonic()
            try:
                sent = self.sender.pump(look)
            except Exception as e:
                if not outage.failed(e):
                    log.exception("sender: unexpected error; unsent messages stay in the outbox")
                self.sender_error = type(e).__name__
                self._stop.wait(self.options.error_pause)
                continue
            outage.ok()
            self.sender_ok_at, self.sender_error = utcnow(), None
            # Whatever can make a row due sooner wakes this loop (a turn's replies, a finished send, the
            # sweep), so after a pump it waits unless that pump's claim was full; a retry that comes due,
            # or a row another process queued, waits for the poll.
            if not (sent and self.sender.more_due):
                self._outbox_wake.wait(max(0.0, looked + self.options.poll_interval - time.monotonic()))

    def _housekeeping_loop(self) -> None:
        outage = Outage("housekeeping")
        while not self._stop.wait(self.options.housekeeping_interval):
            try:
                self.sweep()
            except Exception as e:
                if not outage.failed(e):
                    log.exception("housekeeping: unexpected error")
                continue
            outage.ok()

    def state(self) -> dict[str, Any]:
        """What /readyz reports about this process's background work: threads alive, the sender's last
        good round and its last error."""
        alive = {t.name for t in self._threads if t.is_alive()}
        return {
            "turn_threads": sum(name.startswith("convoflow-turns-") for name in alive),
            "sender": None
            if self.sender is None
            else {
                "running": "convoflow-sender" in alive,
                "last_round_at": self.sender_ok_at.isoformat(timespec="seconds") + "Z" if self.sender_ok_at else None,
                "error": self.sender_error,
            },
        }

    def sweep(self) -> int:
        """Pick up newly loaded flows, expire idle conversations (their expiry messages go to the outbox),
        record the early delivery receipts and, on SQLite, empty the WAL (`empty_wal`); returns how many
        conversations expired."""
        self.refresh_flows()
        backfill = time.monotonic() - self._backfilled_at >= self._expiry.BACKFILL_EVERY
        if backfill:
            self._backfilled_at = time.monotonic()
        expired = self._expiry.expire_due(self.ctx, self.flows, backfill=backfill)
        if expired:
            log.info("expired %d idle conversations", expired)
            self._queued()
        log_undelivered(outbox.apply_early_receipts(self.ctx.clock()))
        empty_wal()  # SQLite: no old page image (a redacted code's) stays in the WAL past this sweep
        return expired

    def refresh_flows(self) -> None:
        """Reload the flow set when `flows load` stored a new version since the last look."""
        signature = FlowVersion.select(fn.COUNT(FlowVersion.id), fn.MAX(FlowVersion.id)).tuples().get()
        if not signature[0]:
            raise NoFlowsLoaded("no flows are loaded in this database: run `flows load` first")
        with self._flows_lock:
            if signature == self._flows_signature:
                return
            self.flows = self.flow_cache.load()
            self._flows_signature = signature
        log.info("flows loaded: %d stored versions", signature[0])


def turn_context(services: Mapping[str, Any]) -> TurnContext:
    """A turn context whose actions see the services and never act twice for one idempotency key; its
    checks use the settings' time zone and mobile prefixes.
    """
    from channels.turn_save import persistent
    from engine.registry import registry

    settings = services.get("settings") or Settings()
    return persistent(
        TurnContext(
            registry=registry,
            services=services,
            log=logging.getLogger("convoflow.engine"),
            business_timezone=settings.business_timezone,
            zw_mobile_prefixes=tuple(settings.zw_mobile_prefixes.split(",")),
        )
    )


def check_settings(settings: Settings, *, http: bool, sandbox: bool) -> None:
    """Raise SettingsError naming the first missing or inconsistent setting (never showing a secret).

    http: the process serves the webhook (needs the app secret and the verify token).
    sandbox: payments go to the built-in sandboxes instead of the real APIs. Without it at least one payment
    provider (O'mari, Paynow, …) must be configured; none configured names each one's missing setting.
    """
    required = ["WHATSAPP_ACCESS_TOKEN", "WHATSAPP_PHONE_NUMBER_ID"]
    if http:
        required = ["WHATSAPP_APP_SECRET", "WHATSAPP_VERIFY_TOKEN", *required]
    for name in required:
        if not getattr(settings, name.lower()):
            raise SettingsError(f"{name} is not set (see docs/deploying.md)")
    if not settings.whatsapp_phone_number_id.isdigit():
        raise SettingsError("WHATSAPP_PHONE_NUMBER_ID must be the number's id from Meta (digits only)")
    if not settings.whatsapp_api_url.startswith(("https://", "http://")):
        raise SettingsError(f"WHATSAPP_API_URL must start with https:// (e.g. {DEFAULT_WHATSAPP_API_URL})")
    if sandbox:
        if settings.omari_merchant_key:
            raise SettingsError(
                "OMARI_MERCHANT_KEY is set but --sandbox was given: payments would not reach O'mari; drop one of them"
            )
        return
    if settings.omari_merchant_key and not settings.omari_api_base_url:
        raise SettingsError("OMARI_API_BASE_URL is not set while OMARI_MERCHANT_KEY is")
    from actions.providers import providers

    clients, missing = providers.clients(settings)
    if not clients:  # any one provider configured is enough: O'mari, Paynow, …
        raise SettingsError(
            f"no payment provider is configured ({'; '.join(missing.values())}): refusing to start "
            "without one (set one provider's settings, or give --sandbox to use the built-in sandboxes)"
        )


def build_services(settings: Settings, *, sandbox: bool, sms: Callable[[str, str], None] | None = None) -> dict:
    """The services actions receive: {"settings": settings, "<provider>": its client, …} for every payment
    provider configured (actions/providers.py). With sandbox every provider is its in-process sandbox;
    O'mari's OTP "texts" go to `sms` (msisdn, text)."""
    from actions.providers import providers

    return providers.services(settings, sandbox=sandbox, sms=sms)


def start_workers(
    settings: Settings,
    *,
    sandbox: bool,
    threads: int,
    metrics: Metrics,
    sms: Callable[[str, str], None] | None = None,
) -> Workers:
    """Everything a `flows serve` or `flows worker` process runs besides HTTP, started."""
    import actions

    actions.load_all()
    sender = Sender(settings, metrics=metrics)
    workers = Workers(
        build_services(settings, sandbox=sandbox, sms=sms),
        sender=sender,
        metrics=metrics,
        options=WorkerOptions(threads=threads),
    )
    try:
        workers.start()
    except Exception:
        sender.close()
        raise
    return workers
