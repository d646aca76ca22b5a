"""Cases for "omari.initiate", "omari.confirm", "omari.cancel" and "omari.expire", called as the engine
calls them (params checked against the action's schema, an ActionContext with its idempotency key), on
real storage and the O'mari sandbox.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

import actions
from actions.omari_sandbox import OmariSandbox
from engine.registry import ActionContext, ActionFailed, registry
from storage import payments
from storage.bookings import add_booking, find_booking
from storage.models import PaymentTransaction
from storage.settings import Settings

actions.load_all()
PHONE = "263771234567"
REF = "BK-SLYKER-TECH-20251023"


class Env:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 9, 0, 0)
        self.sandbox = OmariSandbox(clock=lambda: self.now)
        self.services = {"omari": self.sandbox.client(), "settings": Settings(omari_channel="POS")}
        self.turn = 0

    def call(self, name: str, params: dict, key: str | None = None):
        spec = registry.get(name)
        assert spec.check_params(params) == [], spec.check_params(params)
        if key is None:
            self.turn += 1
            key = f"{PHONE}:wamid.{self.turn}:{name}:1"
        ctx = ActionContext(
            clock=lambda: self.now,
            new_id=lambda: "unused",
            idempotency_key=key,
            contact=PHONE,
            log=logging.getLogger("test.omari"),
            services=self.services,
        )
        return spec.handler(ctx, params)

    def initiate(self, amount="50.00", msisdn=PHONE, key=None):
        return self.call(
            "omari.initiate", {"booking": REF, "amount": amount, "wallet": "onemoney", "msisdn": msisdn}, key
        )

    def confirm(self, reference, otp=None, key=None):
        return self.call("omari.confirm", {"reference": reference, "otp": otp or self.sandbox.last_otp()}, key)


@pytest.fixture
def env(db):
    add_booking(REF, "Tendai Moyo", "Victoria Falls 3-day safari", "300.00")
    return Env()


def paid() -> Decimal:
    return Decimal(find_booking(REF).paid_minor) / 100


# ── omari.initiate ───────────────────────────────────────────────────────────────────────────────────


def test_initiate_commits_the_transaction_before_calling_auth(env):
    seen = []
    real = env.services["omari"]

    class Watching:
        def auth(self, msisdn, reference, amount, currency, channel):
            seen.append(PaymentTransaction.get(PaymentTransaction.reference == reference).status)
            return real.auth(msisdn, reference, amount, currency, channel)

    env.services["omari"] = Watching()
    result = env.initiate()
    assert seen == ["INITIATED"]
    assert result.outcome == "otp_sent"
    row = payments.get(result.data["reference"])
    assert row.status == "OTP_SENT" and row.otp_reference == result.data["otp_reference"]
    assert row.channel == "POS" and row.wallet == "onemoney"  # the API channel comes from the settings
    assert result.data["amount"] == "50.00" and result.data["currency"] == "USD"


def test_initiate_sends_exactly_the_amount_typed(env):
    result = env.initiate(amount="0.10")
    assert env.sandbox.payments[result.data["reference"]].amount == Decimal("0.10")
    assert payments.get(result.data["reference"]).amount_minor == 10


def test_initiate_twice_with_one_key_calls_auth_once(env):
    first = env.initiate(key="k-initiate")
    second = env.initiate(key="k-initiate")
    assert env.sandbox.calls == ["auth"]
    assert second == first
    assert PaymentTransaction.select().count() == 1


def test_initiate_refused_by_omari_fails_with_the_code_and_a_message(env):
    result = env.initiate(msisdn="263771230005")  # the sandbox's do-not-honour number
    assert result.outcome == "failed"
    assert result.data["code"] == "005" and result.data["message"] == "O'mari declined the payment."
    row = payments.get(result.data["reference"])
    assert row.status == "FAILED" and row.error_message == "Do not honour"
    assert [h["status"] for h in payments.history(row)] == ["INITIATED", "FAILED"]


@pytest.mark.parametrize(
    "fault",
    [
        "timeout_before",
        "http_500",
        "malformed_json",
        "connection_error",
        "http_401_empty",
        "html_after",
        "error_as_text",
        "missing_fields",
    ],
)
def test_initiate_without_a_success_fails_at_once(env, fault, caplog):
    """No money moves at /auth: whatever O'mari (or a gateway) answers short of a success is FAILED."""
    env.sandbox.inject("auth", fault)
    with caplog.at_level(logging.INFO):
        result = env.initiate()
    assert result.outcome == "failed"
    assert result.data["message"] == "O'mari could not start the payment just now, and nothing was charged."
    row = payments.get(result.data["reference"])
    assert row.status == "FAILED" and [h["status"] for h in payments.history(row)] == ["INITIATED", "FAILED"]
    assert row.error_message and payments.reconcile_candidates(env.now + timedelta(hours=1)) == []
    why = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(why) == 1 and f"payment {row.reference} FAILED at /auth" in why[0]
    assert env.sandbox.merchant_key not in "\n".join(r.getMessage() for r in caplog.records)


