"""What a stored turn writes: WAL frames (pages) and bytes per turn on SQLite, WAL bytes per turn on PostgreSQL, of
the peer benchmark's four-step conversation (channels.turns.handle_message).

    python bench/turn_pages.py [--turns 2000] [--contacts 100] [--postgres URL]
    python bench/turn_pages.py --by-btree    # SQLite's frames a turn by the table or index they belong to
    python bench/turn_pages.py --expire 10m  # the flow with an expiry, as the payment flows: it moves every turn
    python bench/turn_pages.py --stored-first  # each message stored first, then a worker's turn (WhatsApp's path)
    python bench/turn_pages.py --postgres URL --cpu-runs 5   # the backend's CPU per turn, prepared vs plain

Deterministic (no timing): the count follows the indexes a turn's writes touch, the lever on a stored
turn's CPU that bench/peer.py and bench/storage.py time. The second half of the turns is counted, so every
contact already has a session. SQLite runs with checkpointing off, so every frame stays in the WAL.
--postgres also counts the turn's row updates and how many were HOT (no index entry written); its WAL
figure is the server's whole WAL, so use a server nobody else writes to (its database is emptied).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

import webhook as wb  # noqa: E402
from benchkit import fresh_database  # noqa: E402
from peer import messages  # noqa: E402

_UPDATES = "SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname IN ('session', 'contact')"


def counted_turns(
    url: str,
    turns: int,
    contacts: int,
    counters: Callable[[object], dict[str, float]],
    expire: str | None = None,
    after_turn: Callable[[object], object] | None = None,
    stored_first: bool = False,
) -> dict:
    """Run the turns on a fresh database at `url`; `counters(db)`, read at the half and at the end, gives
    running totals: returns what each grew by per counted turn. `expire`: the flow's `expire.after` (e.g.
    "10m", as the payment flows have), so every turn moves the session's expiry. `after_turn(db)` is called
    after each turn. `stored_first` (SQLite): each message is stored unprocessed first, in a commit of its
    own, as the webhook stores a known contact's message (inbox.add_for_known_contact), and a worker's
    round then handles it (the WhatsApp path), instead of handle_message's turn that stores it processed."""
    import actions
    from channels import flowcache, inbox_turns, turn_save
    from channels.turns import handle_message
    from engine.context import TurnContext
    from engine.messages import Inbound
    from engine.registry import registry
    from storage import contacts as stored_contacts, flowstore, inbox
    from storage.db import utcnow

    actions.load_all()
    db = fresh_database(url)
    with open(wb.FLOW, encoding="utf-8") as f:
        source = f.read() + (f"expire:\n  after: {expire}\n" if expire else "")
    flowstore.store("four_steps", source, wb.FLOW, datetime(2026, 1, 1))
    flows = flowcache.load_flowset(registry)
    ctx = turn_save.persistent(TurnContext(registry=registry))  # as flows serve builds it
    work = messages(turns, contacts)
    half = len(work) // 2
    for i, (contact, mid, text) in enumerate(work):
        if i == half:
            before = counters(db)
        if stored_first:
            now, payload = utcnow(), {"contact": contact, "message_id": mid, "text": text}
            with db.writer:  # as channels/whatsapp.py stores a known contact's message on SQLite
                stored = inbox.add_for_known_contact(contact, None, None, mid, payload, now, now)
            if not stored:  # the contact's first message
                inbox.add(stored_contacts.upsert_contact(contact, now, wa_id=contact), mid, payload, now, now)
            assert inbox_turns.process_inbox(ctx, flows, limit=1, worker_id="bench") == 1
        else:
            handle_message(Inbound(contact, mid, text), flows, ctx, worker_id="bench")
        if after_turn is not None:
            after_turn(db)
    after = counters(db)
    db.close()
    return {name: (after[name] - before.get(name, 0.0)) / (len(work) - half) for name in after}


def sqlite_frames(turns: int, contacts: int, expire: str | None = None, stored_first: bool = False) -> dict[str, float]:
    """Per stored turn: WAL frames (pages) and WAL bytes, with the database's page size."""
    from storage import db as storage_db

    storage_db.SQLITE_PRAGMAS["wal_autocheckpoint"] = 0
    path = os.path.join(tempfile.mkdtemp(), "pages.db")

    def wal_frames(db) -> dict[str, float]:
        page = db.execute_sql("PRAGMA page_size").fetchone()[0]
        size = os.path.getsize(path + "-wal")
        # a frame: a 24-byte header and the page
        return {"frames": size / (page + 24), "bytes": float(size)}

    return counted_turns(f"sqlite:///{path}", turns, contacts, wal_frames, expire, None, stored_first)


