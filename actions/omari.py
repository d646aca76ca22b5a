"""`omari.*` actions: take a payment from an O'mari wallet in a conversation.

    initiate:                       # commits the transaction, then /auth: O'mari texts the customer an OTP
      action: omari.initiate
      with: {booking: "{{ booking.reference }}", amount: "{{ amount }}", wallet: "{{ wallet }}", msisdn: "{{ phone }}"}
      save: payment                 # {{ payment.reference }}, {{ payment.otp_reference }}
      on: {otp_sent: ask_otp, failed: auth_failed, pending: being_confirmed, limited: slow_down}
    confirm:                        # /request with the OTP; success applies the payment to the booking
      action: omari.confirm
      with: {reference: "{{ payment.reference }}", otp: "{{ confirmation }}"}
      save: confirmation            # replaces the typed OTP with the result in the step that used it
      on: {success: paid, wrong_otp: wrong_code, failed: payment_failed, pending: being_confirmed, expired: too_late}
    on_cancel:
      action: omari.cancel
      with: {reference: "{{ payment.reference }}"}

Where the OTP goes: the ask step saves the typed code, omari.confirm receives it as its `otp` parameter
(marked writeOnly, so the engine keeps it out of the recorded action call) and the confirm step saves its
result into the same variable, so the code is gone from the conversation before the turn is stored —
whatever the outcome. No OTP is logged, stored in a transaction row, or put in an exception.

Idempotency, on its own and beneath the turn path's stored results: the same idempotency key never calls
/auth or /request twice. omari.initiate finds its transaction by the key (a unique column); omari.confirm
notes each /request attempt under its key (the payment's audit trail) before calling, and answers a
repeat from the transaction's state; a note without an outcome means the earlier call died midway, so
the money may have moved: the transaction becomes PENDING for `flows payments reconcile`.

Wrong OTP: a /request refused with code 055 lets the customer try again, 3 tries in all (our decision;
O'mari documents neither the codes nor retries, and the sandbox refuses the 3rd wrong OTP with 075).
Every wrong OTP is counted (otp_attempts), the final 075 too. Any other refusal fails the payment at once.

/auth moves no money, so any answer but a success fails the payment at once (a 401 with no body, a
timeout, HTML). /request's unknown or unreadable answer leaves it PENDING and asks /query at once,
settling by reconcile's rules. Payment starts are limited per contact and per wallet number
(actions/payment.py, shared by every provider). A refused start answers `limited`.
"""

from __future__ import annotations

from engine.registry import ActionContext, Result, action
from storage.money import format_amount, from_minor

from . import payment
from . import providers as p
from .booking import booking_data
from .omari_client import FAILED, SUCCESS, OmariClient, OmariResult

WALLETS = ("ecocash", "onemoney", "zimswitch")
OTP_TRIES = 3
WRONG_OTP_CODES = frozenset({"055"})
OTP_TRIES_EXCEEDED = "075"  # the refusal of the last wrong OTP: counted like the others, and final

# A payment FAILED without a code of O'mari's: /auth was refused or not answered (no money moves at /auth).
NOT_STARTED_WORDING = "O'mari could not start the payment just now, and nothing was charged."

# Customer wording for O'mari's codes. The codes are unconfirmed (see the API notes): they choose words,
# never what happens to money.
WORDING = {
    "005": "O'mari declined the payment.",
    "012": "O'mari could not match this payment.",
    "013": "O'mari did not accept the amount.",
    "051": "There is not enough money in the wallet.",
    "054": "The code has expired.",
    "055": "The code was not accepted.",
    "061": "The amount is above the wallet's limit.",
    "063": NOT_STARTED_WORDING,  # the sandbox's refused merchant key
    "075": "Too many wrong codes were entered.",
    "091": "O'mari timed out.",
    "096": "O'mari is having a problem.",
}
DEFAULT_WORDING = "O'mari could not take the payment."


def _provider(ctx: ActionContext) -> "OmariProvider":
    return OmariProvider(payment.client_of(ctx, OmariProvider))


def _api_channel(ctx: ActionContext) -> str:
    return payment.settings_of(ctx).omari_channel or "WEB"


def _wording(code: str | None) -> str:
    if not code:
        return NOT_STARTED_WORDING
    return WORDING.get(code, DEFAULT_WORDING)


def _amount(row) -> str:
    return format_amount(from_minor(row.amount_minor))


def payment_data(row) -> dict:
    """What a flow may show about a payment (never the msisdn in full, never an OTP)."""
    from storage import payments

    return {
        "reference": row.reference,
        "status": row.status,
        "amount": _amount(row),
        "currency": row.currency,
        "wallet": row.wallet,
        "otp_reference": row.otp_reference,
        "payment_reference": row.payment_reference,
        "code": row.response_code,
        "message": _wording(row.response_code) if row.status == payments.FAILED else None,
        "attempts_left": max(OTP_TRIES - row.otp_attempts, 0),
    }


