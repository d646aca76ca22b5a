"""What the webhook's poison guards add to a normal delivery — cleaning the strings (storage.text.storable,
storable_json in place of the payload's plain json.dumps) and dropping replays (channels.whatsapp.fresh_only)
— as a share of storing the same message (store_webhook on a SQLite file). Prints the ratio per run and its median; a shared machine makes single timings noisy.

    python bench/poison.py [--runs 5] [--messages 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta

sys.path[:0] = [
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "channels"),
]

from benchkit import fresh_database  # noqa: E402
from channels.payloads import inbox_payload, parse_webhook  # noqa: E402
from channels.whatsapp import fresh_only, store_webhook  # noqa: E402
from engine.context import utcnow  # noqa: E402
from storage.text import storable, storable_json  # noqa: E402

import whatsapp_fakes as wa  # noqa: E402


def hooks(n: int, tag: str) -> list:
    return [
        parse_webhook(
            wa.body_of(
                wa.envelope(
                    [wa.text(f"2637{i % 50:08d}", f"message {i} ✓", mid=f"wamid.{tag}.{i}")],
                    [wa.contact(f"2637{i % 50:08d}", "Rudo 🌍")],
                )
            )
        )
        for i in range(n)
    ]


def one_run(n: int, tag: str) -> tuple[float, float]:
    """(seconds the guards add over the old code's json.dumps of the payload, seconds store_webhook takes)."""
    batch = hooks(n, tag)
    now = utcnow()
    payloads = [inbox_payload(r) for hook in batch for r in hook.messages]
    started = time.perf_counter()
    for p in payloads:
        json.dumps(p, separators=(",", ":"), default=str)  # what inbox.add wrote before the guards
    before = time.perf_counter() - started
    started = time.perf_counter()
    for hook in batch:
        fresh, _ = fresh_only(hook, now - timedelta(days=7))
        for c in fresh.contacts:
            storable((c.key, c.wa_id, c.profile_name))
        for r in fresh.messages:
            storable(r.inbound.message_id)
            storable_json(inbox_payload(r))
    guards = time.perf_counter() - started
    started = time.perf_counter()
    for hook in batch:
        store_webhook(hook, now)
    return guards - before, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh_database(f"sqlite:///{os.path.join(tmp, 'bench.db')}")
        ratios = []
        for run in range(args.runs):
            guards, store = one_run(args.messages, str(run))
            ratios.append(guards / store)
            print(
                f"run {run + 1}: guards add {guards / args.messages * 1e6:.1f} µs/message, "
                f"store {store / args.messages * 1e6:.0f} µs/message, ratio {guards / store:.3f}"
            )
    print(
        f"added / store: median {statistics.median(ratios):.3f}, spread {min(ratios):.3f}-{max(ratios):.3f} "
        f"({args.runs} runs of {args.messages} messages; the store includes the guards' own calls)"
    )


if __name__ == "__main__":
    main()
