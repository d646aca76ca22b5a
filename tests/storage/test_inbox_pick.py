"""A worker's pick on PostgreSQL (storage.sessions.claim_next): the contact with the oldest unprocessed
message nobody holds, found by walking the pending index and stopping at the first such row, and that
contact's messages then read in the order they were sent."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

from storage import inbox, sessions
from storage.contacts import upsert_contact
from storage.db import execute, is_postgres

NOW = datetime(2026, 1, 1, 12, 0)


@pytest.fixture
def pg(db):
    if not is_postgres(db):
        pytest.skip("PostgreSQL only: SQLite picks inside its write transaction (inbox.pending_contacts)")
    return db


def _pending(contacts: int, each: int, second: datetime) -> list[int]:
    """Contact ids, each with `each` unprocessed messages, all sent in one second (WhatsApp's timestamps
    are whole seconds), queued turn about."""
    ids = [upsert_contact(f"2637{c:08d}", NOW) for c in range(contacts)]
    for n in range(contacts * each):
        c = n % contacts
        inbox.add(ids[c], f"wamid.{n}", {"contact": f"2637{c:08d}", "text": f"m{n}"}, second, NOW)
    return ids


def test_the_pick_stops_at_the_first_pending_row_of_a_contact_nobody_holds(pg):
    _pending(100, 3, NOW)
    execute('ANALYZE "inbox_message"')
    execute('ANALYZE "session"')
    pick = sessions._CLAIM_NEXT[len("WITH pick AS (") : sessions._CLAIM_NEXT.index(" FOR UPDATE")]
    plan = "\n".join(r[0] for r in execute("EXPLAIN ANALYZE " + pick, (NOW,)).fetchall())
    # Ordered by (sent_at, id), PostgreSQL sorted each pick with an incremental sort, which reads at least
    # 32 rows (joining each to its session) before it gives the first; 300 in one second, here.
    assert "Sort" not in plan, plan
    assert "inbox_message_pending" in plan, plan


def test_picks_take_the_oldest_second_first_and_a_contacts_messages_in_order(pg):
    late = _pending(3, 2, NOW + timedelta(seconds=1))
    early = upsert_contact("263799999999", NOW)
    inbox.add(early, "wamid.early", {"contact": "263799999999", "text": "first"}, NOW, NOW)
    found, claim = sessions.claim_next("w1", NOW)
    assert found and claim.contact_id == early
    picked = []
    for worker in ("w2", "w3", "w4"):
        found, claim = sessions.claim_next(worker, NOW)
        row, _ = inbox.oldest_pending_with_key(claim.contact_id)
        picked.append((claim.contact_id, row.channel_message_id))
    assert sorted(picked) == sorted(zip(late, ["wamid.0", "wamid.1", "wamid.2"]))
    assert sessions.claim_next("w5", NOW) == (False, None)  # every contact with pending messages is held


def test_a_pick_says_whether_another_message_is_waiting_to_be_taken(pg):
    # A worker looks again after its turn, and wakes another idle thread, only when its pick said so.
    first, second = _pending(2, 1, NOW)
    picked = sessions.claim_next("w1", NOW)
    assert picked == (True, picked[1]) and picked.more  # the other contact's message waits, nobody holds it
    other = sessions.claim_next("w2", NOW)
    assert {picked[1].contact_id, other[1].contact_id} == {first, second}
    assert not other.more  # the only other message is held by w1
    assert not sessions.claim_next("w3", NOW).more  # nothing found
    later = upsert_contact("263711111111", NOW)
    for n in range(2):
        inbox.add(later, f"wamid.later.{n}", {"contact": "263711111111", "text": "hi"}, NOW, NOW)
    picked = sessions.claim_next("w4", NOW)
    assert picked[1].contact_id == later and picked.more  # its own next message: w4 looks again after it


def test_a_pick_looks_for_more_from_the_message_it_took_on(pg):
    # A message before the one taken was passed over by the pick (its contact held, or its row locked by
    # another pick or a save): not one for this worker to look again for. Walking those again cost the pick
    # as much again with a backlog behind held contacts (six held contacts ten messages deep: 522 buffer
    # hits a pick against 282).
    busy, free = (upsert_contact(f"26370000000{n}", NOW) for n in range(2))
    inbox.add(busy, "wamid.busy", {"contact": "263700000000", "text": "first"}, NOW, NOW)
    inbox.add(free, "wamid.free", {"contact": "263700000001", "text": "second"}, NOW + timedelta(seconds=1), NOW)
    picked = picked_while_locked(pg, "wamid.busy")
    assert picked[1].contact_id == free and not picked.more
    assert sessions.claim_next("w2", NOW)[1].contact_id == busy  # taken by the next look once it is free


def test_the_pick_looks_for_more_in_the_pending_index_not_the_handled_history(pg):
    # Asked as EXISTS, PostgreSQL's generic plan (the one a prepared pick runs) read the table from its
    # start for it, every handled message before the first pending one (96 buffers with 3,000 handled
    # rows and a backlog of 800, as in a burst).
    ids = _pending(100, 30, NOW - timedelta(days=1))
    execute('UPDATE "inbox_message" SET "processed_at" = ?', (NOW,))
    for n in range(800):
        c = n % 100
        inbox.add(ids[c], f"wamid.new.{n}", {"contact": f"2637{c:08d}", "text": "hi"}, NOW, NOW)
    execute("ANALYZE")
    execute("SET plan_cache_mode = force_generic_plan")
    try:
        marks = iter(range(1, 100))
        execute("PREPARE pick_plan AS " + re.sub(r"\?", lambda _: f"${next(marks)}", sessions._CLAIM_NEXT))
        now, later = f"'{NOW.isoformat(' ')}'", f"'{(NOW + sessions.LEASE).isoformat(' ')}'"
        args = ", ".join([now, "'w1'", later, now, now])
        plan = "\n".join(r[0] for r in execute(f"EXPLAIN EXECUTE pick_plan({args})").fetchall())
    finally:
        execute("DEALLOCATE ALL")
        execute("RESET plan_cache_mode")
    assert "Seq Scan on inbox_message" not in plan, plan


def test_a_workers_save_says_whether_its_contact_has_another_message_waiting(pg):
    # The contact's next message, stored while its turn ran, was passed by every look (the contact was
    # held): the save says it waits, so the worker looks again instead of leaving it to the poll.
    _pending(2, 1, NOW)

    def turn(worker: str) -> tuple[sessions.Claim, inbox.InboxRow]:
        claim = sessions.claim_next(worker, NOW)[1]
        return claim, inbox.oldest_pending_with_key(claim.contact_id)[0]

    def save(claim: sessions.Claim, row: inbox.InboxRow) -> bool:
        return sessions.save_and_release(claim, claim.state, sessions.Processed(row.id, NOW, [], []))

    claim, row = turn("w1")
    assert save(claim, row) is False  # the other contact's message is not this contact's
    claim, row = turn("w2")
    inbox.add(claim.contact_id, "wamid.during", {"contact": "x", "text": "next"}, NOW, NOW)
    assert save(claim, row) is True
    claim, row = turn("w3")
    assert row.channel_message_id == "wamid.during"
    assert save(claim, row) is False


def test_the_pick_hands_over_the_message_it_took_when_it_is_the_contacts_oldest(pg):
    # The worker then needs no read after its claim (one statement a message fewer).
    (contact,) = _pending(1, 2, NOW)
    picked = sessions.claim_next("w1", NOW)
    row, key = picked.taken
    assert (row, key) == inbox.oldest_pending_with_key(contact)
    assert row.channel_message_id == "wamid.0" and row.payload == {"contact": "263700000000", "text": "m0"}
    assert not row.processed and key == "263700000000"


def picked_while_locked(pg, channel_message_id: str) -> sessions.Pick:
    """A worker's pick while another connection holds the message's row locked (a pick or a save)."""
    import psycopg2

    locker = psycopg2.connect(pg.url)
    try:
        locker.cursor().execute(
            'SELECT 1 FROM "inbox_message" WHERE "channel_message_id" = %s FOR UPDATE', (channel_message_id,)
        )
        return sessions.claim_next("w1", NOW)
    finally:
        # Rolled back first: close() returns before the server has ended the session, so a pick right
        # after it could still find the row locked (SKIP LOCKED passes it over) — seen once in CI.
        locker.rollback()
        locker.close()


def test_a_contacts_older_message_another_pick_has_locked_is_still_taken_first(pg):
    # SKIP LOCKED passes over the older row another pick holds: the pick may claim the contact through its
    # newer row, but it does not hand that row over, and the read after the claim finds the older one.
    contact = upsert_contact("263700000000", NOW)
    inbox.add(contact, "wamid.older", {"contact": "263700000000", "text": "first"}, NOW, NOW)
    inbox.add(contact, "wamid.newer", {"contact": "263700000000", "text": "second"}, NOW + timedelta(seconds=1), NOW)
    picked = picked_while_locked(pg, "wamid.older")
    assert picked[1].contact_id == contact and picked.taken is None
    assert inbox.oldest_pending_with_key(contact)[0].channel_message_id == "wamid.older"


def test_in_one_second_the_pick_hands_over_only_the_contacts_first_message(pg):
    # The pick orders by sent_at alone; within a second a contact's messages go in id order.
    (contact,) = _pending(1, 3, NOW)
    picked = sessions.claim_next("w1", NOW)
    assert picked.taken is None or picked.taken == inbox.oldest_pending_with_key(contact)
