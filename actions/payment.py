"""A payment taken in a conversation, whatever its provider (actions/providers.py).

What every provider's actions share lives here once: the checks before a start (the booking, the amount
against the balance due), the row committed INITIATED before any call, the start limits, the start's
answer recorded, the outcome a repeated call with the same idempotency key gets, a status asked at once
when an answer was lost, and stopping a payment the customer will not finish. The provider modules
(actions/omari.py, actions/paynow.py) hold only their own actions, wording and protocol.

Payment starts are limited per contact and per wallet number (PAYMENT_STARTS_PER_CONTACT / _PER_WALLET per
PAYMENT_STARTS_WINDOW_MINUTES): each start texts a code or prompts a phone, so anyone could otherwise make
a gateway pester any number again and again. A refused start answers `limited`, stores no transaction
and is counted on /metrics.
"""

from __future__ import annotations

import logging
import math
import uuid
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Callable

from engine.registry import ActionContext, ActionFailed, Result
from storage.settings import Settings
from storage.money import format_amount

from .providers import FAILED, SUCCESS, UNKNOWN, Answer, Provider, mask_msisdn

if TYPE_CHECKING:
    from storage import payments

Describe = Callable[[object], dict]  # a payment row -> what a flow may show about it

LIMITED_WORDING = {
    "contact": "You have started {count} payments in the last {window} minutes.",
    "wallet": "The wallet number {msisdn} has been sent {count} codes in the last {window} minutes.",
}


def start_params(wallets: tuple[str, ...], wallet: str) -> dict:
    """The JSON Schema of a start action's params: booking, amount, wallet (one of wallets), msisdn."""
    return {
        "type": "object",
        "properties": {
            "booking": {"type": "string", "minLength": 1, "description": "the booking reference"},
            "amount": {
                "type": "string",
                "pattern": r"^\d+(\.\d{1,2})?$",
                "description": "what the customer typed, e.g. 50.00",
            },
            "wallet": {"enum": list(wallets), "description": wallet},
            "msisdn": {"type": "string", "pattern": r"^2637\d{8}$", "description": "the payer's number, 2637XXXXXXXX"},
        },
        "required": ["booking", "amount", "wallet", "msisdn"],
        "additionalProperties": False,
    }


def settings_of(ctx: ActionContext) -> Settings:
    return ctx.services.get("settings") or Settings()


def client_of(ctx: ActionContext, provider: type[Provider]):
    """The provider's client from the services (ActionFailed, for the author, when it is missing)."""
    client = ctx.services.get(provider.name)
    if client is None:
        raise ActionFailed(f"no {provider.title} client in the services (services['{provider.name}'])")
    return client


def start_limits(settings: Settings) -> payments.StartLimits:
    """The payment start limits the settings ask for (PAYMENT_STARTS_PER_CONTACT, …_PER_WALLET, …_WINDOW_MINUTES)."""
    from storage import payments

    return payments.StartLimits(
        per_contact=settings.payment_starts_per_contact,
        per_wallet=settings.payment_starts_per_wallet,
        window=timedelta(minutes=settings.payment_starts_window_minutes),
    )


def _log(provider: Provider) -> logging.Logger:
    return logging.getLogger(f"convoflow.{provider.name}")


def _not_startable(params: dict, provider: Provider, settings: Settings):
    """(booking, amount) when a payment may start, else the `failed` Result saying why (nothing stored)."""
    from storage import payments
    from storage.bookings import find_booking

    booking = find_booking(params["booking"])
    if booking is None:
        return Result(
            "failed", {"reference": None, "code": None, "message": f"There is no booking {params['booking'].strip()}."}
        )
    try:
        amount = Decimal(params["amount"])
    except InvalidOperation:
        return Result("failed", {"reference": None, "code": None, "message": "That is not an amount."})
    due = payments.balance_due(booking)
    if not (Decimal("0") < amount <= due):
        # The flow checks the range when the customer types; the balance may have changed since.
        return Result(
            "failed",
            {
                "reference": None,
                "code": None,
                "message": f"The amount must be between 0.01 and {format_amount(due)} {booking.currency}.",
            },
        )
    refusal = provider.refuse_start(booking, settings)
    if refusal:
        return Result("failed", {"reference": None, "code": None, "message": refusal})
    return booking, amount


