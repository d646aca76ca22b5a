"""Reconcile believes /query only when it understands it: the exchanges replayed from cassettes recorded
through real HTTP (an unknown status word, another amount, the money moved behind an HTML answer), on real
storage. The answers decide what happens to a PENDING or stale OTP_SENT payment of 3.50 USD.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from actions.omari_client import OmariClient
from actions.reconcile import reconcile
from storage import payments
from storage.bookings import add_booking, find_booking
from storage.models import Event

from omari_vcr import CANONICAL_BASE_URL, make_vcr
from record_cassettes import AMOUNT, MSISDN, REF_AMOUNT, REF_HTML, REF_STATUS

NOW = datetime(2026, 11, 26, 9, 0, 0)
BOOKING = "BK-RECONCILE-1"


def waiting(reference: str, status: str = payments.PENDING, at: datetime = NOW):
    """A 3.50 USD payment with our reference, left in status (as a lost /request answer leaves it)."""
    booking = find_booking(BOOKING) or add_booking(BOOKING, "Tendai Moyo", "Hwange day trip", "100.00")
    row, _ = payments.create(
        booking,
        reference=reference,
        idempotency_key=f"key-{reference}",
        msisdn=MSISDN,
        amount=AMOUNT,
        wallet="ecocash",
        channel="WEB",
        contact_key=None,
        now=at,
    )
    payments.transition(reference, payments.OTP_SENT, from_statuses=[payments.INITIATED], now=at)
    if status == payments.PENDING:
        payments.transition(reference, payments.PENDING, from_statuses=[payments.OTP_SENT], now=at)
    return row


def run(cassette: str, now: datetime = NOW + timedelta(minutes=1)):
    with make_vcr("none").use_cassette(cassette, allow_playback_repeats=True):
        return reconcile(OmariClient(CANONICAL_BASE_URL, "test-merchant-key"), now=now)


def paid() -> Decimal:
    return Decimal(find_booking(BOOKING).paid_minor) / 100


@pytest.mark.parametrize(
    "cassette,reference,reason",
    [
        ("query_unknown_status.yaml", REF_STATUS, "O'mari reports the status 'Processing', which is not one we know"),
        ("query_other_amount.yaml", REF_AMOUNT, "O'mari reports 0.35 USD paid; the payment is 3.50 USD"),
    ],
)
def test_an_answer_we_cannot_believe_leaves_it_pending_and_marked_for_a_person(db, cassette, reference, reason):
    waiting(reference)
    report = run(cassette)
    [settled] = report.settlements
    assert (settled.before, settled.after, settled.kind, settled.needs_person) == (
        "PENDING",
        "PENDING",
        "needs_person",
        reason,
    )
    row = payments.get(reference)
    assert row.status == "PENDING" and row.review_reason == reason and row.review_at == NOW + timedelta(minutes=1)
    assert row.applied_at is None and paid() == Decimal("0.00")
    assert [p.reference for p in payments.needs_person()] == [reference]

    again = run(cassette, now=NOW + timedelta(minutes=6))  # the next cron run: still needs a person
    assert [s.kind for s in again.settlements] == ["needs_person"] and again.summary()["needs_person"] == 1
    row = payments.get(reference)
    assert row.review_at == NOW + timedelta(minutes=1)  # marked since the first time
    assert Event.select().where(Event.kind == "payment.needs_person").count() == 1


def test_an_unknown_status_word_never_expires_a_stale_otp_sent_payment(db):
    waiting(REF_STATUS, status=payments.OTP_SENT)
    report = run("query_unknown_status.yaml", now=NOW + timedelta(hours=2))
    assert [(s.before, s.after, s.kind) for s in report.settlements] == [("OTP_SENT", "PENDING", "needs_person")]
    assert payments.get(REF_STATUS).status == "PENDING"


def test_an_understood_answer_settles_a_marked_payment_and_clears_the_mark(db):
    waiting(REF_HTML)
    payments.mark_for_person(
        REF_HTML,
        "O'mari reports the status 'Processing', which is not one we know",
        from_statuses=[payments.PENDING],
        now=NOW,
    )
    report = run("request_html_after_paying.yaml")
    assert [(s.after, s.kind) for s in report.settlements] == [("SUCCESS", "settled")]
    row = payments.get(REF_HTML)
    assert row.review_reason is None and row.review_at is None and paid() == Decimal("3.50")
    assert payments.needs_person() == []
