"""The PostgreSQL storage side of a message, without HTTP: the webhook's insert and the workers' pick, turn
and save, with the CPU of the Python processes and of their PostgreSQL backends per message.

    TEST_DATABASE_URL=postgresql://… python bench/pg_workers.py [--processes 3] [--threads 2] [--runs 3]

Each run empties the schema of TEST_DATABASE_URL's database, stores bench/flows/four_steps.yaml, then:
- intake: --messages messages from --contacts contacts stored the way `flows serve`'s webhook stores them
  (the first of a contact through contacts.resolve in a transaction, the rest in the one statement for a
  known contact), one process, one connection: CPU per message of the process and of its backend;
- workers: --processes processes with --threads turn threads each call process_inbox until the backlog is
  empty (the worker's pick, the turn and the save; no sender): messages/s from the start of the first to
  the end of the last, and CPU per message of the processes and of this database's backends.
With pg_stat_statements on the server, its calls, buffers and WAL per statement say where the backends'
part goes (bench/webhook.py --processes prints the same CPU split with HTTP and the sender).
Figures are the median of --runs with the spread; the machine's load average is printed, since anything
else running shares the cores. A figure, not a test: nothing here fails on a slow machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from benchkit import proc_cpu  # noqa: E402  (bench/, after the repository: bench/storage.py is not storage)

FLOW = os.path.join(HERE, "flows", "four_steps.yaml")
SCRIPT = ("start", "Tendai {c}", "BK-{c:05d}", "50")  # what each contact says, as bench/webhook.py
T0 = datetime(2026, 1, 1, 12, 0)


def backends(url: str) -> dict[int, float]:
    """CPU seconds so far of every backend connected to this database (but the asking one)."""
    import psycopg2

    conn = psycopg2.connect(url)
    try:
        cur = conn.cursor()
        cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
        return {pid: proc_cpu(pid) for (pid,) in cur.fetchall()}
    finally:
        conn.close()


def analyze(url: str) -> None:
    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        conn.cursor().execute("ANALYZE")
    finally:
        conn.close()


def prepare(url: str) -> None:
    from benchkit import fresh_database
    from storage import flowstore

    db = fresh_database(url)
    with open(FLOW, encoding="utf-8") as f:
        flowstore.store("four_steps", f.read(), FLOW, T0)
    db.close()


def intake(url: str, messages: int, contacts: int) -> tuple[float, float]:
    """Store the burst as the webhook does; (process CPU ms, backend CPU ms) per message."""
    from storage import inbox
    from storage.contacts import Identity, resolve
    from storage.db import execute, open_database, write_transaction

    open_database(url)
    backend = execute("SELECT pg_backend_pid()").fetchone()[0]
    cpu, server = time.process_time(), proc_cpu(backend)
    for i in range(messages):
        c, k = i % contacts, i // contacts
        wa_id, mid, at = f"2637{c:08d}", f"wamid.pgw.{i}", T0 + timedelta(milliseconds=i)
        payload = {"contact": wa_id, "message_id": mid, "text": SCRIPT[k % len(SCRIPT)].format(c=c), "kind": "text"}
        if k and inbox.add_for_known_contact(wa_id, None, "Bench", mid, payload, at, at):
            continue
        with write_transaction():
            contact_id, key = resolve(Identity(wa_id=wa_id, profile_name="Bench"), at)
            inbox.add(contact_id, mid, {**payload, "contact": key}, at, at)
    return (time.process_time() - cpu) / messages * 1000, (proc_cpu(backend) - server) / messages * 1000


def child(url: str, threads: int) -> None:
    """One worker process: `threads` turn threads taking messages until none is left; prints its count."""
    from channels import flowcache, inbox_turns
    from channels.worker import turn_context
    from storage.db import open_database
    from storage.inbox import backlog

    open_database(url)
    ctx = turn_context({})
    flows = flowcache.load_flowset(ctx.registry)
    done = [0] * threads
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()  # the parent's go

    def run(t: int) -> None:
        idle = 0
        while idle < 3:  # bounded: stop after three looks in a row find nothing and the backlog is empty
            n = inbox_turns.process_inbox(ctx, flows, limit=1, worker_id=f"pgw:{os.getpid()}:{t}")
            done[t] += n
            idle = 0 if n or backlog() else idle + 1
            if not n:
                time.sleep(0.001)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(json.dumps({"done": sum(done)}), flush=True)
    sys.stdin.readline()  # stays connected until the parent has read its backend's CPU


def workers(url: str, processes: int, threads: int, messages: int) -> dict[str, float]:
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", "--threads", str(threads)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "TEST_DATABASE_URL": url},
        )
        for _ in range(processes)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    before_server = backends(url)
    before_cpu = {p.pid: proc_cpu(p.pid) for p in procs}
    start = time.perf_counter()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    done = sum(json.loads(p.stdout.readline())["done"] for p in procs)
    wall = time.perf_counter() - start
    cpu = sum(proc_cpu(p.pid) - before_cpu[p.pid] for p in procs)
    server = backends(url)  # the processes wait, still connected, until told to end
    for p in procs:
        p.stdin.write("end\n")
        p.stdin.flush()
        p.wait(60)
    if done != messages:
        raise RuntimeError(f"the workers handled {done} of {messages} messages")
    server_ms = sum(v - before_server.get(k, 0.0) for k, v in server.items()) / messages * 1000
    return {
        "rate": messages / wall,
        "cpu": cpu / messages * 1000,
        "server": server_ms,
    }


def summary(label: str, values: list[float], unit: str, fmt: str = "{:.2f}") -> str:
    med = statistics.median(values)
    return f"  {label}: median {fmt.format(med)} {unit} (spread {fmt.format(min(values))}–{fmt.format(max(values))})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--contacts", type=int, default=100)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="ANALYZE after the intake: the planner's statistics of a database that has been running, "
        "where a fresh schema has none for autovacuum's first minute",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    url = os.environ.get("TEST_DATABASE_URL")
    if not url or not url.startswith("postgres"):
        sys.exit("set TEST_DATABASE_URL to a PostgreSQL database this script may empty")
    if args.child:
        child(url, args.threads)
        return
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start (other work shares them); "
        f"{args.messages} messages from {args.contacts} contacts; {args.processes} processes × {args.threads} threads"
    )
    results: dict[str, list[float]] = {}
    for _ in range(args.runs):
        prepare(url)
        ours, theirs = intake(url, args.messages, args.contacts)
        results.setdefault("intake_cpu", []).append(ours)
        results.setdefault("intake_server", []).append(theirs)
        if args.analyze:
            analyze(url)
        for key, value in workers(url, args.processes, args.threads, args.messages).items():
            results.setdefault(key, []).append(value)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    print(summary("intake: CPU per message, this process", results["intake_cpu"], "ms"))
    print(summary("intake: CPU per message, its backend", results["intake_server"], "ms"))
    print(summary("workers: messages/s", results["rate"], "msg/s", "{:.0f}"))
    print(summary("workers: CPU per message, the worker processes", results["cpu"], "ms"))
    print(summary("workers: CPU per message, their backends", results["server"], "ms"))


if __name__ == "__main__":
    main()