class FramesByBtree:
    """Running totals of the WAL's frames by the b-tree (table or index) each page belongs to: called after
    every turn, it reads the frames that turn appended and names their pages by dbstat's map of the file at
    that moment (a page freed by one b-tree and reused by another is counted for the one that wrote it)."""

    def __init__(self, path: str) -> None:
        self.path, self.read, self.counts = path + "-wal", 32, {"page 1": 0.0}  # 32: the WAL's header

    def __call__(self, db) -> dict[str, float]:
        owner = dict(db.execute_sql('SELECT "pageno", "name" FROM "dbstat"').fetchall()) | {1: "page 1"}
        page = db.execute_sql("PRAGMA page_size").fetchone()[0]
        with open(self.path, "rb") as wal:
            wal.seek(self.read)
            while header := wal.read(24):  # a frame: a 24-byte header, its page number first, then the page
                name = owner.get(int.from_bytes(header[:4], "big"), "free")
                self.counts[name] = self.counts.get(name, 0.0) + 1
                wal.seek(page, os.SEEK_CUR)
            self.read = wal.tell()
        return dict(self.counts)


def sqlite_frames_by_btree(
    turns: int, contacts: int, expire: str | None = None, stored_first: bool = False
) -> dict[str, float]:
    """Per stored turn: WAL frames by b-tree, largest first."""
    from storage import db as storage_db

    storage_db.SQLITE_PRAGMAS["wal_autocheckpoint"] = 0
    path = os.path.join(tempfile.mkdtemp(), "pages.db")
    frames = FramesByBtree(path)
    got = counted_turns(f"sqlite:///{path}", turns, contacts, frames, expire, frames, stored_first)
    return dict(sorted(got.items(), key=lambda kv: -kv[1]))


def _page_size() -> int:
    """The page size of a new SQLite database (storage.db.SQLITE_PRAGMAS)."""
    from storage.db import SQLITE_PRAGMAS

    return SQLITE_PRAGMAS.get("page_size", 4096)


def postgres_figures(url: str, turns: int, contacts: int, expire: str | None = None) -> dict[str, float]:
    """Per stored turn: WAL bytes, and the updates of session and contact rows with how many were HOT."""

    def totals(db) -> dict[str, float]:
        db.execute_sql("SELECT pg_stat_force_next_flush()")  # this backend's counts, before they are read
        db.execute_sql("SELECT pg_stat_clear_snapshot()")
        wal = db.execute_sql("SELECT pg_current_wal_lsn() - '0/0'").fetchone()[0]
        rows = db.execute_sql(_UPDATES).fetchall()
        return {"WAL bytes": float(wal)} | {
            f"{table} {kind}": float(n) for table, upd, hot in rows for kind, n in (("updates", upd), ("HOT", hot))
        }

    return counted_turns(url, turns, contacts, totals, expire)


def server_cpu(url: str, turns: int, contacts: int, runs: int) -> None:
    """The PostgreSQL backend's CPU per stored turn (user + system, from /proc/<pid>/stat: the server must
    run on this machine), with execute's statements prepared and plain, alternating in one run."""
    tick = os.sysconf("SC_CLK_TCK")
    plain_url = url + ("&" if "?" in url else "?") + "prepare_statements=off"

    def cpu(db) -> dict[str, float]:
        with open(f"/proc/{db.connection().info.backend_pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return {"cpu": (int(fields[11]) + int(fields[12])) / tick, "wall": time.perf_counter()}

    figures: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for _ in range(runs):
        for prepare in (False, True):
            got = counted_turns(url if prepare else plain_url, turns, contacts, cpu)
            figures[prepare].append((got["cpu"] * 1e6, got["wall"] * 1e6))
    for prepare, label in ((False, "plain SQL"), (True, "prepared")):
        for i, what in ((0, "server CPU"), (1, "wall")):
            values = [f[i] for f in figures[prepare]]
            print(
                f"PostgreSQL {label:9}: {what} per stored turn median {statistics.median(values):.0f} µs "
                f"(min {min(values):.0f}, max {max(values):.0f}, {runs} runs)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--contacts", type=int, default=100)
    parser.add_argument("--postgres", metavar="URL", help="also count WAL bytes on this (quiet) PostgreSQL")
    parser.add_argument(
        "--cpu-runs", type=int, default=0, help="only time the --postgres backend's CPU per turn, this many runs"
    )
    parser.add_argument("--expire", metavar="AFTER", help="give the flow an expiry (e.g. 10m): every turn moves it")
    parser.add_argument(
        "--stored-first", action="store_true", help="store each message first and let a worker handle it (WhatsApp)"
    )
    parser.add_argument("--by-btree", action="store_true", help="SQLite's frames a turn by table and index only")
    args = parser.parse_args()
    if args.by_btree:
        figures = sqlite_frames_by_btree(args.turns, args.contacts, args.expire, args.stored_first)
        print(
            "SQLite: WAL frames per stored turn by b-tree: "
            + ", ".join(f"{k} {v:.2f}" for k, v in figures.items() if v)
        )
        return
    if args.postgres and args.cpu_runs:
        server_cpu(args.postgres, args.turns, args.contacts, args.cpu_runs)
        return
    sqlite = sqlite_frames(args.turns, args.contacts, args.expire, args.stored_first)
    print(
        f"SQLite: WAL frames (pages) written per stored turn: {sqlite['frames']:.2f}, "
        f"{sqlite['bytes']:,.0f} bytes (pages of {_page_size():,} bytes)"
    )
    if args.postgres:
        figures = postgres_figures(args.postgres, args.turns, args.contacts, args.expire)
        print("PostgreSQL, per stored turn: " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
