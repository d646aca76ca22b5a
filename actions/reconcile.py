"""Reconcile: settle the payments whose outcome we do not know by asking their provider (a status query:
O'mari's `GET /query/{reference}`, Paynow's poll URL). Written once, against actions/providers.py.

Candidates are PENDING transactions (an answer was lost), OTP_SENT ones older than the payer's time (the
customer never typed the code or approved on their phone, or the conversation died) and INITIATED ones as
old (a process died right after committing the row). For each, the provider reads its answer into a
Verdict, and the verdict decides:

- paid → SUCCESS, and the amount is applied to the booking once — only when the gateway's amount and
  currency are the payment's;
- waiting (the payer has not acted yet) → EXPIRED once the payer's time has passed, else left;
  expired → EXPIRED;
- failed (refused, cancelled, voided) → FAILED; not paid (O'mari: Failed, Voided, or a clear refusal such
  as 025 not found) → FAILED, or EXPIRED for a stale OTP_SENT;
- doubt — an answer we cannot believe (O'mari: a status word outside those it documents; neither status
  nor payment reference), or "paid" with another amount or currency — → PENDING and marked as needing a
  person (with the reason, both figures for a mismatch); never FAILED or EXPIRED, nothing credited. A later
  answer that is understood settles it and clears the mark;
- no readable or verifiable answer (timeout, 5xx, not the documented shape, a bad hash), a refusal of
  our query itself (a bad key must not fail every payment), or a provider not configured in this process
  → left as it is for the next run.

Every decisive write is conditional on the status the row had when it was picked (and applying is guarded
by applied_at under the booking's row lock), so two runs at once, or a run after a crash, settle each
payment once and tell the customer once. The customer's message goes to the outbox in the same database
transaction as the status change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Mapping

from engine.templates import money
from storage.money import format_amount, from_minor

from . import providers as p
from .providers import Answer, Provider, ProviderMissing, providers

if TYPE_CHECKING:
    from storage.models import Booking, PaymentTransaction


def _settled_note(status: str) -> str:
    """The word a settlement's note starts with for the status it reached."""
    from storage import payments

    return {payments.SUCCESS: "paid", payments.FAILED: "failed", payments.EXPIRED: "expired"}[status]


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
        from storage import payments

        if self.needs_person:
            return "needs_person"
        return "settled" if self.after in payments.FINAL else "pending"

    def as_dict(self) -> dict:
        return {
            "reference": self.reference,
            "before": self.before,
            "after": self.after,
            "kind": self.kind,
            "note": self.note,
            "customer_told": self.notified,
            "needs_person": self.needs_person,
        }


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
        from storage import payments

        return {
            "checked": len(self.settlements),
            "settled": len(self.of_kind("settled")),
            "paid": self.count(payments.SUCCESS),
            "failed": self.count(payments.FAILED),
            "expired": self.count(payments.EXPIRED),
            "still_pending": len(self.of_kind("pending")),
            "needs_person": len(self.of_kind("needs_person")),
        }


def reconcile(
    clients,
    *,
    now: datetime,
    otp_lifetime: timedelta | None = None,
    limit: int | None = None,
) -> ReconcileReport:
    """Settle every candidate (oldest first, at most limit) and say what happened to each. clients: the
    providers' clients by name (services), or one client alone, which is O'mari's (older callers).
    """
    from storage import logs, payments

    if not isinstance(clients, Mapping):
        clients = {"omari": clients}
    if otp_lifetime is None:
        otp_lifetime = payments.OTP_LIFETIME
    candidates = payments.reconcile_candidates(now, otp_lifetime)
    if limit:
        candidates = candidates[:limit]
    report = []
    for row in candidates:
        with logs.context(payment=row.reference):  # every line about it names the payment (the query's too)
            try:
                provider = providers.for_payment(clients, row)
            except ProviderMissing as e:
                report.append(_unchanged(row, f"{e}: left for a run that has it"))
                continue
            if row.status == payments.INITIATED and provider.start_moves_money:
                report.append(_start_lost(row, provider, now))
                continue
            report.append(settle(row, provider.query(row), now=now, otp_lifetime=otp_lifetime))
    return ReconcileReport(report)