# ── omari.initiate ───────────────────────────────────────────────────────────────────────────────────


@action(
    "omari.initiate",
    params=payment.start_params(WALLETS, "the button the customer picked"),
    outcomes=["otp_sent", "failed", "pending", "limited"],
)
def initiate(ctx: ActionContext, params: dict) -> Result:
    """Start a payment: commit it INITIATED, then ask O'mari (/auth) to text the customer an OTP."""
    return payment.start(
        ctx, params, _provider(ctx), channel=_api_channel(ctx), describe=payment_data, started="otp_sent"
    )


# ── omari.confirm ────────────────────────────────────────────────────────────────────────────────────


@action(
    "omari.confirm",
    params={
        "type": "object",
        "properties": {
            "reference": {
                "type": "string",
                "minLength": 1,
                "description": "the payment's reference (payment.reference)",
            },
            "otp": {
                "type": "string",
                "pattern": r"^\d{4,8}$",
                "writeOnly": True,
                "description": "the code O'mari texted",
            },
        },
        "required": ["reference", "otp"],
        "additionalProperties": False,
    },
    outcomes=["success", "wrong_otp", "failed", "pending", "expired"],
)
def confirm(ctx: ActionContext, params: dict) -> Result:
    """Complete the payment with the OTP (/request, same msisdn as /auth); success pays the booking."""
    from storage import payments

    row = payments.get(params["reference"])
    if row is None:
        return Result(
            "failed", {"reference": params["reference"], "code": None, "message": "There is no such payment."}
        )
    key = ctx.idempotency_key
    attempt = payments.request_attempt(row.reference, key)
    if attempt is not None:
        return _confirm_replay(row.reference, ctx, interrupted="outcome" not in attempt)
    if row.status != payments.OTP_SENT:
        return _confirm_replay(row.reference, ctx)

    now = ctx.clock()
    if now - row.created_at > payments.OTP_LIFETIME:
        payments.transition(
            row.reference,
            payments.EXPIRED,
            from_statuses=[payments.OTP_SENT],
            now=now,
            error_message="no OTP within the OTP lifetime",
        )
        return _confirm_replay(row.reference, ctx)
    if payments.claim_request(row.reference, key, now=now) is None:
        return _confirm_replay(row.reference, ctx)

    answer = _provider(ctx).confirm(row, params["otp"])
    result = _confirm_answered(row, answer, ctx)
    payments.finish_request(row.reference, key, result.outcome)
    return result


def _confirm_answered(row, answer: OmariResult, ctx: ActionContext) -> Result:
    from storage import payments

    now = ctx.clock()
    reference = row.reference
    if answer.outcome == SUCCESS:
        payments.record_success(
            reference,
            now=now,
            payment_reference=answer.payment_reference,
            debit_reference=answer.debit_reference,
            response_code=answer.response_code,
            error_message=None,
        )
    elif answer.outcome == FAILED:
        failure = answer.message
        if answer.response_code in WRONG_OTP_CODES | {OTP_TRIES_EXCEEDED}:
            counted = payments.count_otp_refused(
                reference, now=now, response_code=answer.response_code, message=answer.message
            )
            if counted is not None and counted.otp_attempts < OTP_TRIES and answer.response_code != OTP_TRIES_EXCEEDED:
                return Result("wrong_otp", payment_data(counted))
            failure = f"wrong OTP {counted.otp_attempts if counted is not None else OTP_TRIES} times"
        payments.transition(
            reference,
            payments.FAILED,
            from_statuses=[payments.OTP_SENT],
            now=now,
            response_code=answer.response_code,
            error_message=failure,
        )
    else:
        payments.transition(
            reference, payments.PENDING, from_statuses=[payments.OTP_SENT], now=now, error_message=answer.message
        )
        _query_at_once(reference, ctx)
    return _confirm_replay(reference, ctx)


def _query_at_once(reference: str, ctx: ActionContext) -> None:
    """/request's answer was lost or unreadable, so the money may have moved: ask /query now and settle by
    reconcile's rules (left PENDING for `flows payments reconcile` or a person when it cannot tell).
    """
    payment.ask_now(reference, _provider(ctx), ctx)


def _confirm_replay(reference: str, ctx: ActionContext, interrupted: bool = False) -> Result:
    """The outcome the transaction's state stands for. interrupted: an earlier /request under this key
    never recorded its answer, so the money may have moved.
    """
    from storage import payments

    if interrupted:
        payments.transition(
            reference,
            payments.PENDING,
            from_statuses=[payments.OTP_SENT],
            now=ctx.clock(),
            error_message="interrupted before O'mari answered /request",
        )
    row = payments.get(reference)
    data = payment_data(row)
    if row.status == payments.SUCCESS:
        booking = booking_data(row.booking)
        data |= {"booking": booking, "balance_due": booking["balance_due"]}
        return Result("success", data)
    if row.status == payments.OTP_SENT:
        return Result("wrong_otp", data)
    if row.status in (payments.PENDING, payments.INITIATED):
        return Result("pending", data)
    if row.status == payments.EXPIRED:
        return Result("expired", data)
    if data["message"] is None:
        data["message"] = "The payment was cancelled." if row.status == payments.CANCELLED else DEFAULT_WORDING
    return Result("failed", data)


