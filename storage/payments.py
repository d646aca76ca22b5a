"""Payment transactions: create, move between statuses, apply to a booking exactly once, list, show.

The recovery points of a payment (docs/architecture.md, "The path of one payment"):

1. `create()` commits the row INITIATED, with our UUID reference and the idempotency key of the action
   call, BEFORE any HTTP call;
2. the caller talks to O'mari outside any database transaction;
3. `transition()` / `record_success()` commit the answer.

`record_success()` is the only place money reaches a booking: in one write transaction it locks the
transaction row and the booking row (`SELECT … FOR UPDATE` on PostgreSQL; `BEGIN IMMEDIATE` holds the
SQLite write lock), and only when the transaction has no `applied_at` yet adds the amount, sets the
booking PAID or PARTIAL, and marks the transaction SUCCESS and applied — so a payment counts once however
many callers (a retried turn, two reconcile runs) race to record it.

Every status change is appended to `status_history` (`[{"status": …, "at": …}]`) and written to the
audit Event log. Nothing here ever stores an OTP.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Callable, Iterable

import peewee

from .db import execute, is_postgres, write_transaction
from . import bookings, outbox
from .models import Booking, Contact, Event, PaymentTransaction
from .money import format_amount, from_minor, to_minor

from .payment_states import (  # noqa: F401 (the states are used here and read through this module)
    CANCELLED,
    EXPIRED,
    FAILED,
    FINAL,
    INITIATED,
    OTP_SENT,
    PENDING,
    STATUSES,
    SUCCESS,
)

# Our decision (O'mari does not document it): an OTP is good for 10 minutes after /auth.
OTP_LIFETIME = timedelta(minutes=10)


@dataclass(frozen=True)
class StartLimits:
    """How many payments (each one an OTP text) may start within `window`, per contact and per wallet."""

    per_contact: int = 3
    per_wallet: int = 5
    window: timedelta = timedelta(minutes=15)


class StartLimited(Exception):
    """A payment start refused by a StartLimits: `limit` is "contact" or "wallet"; `free_at` is when the
    oldest start in the window leaves it.
    """

    def __init__(self, limit: str, free_at: datetime) -> None:
        super().__init__(f"too many payment starts per {limit}")
        self.limit, self.free_at = limit, free_at


@dataclass(frozen=True)
class Applied:
    """What recording a success did: whether this call added the money, and the booking afterwards."""

    applied: bool  # False: it had been applied before (by another caller or an earlier run)
    transaction: PaymentTransaction
    booking: Booking


def balance_due(booking: Booking) -> Decimal:
    return from_minor(max(booking.total_minor - booking.paid_minor, 0))


def _history_entry(status: str, at: datetime) -> dict:
    return {"status": status, "at": at.isoformat(timespec="seconds")}


def _locked(query: peewee.ModelSelect) -> peewee.ModelSelect:
    # SQLite has no row locks: the write transaction's BEGIN IMMEDIATE already excludes other writers.
    return query.for_update() if is_postgres() else query


def _audit(kind: str, subject: str, detail: dict, at: datetime, contact_key: str | None = None) -> None:
    Event.create(at=at, kind=kind, subject=subject, contact_key=contact_key, detail=json.dumps(detail, sort_keys=True))


# ── create and read ──────────────────────────────────────────────────────────────────────────────────


def create(
    booking: Booking,
    *,
    reference: str,
    idempotency_key: str,
    msisdn: str,
    amount: Decimal,
    wallet: str,
    channel: str,
    contact_key: str | None,
    now: datetime,
    limits: StartLimits | None = None,
    provider: str = "omari",
) -> tuple[PaymentTransaction, bool]:
    """Commit a new INITIATED transaction; returns (row, created). A second call with the same idempotency
    key returns the first row and created=False instead of making another. With limits, raises
    StartLimited (and stores nothing) when the contact or the wallet has started as many already.
    provider: the payment provider's name (actions/providers.py) that will take it.
    """
    existing = by_idempotency_key(idempotency_key)
    if existing is not None:
        return existing, False
    try:
        with write_transaction():
            if limits is not None:
                _check_limits(limits, contact_key, msisdn, now)
            row = PaymentTransaction.create(
                reference=reference,
                booking=booking,
                contact_key=contact_key,
                msisdn=msisdn,
                amount_minor=to_minor(amount),
                currency=booking.currency,
                wallet=wallet,
                channel=channel,
                provider=provider,
                status=INITIATED,
                idempotency_key=idempotency_key,
                status_history=json.dumps([_history_entry(INITIATED, now)]),
                created_at=now,
                updated_at=now,
            )
            _audit(
                "payment.status",
                reference,
                {"to": INITIATED, "booking": booking.reference, "provider": provider},
                now,
                contact_key,
            )
    except peewee.IntegrityError:
        # Another worker created the row for this key between our lookup and our insert.
        existing = by_idempotency_key(idempotency_key)
        if existing is None:
            raise
        return existing, False
    return row, True


def _check_limits(limits: StartLimits, contact_key: str | None, msisdn: str, now: datetime) -> None:
    """Raise StartLimited when a limit is reached. Runs in create()'s write transaction: SQLite's write
    lock serialises it; on PostgreSQL a transaction-scoped advisory lock per wallet number does, so two
    contacts starting on one wallet at once cannot both slip under its limit.
    """
    if is_postgres():
        execute("SELECT pg_advisory_xact_lock(?)", (zlib.crc32(msisdn.encode()),))
    since = now - limits.window
    checks = [("wallet", PaymentTransaction.msisdn == msisdn, limits.per_wallet)]
    if contact_key:
        checks.insert(0, ("contact", PaymentTransaction.contact_key == contact_key, limits.per_contact))
    for limit, which, allowed in checks:
        starts = [
            row.created_at
            for row in PaymentTransaction.select(PaymentTransaction.created_at)
            .where(which & (PaymentTransaction.created_at > since))
            .order_by(PaymentTransaction.created_at.desc())
            .limit(allowed)
        ]
        if len(starts) >= allowed:
            raise StartLimited(limit, starts[-1] + limits.window)


LIMITS = ("contact", "wallet")


def note_limited(limit: str, *, subject: str, contact_key: str | None, now: datetime) -> None:
    """Keep a refused start in the audit log, which /metrics counts; subject: the masked wallet number."""
    with write_transaction():
        _audit(f"payment.limited.{limit}", subject, {"limit": limit}, now, contact_key)


def limited_counts() -> dict[str, int]:
    """Refused payment starts so far, by limit ("contact", "wallet")."""
    kinds = {f"payment.limited.{limit}": limit for limit in LIMITS}
    counted = dict(
        Event.select(Event.kind, peewee.fn.COUNT(Event.id))
        .where(Event.kind.in_(list(kinds)))
        .group_by(Event.kind)
        .tuples()
    )
    return {limit: counted.get(kind, 0) for kind, limit in kinds.items()}


def by_idempotency_key(key: str) -> PaymentTransaction | None:
    return PaymentTransaction.get_or_none(PaymentTransaction.idempotency_key == key)


def get(reference: str) -> PaymentTransaction | None:
    """The transaction with our reference (surrounding space and case ignored: UUIDs are lowercase)."""
    return PaymentTransaction.get_or_none(PaymentTransaction.reference == (reference or "").strip().lower())


def history(row: PaymentTransaction) -> list[dict]:
    return json.loads(row.status_history or "[]")


# ── status changes ───────────────────────────────────────────────────────────────────────────────────


def transition(
    reference: str,
    to_status: str,
    *,
    from_statuses: Iterable[str],
    now: datetime,
    on_change: Callable[[PaymentTransaction], None] | None = None,
    **fields,
) -> PaymentTransaction | None:
    """Move the transaction to to_status only if it is in one of from_statuses (a claim: of two racing
    callers exactly one wins). fields sets columns at the same time (otp_reference, response_code,
    error_message, …). Returns the updated row, or None when its status was not one of from_statuses.
    Status-preserving updates (to_status already current and listed in from_statuses) add no history.
    on_change runs inside the same transaction when the status changed.
    """
    allowed = set(from_statuses)
    if to_status not in STATUSES:
        raise ValueError(f"unknown status '{to_status}'")
    with write_transaction():
        row = _locked(PaymentTransaction.select().where(PaymentTransaction.reference == reference)).first()
        if row is None or row.status not in allowed:
            return None
        changes = dict(fields, updated_at=now)
        if row.status != to_status:
            if to_status in FINAL:
                changes.update(review_reason=None, review_at=None)  # settled: the mark no longer holds
            changes["status"] = to_status
            changes["status_history"] = json.dumps(history(row) + [_history_entry(to_status, now)])
            if to_status in FINAL:
                changes["completed_at"] = now
        PaymentTransaction.update(**changes).where(PaymentTransaction.id == row.id).execute()
        if row.status != to_status:
            detail = {"from": row.status, "to": to_status}
            if fields.get("response_code"):
                detail["response_code"] = fields["response_code"]
            _audit("payment.status", reference, detail, now, row.contact_key)
        updated = PaymentTransaction.get_by_id(row.id)
        if on_change is not None and row.status != to_status:
            on_change(updated)
        return updated


def mark_for_person(
    reference: str, reason: str, *, from_statuses: Iterable[str], now: datetime
) -> PaymentTransaction | None:
    """O'mari's answer cannot be believed: leave the payment PENDING (moving it there from one of
    from_statuses) and mark it as needing a person, with the reason. Never FAILED, never credited.
    Returns None when the payment is in none of from_statuses.
    """
    with write_transaction():
        before = get(reference)
        since = before.review_at if before is not None and before.review_reason == reason else now
        row = transition(
            reference, PENDING, from_statuses=from_statuses, now=now, review_reason=reason, review_at=since
        )
        if row is not None and since == now:
            _audit("payment.needs_person", reference, {"reason": reason}, now, row.contact_key)
        return row


def needs_person() -> list[PaymentTransaction]:
    """Payments marked as needing a person, oldest mark first."""
    return list(
        PaymentTransaction.select()
        .where(PaymentTransaction.review_reason.is_null(False))
        .order_by(PaymentTransaction.review_at, PaymentTransaction.id)
    )


def count_otp_refused(
    reference: str, *, now: datetime, response_code: str | None, message: str | None
) -> PaymentTransaction | None:
    """One more wrong OTP on an OTP_SENT transaction; returns the row (None if no longer OTP_SENT)."""
    with write_transaction():
        updated = (
            PaymentTransaction.update(
                otp_attempts=PaymentTransaction.otp_attempts + 1,
                response_code=response_code,
                error_message=message,
                updated_at=now,
            )
            .where((PaymentTransaction.reference == reference) & (PaymentTransaction.status == OTP_SENT))
            .execute()
        )
    return get(reference) if updated else None


def record_success(
    reference: str,
    *,
    now: datetime,
    from_statuses: Iterable[str] = STATUSES,
    on_change: Callable[[PaymentTransaction, Booking], None] | None = None,
    **fields,
) -> Applied | None:
    """Mark the transaction SUCCESS and add its amount to its booking, once, in one write transaction.

    By default any status may become SUCCESS: when O'mari says the money moved, that is the truth, even
    for a row we had given up on. Returns None when the transaction is in none of from_statuses and not
    already SUCCESS. Calling it again for an applied transaction changes nothing and answers
    applied=False. on_change runs inside the same transaction when this call applied the payment (e.g.
    to queue a message to the customer, so a crash cannot record the payment and lose the message).
    """
    allowed = set(from_statuses) | {SUCCESS}
    with write_transaction():
        row = _locked(PaymentTransaction.select().where(PaymentTransaction.reference == reference)).first()
        if row is None or row.status not in allowed:
            return None
        booking = _locked(Booking.select().where(Booking.id == row.booking_id)).get()
        if row.applied_at is not None:
            return Applied(False, row, booking)
        changes = dict(fields, updated_at=now, applied_at=now, review_reason=None, review_at=None)
        if row.status != SUCCESS:
            changes.update(
                status=SUCCESS,
                completed_at=now,
                status_history=json.dumps(history(row) + [_history_entry(SUCCESS, now)]),
            )
        PaymentTransaction.update(**changes).where(PaymentTransaction.id == row.id).execute()
        booking = bookings.add_to_paid(booking.id, row.amount_minor, now)
        if row.status != SUCCESS:
            _audit("payment.status", reference, {"from": row.status, "to": SUCCESS}, now, row.contact_key)
        done = Applied(True, PaymentTransaction.get_by_id(row.id), booking)
        if on_change is not None:
            on_change(done.transaction, done.booking)
        _audit(
            "payment.applied",
            reference,
            {
                "booking": booking.reference,
                "amount": format_amount(from_minor(row.amount_minor)),
                "currency": row.currency,
            },
            now,
            row.contact_key,
        )
        return done


def apply_to_booking(reference: str, *, now: datetime) -> Applied | None:
    """Apply an already SUCCESS transaction to its booking if nobody has; None unless it is SUCCESS."""
    return record_success(reference, now=now, from_statuses=())


# ── the action-call log that keeps a confirm (omari.confirm) idempotent ──────────────────────────────


def _attempt_kind(row: PaymentTransaction) -> str:
    # The audit kind of a confirm attempt names the payment's provider ("omari.request" for O'mari).
    return f"{row.provider}.request"


def request_attempt(reference: str, idempotency_key: str) -> dict | None:
    """The confirm attempt (O'mari: /request) made under this idempotency key, if any: {"key", "outcome"?, …}."""
    row = get(reference)
    if row is None:
        return None
    for event in Event.select().where((Event.kind == _attempt_kind(row)) & (Event.subject == row.reference)):
        detail = json.loads(event.detail or "{}")
        if detail.get("key") == idempotency_key:
            return detail
    return None


def claim_request(reference: str, idempotency_key: str, *, now: datetime) -> PaymentTransaction | None:
    """Before calling /request: note the attempt under this key, only while the transaction is OTP_SENT
    (so a retried call finds the note and does not call twice). None when it is no longer OTP_SENT.
    """
    with write_transaction():
        row = _locked(PaymentTransaction.select().where(PaymentTransaction.reference == reference)).first()
        if row is None or row.status != OTP_SENT:
            return None
        _audit(_attempt_kind(row), reference, {"key": idempotency_key}, now, row.contact_key)
        PaymentTransaction.update(updated_at=now).where(PaymentTransaction.id == row.id).execute()
        return row


def finish_request(reference: str, idempotency_key: str, outcome: str) -> None:
    """Record the outcome the action answered for the attempt under this key."""
    with write_transaction():
        row = get(reference)
        kind = _attempt_kind(row) if row is not None else None
        for event in Event.select().where((Event.kind == kind) & (Event.subject == reference)):
            detail = json.loads(event.detail or "{}")
            if detail.get("key") == idempotency_key:
                detail["outcome"] = outcome
                Event.update(detail=json.dumps(detail, sort_keys=True)).where(Event.id == event.id).execute()
                return


# ── queries for the operator and for reconcile ───────────────────────────────────────────────────────


def list_payments(
    status: str | None = None, limit: int | None = None, needing_person: bool = False
) -> list[PaymentTransaction]:
    """Newest first, optionally only one status, or only those marked as needing a person."""
    query = (
        PaymentTransaction.select(PaymentTransaction, Booking)
        .join(Booking)
        .order_by(PaymentTransaction.created_at.desc(), PaymentTransaction.id.desc())
    )
    if status:
        query = query.where(PaymentTransaction.status == status.upper())
    if needing_person:
        query = query.where(PaymentTransaction.review_reason.is_null(False))
    if limit:
        query = query.limit(limit)
    return list(query)


def reconcile_candidates(now: datetime, otp_lifetime: timedelta = OTP_LIFETIME) -> list[PaymentTransaction]:
    """PENDING transactions, and OTP_SENT ones whose OTP has outlived its lifetime (the OTP is sent right
    after the row is created, so created_at stands for the time it was sent), and INITIATED ones as old
    (a process died between committing the row and recording O'mari's answer, and nobody retried).
    Oldest first.
    """
    stale = now - otp_lifetime
    return list(
        PaymentTransaction.select()
        .where(
            (PaymentTransaction.status == PENDING)
            | (PaymentTransaction.status.in_([OTP_SENT, INITIATED]) & (PaymentTransaction.created_at < stale))
        )
        .order_by(PaymentTransaction.created_at, PaymentTransaction.id)
    )


def as_dict(row: PaymentTransaction) -> dict:
    """The JSON form `flows payments list|show --json` prints (amounts as "50.00" strings)."""
    return {
        "reference": row.reference,
        "booking": row.booking.reference,
        "msisdn": row.msisdn,
        "amount": format_amount(from_minor(row.amount_minor)),
        "currency": row.currency,
        "provider": row.provider,
        "wallet": row.wallet,
        "channel": row.channel,
        "status": row.status,
        "otp_reference": row.otp_reference,
        "payment_reference": row.payment_reference,
        "debit_reference": row.debit_reference,
        "response_code": row.response_code,
        "error_message": row.error_message,
        "otp_attempts": row.otp_attempts,
        "needs_person": row.review_reason,
        "needs_person_since": _iso(row.review_at),
        "status_history": history(row),
        "applied_at": _iso(row.applied_at),
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
        "completed_at": _iso(row.completed_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


# ── telling the customer later (reconcile) ───────────────────────────────────────────────────────────


def queue_message(contact_key: str, payload: dict, *, now: datetime) -> bool:
    """Put a message for the contact in the outbox (the sender delivers it); False if the contact is
    unknown (a transaction made outside a conversation).
    """
    contact = Contact.get_or_none(Contact.key == contact_key)
    if contact is None:
        return False
    outbox.enqueue(contact.id, [payload], now)
    return True