def settle(
    row: PaymentTransaction, answer: Answer, *, now: datetime, otp_lifetime: timedelta | None = None, tell: bool = True
) -> Settlement:
    """Apply the provider's answer about one transaction (see the module docstring for the rules).
    tell=False queues no message to the customer (the conversation that asked is answering them itself).
    """
    from storage import payments

    provider = providers.get(row.provider)
    if answer.outcome == p.UNKNOWN:
        return _unchanged(row, f"no answer from {provider.title} ({answer.message})")
    verdict = provider.verdict(answer)
    if verdict.kind == p.IGNORE:
        return _unchanged(row, verdict.reason)
    doubt = verdict.reason if verdict.kind == p.DOUBT else _mismatch(row, answer, verdict, provider)
    if doubt:
        marked = payments.mark_for_person(row.reference, doubt, from_statuses=[row.status], now=now)
        if marked is None:
            return _unchanged(row, "already settled by another run")
        return Settlement(row.reference, row.status, marked.status, f"needs a person: {doubt}", needs_person=doubt)
    told: list[bool] = []
    if verdict.kind == p.PAID:
        done = payments.record_success(
            row.reference,
            now=now,
            payment_reference=answer.payment_reference or row.payment_reference,
            debit_reference=answer.debit_reference or row.debit_reference,
            response_code=answer.response_code,
            error_message=None,
            on_change=lambda txn, booking: told.append(tell and _tell(txn, booking, now)),
        )
        if done is None or not done.applied:
            return _unchanged(row, "already settled by another run")
        return Settlement(
            row.reference,
            row.status,
            payments.SUCCESS,
            f"paid: applied to {done.booking.reference}",
            bool(told and told[0]),
        )
    decided = _not_paid(row, verdict, provider, now, payments.OTP_LIFETIME if otp_lifetime is None else otp_lifetime)
    if decided is None:
        return _unchanged(row, verdict.reason)
    to_status, reason = decided
    changed = payments.transition(
        row.reference,
        to_status,
        from_statuses=[row.status],
        now=now,
        response_code=answer.response_code or row.response_code,
        error_message=reason,
        on_change=lambda txn: told.append(tell and _tell(txn, None, now)),
    )
    if changed is None:
        return _unchanged(row, "already settled by another run")
    return Settlement(
        row.reference, row.status, to_status, f"{_settled_note(to_status)}: {reason}", bool(told and told[0])
    )


class CannotSettle(Exception):
    """A payment a person cannot settle by hand: unknown, or already final (the message says which)."""


def settle_by_hand(reference: str, paid: bool, *, by: str, why: str, now: datetime, tell: bool = True) -> Settlement:
    """A person settles an unfinished payment after checking with the provider (`flows payments settle`):
    paid → SUCCESS and applied to its booking once; not paid → FAILED. The mark clears either way, and an
    audit event `payment.settled_by_hand` says who and why, in the same transaction as the change (with
    the customer's message unless tell=False). Conditional on the status the payment had, like every
    settlement: a reconcile run settling it at the same moment wins or loses cleanly. Raises CannotSettle.
    """
    from storage import events, payments

    row = payments.get(reference)
    if row is None:
        raise CannotSettle(f"no payment with reference '{reference.strip()}' (see `flows payments list`)")
    if row.status in payments.FINAL:
        raise CannotSettle(f"payment {row.reference} is already {row.status}: nothing to settle")
    to_status = payments.SUCCESS if paid else payments.FAILED
    told: list[bool] = []

    def record(txn: PaymentTransaction, booking: Booking | None) -> None:
        detail = {"from": row.status, "to": to_status, "by": by, "why": why}
        events.record(events.EventRecord(now, "payment.settled_by_hand", txn.contact_key, txn.reference, detail))
        told.append(tell and _tell(txn, booking, now))

    note = f"settled by hand by {by}: {why}"
    if paid:
        done = payments.record_success(row.reference, now=now, from_statuses=[row.status], on_change=record)
        changed = done.transaction if done is not None and done.applied else None
    else:
        changed = payments.transition(
            row.reference,
            to_status,
            from_statuses=[row.status],
            now=now,
            error_message=note,
            on_change=lambda txn: record(txn, None),
        )
    if changed is None:
        raise CannotSettle(f"payment {row.reference} changed while it was being settled: look at it again")
    return Settlement(row.reference, row.status, to_status, note, bool(told and told[0]))


