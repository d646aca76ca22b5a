"""The sender's claim: the first pending row of each contact, oldest first, and on PostgreSQL a plan that
does not depend on the table's statistics (a new table, or one that grew since the last ANALYZE)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from storage import outbox
from storage.contacts import upsert_contact
from storage.db import execute, is_postgres

NOW = datetime(2026, 1, 1, 12, 0)


def _two_pending_each(contacts: int) -> list[int]:
    """Contact ids, each with two pending rows, queued turn about (row i goes to contact i % contacts)."""
    ids = [upsert_contact(f"2637{c:08d}", NOW) for c in range(contacts)]
    for i in range(2 * contacts):
        outbox.enqueue(ids[i % contacts], [{"to": f"2637{i % contacts:08d}", "text": f"message {i}"}], NOW)
    return ids


def test_a_claim_takes_each_contacts_first_pending_row_oldest_first(db):
    _two_pending_each(100)
    claimed = outbox.claim(NOW + timedelta(seconds=1), NOW + timedelta(minutes=1), 64)
    assert [c.payload for c in claimed] == [
        outbox.encode({"to": f"2637{i:08d}", "text": f"message {i}"}) for i in range(64)
    ]
    # the rest of the first rows, and none of the second ones: a contact's next row waits for its first
    rest = outbox.claim(NOW + timedelta(seconds=1), NOW + timedelta(minutes=1), 64)
    assert [c.contact_key for c in rest] == [f"2637{i:08d}" for i in range(64, 100)]
    outbox.record_sent([(c.id, f"wamid.{c.id}") for c in claimed], NOW)
    later = outbox.claim(NOW + timedelta(minutes=2), NOW + timedelta(minutes=3), 200)
    assert sorted(c.contact_key for c in later) == [f"2637{i:08d}" for i in range(100)]
    assert {c.payload for c in later} == {
        outbox.encode({"to": f"2637{i % 100:08d}", "text": f"message {i}"}) for i in [*range(64, 100), *range(100, 164)]
    }


def test_postgresql_finds_a_contacts_first_pending_row_by_one_index_probe_on_a_new_table(db):
    if not is_postgres(db):
        return
    _two_pending_each(100)
    claim = outbox._CLAIM[True]
    candidates = claim[claim.index("SELECT f.") : claim.index(" FOR UPDATE")]
    plan = "\n".join(row[0] for row in execute("EXPLAIN " + candidates, (NOW, 64)).fetchall())
    # The old NOT EXISTS was planned as a nested-loop anti-join comparing every pending row with every
    # other (10 ms a claim with 200 pending rows) until ANALYZE ran.
    assert "Anti Join" not in plan, plan
    assert "Index Cond: ((contact_id = f.contact_id)" in plan, plan


def test_postgresql_marks_sent_rows_and_claims_in_one_statement(db):
    # The sender's marks and its next claim as one statement (no BEGIN, no COMMIT): the claim sees the
    # marked rows as sent though the statement's snapshot still shows them pending, never takes them
    # again, and runs without a look only when a marked row's contact has a later row.
    if not is_postgres(db):
        return
    a, b, c = (upsert_contact(f"26377000000{n}", NOW) for n in range(3))
    outbox.enqueue(a, [{"to": "a", "text": "a1"}, {"to": "a", "text": "a2"}], NOW)
    outbox.enqueue(b, [{"to": "b", "text": "b1"}], NOW)
    at, lease = NOW + timedelta(seconds=1), NOW + timedelta(minutes=1)

    def texts(claimed: list[outbox.Claimed]) -> list[str]:
        return [json.loads(row.payload)["text"] for row in claimed]

    (a1,) = outbox.claim(at, lease, 1)
    a2, b1 = outbox.record_sent_and_claim([(a1.id, "wamid.a1")], at, lease, 64, look=False)
    assert texts([a2, b1]) == ["a2", "b1"]  # a1's contact had a later row: the claim ran, and took b1 too
    outbox.enqueue(b, [{"to": "b", "text": "b2"}], NOW)
    outbox.enqueue(c, [{"to": "c", "text": "c1"}], NOW)
    assert outbox.record_sent_and_claim([(a2.id, "wamid.a2")], at, lease, 64, look=False) == []  # nothing freed
    assert texts(outbox.record_sent_and_claim([(b1.id, "wamid.b1")], at, lease, 64, look=True)) == ["b2", "c1"]
    stored = execute('SELECT "id", "status", "channel_message_id" FROM "outbox_message" ORDER BY "id"').fetchall()
    assert [row[1:] for row in stored[:3]] == [("sent", "wamid.a1"), ("sent", "wamid.a2"), ("sent", "wamid.b1")]
    assert [row[1:] for row in stored[3:]] == [("pending", None), ("pending", None)]
