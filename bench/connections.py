"""Many users at once (issue 10.8): how long webhook POSTs wait when 200 clients hold keep-alive connections.

    python bench/connections.py                 # SQLite; --users 200 --posts 20 --runs 3
    python bench/connections.py --only postgres # with TEST_DATABASE_URL

Each run starts `flows serve --workers 0` on 127.0.0.1 twice: once sized as waitress's own defaults (100
connections, 4 threads, 120 s idle timeout: what `flows serve` had before these settings existed) and once
with the HTTP_* settings' defaults. --users client threads each open one keep-alive connection and post
--posts signed messages, pausing --think seconds between them, as Meta's many delivery connections do.
A POST's time includes waiting to be accepted. Printed per sizing: the median over runs of the p50, p99 and
worst POST, and how many POSTs waited over a second; then the ratio of the worst waits. Bounded by counts
and a 60 s client timeout.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import threading
import time

from webhook import Server, pct, prepare  # bench/webhook.py: `flows serve` in a subprocess, a fresh schema

import whatsapp_fakes as wa  # noqa: E402  (put on sys.path by bench/webhook.py)

OLD = {"HTTP_CONNECTION_LIMIT": "100", "HTTP_THREADS": "4", "HTTP_CHANNEL_TIMEOUT": "120", "HTTP_BACKLOG": "1024"}
SIZINGS = (("waitress defaults (before)", OLD), ("HTTP_* defaults (now)", {}))


def user(port: int, wa_id: str, posts: int, think: float, tag: str, out: list[float], lock: threading.Lock) -> None:
    """One client: a keep-alive connection, `posts` messages in order, a pause between them."""
    mine = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for k in range(posts):
        item = wa.text(wa_id, f"message {k}", ts=wa.TS + k, mid=f"wamid.conn.{tag}.{wa_id}.{k}")
        body = wa.body_of(wa.envelope([item], [wa.contact(wa_id, "Bench")]))
        started = time.perf_counter()
        conn.request(
            "POST",
            "/webhook",
            body=body,
            headers={"Content-Type": "application/json", "X-Hub-Signature-256": wa.sign(body)},
        )
        response = conn.getresponse()
        response.read()
        mine.append(time.perf_counter() - started)
        if response.status != 200:
            raise RuntimeError(f"POST answered {response.status}")
        time.sleep(think)
    conn.close()
    with lock:
        out.extend(mine)


def one_run(url: str, graph: wa.GraphStandIn, env: dict, args, tag: str) -> list[float]:
    prepare(url)
    server = Server(["-m", "cli", "serve", "--workers", "0", "--sandbox"], graph.url, {"DATABASE_URL": url, **env})
    latencies: list[float] = []
    lock = threading.Lock()
    try:
        clients = [
            threading.Thread(
                target=user, args=(server.port, f"2637{i:08d}", args.posts, args.think, tag, latencies, lock)
            )
            for i in range(args.users)
        ]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
    finally:
        server.stop()
    if len(latencies) != args.users * args.posts:
        raise RuntimeError(f"only {len(latencies)} of {args.users * args.posts} POSTs were answered")
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--posts", type=int, default=20, help="POSTs per user")
    parser.add_argument("--think", type=float, default=0.2, help="seconds a user pauses between POSTs")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    url = (
        os.environ.get("TEST_DATABASE_URL")
        if args.only == "postgres"
        else f"sqlite:///{os.path.join(tempfile.mkdtemp(prefix='convoflow-bench-'), 'bench.db')}"
    )
    if not url:
        sys.exit("set TEST_DATABASE_URL for --only postgres")
    print(
        f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} at start: other work shares them), "
        f"{args.only}, {args.users} users x {args.posts} POSTs, {args.think} s between a user's POSTs"
    )
    graph = wa.GraphStandIn()
    worst = {}
    try:
        for name, env in SIZINGS:
            rows = []
            for run in range(args.runs):
                lat = one_run(url, graph, env, args, f"{len(worst)}.{run}")
                rows.append((pct(lat, 50), pct(lat, 99), max(lat), sum(t > 1 for t in lat)))
            p50, p99, top, slow = (statistics.median(col) for col in zip(*rows))
            worst[name] = top
            print(
                f"{name}: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.0f} ms, worst {top:.2f} s "
                f"(spread {min(r[2] for r in rows):.2f}–{max(r[2] for r in rows):.2f}), "
                f"{slow:.0f} POSTs over 1 s (median of {args.runs} runs)"
            )
    finally:
        graph.close()
    before, now = (worst[name] for name, _ in SIZINGS)
    print(f"worst wait, before / now: {before / now:.1f}x")


if __name__ == "__main__":
    main()
