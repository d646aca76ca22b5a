"""Where a `flows serve` process (SQLite) spends its CPU per message end to end, by kind of thread, and
the same against another checkout in the same run.

    python bench/serve_split.py [--runs 5] [--messages 2000] [--warm 200] [--against /work/main] [--graph-latency-ms 0]

Each run starts `flows serve --workers 2` on a fresh SQLite file, posts --warm messages (0: none, a cold
start as bench/peer.py's), then a burst of the four-step
conversation (bench/webhook.py's bodies, 4 client threads) and waits for every reply at the Graph API
stand-in. It prints messages/s, the server's CPU per message, and that CPU split by thread kind (from
/proc: waitress's request threads, its socket loop in the main thread, the turn threads, the sender's
loop and its sending threads) with the voluntary context switches per message (mostly waits for the GIL
or a wake-up). With --against, the other checkout's `flows serve` runs in the same loop, alternating who
goes first, and the two are compared pair by pair (the median of each run's ratio, with its spread);
compare those two, not figures from separate runs on a shared machine.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

import webhook as wb  # noqa: E402


def thread_names(pid: int) -> dict[str, str]:
    """Native thread id -> Python thread name (py-spy dump), digits dropped: one kind per name."""
    try:
        dump = subprocess.run(["py-spy", "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {m[1]: m[2].rstrip("0123456789_-") for m in re.finditer(r'Thread (\d+) \([^)]*\): "([^"]+)"', dump.stdout)}


def thread_times(pid: int) -> dict[str, tuple[float, int]]:
    """Native thread id -> (CPU seconds, voluntary context switches) so far."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                switches = int(f.read().split("voluntary_ctxt_switches:")[1].split()[0])
        except (OSError, IndexError):
            continue
        out[tid] = ((int(fields[11]) + int(fields[12])) / tick, switches)
    return out


def one_run(checkout: str, folder: str, graph: wb.TimedGraph, args: argparse.Namespace, tag: str) -> dict:
    path = os.path.join(folder, f"{tag}.db")
    wb.prepare(f"sqlite:///{path}")
    server = wb.Server.flows_serve(f"sqlite:///{path}", graph.url, 2, args.send_rate, cwd=checkout)
    try:
        if args.warm:
            wb.end_to_end([server.port], graph, wb.deliveries(args.warm, 100, f"warm{tag}"), args.threads, None)
        names = thread_names(server.proc.pid)
        before = thread_times(server.proc.pid)
        rate, _ = wb.end_to_end([server.port], graph, wb.deliveries(args.messages, 100, tag), args.threads, None)
        after = thread_times(server.proc.pid)
        names = thread_names(server.proc.pid) | names  # the sending threads start during a cold burst
    finally:
        server.stop()
    kinds: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for tid, (cpu, switches) in after.items():
        was = before.get(tid, (0.0, 0))
        kind = kinds[names.get(tid, "other (unnamed)")]
        kind[0] += (cpu - was[0]) / args.messages * 1e6
        kind[1] += (switches - was[1]) / args.messages
    return {"rate": rate, "cpu": sum(k[0] for k in kinds.values()), "kinds": dict(kinds)}


def report(label: str, runs: list[dict]) -> None:
    def spread(values: list[float], fmt: str = "{:.0f}") -> str:
        return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"

    print(f"\n{label}")
    print(f"  end to end          {spread([r['rate'] for r in runs])} msg/s")
    print(f"  server CPU          {spread([r['cpu'] for r in runs])} µs/msg")
    kinds = sorted({k for r in runs for k in r["kinds"]}, key=lambda k: -runs[0]["kinds"].get(k, [0])[0])
    for kind in kinds:
        cpu = [r["kinds"].get(kind, [0.0, 0.0])[0] for r in runs]
        switches = [r["kinds"].get(kind, [0.0, 0.0])[1] for r in runs]
        print(f"    {kind:<22} {spread(cpu):<18} µs/msg, {spread(switches, '{:.1f}')} switches/msg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument(
        "--warm", type=int, default=200, help="messages before the measured burst (0: cold, as peer.py)"
    )
    parser.add_argument("--threads", type=int, default=4, help="client threads")
    parser.add_argument("--graph-latency-ms", type=float, default=0.0)
    parser.add_argument("--send-rate", type=float, default=1000)
    parser.add_argument("--against", help="another checkout (e.g. of main) run alternately in the same loop")
    args = parser.parse_args()
    checkouts = {"this checkout": wb.REPO} | ({f"--against {args.against}": args.against} if args.against else {})
    folder = tempfile.mkdtemp(prefix="convoflow-split.")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; {args.messages} messages a run")
    graph = wb.TimedGraph(args.graph_latency_ms)
    results: dict[str, list[dict]] = collections.defaultdict(list)
    try:
        for run in range(args.runs):
            order = list(checkouts.items())
            for label, checkout in order if run % 2 == 0 else order[::-1]:
                results[label].append(one_run(checkout, folder, graph, args, f"r{run}{len(results[label])}{label[:4]}"))
    finally:
        graph.close()
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    for label, runs in results.items():
        report(label, runs)
    if args.against:
        ours, theirs = results.values()
        print("\nthis checkout / --against, pair by pair: median (min–max)")
        for what, key in (("end to end", "rate"), ("server CPU", "cpu")):
            pairs = [a[key] / b[key] for a, b in zip(ours, theirs)]
            print(f"  {what:<19} {statistics.median(pairs):.3f}x ({min(pairs):.3f}–{max(pairs):.3f})")


if __name__ == "__main__":
    main()
