"""`booking.*` actions: find a booking for the customer, apply a finished payment to it.

    find_booking:
      action: booking.lookup
      with: {reference: "{{ reference }}"}
      save: booking          # {{ booking.tour }}, {{ booking.balance_due | money }}
      on: {found: ask_amount, not_found: no_such_booking, paid_in_full: nothing_to_pay}

Amounts in the saved data are strings with two decimals ("300.00"), as conversation vars are JSON.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.registry import ActionContext, Result, action
from storage.money import format_amount, from_minor

if TYPE_CHECKING:
    from storage.models import Booking


def booking_data(booking: Booking) -> dict:
    """What a flow may show about a booking: the `flows bookings show --json` fields, plus `total`."""
    from storage.bookings import as_dict

    data = as_dict(booking)
    data["total"] = data["total_amount"]
    return data


@action(
    "booking.lookup",
    params={
        "type": "object",
        "properties": {"reference": {"type": "string", "description": "the booking reference the customer typed"}},
        "required": ["reference"],
        "additionalProperties": False,
    },
    outcomes=["found", "not_found", "paid_in_full"],
    reads_only=True,
)
def lookup(ctx: ActionContext, params: dict) -> Result:
    """Find a booking by reference (any case, surrounding space ignored) and say what is still due."""
    from storage.bookings import find_booking

    typed = params["reference"].strip()
    booking = find_booking(typed) if typed else None
    if booking is None:
        return Result("not_found", {"reference": typed})
    data = booking_data(booking)
    if booking.paid_minor >= booking.total_minor:
        return Result("paid_in_full", data)
    return Result("found", data)


@action(
    "booking.apply_payment",
    params={
        "type": "object",
        "properties": {
            "reference": {"type": "string", "minLength": 1, "description": "the payment transaction's reference"}
        },
        "required": ["reference"],
        "additionalProperties": False,
    },
    outcomes=["applied", "already_applied", "not_found", "not_paid"],
)
def apply_payment(ctx: ActionContext, params: dict) -> Result:
    """Add a successful payment's amount to its booking, once per transaction (under the booking's row lock).

    omari.confirm already does this when O'mari says the payment went through; this action is for flows
    and tools that finish payments another way. `not_paid`: the transaction exists but is not SUCCESS.
    """
    from storage import payments

    row = payments.get(params["reference"])
    if row is None:
        return Result("not_found", {"reference": params["reference"].strip()})
    done = payments.apply_to_booking(row.reference, now=ctx.clock())
    if done is None:
        return Result("not_paid", {"reference": row.reference, "status": row.status})
    data = booking_data(done.booking) | {
        "payment": row.reference,
        "amount": format_amount(from_minor(row.amount_minor)),
    }
    return Result("applied" if done.applied else "already_applied", data)
