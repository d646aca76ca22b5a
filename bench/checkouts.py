"""CPU per stored turn of two or more checkouts of convoflow (and the peer), measured in alternation: one
long-lived process per checkout, each handed the same batch of turns in turn (bench/peer.py's in-process
load), so every batch of one meets the machine as the batch of the other just did. On a shared machine
the spread of single runs hides a 10 % change; the ratio taken pair by pair does not.

    python bench/checkouts.py /path/to/old/checkout . [--pairs 16] [--turns 1500] [--peer]
    python bench/checkouts.py /path/to/old/checkout . --load storage [--floor]

The first checkout is the reference: prints each one's median CPU µs a turn (min–max) and, per other
checkout (and the peer with --peer, bench/peer_bot.py's Store.handle), the median of the pair-by-pair
ratios to the reference with their spread. `--load storage` runs bench/storage.py's turns instead (its
payment flow with a lookup, --turns rounded to whole contacts of 3 turns) on SQLite; --floor adds its bare
floor (sqlite3 writing the same rows), from the last checkout.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LABELS = {"peer": "the peer", "floor": "the bare floor"}


def worker(which: str, turns: int) -> None:
    """Inside a checkout (cwd): run one batch per line read from stdin, print its CPU µs a turn."""
    sys.path[:0] = [os.getcwd(), os.path.join(os.getcwd(), "bench")]
    import peer

    work = peer.messages(turns, 100)
    folder = tempfile.mkdtemp(prefix="convoflow-checkouts.")
    run = {"peer": peer.peer_cpu, "convoflow": peer.convoflow_cpu}.get(which) or storage_load(which, turns // 3)
    run(os.path.join(folder, "warm.db"), work[:300])  # caches: templates, flows, statements
    for batch, _ in enumerate(sys.stdin):
        path = peer.removed(os.path.join(folder, f"batch{batch}.db"))
        print(f"{run(path, work):.2f}", flush=True)
        peer.removed(path)


def storage_load(which: str, contacts: int):
    """bench/storage.py's turns ("storage") or its bare floor ("floor") as a run(path, work) -> CPU µs a turn."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_storage", os.path.join(os.getcwd(), "bench", "storage.py"))
    bench = importlib.util.module_from_spec(spec)  # not `import storage`: that name is convoflow's package
    spec.loader.exec_module(bench)
    bench.actions.load_all()

    def run(path: str, work: list) -> float:
        db = bench.fresh(f"sqlite:///{path}")
        flows = bench.seed(db)
        started = time.process_time()
        if which == "floor":
            db.close()
            turns = bench.sqlite_floor(path, range(contacts))
        else:
            turns = bench.persisted_turns(flows, range(contacts))
        cpu = time.process_time() - started
        db.close()
        return cpu / turns * 1e6

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkouts", nargs="+", help="checkout folders; the first is the reference")
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--turns", type=int, default=1500, help="turns per batch")
    parser.add_argument("--peer", action="store_true", help="the hand-written peer too")
    parser.add_argument("--load", choices=["peer", "storage"], default="peer", help="whose turns (see above)")
    parser.add_argument("--floor", action="store_true", help="with --load storage: its bare floor too")
    parser.add_argument("--worker", choices=["convoflow", "peer", "storage", "floor"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.turns)
    ours = "storage" if args.load == "storage" else "convoflow"
    runs = [(os.path.abspath(c), ours) for c in args.checkouts]
    runs += [(os.path.dirname(HERE), "peer")] if args.peer else []
    runs += [(runs[-1][0], "floor")] if args.floor and ours == "storage" else []
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")  # leave the other checkout's folders as they are
    procs = [
        subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", which, "--turns", str(args.turns), "x"],
            cwd=folder,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for folder, which in runs
    ]
    cpu: list[list[float]] = [[] for _ in procs]
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; {args.pairs} rounds of {args.turns} turns"
    )
    for round_ in range(args.pairs):
        for k in range(len(procs)) if round_ % 2 == 0 else reversed(range(len(procs))):
            procs[k].stdin.write("go\n")
            procs[k].stdin.flush()
            cpu[k].append(float(procs[k].stdout.readline()))
    for proc in procs:
        proc.stdin.close()
        proc.wait()
    print(f"load average {os.getloadavg()[0]:.1f} at the end; CPU µs per stored turn, median (min–max):")
    for (folder, which), values in zip(runs, cpu):
        label = LABELS.get(which, folder)
        print(f"  {label:<44} {statistics.median(values):6.0f} ({min(values):.0f}–{max(values):.0f})")
    for (folder, which), values in list(zip(runs, cpu))[1:]:
        ratios = [v / ref for ref, v in zip(cpu[0], values)]
        label = LABELS.get(which, folder)
        print(
            f"  {label} / {runs[0][0]}: {statistics.median(ratios):.3f} pair by pair "
            f"({min(ratios):.3f}–{max(ratios):.3f})"
        )


if __name__ == "__main__":
    main()
