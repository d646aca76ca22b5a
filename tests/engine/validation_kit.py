"""A fresh action registry for validation tests: the contracts of a few real actions, no real handlers.

Validation reads only an action's contract (params schema, outcomes, templated params), so the tests pin
those here instead of depending on whatever actions/ registers today.
"""

from __future__ import annotations

from pathlib import Path

from engine.registry import ActionContext, ActionRegistry, Result

HERE = Path(__file__).resolve().parent
BROKEN = HERE / "broken"
FIXTURES = HERE / "fixtures"
SHIPPED = HERE.parent.parent / "flows"


def _unused(ctx: ActionContext, params: dict) -> Result:
    raise AssertionError("validation never calls a handler")


def validation_registry() -> ActionRegistry:
    """booking.lookup, booking.apply_payment, omari.initiate/confirm/cancel, core.set and core.log."""
    r = ActionRegistry()
    ref = {
        "type": "object",
        "properties": {"reference": {"type": "string"}},
        "required": ["reference"],
        "additionalProperties": False,
    }
    r.action("booking.lookup", params=ref, outcomes=["found", "not_found", "paid_in_full"])(_unused)
    r.action("booking.apply_payment", params=ref, outcomes=["applied", "already_applied", "not_found", "not_paid"])(
        _unused
    )
    r.action("omari.cancel", params=ref, outcomes=["cancelled", "pending", "paid"])(_unused)
    r.action(
        "omari.initiate",
        params={
            "type": "object",
            "properties": {
                "booking": {"type": "string", "minLength": 1},
                "amount": {"type": "string", "pattern": r"^\d+(\.\d{1,2})?$"},
                "wallet": {"enum": ["ecocash", "onemoney", "zimswitch"]},
                "msisdn": {"type": "string", "pattern": r"^2637\d{8}$"},
            },
            "required": ["booking", "amount", "wallet", "msisdn"],
            "additionalProperties": False,
        },
        outcomes=["otp_sent", "failed", "pending"],
        templates=["booking", "amount", "wallet", "msisdn"],
    )(_unused)
    r.action(
        "omari.confirm",
        params={
            "type": "object",
            "properties": {"reference": {"type": "string"}, "otp": {"type": "string"}},
            "required": ["reference", "otp"],
            "additionalProperties": False,
        },
        outcomes=["success", "wrong_otp", "failed", "pending", "expired"],
    )(_unused)
    r.action(
        "core.set",
        params={"type": "object", "properties": {"value": {}}, "required": ["value"], "additionalProperties": False},
        outcomes=["ok"],
    )(_unused)
    r.action(
        "core.log",
        params={
            "type": "object",
            "properties": {
                "message": {"type": "string", "minLength": 1},
                "level": {"enum": ["debug", "error", "info", "warning"]},
            },
            "required": ["message"],
            "additionalProperties": False,
        },
        outcomes=["ok"],
        templates=["message"],
    )(_unused)
    return r
