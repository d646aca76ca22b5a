"""`paynow.*` actions: take a payment through Paynow's mobile express checkout (EcoCash, OneMoney).

    start:                          # commits the transaction, then /remotetransaction: Paynow prompts the phone
      action: paynow.start
      with: {booking: "{{ booking.reference }}", amount: "{{ amount }}", wallet: "{{ wallet }}", msisdn: "{{ msisdn }}"}
      save: payment
      on: {prompted: ask_approved, failed: not_started, pending: being_confirmed, limited: slow_down}
    check:                          # the payer says they approved: ask Paynow (the poll URL) what happened
      action: paynow.check
      with: {reference: "{{ payment.reference }}"}
      save: payment
      on: {paid: paid, waiting: still_waiting, failed: payment_failed, pending: being_confirmed, expired: too_late}

The payer approves on their own phone with their wallet PIN: nothing secret passes through the chat. A
start, a check and a cancel are safe to repeat: a start with the same idempotency key finds its row, and
a check only asks. The row's OTP_SENT status means "the phone was prompted". Paynow has no void, and a
payer can still approve after saying cancel: a cancelled payment is asked about once, then left for
reconcile (credited if paid, EXPIRED when the payer's time is up). Polling is how
convoflow learns the result (no public URL needed); docs/operations.md says how a result URL would be
wired instead.
"""

from __future__ import annotations

from engine.registry import ActionContext, Result, action
from storage.money import format_amount, from_minor

from . import payment
from . import providers as p
from .booking import booking_data
from .paynow_client import METHODS, PaynowClient

# Paynow's status words (its developer docs; the package only tests for "paid"). Paid, Awaiting Delivery
# and Delivered all mean the money reached the merchant; Disputed and Refunded mean it moved and may have
# gone back, which a person must look at; any other word is not understood, so it decides nothing.
PAID_WORDS = frozenset({"paid", "awaiting delivery", "delivered"})
WAITING_WORDS = frozenset({"created", "sent"})
FAILED_WORDS = frozenset({"cancelled", "failed"})
PERSON_WORDS = frozenset({"disputed", "refunded"})


@p.register
class PaynowProvider(p.Provider):
    """Paynow: start is express checkout (/remotetransaction), query is the poll URL; nothing to confirm."""

    name, title = "paynow", "Paynow"
    start_call = "/remotetransaction"
    voids = False
    start_moves_money = True
    waiting_note = "Paynow is still waiting for the payer to approve on their phone"
    gave_up_note = "the payer did not approve within the time allowed"
    default_wording = "Paynow could not take the payment, and nothing was charged."

    @classmethod
    def client_from_settings(cls, settings) -> PaynowClient:
        return PaynowClient.from_settings(settings)

    @classmethod
    def sandbox_client(cls, sms=None, fixed_otp: str | None = None) -> PaynowClient:
        from .paynow_sandbox import PaynowSandbox

        return PaynowSandbox().client()

    @classmethod
    def refuse_start(cls, booking, settings) -> str | None:
        if booking.currency != settings.paynow_currency:
            return (
                f"Paynow takes {settings.paynow_currency} payments here, and booking {booking.reference} is in "
                f"{booking.currency}. Send *pay* to pay with O'mari."
            )
        return None

    def start(self, row) -> p.Answer:
        return self.client.start_mobile(
            row.reference, from_minor(row.amount_minor), f"Booking {row.booking.reference}", row.msisdn, row.wallet
        )

    def query(self, row) -> p.Answer:
        return self.client.poll(row.poll_url, row.reference)

    @classmethod
    def verdict(cls, answer: p.Answer) -> p.Verdict:
        if answer.outcome != p.SUCCESS:
            return p.Verdict(p.IGNORE, f"Paynow refused the status query ({answer.message})")
        word = (answer.status or "").strip().lower()
        if word in PAID_WORDS:
            return p.Verdict(p.PAID)
        if word in WAITING_WORDS:
            return p.Verdict(p.WAITING, cls.waiting_note)
        if word in FAILED_WORDS:
            return p.Verdict(p.FAILED_VERDICT, f"Paynow reports the payment as {answer.status}")
        if word in PERSON_WORDS:
            return p.Verdict(p.DOUBT, f"Paynow reports the payment as {answer.status}: the money may have gone back")
        return p.Verdict(p.DOUBT, f"Paynow reports the status '{answer.status}', which is not one we know")