def start(
    ctx: ActionContext, params: dict, provider: Provider, *, channel: str, describe: Describe, started: str
) -> Result:
    """Start a payment: commit it INITIATED, then ask the provider (provider.start). params: booking,
    amount, wallet, msisdn. started: the outcome of a payment the gateway took up (O'mari: otp_sent).
    """
    from storage import payments

    existing = payments.by_idempotency_key(ctx.idempotency_key)
    if existing is not None:
        return start_replay(existing.reference, ctx, provider, describe, started)
    settings = settings_of(ctx)
    checked = _not_startable(params, provider, settings)
    if isinstance(checked, Result):
        return checked
    booking, amount = checked
    now = ctx.clock()
    limits = start_limits(settings)
    try:
        # Our reference is a UUID, unique per transaction; it is also what the customer and the operator quote.
        row, created = payments.create(
            booking,
            reference=str(uuid.uuid4()),
            idempotency_key=ctx.idempotency_key,
            msisdn=params["msisdn"],
            amount=amount,
            wallet=params["wallet"],
            channel=channel,
            contact_key=ctx.contact,
            now=now,
            limits=limits,
            provider=provider.name,
        )
    except payments.StartLimited as refused:
        return _limited(refused, limits, params["msisdn"], ctx, now, provider)
    if created:
        _start_answered(row.reference, provider.start(row), provider, ctx)
    return start_replay(row.reference, ctx, provider, describe, started)


