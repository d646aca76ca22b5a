"""Reconcile: settle the payments whose outcome we do not know by asking O'mari (`GET /query/{reference}`).

Candidates are PENDING transactions (an answer was lost), OTP_SENT ones older than the OTP lifetime
(the customer never typed the code, or the conversation died) and INITIATED ones as old (a process died
right after committing the row). For each, O'mari's answer decides:

- paid (`responseCode` "000" and `status` "Success", or no status but a payment reference) → SUCCESS, and
  the amount is applied to the booking once;
- still waiting for the OTP (`status` "Pending") → EXPIRED once the OTP lifetime has passed, else left;
  `status` "Expired" → EXPIRED;
- any other status (Failed, Voided, Expired, …), or a clear refusal (`error` true with HTTP 2xx or 404,
  e.g. 025 not found) → FAILED, or EXPIRED for a stale OTP_SENT;
- no readable answer (timeout, 5xx, not JSON), or a refusal of our request itself (HTTP 400/401/403/429:
  a bad key must not fail every payment) → left as it is for the next run.

Every decisive write is conditional on the status the row had when it was picked (and applying is guarded
by applied_at under the booking's row lock), so two runs at once, or a run after a crash, settle each
payment once and tell the customer once. The customer's message goes to the outbox in the same database
transaction as the status change.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from engine.messages import Outbound
from engine.templates import money
from storage import payments
from storage.models import Booking, PaymentTransaction
from storage.money import from_minor

from .omari import WORDING, DEFAULT_WORDING
from .omari_client import SUCCESS, UNKNOWN, OmariClient, OmariResult

SETTLED_NOTE = {payments.SUCCESS: "paid", payments.FAILED: "failed", payments.EXPIRED: "expired"}


@dataclass(frozen=True)
class Settlement:
    """What reconcile did with one transaction."""

    reference: str
    before: str
    after: str  # == before when left as it was
    note: str
    notified: bool = False


@dataclass(frozen=True)
class ReconcileReport:
    settlements: list[Settlement] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for s in self.settlements if s.after == status and s.before != status)

    @property
    def unchanged(self) -> int:
        return sum(1 for s in self.settlements if s.after == s.before)


def reconcile(
    client: OmariClient,
    *,
    now: datetime,
    otp_lifetime: timedelta = payments.OTP_LIFETIME,
    limit: int | None = None,
) -> ReconcileReport:
    """Settle every candidate (oldest first, at most limit) and say what happened to each."""
    candidates = payments.reconcile_candidates(now, otp_lifetime)
    if limit:
        candidates = candidates[:limit]
    return ReconcileReport([settle(row, client.query(row.reference), now=now, otp_lifetime=otp_lifetime) for row in candidates])


def settle(row: PaymentTransaction, answer: OmariResult, *, now: datetime, otp_lifetime: timedelta = payments.OTP_LIFETIME) -> Settlement:
    """Apply O'mari's answer about one transaction (see the module docstring for the rules)."""
    before = row.status
    told: list[bool] = []

    def unchanged(note: str) -> Settlement:
        return Settlement(row.reference, before, before, note)

    status_word = (answer.status or "").strip().lower()
    if answer.outcome == UNKNOWN:
        return unchanged(f"no answer from O'mari ({answer.message})")
    if answer.outcome != SUCCESS and answer.http_status not in range(200, 300) and answer.http_status != 404:
        return unchanged(f"O'mari refused the query (HTTP {answer.http_status}, code {answer.response_code or '-'})")

    if answer.outcome == SUCCESS and (status_word == "success" or (not status_word and answer.payment_reference)):
        done = payments.record_success(
            row.reference, now=now, payment_reference=answer.payment_reference or row.payment_reference,
            debit_reference=answer.debit_reference or row.debit_reference, response_code=answer.response_code,
            error_message=None, on_change=lambda txn, booking: told.append(_tell(txn, booking, now)),
        )
        if done is None or not done.applied:
            return unchanged("already settled by another run")
        return Settlement(row.reference, before, payments.SUCCESS, f"paid: applied to {done.booking.reference}", bool(told and told[0]))

    if answer.outcome == SUCCESS and status_word == "pending":
        if now - row.created_at <= otp_lifetime:
            return unchanged("O'mari is still waiting for the OTP")
        to_status, reason = payments.EXPIRED, "no OTP within the OTP lifetime"
    elif answer.outcome == SUCCESS and status_word == "expired":
        to_status, reason = payments.EXPIRED, "O'mari reports the OTP expired"
    elif answer.outcome == SUCCESS:
        to_status = payments.EXPIRED if before == payments.OTP_SENT else payments.FAILED
        reason = f"O'mari reports the payment as {answer.status or 'not paid'}"
    else:
        to_status = payments.EXPIRED if before == payments.OTP_SENT else payments.FAILED
        reason = answer.message or "O'mari does not know this payment"

    changed = payments.transition(
        row.reference, to_status, from_statuses=[before], now=now,
        response_code=answer.response_code or row.response_code, error_message=reason,
        on_change=lambda txn: told.append(_tell(txn, None, now)),
    )
    if changed is None:
        return unchanged("already settled by another run")
    return Settlement(row.reference, before, to_status, f"{SETTLED_NOTE[to_status]}: {reason}", bool(told and told[0]))


def _tell(txn: PaymentTransaction, booking: Booking | None, now: datetime) -> bool:
    """Queue the customer's message about a settled payment (inside the settling transaction)."""
    if not txn.contact_key:
        return False
    booking = booking or Booking.get_by_id(txn.booking_id)
    amount = money(from_minor(txn.amount_minor), txn.currency)
    if txn.status == payments.SUCCESS:
        due = money(payments.balance_due(booking), booking.currency)
        text = (f"✅ Your O'mari payment of {amount} for booking {booking.reference} has gone through.\n"
                f"Payment reference: {txn.payment_reference}\nBalance due: {due}")
    elif txn.status == payments.EXPIRED:
        text = (f"Your O'mari payment of {amount} for booking {booking.reference} expired before it was "
                "confirmed, and nothing was charged. Send *pay* to try again.")
    else:
        reason = WORDING.get(txn.response_code or "", DEFAULT_WORDING)
        text = (f"Your O'mari payment of {amount} for booking {booking.reference} did not go through. "
                f"{reason} Send *pay* to try again.")
    return payments.queue_message(txn.contact_key, Outbound(txn.contact_key, text).as_dict(), now=now)