def _start_lost(row: PaymentTransaction, provider: Provider, now: datetime) -> Settlement:
    """A start that never recorded its answer, at a gateway where the payer may pay right after it
    (Paynow): there is no handle to ask about it, so a person must look it up."""
    from .payment import start_lost  # here, not at the top: payment asks reconcile to settle

    marked = start_lost(row.reference, provider, now, "the process stopped before it answered")
    if marked is None:
        return _unchanged(row, "already settled by another run")
    return Settlement(
        row.reference,
        row.status,
        marked.status,
        f"needs a person: {marked.review_reason}",
        needs_person=marked.review_reason,
    )


def _unchanged(row: PaymentTransaction, note: str) -> Settlement:
    return Settlement(row.reference, row.status, row.status, note, needs_person=row.review_reason)


def _mismatch(row: PaymentTransaction, answer: Answer, verdict: p.Verdict, provider: type[Provider]) -> str | None:
    """Why a "paid" answer cannot be believed: a payment of another amount or currency than ours."""
    if verdict.kind != p.PAID:
        return None
    ours = from_minor(row.amount_minor)
    theirs_currency = (answer.currency or "").strip().upper()
    if answer.amount != ours or theirs_currency != row.currency:
        theirs = (
            f"{format_amount(answer.amount)} {theirs_currency or '(no currency)'}"
            if answer.amount is not None
            else "no amount"
        )
        return f"{provider.title} reports {theirs} paid; the payment is {format_amount(ours)} {row.currency}"
    return None


def _not_paid(
    row: PaymentTransaction, verdict: p.Verdict, provider: type[Provider], now: datetime, otp_lifetime: timedelta
) -> tuple[str, str] | None:
    """The final status and reason for a verdict that says the money did not move (None: too early)."""
    from storage import payments

    if verdict.kind == p.WAITING:
        if now - row.created_at <= otp_lifetime:
            return None
        return payments.EXPIRED, provider.gave_up_note
    if verdict.kind == p.EXPIRED:
        return payments.EXPIRED, verdict.reason
    if verdict.kind == p.FAILED_VERDICT:
        return payments.FAILED, verdict.reason
    return (payments.EXPIRED if row.status == payments.OTP_SENT else payments.FAILED), verdict.reason


def _tell(txn: PaymentTransaction, booking: Booking | None, now: datetime) -> bool:
    """Queue the customer's message about a settled payment (inside the settling transaction)."""
    from engine.messages import Outbound  # here: actions.load_all imports this module for `flows validate` too
    from storage import payments
    from storage.models import Booking

    if not txn.contact_key:
        return False
    provider = providers.get(txn.provider)
    booking = booking or Booking.get_by_id(txn.booking_id)
    amount = money(from_minor(txn.amount_minor), txn.currency)
    if txn.status == payments.SUCCESS:
        due = money(payments.balance_due(booking), booking.currency)
        text = (
            f"✅ Your {provider.title} payment of {amount} for booking {booking.reference} has gone through.\n"
            f"Payment reference: {txn.payment_reference}\nBalance due: {due}"
        )
    elif txn.status == payments.EXPIRED:
        text = (
            f"Your {provider.title} payment of {amount} for booking {booking.reference} expired before it was "
            "confirmed, and nothing was charged. Send *pay* to try again."
        )
    else:
        text = (
            f"Your {provider.title} payment of {amount} for booking {booking.reference} did not go through. "
            f"{provider.wording(txn.response_code)} Send *pay* to try again."
        )
    return payments.queue_message(txn.contact_key, Outbound(txn.contact_key, text).as_dict(), now=now)