def _limited(
    refused: payments.StartLimited,
    limits: payments.StartLimits,
    msisdn: str,
    ctx: ActionContext,
    now: datetime,
    provider: Provider,
) -> Result:
    """A start over a limit: nothing stored, nothing sent; counted, and the payer told when to retry."""
    from storage import payments

    masked = mask_msisdn(msisdn)
    payments.note_limited(refused.limit, subject=masked, contact_key=ctx.contact, now=now)
    _log(provider).warning(
        "payment start refused: too many per %s (contact %s, wallet %s)",
        refused.limit,
        mask_msisdn(ctx.contact),
        masked,
    )
    count = limits.per_contact if refused.limit == "contact" else limits.per_wallet
    window = int(limits.window.total_seconds() // 60)
    minutes = max(math.ceil((refused.free_at - now).total_seconds() / 60), 1)
    message = (
        LIMITED_WORDING[refused.limit].format(count=count, window=window, msisdn=masked)
        + f" To keep wallets safe from unwanted codes, please wait {minutes} minute{'s' if minutes != 1 else ''}"
        " before starting another payment. Nothing was charged."
    )
    return Result(
        "limited",
        {"reference": None, "code": None, "message": message, "limit": refused.limit, "retry_in_minutes": minutes},
    )


def _start_answered(reference: str, answer: Answer, provider: Provider, ctx: ActionContext) -> None:
    """Record the start's answer on the INITIATED transaction. Where no money moves before a confirm
    (O'mari), anything but a success — a refusal, a 401 with no body, a timeout, an unreadable answer —
    fails the payment at once (the gateway never sees a confirm for it) and the log says why. Where the
    payer may pay right after the start (Paynow), only a refusal fails it; an unknown answer waits for a
    person.
    """
    from storage import payments

    now = ctx.clock()
    if answer.outcome == UNKNOWN and provider.start_moves_money:
        start_lost(reference, provider, now, answer.message)
        return
    if answer.outcome == SUCCESS:
        payments.transition(
            reference,
            payments.OTP_SENT,
            from_statuses=[payments.INITIATED],
            now=now,
            otp_reference=answer.otp_reference,
            response_code=answer.response_code,
            payment_reference=answer.payment_reference,
            poll_url=answer.poll_url,
        )
        return
    code = answer.response_code if answer.outcome == FAILED else None
    payments.transition(
        reference,
        payments.FAILED,
        from_statuses=[payments.INITIATED],
        now=now,
        response_code=code,
        error_message=answer.message or f"{provider.start_call} {answer.outcome}",
    )
    hint = provider.key_hint if answer.http_status in (401, 403) else ""
    _log(provider).warning(
        "payment %s FAILED at %s: %s (outcome %s, code %s)%s",
        reference,
        provider.start_call,
        answer.message,
        answer.outcome,
        code or "-",
        hint,
    )


def start_lost(reference: str, provider: Provider, now: datetime, why: str | None):
    """A start whose answer never came, at a gateway where the payer may pay right after it (Paynow): the
    money may move and we have no handle to ask about it, so the payment waits PENDING for a person.
    """
    from storage import payments

    reason = (
        f"{provider.title}'s answer to the start was lost ({why}): look the payment up by its reference "
        f"in the {provider.title} dashboard"
    )
    _log(provider).warning("payment %s: %s", reference, reason)
    return payments.mark_for_person(reference, reason, from_statuses=[payments.INITIATED], now=now)


def start_replay(reference: str, ctx: ActionContext, provider: Provider, describe: Describe, started: str) -> Result:
    """The outcome the transaction's state stands for (also the answer to a repeated call with its key)."""
    from storage import payments

    row = payments.get(reference)
    if row.status == payments.INITIATED and provider.start_moves_money:
        row = start_lost(reference, provider, ctx.clock(), "interrupted before it answered") or payments.get(reference)
    if row.status == payments.INITIATED:
        # The earlier call died between our commit and the gateway's answer: the start may have gone out.
        row = payments.transition(
            row.reference,
            payments.PENDING,
            from_statuses=[payments.INITIATED],
            now=ctx.clock(),
            error_message=f"interrupted before {provider.title} answered {provider.start_call}",
        ) or payments.get(row.reference)
    data = describe(row)
    if row.status in (payments.OTP_SENT, payments.SUCCESS):
        return Result(started, data)
    if row.status == payments.PENDING:
        return Result("pending", data)
    if data["message"] is None:
        data["message"] = provider.default_wording
    return Result("failed", data)


def ask_now(reference: str, provider: Provider, ctx: ActionContext, tell: bool = False) -> None:
    """Ask the provider for the payment's status now and settle by reconcile's rules (paid → SUCCESS; a
    refusal → FAILED; can't tell, or can't believe → left as it is, for `flows payments reconcile` or a
    person). The customer hears it from this conversation, so reconcile queues no message unless tell.
    """
    from storage import payments
    from .reconcile import settle  # here, not at the top: reconcile reads the providers' modules

    row = payments.get(reference)
    settle(row, provider.query(row), now=ctx.clock(), tell=tell)


def stop(
    ctx: ActionContext, reference: str, provider: Provider, describe: Describe, status: str, outcome: str, reason: str
) -> Result:
    """End a payment the customer will not finish (CANCELLED or EXPIRED), then void it at the gateway.

    A payment whose outcome is unknown (PENDING) is left alone — the money may have moved — and a paid one
    stays paid; both say so through their outcome. The void is best effort: an unused code or prompt expires.
    """
    from storage import payments

    reference = reference.strip()
    row = payments.get(reference) if reference else None
    if row is None:
        return Result(outcome, {"reference": reference or None, "status": None})
    if row.status == payments.SUCCESS:
        return Result("paid", describe(row))
    if row.status == payments.PENDING:
        return Result("pending", describe(row))
    if not provider.voids and row.status in (payments.OTP_SENT, payments.INITIATED):
        return _cannot_void(ctx, row, provider, describe, outcome, reason)
    changed = payments.transition(
        row.reference,
        status,
        from_statuses=[payments.INITIATED, payments.OTP_SENT],
        now=ctx.clock(),
        error_message=reason,
    )
    if changed is not None:
        answer = provider.void(row)
        if answer.outcome != SUCCESS:
            ctx.log.info(
                "%s void of %s not confirmed (%s): it simply expires",
                provider.name,
                row.reference,
                answer.response_code or answer.outcome,
            )
    return Result(outcome, describe(payments.get(row.reference)))


def _cannot_void(ctx: ActionContext, row, provider: Provider, describe: Describe, outcome: str, reason: str) -> Result:
    """A gateway without a void (Paynow) may still take the money after the customer gives up (they can
    approve the prompt on their phone), so the payment is not closed here: asked once now, and otherwise
    left OTP_SENT for reconcile, which credits it if it is paid and expires it when the payer's time is up.
    """
    from storage import payments

    ask_now(row.reference, provider, ctx, tell=True)  # the conversation is ending: a payment is told apart
    after = payments.get(row.reference)
    if after.status == payments.SUCCESS:
        return Result("paid", describe(after))
    payments.transition(
        row.reference,
        row.status,
        from_statuses=[row.status],
        now=ctx.clock(),
        error_message=f"{reason}; {provider.title} has no void, so reconcile settles it",
    )
    return Result(outcome, describe(payments.get(row.reference)))
