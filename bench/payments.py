"""Whole O'mari payments per second: the shipped flows through the persisted turn path
(channels.turns.handle_message), real storage, and the in-process O'mari sandbox (no network).

    python bench/payments.py [--payments 100] [--runs 5] [--database URL]

Each payment is one contact's 6 turns: "pay", the booking reference, the amount "1", a wallet, the phone
number (omari.initiate: a committed transaction and /auth), the OTP (omari.confirm: /request, then the
payment applied to the booking under its row lock). One thread, a fresh database per run; every contact
pays 1.00 on its own booking so the figures do not include waiting for one booking's lock. In production
O'mari's own latency (hundreds of ms per call) dwarfs these figures: they show what convoflow adds. Prints the median of
the runs and their spread, in payments/s and ms per turn. The default database is a SQLite file in a
temporary folder; give --database postgresql://… (an empty database: it is wiped) for PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from itertools import count

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import actions  # noqa: E402
from benchkit import fresh_database  # noqa: E402
from actions.omari_sandbox import OmariSandbox  # noqa: E402
from channels import flowcache, turns  # noqa: E402
from engine.context import TurnContext  # noqa: E402
from engine.load import load_paths  # noqa: E402
from engine.messages import Inbound  # noqa: E402
from engine.registry import registry  # noqa: E402
from storage import flowstore  # noqa: E402
from storage.bookings import add_booking  # noqa: E402
from storage.db import utcnow  # noqa: E402
from storage.models import PaymentTransaction  # noqa: E402
from storage.settings import Settings  # noqa: E402

FLOWS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "flows")
TURNS_PER_PAYMENT = 6


def one_run(url: str, n: int) -> float:
    """Seconds for n complete payments on a fresh database."""
    db = fresh_database(url)
    report = load_paths([FLOWS], registry)
    now = utcnow()
    for name, (file, text) in report.sources.items():
        flowstore.store(name, text, file, now)
    for i in range(n):
        add_booking(f"BK-BENCH-{i:05d}", "Bench", "Bench tour", "100.00")
    flows = flowcache.load_flowset(registry)
    sandbox = OmariSandbox(fixed_otp="123456")
    ctx = TurnContext(registry=registry, services={"omari": sandbox.client(), "settings": Settings()})
    ids = count()
    started = time.perf_counter()
    for i in range(n):
        phone = f"2637{i:05d}777"  # never ends in the sandbox's refusing 0005 or 0051
        for text in ("pay", f"BK-BENCH-{i:05d}", "1", "1", phone, "123456"):
            turns.handle_message(Inbound(phone, f"wamid.{next(ids)}", text), flows, ctx)
    elapsed = time.perf_counter() - started
    paid = PaymentTransaction.select().where(PaymentTransaction.status == "SUCCESS").count()
    if paid != n:
        raise SystemExit(f"only {paid} of {n} payments succeeded: the benchmark measured something else")
    db.close()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--payments", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database", help="a database URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    actions.load_all()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database or f"sqlite:///{os.path.join(tmp, 'bench.db')}"
        kind = "PostgreSQL" if url.startswith("postgres") else "SQLite"
        one_run(url, max(args.payments // 10, 1))  # warm-up: imports, template caches
        times = [one_run(url, args.payments) for _ in range(args.runs)]
    rates = sorted(args.payments / t for t in times)
    per_turn = sorted(t / (args.payments * TURNS_PER_PAYMENT) * 1000 for t in times)
    print(f"{kind}: {args.payments} payments x {args.runs} runs, {TURNS_PER_PAYMENT} persisted turns each")
    print(f"  payments/s  median {statistics.median(rates):8.1f}   spread {rates[0]:.1f} – {rates[-1]:.1f}")
    print(f"  ms/turn     median {statistics.median(per_turn):8.2f}   spread {per_turn[0]:.2f} – {per_turn[-1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
