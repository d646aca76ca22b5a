"""convoflow against a hand-written bot (bench/peer_bot.py: Flask + sqlite3, the same four-step
conversation, the same durability), measured in the same run:

- CPU per stored turn, in process: convoflow's channels.turns.handle_message against the peer's
  Store.handle, each on a fresh SQLite file, one thread, the same messages; process CPU per turn;
- end to end over HTTP: `flows serve` (SQLite, --workers turn threads, its sender) against the peer
  served by waitress with 4 threads, the Graph API stand-in answering at once and in
  --graph-latency-ms; messages/s from the first POST until the last reply reached the stand-in, and
  the server process's CPU per message (steadier than the rate when other work shares the cores).

    python bench/peer.py [--runs 5] [--turns 3000] [--messages 1200] [--graph-latency-ms 150] [--against /work/main]
    python bench/peer.py --only e2e0 --runs 12      # only end to end with the Graph API at 0 ms: more pairs

Each run measures every part as a pair, one side right after the other (who goes first alternates run by
run): CPU per stored turn, then end to end at 0 ms, then at --graph-latency-ms, so both sides of a pair
meet the machine in the same state. Every figure is the median of --runs with its spread, the ratio
convoflow/peer of the medians, and the median of the pair-by-pair ratios with their spread (min–max): on a
shared machine single runs swing by a third, the ratio of a pair much less. With --against, another
checkout's `flows serve` (e.g. of main) runs end to end in each pair too, and convoflow/that is printed
the same way: a change measured against the code before it, on the same machine at once. --only runs one
part (cpu, e2e0 or e2e). The sender keeps to --send-rate (default 1,000/s, an upgraded number's tier; the
peer has no limit at all).
Goals (issue 14): CPU per stored turn ≤ 3× the peer; end to end ≥ 1.2× the peer at 0 ms, ≥ 2× at 150 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

import webhook as wb  # noqa: E402  (servers, bodies, the timed Graph stand-in)
from peer_bot import Store  # noqa: E402


def messages(turns: int, contacts: int) -> list[tuple[str, str, str]]:
    """(contact, message id, text) for `turns` turns, contacts taking turns, each following the script."""
    said = [0] * contacts
    out = []
    for i in range(turns):
        c = i % contacts
        out.append((wb.wa_id(c), f"wamid.cpu.{i}", wb.SCRIPT[said[c] % len(wb.SCRIPT)].format(c=c)))
        said[c] += 1
    return out


def convoflow_cpu(path: str, work: list[tuple[str, str, str]]) -> float:
    """CPU µs per persisted convoflow turn."""
    from benchkit import fresh_database

    import actions
    from channels import flowcache, turn_save, turns
    from engine.context import TurnContext
    from engine.messages import Inbound
    from engine.registry import registry
    from storage import flowstore

    actions.load_all()
    db = fresh_database(f"sqlite:///{path}")
    with open(wb.FLOW, encoding="utf-8") as f:
        flowstore.store("four_steps", f.read(), wb.FLOW, datetime(2026, 1, 1))
    flows = flowcache.load_flowset(registry)
    ctx = turn_save.persistent(TurnContext(registry=registry))  # as flows serve builds it
    started = time.process_time()
    for contact, mid, text in work:
        assert turns.handle_message(Inbound(contact, mid, text), flows, ctx, worker_id="bench").outbound
    cpu = time.process_time() - started
    db.close()
    return cpu / len(work) * 1e6


def removed(path: str) -> str:
    """path, its SQLite file (and WAL) deleted: every run starts from an empty database."""
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    return path


def peer_cpu(path: str, work: list[tuple[str, str, str]]) -> float:
    """CPU µs per stored peer turn."""
    store = Store(removed(path))
    started = time.process_time()
    for contact, mid, text in work:
        assert store.handle(contact, mid, text)
    cpu = time.process_time() - started
    store.connection().close()
    return cpu / len(work) * 1e6


def end_to_end(
    which: str, folder: str, graph: wb.TimedGraph, args: argparse.Namespace, run: int
) -> tuple[float, float]:
    """Messages/s of one burst against a fresh server, and the server process's CPU µs per message (steadier
    than the rate on a shared machine: it does not count the wait for a core). (No latency figure: the peer
    answers Meta only after its reply is posted, so its clients wait and its queue is not seen in
    POST-to-reply times.)"""
    path = removed(os.path.join(folder, f"{which}.db"))
    if which in ("convoflow", "against"):
        wb.prepare(f"sqlite:///{path}")
        checkout = args.against if which == "against" else wb.REPO
        server = wb.Server.flows_serve(f"sqlite:///{path}", graph.url, args.workers, args.send_rate, cwd=checkout)
    else:
        server = wb.Server([os.path.join(HERE, "peer_bot.py"), "--db", path, "--threads", "4"], graph.url)
    try:
        per = wb.deliveries(args.messages, args.contacts, f"{which}{run}{graph.latency}")
        cpu = server.cpu_seconds()
        rate = wb.end_to_end([server.port], graph, per, args.threads, None)[0]
        return rate, (server.cpu_seconds() - cpu) / args.messages * 1e6
    finally:
        server.stop()


def line(
    label: str, ours: list[float], peer: list[float], unit: str, lower_is_better: bool = False, them: str = "peer"
) -> None:
    """The two sides' medians (min–max), the ratio of the medians and the median of the pair-by-pair ratios."""

    def spread(values: list[float]) -> str:
        return f"{statistics.median(values):.0f} {unit} ({min(values):.0f}–{max(values):.0f})"

    ratio = statistics.median(ours) / statistics.median(peer)
    pairs = [a / b for a, b in zip(ours, peer)]
    print(
        f"  {label:<34} convoflow {spread(ours):<26} {them} {spread(peer):<26} convoflow/{them} {ratio:.2f}x; "
        f"pair by pair {statistics.median(pairs):.2f}x ({min(pairs):.2f}–{max(pairs):.2f})"
        + ("  (lower is better)" if lower_is_better else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--turns", type=int, default=3000, help="turns per in-process CPU run")
    parser.add_argument("--messages", type=int, default=1200, help="messages per end-to-end burst")
    parser.add_argument("--contacts", type=int, default=100)
    parser.add_argument("--threads", type=int, default=4, help="client threads")
    parser.add_argument("--workers", type=int, default=2, help="turn threads of flows serve")
    parser.add_argument("--graph-latency-ms", type=float, default=150.0)
    parser.add_argument("--send-rate", type=float, default=1000)
    parser.add_argument(
        "--against", help="another checkout (e.g. of main) whose flows serve also runs end to end, alternately"
    )
    parser.add_argument(
        "--only", choices=["cpu", "e2e0", "e2e"], help="one part: CPU per turn, end to end at 0 ms, or at the latency"
    )
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="convoflow-peer.")
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start (a shared machine: the ratios, "
        f"measured pair by pair in the same run and alternating who goes first, are the figures to read)"
    )
    work = messages(args.turns, args.contacts) if args.only in (None, "cpu") else []
    graphs = [
        wb.TimedGraph(ms) for part, ms in (("e2e0", 0), ("e2e", args.graph_latency_ms)) if args.only in (None, part)
    ]
    figures: dict[str, list[float]] = {}
    try:
        for run in range(args.runs):
            flip = slice(None, None, -1 if run % 2 else 1)
            if work:
                for which in ("convoflow", "peer")[flip]:
                    cpu = convoflow_cpu if which == "convoflow" else peer_cpu
                    figures.setdefault(f"{which} cpu", []).append(cpu(os.path.join(folder, f"cpu-{which}.db"), work))
            for graph in graphs:
                for which in (("convoflow", "peer") + (("against",) if args.against else ()))[flip]:
                    rate, cpu = end_to_end(which, folder, graph, args, run)
                    figures.setdefault(f"{which} rate {graph.latency}", []).append(rate)
                    figures.setdefault(f"{which} serve cpu {graph.latency}", []).append(cpu)
    finally:
        for graph in graphs:
            graph.close()
    print(f"\n{args.runs} runs; load average {os.getloadavg()[0]:.1f} at the end")
    if work:
        line("CPU per stored turn (in process)", figures["convoflow cpu"], figures["peer cpu"], "µs", True)
    for graph in graphs:
        ms = f"{graph.latency * 1000:.0f} ms"
        line(
            f"end to end, Graph at {ms}",
            figures[f"convoflow rate {graph.latency}"],
            figures[f"peer rate {graph.latency}"],
            "msg/s",
        )
        line(
            f"  server CPU per message at {ms}",
            figures[f"convoflow serve cpu {graph.latency}"],
            figures[f"peer serve cpu {graph.latency}"],
            "µs",
            True,
        )
    for graph in graphs if args.against else ():
        ms = f"{graph.latency * 1000:.0f} ms"
        for key, label, unit in (("rate", f"end to end, Graph at {ms}", "msg/s"), ("serve cpu", "  server CPU", "µs")):
            line(
                label,
                figures[f"convoflow {key} {graph.latency}"],
                figures[f"against {key} {graph.latency}"],
                unit,
                key != "rate",
                them="--against",
            )


if __name__ == "__main__":
    main()