def test_a_401_with_no_body_at_auth_says_why_in_the_log_never_the_key(env, caplog):
    env.sandbox.inject("auth", "http_401_empty")
    with caplog.at_level(logging.INFO):
        result = env.initiate()
    assert result.outcome == "failed" and payments.get(result.data["reference"]).status == "FAILED"
    why = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING][0]
    assert "HTTP 401 with an empty body" in why and "check OMARI_MERCHANT_KEY" in why
    assert env.sandbox.merchant_key not in why


@pytest.mark.parametrize("amount", ["300.01", "0", "0.00"])
def test_initiate_refuses_an_amount_outside_the_balance_without_calling(env, amount):
    result = env.initiate(amount=amount)
    assert result.outcome == "failed" and "between 0.01 and 300.00" in result.data["message"]
    assert env.sandbox.calls == [] and PaymentTransaction.select().count() == 0


def test_initiate_for_an_unknown_booking_fails_without_calling(env):
    result = env.call("omari.initiate", {"booking": "BK-NOPE", "amount": "5", "wallet": "ecocash", "msisdn": PHONE})
    assert result.outcome == "failed" and "BK-NOPE" in result.data["message"]
    assert env.sandbox.calls == []


def test_initiate_params_are_checked_by_the_schema():
    spec = registry.get("omari.initiate")
    problems = spec.check_params({"booking": REF, "amount": "5.001", "wallet": "paypal", "msisdn": "0771234567"})
    assert len(problems) == 3


def test_initiate_needs_an_omari_client(env):
    env.services = {"settings": Settings()}
    with pytest.raises(ActionFailed, match="services\\['omari'\\]"):
        env.initiate()


# ── omari.confirm ────────────────────────────────────────────────────────────────────────────────────


def test_confirm_with_the_right_otp_pays_and_applies(env):
    reference = env.initiate(amount="75.25").data["reference"]
    result = env.confirm(reference)
    assert result.outcome == "success"
    row = payments.get(reference)
    assert result.data["payment_reference"] == row.payment_reference and row.payment_reference
    assert result.data["amount"] == "75.25" and result.data["balance_due"] == "224.75"
    assert row.status == "SUCCESS" and row.applied_at is not None
    assert paid() == Decimal("75.25") and find_booking(REF).payment_status == "PARTIAL"


def test_confirm_twice_with_one_key_calls_request_once_and_pays_once(env):
    reference = env.initiate().data["reference"]
    first = env.confirm(reference, key="k-confirm")
    second = env.confirm(reference, key="k-confirm")
    assert env.sandbox.calls == ["auth", "request"]
    assert first == second and first.outcome == "success"
    assert paid() == Decimal("50.00")


def test_a_repeated_wrong_otp_key_does_not_count_twice(env):
    reference = env.initiate().data["reference"]
    first = env.confirm(reference, otp="111111", key="k-wrong")
    again = env.confirm(reference, otp="111111", key="k-wrong")
    assert first.outcome == again.outcome == "wrong_otp"
    assert first.data["attempts_left"] == again.data["attempts_left"] == 2
    assert env.sandbox.calls == ["auth", "request"]


def test_confirm_allows_three_tries_then_fails(env):
    reference = env.initiate().data["reference"]
    assert env.confirm(reference, otp="111111").data["attempts_left"] == 2
    assert env.confirm(reference, otp="222222").data["attempts_left"] == 1
    third = env.confirm(reference, otp="333333")
    assert third.outcome == "failed" and third.data["message"] == "Too many wrong codes were entered."
    row = payments.get(reference)
    assert row.status == "FAILED" and row.otp_attempts == 3  # the third refusal (075) is counted too
    assert row.error_message == "wrong OTP 3 times"
    late = env.confirm(reference)  # even the right code is too late now, and O'mari is not asked again
    assert late.outcome == "failed" and env.sandbox.calls.count("request") == 3
    assert paid() == Decimal("0.00")


def test_confirm_after_the_otp_lifetime_expires_without_calling(env):
    reference = env.initiate().data["reference"]
    env.now += timedelta(minutes=10, seconds=1)
    result = env.confirm(reference)
    assert result.outcome == "expired" and payments.get(reference).status == "EXPIRED"
    assert env.sandbox.calls == ["auth"]


@pytest.mark.parametrize("fault", ["timeout_after", "http_500", "malformed_json"])
def test_confirm_without_a_readable_answer_is_pending_while_query_cannot_tell(env, fault):
    reference = env.initiate().data["reference"]
    env.sandbox.inject("request", fault)
    env.sandbox.inject("query", "http_500")
    result = env.confirm(reference)
    assert result.outcome == "pending"
    assert payments.get(reference).status == "PENDING" and paid() == Decimal("0.00")
    assert env.sandbox.calls == ["auth", "request", "query"]


