"""Pages a stored turn writes on SQLite: WAL frames per turn of the peer benchmark's four-step
conversation (channels.turns.handle_message), checkpointing off so every frame stays in the WAL.

    python bench/turn_pages.py [--turns 2000] [--contacts 100]

Deterministic (no timing): the count follows the indexes a turn's writes touch, the lever on a stored
turn's CPU that bench/peer.py and bench/storage.py time. The second half of the turns is counted, so every
contact already has a session.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

import webhook as wb  # noqa: E402
from benchkit import fresh_database  # noqa: E402
from peer import messages  # noqa: E402


def frames_per_turn(turns: int, contacts: int) -> float:
    import actions
    from channels import action_results, flowcache
    from channels.turns import handle_message
    from engine.context import TurnContext
    from engine.messages import Inbound
    from engine.registry import registry
    from storage import db as storage_db
    from storage import flowstore

    storage_db.SQLITE_PRAGMAS["wal_autocheckpoint"] = 0
    actions.load_all()
    path = os.path.join(tempfile.mkdtemp(), "pages.db")
    db = fresh_database(f"sqlite:///{path}")
    page = db.execute_sql("PRAGMA page_size").fetchone()[0]
    with open(wb.FLOW, encoding="utf-8") as f:
        flowstore.store("four_steps", f.read(), wb.FLOW, datetime(2026, 1, 1))
    flows = flowcache.load_flowset(registry)
    ctx = TurnContext(registry=registry, invoke=action_results.stored_invoke)
    work = messages(turns, contacts)
    half = len(work) // 2
    for i, (contact, mid, text) in enumerate(work):
        if i == half:
            before = os.path.getsize(path + "-wal")
        handle_message(Inbound(contact, mid, text), flows, ctx, worker_id="bench")
    written = os.path.getsize(path + "-wal") - before
    db.close()
    return written / (page + 24) / (len(work) - half)  # a WAL frame: a 24-byte header and the page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--contacts", type=int, default=100)
    args = parser.parse_args()
    print(f"WAL frames (pages) written per stored turn: {frames_per_turn(args.turns, args.contacts):.2f}")


if __name__ == "__main__":
    main()