def _provider(ctx: ActionContext) -> PaynowProvider:
    return PaynowProvider(payment.client_of(ctx, PaynowProvider))


def payment_data(row) -> dict:
    """What a flow may show about a Paynow payment (never the msisdn in full)."""
    from storage import payments

    return {
        "reference": row.reference,
        "status": row.status,
        "amount": format_amount(from_minor(row.amount_minor)),
        "currency": row.currency,
        "wallet": row.wallet,
        "payment_reference": row.payment_reference,
        "message": PaynowProvider.default_wording if row.status == payments.FAILED else None,
    }


@action(
    "paynow.start",
    params=payment.start_params(METHODS, "the button the customer picked: ecocash or onemoney"),
    outcomes=["prompted", "failed", "pending", "limited"],
)
def start(ctx: ActionContext, params: dict) -> Result:
    """Start a payment: commit it INITIATED, then ask Paynow to prompt the payer's phone."""
    return payment.start(ctx, params, _provider(ctx), channel="express", describe=payment_data, started="prompted")


_REFERENCE = {
    "type": "object",
    "properties": {
        "reference": {"type": "string", "description": "the payment's reference; empty when none was started"}
    },
    "required": ["reference"],
    "additionalProperties": False,
}


@action("paynow.check", params=_REFERENCE, outcomes=["paid", "waiting", "failed", "pending", "expired"])
def check(ctx: ActionContext, params: dict) -> Result:
    """Ask Paynow what happened to the payment (its poll URL) and settle it by reconcile's rules."""
    from storage import payments

    row = payments.get(params["reference"]) if params["reference"].strip() else None
    if row is None:
        return Result("failed", {"reference": params["reference"] or None, "message": "There is no such payment."})
    if row.status in (payments.OTP_SENT, payments.PENDING):
        payment.ask_now(row.reference, _provider(ctx), ctx)
        row = payments.get(row.reference)
    data = payment_data(row)
    outcome = {
        payments.SUCCESS: "paid",
        payments.OTP_SENT: "waiting",
        payments.PENDING: "pending",
        payments.INITIATED: "pending",
        payments.EXPIRED: "expired",
    }.get(row.status, "failed")
    if outcome == "paid":
        booking = booking_data(row.booking)
        data |= {"booking": booking, "balance_due": booking["balance_due"]}
    if outcome == "failed" and data["message"] is None:
        data["message"] = (
            "The payment was cancelled." if row.status == payments.CANCELLED else PaynowProvider.default_wording
        )
    return Result(outcome, data)


@action("paynow.cancel", params=_REFERENCE, outcomes=["cancelled", "pending", "paid"])
def cancel(ctx: ActionContext, params: dict) -> Result:
    """The customer gave up: the conversation ends; the payment is left for reconcile (Paynow has no void)."""
    from storage import payments

    return payment.stop(
        ctx,
        params["reference"],
        _provider(ctx),
        payment_data,
        payments.CANCELLED,
        "cancelled",
        "cancelled by the customer",
    )


@action("paynow.expire", params=_REFERENCE, outcomes=["expired", "pending", "paid"])
def expire(ctx: ActionContext, params: dict) -> Result:
    """No answer came in time (a flow's `expire: step:`): as cancel, the payment is left for reconcile."""
    from storage import payments

    return payment.stop(
        ctx,
        params["reference"],
        _provider(ctx),
        payment_data,
        payments.EXPIRED,
        "expired",
        "no answer within the time allowed",
    )