@pytest.mark.parametrize("fault", ["timeout_after", "html_after", "error_as_text", "missing_fields", "malformed_json"])
def test_confirm_with_an_unreadable_answer_after_paying_asks_query_at_once_and_pays_once(env, fault):
    reference = env.initiate().data["reference"]
    env.sandbox.inject("request", fault)
    result = env.confirm(reference)
    assert result.outcome == "success" and result.data["balance_due"] == "250.00"
    row = payments.get(reference)
    assert [h["status"] for h in payments.history(row)] == ["INITIATED", "OTP_SENT", "PENDING", "SUCCESS"]
    assert row.payment_reference == env.sandbox.payments[reference].payment_reference
    assert env.sandbox.calls == ["auth", "request", "query"] and paid() == Decimal("50.00")


def test_confirm_with_an_unreadable_answer_and_a_failed_query_fails(env):
    reference = env.initiate(msisdn="263771230051").data["reference"]  # the sandbox's insufficient-funds number
    env.sandbox.inject("request", "html_after")
    result = env.confirm(reference)
    assert result.outcome == "failed" and payments.get(reference).status == "FAILED" and paid() == Decimal("0.00")


@pytest.mark.parametrize(
    "fault,reason",
    [
        ("unknown_status", "O'mari reports the status 'Processing', which is not one we know"),
        ("other_amount", "O'mari reports 5.00 USD paid; the payment is 50.00 USD"),
    ],
)
def test_confirm_with_an_unreadable_answer_and_a_query_we_cannot_believe_waits_for_a_person(env, fault, reason):
    reference = env.initiate().data["reference"]
    env.sandbox.inject("request", "html_after")
    env.sandbox.inject("query", fault)
    result = env.confirm(reference)
    assert result.outcome == "pending"
    row = payments.get(reference)
    assert row.status == "PENDING" and row.review_reason == reason and paid() == Decimal("0.00")
    assert payments.as_dict(row)["needs_person"] == reason


def test_confirm_of_a_cancelled_payment_fails_without_calling(env):
    reference = env.initiate().data["reference"]
    env.call("omari.cancel", {"reference": reference})
    result = env.confirm(reference)
    assert result.outcome == "failed" and result.data["message"] == "The payment was cancelled."
    assert "request" not in env.sandbox.calls


def test_the_otp_is_never_logged_or_stored(env, caplog):
    with caplog.at_level(logging.DEBUG):
        reference = env.initiate().data["reference"]
        otp = env.sandbox.last_otp()
        env.confirm(reference, otp="999999")
        env.confirm(reference, otp=otp)
    logged = "\n".join(r.getMessage() for r in caplog.records)  # peewee's SQL debug lines included
    assert otp not in logged and "999999" not in logged
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("convoflow"))
    assert "2637****4567" in ours and PHONE not in ours
    assert otp not in str(list(PaymentTransaction.select().dicts()))
    from storage.models import Event

    assert otp not in str(list(Event.select().dicts()))


# ── omari.cancel and omari.expire ────────────────────────────────────────────────────────────────────


def test_cancel_marks_cancelled_and_voids(env):
    reference = env.initiate().data["reference"]
    result = env.call("omari.cancel", {"reference": reference})
    assert result.outcome == "cancelled" and result.data["status"] == "CANCELLED"
    assert env.sandbox.calls == ["auth", "void"]
    again = env.call("omari.cancel", {"reference": reference})
    assert again.outcome == "cancelled" and env.sandbox.calls == ["auth", "void"]


def test_cancel_before_any_payment_does_nothing(env):
    assert env.call("omari.cancel", {"reference": ""}).outcome == "cancelled"
    assert env.sandbox.calls == []


def test_cancel_when_the_void_fails_still_cancels(env):
    reference = env.initiate().data["reference"]
    env.sandbox.inject("void", "http_500")
    assert env.call("omari.cancel", {"reference": reference}).outcome == "cancelled"
    assert payments.get(reference).status == "CANCELLED"


def test_cancel_never_cancels_a_pending_or_paid_payment(env):
    pending = env.initiate().data["reference"]
    env.sandbox.inject("request", "timeout_after")
    env.sandbox.inject("query", "http_500")
    env.confirm(pending)
    assert env.call("omari.cancel", {"reference": pending}).outcome == "pending"
    assert payments.get(pending).status == "PENDING"

    done = env.initiate(amount="10").data["reference"]
    env.confirm(done)
    assert env.call("omari.cancel", {"reference": done}).outcome == "paid"
    assert payments.get(done).status == "SUCCESS"


def test_expire_marks_expired_and_voids(env):
    reference = env.initiate().data["reference"]
    result = env.call("omari.expire", {"reference": reference})
    assert result.outcome == "expired" and payments.get(reference).status == "EXPIRED"
    assert env.sandbox.calls == ["auth", "void"]
    assert env.call("omari.expire", {"reference": ""}).outcome == "expired"


def test_expire_leaves_a_paid_payment_paid(env):
    reference = env.initiate().data["reference"]
    env.confirm(reference)
    assert env.call("omari.expire", {"reference": reference}).outcome == "paid"
    assert payments.get(reference).status == "SUCCESS"
