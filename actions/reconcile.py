"""Reconcile: settle the payments whose outcome we do not know by asking O'mari (`GET /query/{reference}`).

Candidates are PENDING transactions (an answer was lost), OTP_SENT ones older than the OTP lifetime
(the customer never typed the code, or the conversation died) and INITIATED ones as old (a process died
right after committing the row). For each, O'mari's answer decides:

- paid (`responseCode` "000" and `status` "Success", or no status but a payment reference) → SUCCESS, and
  the amount is applied to the booking once — only when O'mari's amount and currency are the payment's;
- still waiting for the OTP (`status` "Pending") → EXPIRED once the OTP lifetime has passed, else left;
  `status` "Expired" → EXPIRED;
- `status` Failed or Voided, or a clear refusal (`error` true with HTTP 2xx or 404, e.g. 025 not found)
  → FAILED, or EXPIRED for a stale OTP_SENT;
- an answer we cannot believe — a status word outside those five, neither status nor payment reference,
  or "paid" with another amount or currency — → PENDING and marked as needing a person (with the reason,
  both figures for a mismatch); never FAILED or EXPIRED, nothing credited. A later answer that is
  understood settles it and clears the mark;
- no readable answer (timeout, 5xx, not JSON, off the documented shape), or a refusal of our request
  itself (HTTP 400/401/403/429: a bad key must not fail every payment) → left as it is for the next run.

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
from storage.money import format_amount, from_minor

from .omari import WORDING, DEFAULT_WORDING
from .omari_client import SUCCESS, UNKNOWN, OmariClient, OmariResult

SETTLED_NOTE = {payments.SUCCESS: "paid", payments.FAILED: "failed", payments.EXPIRED: "expired"}
# The /query status words we act on: the vendor's example shows "Success"; the others are what the sandbox
# answers (our reading of the API). Any other word is not understood, so it decides nothing.
KNOWN_STATUS_WORDS = frozenset({"success", "pending", "failed", "voided", "expired"})


@dataclass(frozen=True)
class Settlement:
    """What reconcile did with one transaction."""

    reference: str
    before: str
    after: str  # == before when left as it was
    note: str
    notified: bool = False
    needs_person: str | None = None  # why a person must look at it, while it is marked

    @property
    def kind(self) -> str:
        """settled | pending | needs_person: the three groups `flows payments reconcile` reports."""
        if self.needs_person:
            return "needs_person"
        return "settled" if self.after in payments.FINAL else "pending"

    def as_dict(self) -> dict:
        return {"reference": self.reference, "before": self.before, "after": self.after, "kind": self.kind,
                "note": self.note, "customer_told": self.notified, "needs_person": self.needs_person}


@dataclass(frozen=True)
class ReconcileReport:
    settlements: list[Settlement] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for s in self.settlements if s.after == status and s.before != status)

    def of_kind(self, kind: str) -> list[Settlement]:
        return [s for s in self.settlements if s.kind == kind]

    @property
    def unchanged(self) -> int:
        return sum(1 for s in self.settlements if s.after == s.before)

    def summary(self) -> dict:
        return {"checked": len(self.settlements), "settled": len(self.of_kind("settled")),
                "paid": self.count(payments.SUCCESS), "failed": self.count(payments.FAILED),
                "expired": self.count(payments.EXPIRED), "still_pending": len(self.of_kind("pending")),
                "needs_person": len(self.of_kind("needs_person"))}


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


def settle(row: PaymentTransaction, answer: OmariResult, *, now: datetime,
           otp_lifetime: timedelta = payments.OTP_LIFETIME, tell: bool = True) -> Settlement:
    """Apply O'mari's answer about one transaction (see the module docstring for the rules). tell=False
    queues no message to the customer (the conversation that asked is answering them itself).
    """
    if answer.outcome == UNKNOWN:
        return _unchanged(row, f"no answer from O'mari ({answer.message})")
    if answer.outcome != SUCCESS and answer.http_status not in range(200, 300) and answer.http_status != 404:
        return _unchanged(row, f"O'mari refused the query (HTTP {answer.http_status}, code {answer.response_code or '-'})")
    doubt = _doubt(row, answer)
    if doubt:
        marked = payments.mark_for_person(row.reference, doubt, from_statuses=[row.status], now=now)
        if marked is None:
            return _unchanged(row, "already settled by another run")
        return Settlement(row.reference, row.status, marked.status, f"needs a person: {doubt}", needs_person=doubt)
    told: list[bool] = []
    if answer.outcome == SUCCESS and _paid(answer):
        done = payments.record_success(
            row.reference, now=now, payment_reference=answer.payment_reference or row.payment_reference,
            debit_reference=answer.debit_reference or row.debit_reference, response_code=answer.response_code,
            error_message=None, on_change=lambda txn, booking: told.append(tell and _tell(txn, booking, now)),
        )
        if done is None or not done.applied:
            return _unchanged(row, "already settled by another run")
        return Settlement(row.reference, row.status, payments.SUCCESS, f"paid: applied to {done.booking.reference}", bool(told and told[0]))
    decided = _not_paid(row, answer, now, otp_lifetime)
    if decided is None:
        return _unchanged(row, "O'mari is still waiting for the OTP")
    to_status, reason = decided
    changed = payments.transition(
        row.reference, to_status, from_statuses=[row.status], now=now,
        response_code=answer.response_code or row.response_code, error_message=reason,
        on_change=lambda txn: told.append(tell and _tell(txn, None, now)),
    )
    if changed is None:
        return _unchanged(row, "already settled by another run")
    return Settlement(row.reference, row.status, to_status, f"{SETTLED_NOTE[to_status]}: {reason}", bool(told and told[0]))


def _unchanged(row: PaymentTransaction, note: str) -> Settlement:
    return Settlement(row.reference, row.status, row.status, note, needs_person=row.review_reason)


def _word(answer: OmariResult) -> str:
    return (answer.status or "").strip().lower()


def _paid(answer: OmariResult) -> bool:
    return _word(answer) == "success" or (not _word(answer) and bool(answer.payment_reference))


def _doubt(row: PaymentTransaction, answer: OmariResult) -> str | None:
    """Why O'mari's (readable, successful) answer cannot be believed, or None: a status word we do not
    know, no status at all, or a payment of another amount or currency than ours.
    """
    if answer.outcome != SUCCESS:
        return None
    word = _word(answer)
    if word and word not in KNOWN_STATUS_WORDS:
        return f"O'mari reports the status '{answer.status}', which is not one we know"
    if not word and not answer.payment_reference:
        return "O'mari's answer has neither a status nor a payment reference"
    ours = from_minor(row.amount_minor)
    theirs_currency = (answer.currency or "").strip().upper()
    if _paid(answer) and (answer.amount != ours or theirs_currency != row.currency):
        theirs = f"{format_amount(answer.amount)} {theirs_currency or '(no currency)'}" if answer.amount is not None \
            else "no amount"
        return f"O'mari reports {theirs} paid; the payment is {format_amount(ours)} {row.currency}"
    return None


def _not_paid(row: PaymentTransaction, answer: OmariResult, now: datetime, otp_lifetime: timedelta) -> tuple[str, str] | None:
    """The final status and reason for an answer that says the money did not move (None: too early)."""
    word = _word(answer)
    if answer.outcome == SUCCESS and word == "pending":
        if now - row.created_at <= otp_lifetime:
            return None
        return payments.EXPIRED, "no OTP within the OTP lifetime"
    if answer.outcome == SUCCESS and word == "expired":
        return payments.EXPIRED, "O'mari reports the OTP expired"
    to_status = payments.EXPIRED if row.status == payments.OTP_SENT else payments.FAILED
    if answer.outcome == SUCCESS:
        return to_status, f"O'mari reports the payment as {answer.status}"
    return to_status, answer.message or "O'mari does not know this payment"


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
