"""Where a stored turn's CPU goes, on bench/peer.py's in-process load (channels.turns.handle_message on a
SQLite file, the four-step conversation): SQLite's own work (thread CPU inside sqlite3's execute, COMMIT
included), the engine (channels.turns.run_turn), and the rest — the Python around them: statements' path
through storage.db and peewee, parameters, JSON, log tags, transactions.

    python bench/turn_split.py [--runs 5] [--turns 3000]

Each run is a fresh database; the figures are the median run (by total) with the spread of the totals.
The measuring itself (a Python wrapper around each execute) adds about a microsecond per statement to
"the rest". On a shared machine compare runs made in the same invocation, or alternate two checkouts.

Then the floor of the statements themselves: every statement of the median run, with its parameters,
replayed in order through a bare sqlite3 connection on a fresh file (no convoflow, no peewee, no engine:
what SQLite alone costs for what a turn asks of it), against the peer's whole turn (bench/peer_bot.py's
Store.handle), each --runs times in the same invocation.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

import peewee  # noqa: E402

import peer  # noqa: E402  (the in-process load: messages, convoflow_cpu)

_spent = {"sql": 0.0, "engine": 0.0}
_said: list[tuple[str, tuple]] = []  # every statement of the current run, in order, for the replay
_first_turn: list[int] = []  # where in _said each run's first turn starts


class _TimedCursor(sqlite3.Cursor):
    def execute(self, sql, params=()):
        _said.append((sql, tuple(params)))
        started = time.thread_time()
        try:
            return super().execute(sql, params)
        finally:
            _spent["sql"] += time.thread_time() - started


class _TimedConnection(sqlite3.Connection):
    def cursor(self, factory=_TimedCursor):
        return super().cursor(factory)

    def execute(self, sql, params=()):
        return self.cursor().execute(sql, params)


def instrument() -> None:
    """Time every SQLite statement of databases opened from now on, and the engine's run_turn."""
    from channels import turns

    connect = peewee.SqliteDatabase._connect

    def timed_connect(self):
        self.connect_params["factory"] = _TimedConnection
        return connect(self)

    peewee.SqliteDatabase._connect = timed_connect
    run_turn = turns.run_turn

    def timed_run_turn(*args, **kwargs):
        started = time.thread_time()
        try:
            return run_turn(*args, **kwargs)
        finally:
            _spent["engine"] += time.thread_time() - started

    turns.run_turn = timed_run_turn
    handle_message = turns.handle_message

    def marked_handle_message(*args, **kwargs):
        if not _first_turn:
            _first_turn.append(len(_said))
        return handle_message(*args, **kwargs)

    turns.handle_message = marked_handle_message


def replayed(said: list[tuple[str, tuple]], first_turn: int, folder: str, run: int) -> float:
    """Process CPU of said[first_turn:] through a bare sqlite3 connection, after said[:first_turn] (the
    schema, the flow, the connection's PRAGMAs) on a fresh file; µs a turn is the caller's to work out."""
    conn = sqlite3.connect(os.path.join(folder, f"replay{run}.db"), isolation_level=None)
    for sql, params in said[:first_turn]:
        conn.execute(sql, params).fetchall()
    started = time.process_time()
    for sql, params in said[first_turn:]:
        conn.execute(sql, params).fetchall()
    cpu = time.process_time() - started
    conn.close()
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--turns", type=int, default=3000)
    args = parser.parse_args()
    instrument()
    work = peer.messages(args.turns, 100)
    folder = tempfile.mkdtemp(prefix="convoflow-split.")
    peer.convoflow_cpu(os.path.join(folder, "warm.db"), work[:300])  # caches: templates, flows, statements
    runs = []
    for run in range(args.runs):
        _spent.update(sql=0.0, engine=0.0)
        _said.clear()
        _first_turn.clear()
        total = peer.convoflow_cpu(os.path.join(folder, f"run{run}.db"), work)
        sql, engine = (_spent[k] / len(work) * 1e6 for k in ("sql", "engine"))
        runs.append((total, sql, engine, total - sql - engine, list(_said), _first_turn[0]))
    total, sql, engine, rest, said, first_turn = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
    floors, peers = [], []
    for run in range(args.runs):
        floors.append(replayed(said, first_turn, folder, run) / len(work) * 1e6)
        peers.append(peer.peer_cpu(os.path.join(folder, f"peer{run}.db"), work))
    totals = [r[0] for r in runs]
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.runs} runs of {len(work)} turns; "
        f"CPU per stored turn, the median run (totals {min(totals):.0f}–{max(totals):.0f}, "
        f"median {statistics.median(totals):.0f} µs):"
    )
    print(f"  SQLite (execute, COMMIT included) {sql:6.0f} µs")
    print(f"  engine (run_turn)                 {engine:6.0f} µs")
    print(f"  the rest (the Python around them) {rest:6.0f} µs")
    print(f"  total                             {total:6.0f} µs")
    floor, whole = statistics.median(floors), statistics.median(peers)
    print(
        f"its {(len(said) - first_turn) / len(work):.1f} statements a turn replayed through bare sqlite3: "
        f"{floor:.0f} µs a turn ({min(floors):.0f}–{max(floors):.0f}); the peer's whole turn {whole:.0f} µs "
        f"({min(peers):.0f}–{max(peers):.0f}): our statements alone are {floor / whole:.2f}x the peer's turn"
    )


if __name__ == "__main__":
    main()