# ── omari.cancel / omari.expire ──────────────────────────────────────────────────────────────────────

_REFERENCE_ONLY = {
    "type": "object",
    "properties": {
        "reference": {"type": "string", "description": "the payment's reference; empty when none was started"},
    },
    "required": ["reference"],
    "additionalProperties": False,
}


def _stop(ctx: ActionContext, params: dict, status: str, outcome: str, reason: str) -> Result:
    return payment.stop(ctx, params["reference"], _provider(ctx), payment_data, status, outcome, reason)


@action("omari.cancel", params=_REFERENCE_ONLY, outcomes=["cancelled", "pending", "paid"])
def cancel(ctx: ActionContext, params: dict) -> Result:
    """The customer gave up: mark the payment CANCELLED and void it at O'mari."""
    from storage import payments

    return _stop(ctx, params, payments.CANCELLED, "cancelled", "cancelled by the customer")


@action("omari.expire", params=_REFERENCE_ONLY, outcomes=["expired", "pending", "paid"])
def expire(ctx: ActionContext, params: dict) -> Result:
    """No OTP came in time (a flow's `expire: step:`): mark the payment EXPIRED and void it at O'mari."""
    from storage import payments

    return _stop(ctx, params, payments.EXPIRED, "expired", "no OTP within the time allowed")


# ── O'mari behind the provider interface (actions/providers.py) ──────────────────────────────────────

# The /query status words we act on: the vendor's example shows "Success"; the others are what the sandbox
# answers (our reading of the API). Any other word is not understood, so it decides nothing.
KNOWN_STATUS_WORDS = frozenset({"success", "pending", "failed", "voided", "expired"})


@p.register
class OmariProvider(p.Provider):
    """O'mari: start is /auth (an OTP texted), confirm is /request with it, query /query, void /void."""

    name, title = "omari", "O'mari"
    start_call = "/auth"
    key_hint = " (HTTP 401/403: check OMARI_MERCHANT_KEY and OMARI_API_BASE_URL for this environment)"
    waiting_note = "O'mari is still waiting for the OTP"
    gave_up_note = "no OTP within the OTP lifetime"
    default_wording = DEFAULT_WORDING

    @classmethod
    def client_from_settings(cls, settings) -> OmariClient:
        return OmariClient.from_settings(settings)

    @classmethod
    def sandbox_client(cls, sms=None, fixed_otp: str | None = None) -> OmariClient:
        from .omari_sandbox import OmariSandbox

        return OmariSandbox(sms=sms, fixed_otp=fixed_otp).client()

    def start(self, row) -> OmariResult:
        return self.client.auth(row.msisdn, row.reference, from_minor(row.amount_minor), row.currency, row.channel)

    def confirm(self, row, code: str) -> OmariResult:
        return self.client.request(row.msisdn, row.reference, code)

    def query(self, row) -> OmariResult:
        return self.client.query(row.reference)

    def void(self, row) -> OmariResult:
        return self.client.void(row.reference)

    @classmethod
    def wording(cls, code: str | None) -> str:
        return WORDING.get(code or "", DEFAULT_WORDING)

    @classmethod
    def verdict(cls, answer: OmariResult) -> p.Verdict:
        """/query read by the vendor's rule: "000" with status Success (or no status but a payment
        reference) is paid; a clear refusal (HTTP 2xx or 404, e.g. 025 not found) is not paid; a refusal
        of the query itself (HTTP 400/401/403/429) decides nothing.
        """
        if answer.outcome != SUCCESS:
            if answer.http_status in range(200, 300) or answer.http_status == 404:
                return p.Verdict(p.NOT_PAID, answer.message or "O'mari does not know this payment")
            return p.Verdict(
                p.IGNORE, f"O'mari refused the query (HTTP {answer.http_status}, code {answer.response_code or '-'})"
            )
        word = (answer.status or "").strip().lower()
        if word and word not in KNOWN_STATUS_WORDS:
            return p.Verdict(p.DOUBT, f"O'mari reports the status '{answer.status}', which is not one we know")
        if not word:
            if answer.payment_reference:
                return p.Verdict(p.PAID)
            return p.Verdict(p.DOUBT, "O'mari's answer has neither a status nor a payment reference")
        return {
            "success": p.Verdict(p.PAID),
            "pending": p.Verdict(p.WAITING, cls.waiting_note),
            "expired": p.Verdict(p.EXPIRED, "O'mari reports the OTP expired"),
        }.get(word, p.Verdict(p.NOT_PAID, f"O'mari reports the payment as {answer.status}"))
