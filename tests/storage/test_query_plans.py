"""Every query of the inbox, the outbox and the session expiry reads an index (SQLite), so that a schema
change meant to make a turn write fewer pages cannot leave one of them scanning a table that grows by a row
a message: each statement the real function sends is caught as SQLite runs it and its plan checked
(docs/storage.md, "What a turn writes, and the indexes it keeps"). outbox.for_contact (`flows chat` and
tests) scans, by design, and is not here."""

from __future__ import annotations

import re

import pytest

from clock import START
from storage import inbox, outbox, sessions

# (what runs, the index each of its statements' plans must name)
QUERIES = (
    ("pending contacts (worker's pick)", lambda: inbox.pending_contacts(START, 4), "inbox_message_pending"),
    ("a contact's next message", lambda: inbox.oldest_pending_with_key(1), "inbox_message_pending_contact"),
    ("a contact's next message, row only", lambda: inbox.oldest_pending(1), "inbox_message_pending_contact"),
    ("the optimistic pick", lambda: sessions.peek_next("t", START), "inbox_message_pending"),
    ("the inbox backlog (/metrics)", inbox.backlog, "inbox_message_pending_contact"),
    ("known message ids", lambda: inbox.known_ids(["wamid.a", "wamid.b"]), "inbox_message_channel_message_id"),
    ("a redelivery", lambda: inbox.is_processed("wamid.a"), "inbox_message_channel_message_id"),
    ("the peek's handled probe", lambda: sessions.peek("c1", "wamid.a", "t"), "inbox_message_channel_message_id"),
    ("the sender's claim", lambda: outbox.claim(START, START, 8), "outbox_message_pending_contact"),
    ("the sender's mark", lambda: outbox.record_sent([(1, "wamid.s")], START), "outbox_message_pending_contact"),
    ("delivery receipts", lambda: outbox.record_deliveries([("wamid.s", "read", None)], START), "outbox_message_wamid"),
    ("the expiry sweep", lambda: sessions.due_for_expiry(START), "session_expiry_check"),
)

# A plan line that reads a whole table: "SCAN t" with no index (a VALUES list or a CTE reads its own rows).
_TABLE_SCAN = re.compile(r"^SCAN (\w+)$")


def plans_of(db, run) -> list[str]:
    """The query plan of each statement `run` sends, one string a statement (its lines joined by " | ")."""
    sent: list[str] = []
    connection = db.connection()
    connection.set_trace_callback(sent.append)
    try:
        run()
    finally:
        connection.set_trace_callback(None)
    return [
        " | ".join(row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + sql).fetchall())
        for sql in sent
        if sql.split(None, 1)[0].upper() in ("SELECT", "UPDATE", "WITH", "INSERT", "DELETE")
    ]


@pytest.mark.parametrize("name, run, index", QUERIES, ids=[q[0] for q in QUERIES])
def test_the_query_reads_its_index_and_scans_no_table(sqlite_db, name, run, index):
    plans = plans_of(sqlite_db, run)
    assert plans, f"{name}: no statement ran"
    assert any(re.search(rf"INDEX {index}\b", plan) for plan in plans), plans
    tables = {"inbox_message", "outbox_message", "session", "contact", "i", "f", "p", "s", "c", "m", "n", "e"}
    for plan in plans:
        scans = {m.group(1) for line in plan.split(" | ") if (m := _TABLE_SCAN.match(line))}
        assert not scans & tables, plan
