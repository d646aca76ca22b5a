"""Prometheus metrics in the text exposition format, written by hand (no extra dependency).

Counters and the turn-latency histogram count what this process did; the gauges that describe shared
state (inbox backlog, outbox by status, payments by status) are read from the database at scrape time,
so every process reports the same figures for them. Sum the counters over processes in Prometheus.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable

# Turn latency buckets in seconds: a turn is a few milliseconds unless an O'mari call is inside it.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    esc = lambda v: v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")  # noqa: E731
    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in pairs) + "}"


@dataclass
class Counter:
    name: str
    help: str
    _values: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def inc(self, amount: float = 1, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values[key] = self._values.get(key, 0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(tuple(sorted(labels.items())), 0)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        with self._lock:
            items = sorted(self._values.items()) or [((), 0)]
        for key, v in items:
            yield f"{self.name}{_labels(key)} {v:g}"


@dataclass
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    _counts: list = field(default_factory=list)
    _sum: float = 0.0
    _count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._counts = [0] * len(self.buckets)

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._sum += seconds
            self._count += 1
            for i, bound in enumerate(self.buckets):
                if seconds <= bound:
                    self._counts[i] += 1

    @property
    def count(self) -> int:
        return self._count

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        with self._lock:
            counts, total, n = list(self._counts), self._sum, self._count
        for bound, c in zip(self.buckets, counts):
            yield f'{self.name}_bucket{{le="{bound:g}"}} {c}'
        yield f'{self.name}_bucket{{le="+Inf"}} {n}'
        yield f"{self.name}_sum {total:.6f}"
        yield f"{self.name}_count {n}"


class Metrics:
    """The process's metrics. `gauges` is a callable returning {(name, help): {labels-tuple: value}}."""

    def __init__(self) -> None:
        self.messages_in = Counter("convoflow_messages_in_total", "User messages accepted by the webhook (new ones only).")
        self.duplicates = Counter("convoflow_messages_duplicate_total", "Redelivered messages the inbox already had.")
        self.statuses = Counter("convoflow_delivery_status_total", "Delivery receipts received, by status.")
        self.messages_out = Counter("convoflow_messages_out_total", "Messages the Graph API accepted.")
        self.send_failures = Counter(
            "convoflow_send_failures_total", "Failed send attempts, by outcome (retry or gave_up) and error code."
        )
        self.turns = Counter("convoflow_turns_total", "Turns run by this process's workers.")
        self.turn_errors = Counter("convoflow_worker_errors_total", "Worker loop errors (the row is retried).")
        self.turn_latency = Histogram("convoflow_turn_latency_seconds", "Time to handle one inbox message.")
        self.webhook_rejected = Counter("convoflow_webhook_rejected_total", "Webhook requests refused, by reason.")
        self.too_old = Counter("convoflow_messages_too_old_total",
                               "Webhook messages refused as older than WHATSAPP_MAX_MESSAGE_AGE_DAYS (replays).")
        self.dead_letters = Counter("convoflow_dead_letters_total",
                                    "Webhook deliveries, or messages of one, that could not be stored: kept as dead letters.")
        self._gauges: Callable[[], dict] | None = None

    def gauges_from(self, reader: Callable[[], dict]) -> None:
        self._gauges = reader

    def render(self) -> str:
        lines: list[str] = []
        for metric in (
            self.messages_in, self.duplicates, self.statuses, self.messages_out, self.send_failures,
            self.turns, self.turn_errors, self.turn_latency, self.webhook_rejected, self.too_old, self.dead_letters,
        ):
            lines.extend(metric.render())
        if self._gauges is not None:
            for (name, help_), values in self._gauges().items():
                lines.append(f"# HELP {name} {help_}")
                lines.append(f"# TYPE {name} gauge")
                for key, v in sorted(values.items()) or [((), 0)]:
                    lines.append(f"{name}{_labels(key)} {v:g}")
        return "\n".join(lines) + "\n"


def database_gauges() -> dict:
    """Shared-state gauges read from the database: inbox backlog, outbox by status, payments by status."""
    from peewee import fn

    from storage.models import InboxMessage, OutboxMessage, PaymentTransaction

    backlog = InboxMessage.select().where(InboxMessage.processed_at.is_null()).count()
    outbox = {
        (("status", s),): n
        for s, n in OutboxMessage.select(OutboxMessage.status, fn.COUNT(OutboxMessage.id)).group_by(OutboxMessage.status).tuples()
    }
    payments = {
        (("status", s),): n
        for s, n in PaymentTransaction.select(PaymentTransaction.status, fn.COUNT(PaymentTransaction.id))
        .group_by(PaymentTransaction.status)
        .tuples()
    }
    return {
        ("convoflow_inbox_backlog", "Inbox messages not yet handled."): {(): backlog},
        ("convoflow_outbox_messages", "Outbox messages by status (pending, sent, failed)."): outbox,
        ("convoflow_payments", "Payment transactions by status."): payments,
        **payment_guard_gauges(),
    }


def payment_guard_gauges() -> dict:
    """What an operator watches for abuse and doubt: payment starts refused by the limits (by limit), wrong
    OTPs typed, and payments marked as needing a person. Counted in the database, so every process agrees.
    """
    from peewee import fn

    from storage import payments
    from storage.models import PaymentTransaction

    wrong = PaymentTransaction.select(fn.COALESCE(fn.SUM(PaymentTransaction.otp_attempts), 0)).scalar()
    return {
        ("convoflow_payment_starts_limited", "Payment starts refused by PAYMENT_STARTS_PER_CONTACT/_PER_WALLET, by limit."):
            {(("limit", limit),): n for limit, n in payments.limited_counts().items()},
        ("convoflow_payment_wrong_otps", "Wrong OTPs typed (every refusal counted)."): {(): int(wrong or 0)},
        ("convoflow_payments_needing_person", "Payments marked as needing a person (see flows payments list)."):
            {(): PaymentTransaction.select().where(PaymentTransaction.review_reason.is_null(False)).count()},
    }
