"""Webhook and end-to-end figures for `flows serve`, on SQLite and on PostgreSQL.

    python bench/webhook.py                     # SQLite; PostgreSQL too when TEST_DATABASE_URL is set
    python bench/webhook.py --runs 5 --acks 4000 --messages 1500

For each database it starts `flows serve` as a real subprocess on 127.0.0.1 and measures:
- acks: signed webhook POSTs (one new message each) from several client threads on keep-alive
  connections, against a server with --workers 0 (only the webhook): acknowledgements per second and
  p50/p99 latency of each POST as the client saw it;
- end-to-end: the same POSTs against a server with its turn threads and sender, running a two-step echo
  flow; messages per second from the first POST until every reply has reached the Graph API stand-in;
- idle RSS: the resident memory of the serving process (with workers) once the load is over and idle.
Each figure is the median of --runs runs, with the spread (min–max). Loops are bounded by counts.

Goals (issue 5): ≥ 1,000 acks/s with p99 < 20 ms; ≥ 300 end-to-end messages/s; idle RSS < 100 MB.
"""
from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [REPO, os.path.join(REPO, "tests", "channels")]

import whatsapp_fakes as wa  # noqa: E402  (the Graph stand-in and payload builders the tests use)

ECHO_FLOW = os.path.join(REPO, "tests", "channels", "flows", "echo.yaml")


def prepare(url: str) -> None:
    """A fresh schema with the echo flow stored, as `flows db upgrade` + `flows load` would leave it."""
    from benchkit import fresh_database
    from storage import flowstore

    db = fresh_database(url)
    with open(ECHO_FLOW, encoding="utf-8") as f:
        flowstore.store("echo", f.read(), ECHO_FLOW, datetime(2026, 1, 1))
    db.close()


class Server:
    """`flows serve` in a subprocess on a free port; waits until /healthz answers."""

    def __init__(self, url: str, graph_url: str, workers: int) -> None:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "WHATSAPP_APP_SECRET": wa.SECRET,
            "WHATSAPP_VERIFY_TOKEN": wa.VERIFY_TOKEN,
            "WHATSAPP_ACCESS_TOKEN": wa.ACCESS_TOKEN,
            "WHATSAPP_PHONE_NUMBER_ID": wa.PHONE_NUMBER_ID,
            "WHATSAPP_API_URL": graph_url,
        }
        env.pop("OMARI_MERCHANT_KEY", None)
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--port", str(self.port), "--workers", str(workers), "--sandbox"],
            cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.05)
        self.log.seek(0)
        raise RuntimeError("flows serve did not start:\n" + self.log.read().decode(errors="replace"))

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def bodies(n: int, contacts: int, tag: str) -> list[list[bytes]]:
    """n signed webhook bodies, split per contact (each contact's messages in timestamp order)."""
    per: list[list[bytes]] = [[] for _ in range(contacts)]
    for i in range(n):
        c = i % contacts
        wa_id = f"2637{c:08d}"
        words = "start" if len(per[c]) == 0 else f"message {i} {tag}"
        item = wa.text(wa_id, words, ts=wa.TS + i, mid=f"wamid.bench.{tag}.{i}")
        per[c].append(wa.body_of(wa.envelope([item], [wa.contact(wa_id, "Bench")])))
    return per


def post_all(port: int, per_contact: list[list[bytes]], threads: int) -> tuple[float, list[float]]:
    """Post every body; each thread owns some contacts and posts their messages in order.
    Returns (wall seconds, latencies in seconds)."""
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[str] = []

    def run(share: list[list[bytes]]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine: list[float] = []
        # Interleave the thread's contacts so each keeps its order but contacts alternate.
        queue = [b for round_ in zip(*share) for b in round_] if share else []
        for body in queue:
            headers = {"Content-Type": "application/json", "X-Hub-Signature-256": wa.sign(body)}
            t = time.perf_counter()
            conn.request("POST", "/webhook", body=body, headers=headers)
            r = conn.getresponse()
            r.read()
            mine.append(time.perf_counter() - t)
            if r.status != 200:
                errors.append(str(r.status))
        conn.close()
        with lock:
            latencies.extend(mine)

    shares = [per_contact[i::threads] for i in range(threads)]
    workers = [threading.Thread(target=run, args=(s,)) for s in shares]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} POSTs were not answered 200: {sorted(set(errors))}")
    return wall, latencies


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def bench_acks(url: str, graph: wa.GraphStandIn, n: int, threads: int, run: int) -> tuple[float, float, float]:
    prepare(url)
    server = Server(url, graph.url, workers=0)
    try:
        post_all(server.port, bodies(200, 50, f"warm{run}"), threads)  # connections, caches, first inserts
        wall, lat = post_all(server.port, bodies(n, 200, f"acks{run}"), threads)
    finally:
        server.stop()
    return n / wall, pct(lat, 50) * 1000, pct(lat, 99) * 1000


