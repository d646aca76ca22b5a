"""What a stored turn writes: WAL frames (pages) per turn on SQLite, WAL bytes per turn on PostgreSQL, of
the peer benchmark's four-step conversation (channels.turns.handle_message).

    python bench/turn_pages.py [--turns 2000] [--contacts 100] [--postgres URL]

Deterministic (no timing): the count follows the indexes a turn's writes touch, the lever on a stored
turn's CPU that bench/peer.py and bench/storage.py time. The second half of the turns is counted, so every
contact already has a session. SQLite runs with checkpointing off, so every frame stays in the WAL.
--postgres also counts the turn's row updates and how many were HOT (no index entry written); its WAL
figure is the server's whole WAL, so use a server nobody else writes to (its database is emptied).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import datetime
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

import webhook as wb  # noqa: E402
from benchkit import fresh_database  # noqa: E402
from peer import messages  # noqa: E402

_UPDATES = "SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname IN ('session', 'contact')"


def counted_turns(url: str, turns: int, contacts: int, counters: Callable[[object], dict[str, float]]) -> dict:
    """Run the turns on a fresh database at `url`; `counters(db)`, read at the half and at the end, gives
    running totals: returns what each grew by per counted turn."""
    import actions
    from channels import action_results, flowcache
    from channels.turns import handle_message
    from engine.context import TurnContext
    from engine.messages import Inbound
    from engine.registry import registry
    from storage import flowstore

    actions.load_all()
    db = fresh_database(url)
    with open(wb.FLOW, encoding="utf-8") as f:
        flowstore.store("four_steps", f.read(), wb.FLOW, datetime(2026, 1, 1))
    flows = flowcache.load_flowset(registry)
    ctx = TurnContext(registry=registry, invoke=action_results.stored_invoke)
    work = messages(turns, contacts)
    half = len(work) // 2
    for i, (contact, mid, text) in enumerate(work):
        if i == half:
            before = counters(db)
        handle_message(Inbound(contact, mid, text), flows, ctx, worker_id="bench")
    after = counters(db)
    db.close()
    return {name: (after[name] - before[name]) / (len(work) - half) for name in after}


def sqlite_frames(turns: int, contacts: int) -> float:
    from storage import db as storage_db

    storage_db.SQLITE_PRAGMAS["wal_autocheckpoint"] = 0
    path = os.path.join(tempfile.mkdtemp(), "pages.db")

    def wal_frames(db) -> dict[str, float]:
        page = db.execute_sql("PRAGMA page_size").fetchone()[0]
        return {"frames": os.path.getsize(path + "-wal") / (page + 24)}  # a frame: a 24-byte header and the page

    return counted_turns(f"sqlite:///{path}", turns, contacts, wal_frames)["frames"]


def postgres_figures(url: str, turns: int, contacts: int) -> dict[str, float]:
    """Per stored turn: WAL bytes, and the updates of session and contact rows with how many were HOT."""

    def totals(db) -> dict[str, float]:
        db.execute_sql("SELECT pg_stat_force_next_flush()")  # this backend's counts, before they are read
        db.execute_sql("SELECT pg_stat_clear_snapshot()")
        wal = db.execute_sql("SELECT pg_current_wal_lsn() - '0/0'").fetchone()[0]
        rows = db.execute_sql(_UPDATES).fetchall()
        return {"WAL bytes": float(wal)} | {
            f"{table} {kind}": float(n) for table, upd, hot in rows for kind, n in (("updates", upd), ("HOT", hot))
        }

    return counted_turns(url, turns, contacts, totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--contacts", type=int, default=100)
    parser.add_argument("--postgres", metavar="URL", help="also count WAL bytes on this (quiet) PostgreSQL")
    args = parser.parse_args()
    print(f"SQLite: WAL frames (pages) written per stored turn: {sqlite_frames(args.turns, args.contacts):.2f}")
    if args.postgres:
        figures = postgres_figures(args.postgres, args.turns, args.contacts)
        print("PostgreSQL, per stored turn: " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
