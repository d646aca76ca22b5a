"""Cases for "paynow.start", "paynow.check", "paynow.cancel" and "paynow.expire", called as the engine
calls them (params checked against the action's schema, an ActionContext with its idempotency key), on
real storage and the Paynow sandbox.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

import actions
from actions.paynow_sandbox import PaynowSandbox
from engine.registry import ActionFailed
from storage import payments
from storage.bookings import add_booking
from storage.settings import Settings

from action_kit import call_action, paid_on

actions.load_all()
PHONE = "263771234567"
REF = "BK-SLYKER-TECH-20251023"


class Env:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 9, 0, 0)
        self.sandbox = PaynowSandbox(clock=lambda: self.now)
        self.services = {"paynow": self.sandbox.client(), "settings": Settings()}
        self.turn = 0

    def call(self, name: str, params: dict, key: str | None = None):
        self.turn += 1
        return call_action(
            name,
            params,
            key=key or f"{PHONE}:wamid.{self.turn}:{name}:1",
            now=self.now,
            contact=PHONE,
            services=self.services,
        )

    def start(self, msisdn=PHONE, key=None, amount="50.00"):
        return self.call("paynow.start", {"booking": REF, "amount": amount, "wallet": "ecocash", "msisdn": msisdn}, key)


@pytest.fixture
def env(db):
    add_booking(REF, "Tendai Moyo", "Victoria Falls 3-day safari", "300.00")
    return Env()


def test_start_prompts_the_phone_once_per_idempotency_key(env):
    first = env.start(key="k-1")
    again = env.start(key="k-1")  # a retried turn
    assert (first.outcome, again.outcome) == ("prompted", "prompted") and first.data == again.data
    assert env.sandbox.calls == ["remotetransaction"] and len(payments.list_payments()) == 1
    row = payments.get(first.data["reference"])
    assert (row.provider, row.status, row.amount_minor) == ("paynow", "OTP_SENT", 5000)
    assert [h["status"] for h in payments.history(row)] == ["INITIATED", "OTP_SENT"]


def test_start_refuses_an_amount_outside_the_balance_without_calling(env):
    result = env.start(amount="300.01")
    assert result.outcome == "failed" and "between 0.01 and 300.00" in result.data["message"]
    assert env.sandbox.calls == []


def test_check_pays_the_booking_once_however_often_it_is_asked(env):
    reference = env.start().data["reference"]
    first = env.call("paynow.check", {"reference": reference})
    again = env.call("paynow.check", {"reference": reference})
    assert (first.outcome, again.outcome) == ("paid", "paid") and first.data["balance_due"] == "250.00"
    assert paid_on(REF) == Decimal("50.00") and env.sandbox.calls == ["remotetransaction", "poll"]


def test_check_of_a_payment_still_waiting_answers_waiting(env):
    reference = env.start(msisdn="263772222222").data["reference"]
    assert env.call("paynow.check", {"reference": reference}).outcome == "waiting"
    env.now += timedelta(seconds=31)
    assert env.call("paynow.check", {"reference": reference}).outcome == "paid"


def test_check_of_no_such_payment_fails_plainly(env):
    result = env.call("paynow.check", {"reference": "no-such-reference"})
    assert (result.outcome, result.data["message"]) == ("failed", "There is no such payment.")


def test_cancel_without_a_payment_is_cancelled_and_a_paid_one_stays_paid(env):
    assert env.call("paynow.cancel", {"reference": ""}).outcome == "cancelled"
    reference = env.start().data["reference"]
    assert env.call("paynow.cancel", {"reference": reference}).outcome == "paid"  # approved before the cancel
    assert paid_on(REF) == Decimal("50.00") and payments.get(reference).status == "SUCCESS"


def test_expire_leaves_an_unapproved_payment_for_reconcile(env):
    reference = env.start(msisdn="263772222222").data["reference"]
    result = env.call("paynow.expire", {"reference": reference})
    assert result.outcome == "expired" and payments.get(reference).status == "OTP_SENT"
    assert "Paynow has no void" in payments.get(reference).error_message


def test_without_a_paynow_client_the_author_is_told(env):
    env.services = {"settings": Settings()}
    with pytest.raises(ActionFailed, match=r"no Paynow client in the services \(services\['paynow'\]\)"):
        env.start()