def bench_e2e(url: str, graph: wa.GraphStandIn, n: int, contacts: int, threads: int, run: int,
              turn_threads: int) -> tuple[float, float]:
    """Messages/s from the first POST to the last reply at the stand-in; and the idle RSS after it."""
    prepare(url)
    server = Server(url, graph.url, workers=turn_threads)
    try:
        per = bodies(n, contacts, f"e2e{run}")
        expected = len(graph.sent) + n  # the echo flow answers every message with one reply
        start = time.perf_counter()
        post_all(server.port, per, threads)
        got = graph.wait_for(expected, timeout=300)
        elapsed = time.perf_counter() - start
        if len(got) < expected:
            raise RuntimeError(f"only {len(got)} of {expected} replies arrived")
        time.sleep(1.0)  # let the process go idle before reading its memory
        rss = server.rss_mb()
    finally:
        server.stop()
    return n / elapsed, rss


def summary(name: str, values: list[float], unit: str, fmt: str = "{:.0f}") -> str:
    return f"{name}: median {fmt.format(statistics.median(values))} {unit} (spread {fmt.format(min(values))}–{fmt.format(max(values))}, {len(values)} runs)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--acks", type=int, default=3000, help="POSTs per ack run")
    parser.add_argument("--messages", type=int, default=1200, help="messages per end-to-end run")
    parser.add_argument("--contacts", type=int, default=100, help="contacts in the end-to-end run")
    parser.add_argument("--threads", type=int, default=4, help="client threads")
    parser.add_argument("--only", choices=["sqlite", "postgres"], default=None)
    parser.add_argument("--workers", type=int, default=2, help="turn threads of the server in the end-to-end run")
    args = parser.parse_args()

    targets = []
    tmp = tempfile.mkdtemp(prefix="convoflow-bench-")
    if args.only in (None, "sqlite"):
        targets.append(("SQLite", f"sqlite:///{os.path.join(tmp, 'bench.db')}"))
    pg = os.environ.get("TEST_DATABASE_URL")
    if args.only in (None, "postgres"):
        if pg:
            targets.append(("PostgreSQL", pg))
        else:
            print("PostgreSQL: skipped (set TEST_DATABASE_URL, e.g. inside `bash .ci/run`'s cluster)")
    print(f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} at start: other work on the machine "
          f"shares them), Python {sys.version.split()[0]}, {args.threads} client threads; "
          f"acks: {args.acks} POSTs/run, end-to-end: {args.messages} messages from {args.contacts} contacts/run")
    graph = wa.GraphStandIn()
    try:
        for name, url in targets:
            acks, p50, p99, e2e, rss = [], [], [], [], []
            for run in range(args.runs):
                a, l50, l99 = bench_acks(url, graph, args.acks, args.threads, run)
                acks.append(a), p50.append(l50), p99.append(l99)
                m, r = bench_e2e(url, graph, args.messages, args.contacts, args.threads, run, args.workers)
                e2e.append(m), rss.append(r)
            print(f"\n{name} (load average {os.getloadavg()[0]:.1f} at the end)")
            print("  " + summary("webhook acks", acks, "acks/s"))
            print("  " + summary("ack latency p50", p50, "ms", "{:.2f}"))
            print("  " + summary("ack latency p99", p99, "ms", "{:.2f}"))
            print("  " + summary("end-to-end", e2e, "messages/s"))
            print("  " + summary(f"idle RSS (serve, {args.workers} workers)", rss, "MB", "{:.1f}"))
    finally:
        graph.close()


if __name__ == "__main__":
    main()
