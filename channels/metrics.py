"""Prometheus metrics through prometheus_client, correct with one process or several.

Counters and the turn-latency histogram count what the processes did. With PROMETHEUS_MULTIPROC_DIR set
(gunicorn with several workers, or `flows serve` next to `flows worker` processes on one machine) every
process writes its values to files in that folder and /metrics adds them up (prometheus_client's
multiprocess mode), so any worker answering the scrape gives the same totals. Unset, /metrics shows this
process alone. The gauges that describe shared state (inbox backlog, outbox by status, payments by status)
are read from the database at scrape time, so every process reports the same figures for them.

The public face is unchanged from the hand-written version: `Metrics().<counter>.inc(amount, **labels)`,
`.value(**labels)`, `turn_latency.observe(seconds)` / `.count`, `gauges_from(reader)` and `render()`.
"""

from __future__ import annotations

import os
from typing import Callable

# Turn latency buckets in seconds: a turn is a few milliseconds unless an O'mari call is inside it.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The folder the processes share their values through, or None (each process on its own)."""
    value = os.environ.get(MULTIPROCESS_DIR)
    if value == "":
        # Empty means unset, as for every setting (.env.example has `PROMETHEUS_MULTIPROC_DIR=`); left in the
        # environment, prometheus_client would write its files into the working directory.
        del os.environ[MULTIPROCESS_DIR]
    return value or None


class Counter:
    """A counter with fixed label names; inc() and value() take those labels as keywords."""

    def __init__(self, registry, name: str, help: str, labels: tuple[str, ...] = ()) -> None:
        from prometheus_client import Counter as PromCounter

        self.name, self.help, self._labels, self._registry = name, help, labels, registry
        self._metric = PromCounter(name, help, labelnames=labels, registry=registry)

    def _child(self, labels: dict):
        return self._metric.labels(**labels) if self._labels else self._metric

    def inc(self, amount: float = 1, **labels: str) -> None:
        self._child(labels).inc(amount)

    def value(self, **labels: str) -> float:
        """This process's count for these labels."""
        return self._registry.get_sample_value(self.name, labels) or 0


class Histogram:
    """A histogram of seconds (LATENCY_BUCKETS)."""

    def __init__(self, registry, name: str, help: str, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        from prometheus_client import Histogram as PromHistogram

        self.name, self.help, self._registry = name, help, registry
        self._metric = PromHistogram(name, help, buckets=buckets, registry=registry)

    def observe(self, seconds: float) -> None:
        self._metric.observe(seconds)

    @property
    def count(self) -> int:
        """How many observations this process made."""
        return int(self._registry.get_sample_value(f"{self.name}_count") or 0)


class _Gauges:
    """A collector for the database gauges: reader() returns {(name, help): {labels-tuple: value}}."""

    def __init__(self, reader: Callable[[], dict]) -> None:
        self._reader = reader

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        for (name, help_), values in self._reader().items():
            names = [k for k, _ in next(iter(values), ())]
            family = GaugeMetricFamily(name, help_, labels=names)
            for key, v in sorted(values.items()):
                family.add_metric([value for _, value in key], v)
            yield family


class Metrics:
    """The process's metrics. `gauges_from(reader)` adds the shared-state gauges read at scrape time."""

    def __init__(self) -> None:
        multiprocess_dir()  # before prometheus_client is imported: it picks its mode at import
        import prometheus_client
        from prometheus_client import CollectorRegistry

        prometheus_client.disable_created_metrics()  # `_created` samples: noise for these counters
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages_in = Counter(
            r, "convoflow_messages_in_total", "User messages accepted by the webhook (new ones only)."
        )
        self.duplicates = Counter(
            r, "convoflow_messages_duplicate_total", "Redelivered messages the inbox already had."
        )
        self.statuses = Counter(
            r, "convoflow_delivery_status_total", "Delivery receipts received, by status.", ("status",)
        )
        self.messages_out = Counter(r, "convoflow_messages_out_total", "Messages the Graph API accepted.")
        self.send_failures = Counter(
            r,
            "convoflow_send_failures_total",
            "Failed send attempts, by outcome (retry or gave_up) and error code.",
            ("outcome", "code"),
        )
        self.turns = Counter(r, "convoflow_turns_total", "Turns run by the workers.")
        self.turn_errors = Counter(r, "convoflow_worker_errors_total", "Worker loop errors (the row is retried).")
        self.turn_latency = Histogram(r, "convoflow_turn_latency_seconds", "Time to handle one inbox message.")
        self.webhook_rejected = Counter(
            r, "convoflow_webhook_rejected_total", "Webhook requests refused, by reason.", ("reason",)
        )
        self.too_old = Counter(
            r,
            "convoflow_messages_too_old_total",
            "Webhook messages refused as older than WHATSAPP_MAX_MESSAGE_AGE_DAYS (replays).",
        )
        self.dead_letters = Counter(
            r,
            "convoflow_dead_letters_total",
            "Webhook deliveries, or messages of one, that could not be stored: kept as dead letters.",
        )
        self._gauges: Callable[[], dict] | None = None

    def gauges_from(self, reader: Callable[[], dict]) -> None:
        self._gauges = reader

    def render(self) -> str:
        """The exposition text: every process's counters when PROMETHEUS_MULTIPROC_DIR is set, then the gauges."""
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        shared = multiprocess_dir()
        if shared:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=shared)
        else:
            registry = self.registry
        text = generate_latest(registry).decode("utf-8")
        if self._gauges is not None:
            gauges = CollectorRegistry(auto_describe=False)
            gauges.register(_Gauges(self._gauges))
            text += generate_latest(gauges).decode("utf-8")
        return text


def process_exited(pid: int) -> None:
    """Tell the multiprocess files a process is gone (gunicorn's child_exit hook calls this)."""
    shared = multiprocess_dir()
    if shared:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, shared)


def database_gauges() -> dict:
    """Shared-state gauges read from the database: inbox backlog, outbox by status, payments by status."""
    from peewee import fn

    from storage import outbox as storage_outbox
    from storage.models import InboxMessage, PaymentTransaction

    backlog = InboxMessage.select().where(InboxMessage.processed_at.is_null()).count()
    outbox = {(("status", s),): n for s, n in storage_outbox.counts_by_status().items()}
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
        (
            "convoflow_payment_starts_limited",
            "Payment starts refused by PAYMENT_STARTS_PER_CONTACT/_PER_WALLET, by limit.",
        ): {(("limit", limit),): n for limit, n in payments.limited_counts().items()},
        ("convoflow_payment_wrong_otps", "Wrong OTPs typed (every refusal counted)."): {(): int(wrong or 0)},
        ("convoflow_payments_needing_person", "Payments marked as needing a person (see flows payments list)."): {
            (): PaymentTransaction.select().where(PaymentTransaction.review_reason.is_null(False)).count()
        },
    }
