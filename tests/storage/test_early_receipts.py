"""Delivery receipts that come before the sender records its send (Meta's "sent" can beat the sender's
own bookkeeping): kept, applied by the sweep once the row holds the wamid, forgotten when none ever does."""

from __future__ import annotations

from datetime import timedelta

from storage import outbox
from storage.contacts import upsert_contact
from storage.db import utcnow
from storage.models import EarlyReceipt, OutboxMessage


def _sending(now) -> int:
    """One reply claimed by the sender, its post answered but not yet recorded: the row's id."""
    outbox.enqueue(upsert_contact("263771234567", now), [{"to": "263771234567", "text": "hi"}], now)
    (claimed,) = outbox.claim(now, now + timedelta(seconds=120), 10)
    return claimed.id


def test_an_early_receipt_is_applied_once_the_send_is_recorded(db):
    now = utcnow()
    row_id = _sending(now)
    assert outbox.record_deliveries([("wamid.A", "sent", None)], now) == []
    assert outbox.record_deliveries([("wamid.A", "read", None), ("wamid.A", "delivered", None)], now) == []
    assert outbox.apply_early_receipts(now) == []  # no row holds wamid.A yet: still kept
    assert [(r.channel_message_id, r.status) for r in EarlyReceipt.select()] == [("wamid.A", "read")]

    outbox.record_sent([(row_id, "wamid.A")], now)
    assert outbox.apply_early_receipts(now + timedelta(seconds=15)) == []
    assert OutboxMessage.get_by_id(row_id).delivery_status == "read"
    assert EarlyReceipt.select().count() == 0
    # A receipt after the send is recorded goes straight to the row, as before.
    assert outbox.record_deliveries([("wamid.A", "delivered", None)], now) == []
    assert OutboxMessage.get_by_id(row_id).delivery_status == "read"
    assert EarlyReceipt.select().count() == 0


def test_an_early_failure_is_reported_when_it_is_applied(db):
    now = utcnow()
    row_id = _sending(now)
    outbox.record_deliveries([("wamid.F", "failed", "131047 Re-engagement message")], now)
    outbox.record_sent([(row_id, "wamid.F")], now)
    assert outbox.apply_early_receipts(now) == [(row_id, "131047 Re-engagement message")]
    row = OutboxMessage.get_by_id(row_id)
    assert row.delivery_status == "failed" and "131047" in row.error


def test_a_receipt_no_row_ever_takes_is_forgotten_after_the_keep(db):
    now = utcnow()
    outbox.record_deliveries([("wamid.elsewhere", "delivered", None)], now)
    assert outbox.apply_early_receipts(now + outbox.EARLY_RECEIPT_KEEP - timedelta(seconds=1)) == []
    assert EarlyReceipt.select().count() == 1
    assert outbox.apply_early_receipts(now + outbox.EARLY_RECEIPT_KEEP + timedelta(seconds=1)) == []
    assert EarlyReceipt.select().count() == 0
