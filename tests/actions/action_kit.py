"""Calling an action as the engine calls it: its params checked against the action's schema, then its
handler with an ActionContext holding the clock, the idempotency key, the contact and the services."""

from __future__ import annotations

import logging
from datetime import datetime

from engine.registry import ActionContext, Result, registry


def call_action(name: str, params: dict, *, key: str, now: datetime, contact: str, services: dict) -> Result:
    spec = registry.get(name)
    assert spec.check_params(params) == [], spec.check_params(params)
    ctx = ActionContext(
        clock=lambda: now,
        new_id=lambda: "unused",
        idempotency_key=key,
        contact=contact,
        log=logging.getLogger(f"test.{name}"),
        services=services,
    )
    return spec.handler(ctx, params)


def paid_on(booking_reference: str):
    """What the booking says has been paid (a Decimal)."""
    from storage.bookings import find_booking
    from storage.money import from_minor

    return from_minor(find_booking(booking_reference).paid_minor)
