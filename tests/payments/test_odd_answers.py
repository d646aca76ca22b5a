"""O'mari answering oddly (issue 9, points 4–7) and the payment flow abused for OTP texts (issue 10,
point 5), through the whole conversation and the `flows payments` commands: what the payer reads, what
the operator sees, and that no money is credited on an answer we cannot believe.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from channels.metrics import Metrics, database_gauges
from storage import payments
from storage.migrations import upgrade

from payment_kit import PHONE, REF, Shop, flows

BEING_CONFIRMED = "We are confirming your payment with O'mari"
OTHER_AMOUNT = "O'mari reports 5.00 USD paid; the payment is 50.00 USD"


@pytest.fixture
def shop(db):
    return Shop()


def metrics() -> str:
    m = Metrics()
    m.gauges_from(database_gauges)
    return m.render()


# ── 9.5 / 9.6: /request unreadable after paying, /query believed only when understood ────────────────


def test_html_at_request_after_paying_is_settled_by_the_query_at_once(shop):
    shop.pay_until_otp()
    shop.sandbox.inject("request", "html_after")
    reply = shop.say(shop.sandbox.last_otp(PHONE))
    assert "Payment successful" in reply and "New balance: $250.00" in reply
    assert shop.statuses() == ["INITIATED", "OTP_SENT", "PENDING", "SUCCESS"] and shop.paid() == Decimal("50.00")


def test_another_amount_credits_nothing_and_waits_for_a_person(shop):
    shop.pay_until_otp()
    shop.sandbox.inject("request", "html_after")
    shop.sandbox.inject("query", "other_amount")
    assert BEING_CONFIRMED in shop.say(shop.sandbox.last_otp(PHONE))
    row = shop.transaction()
    assert row.status == "PENDING" and row.review_reason == OTHER_AMOUNT and shop.paid() == Decimal("0.00")
    assert "convoflow_payments_needing_person 1" in metrics()


def test_reconcile_reports_who_needs_a_person_and_exits_1_then_settles_when_understood(url):  # noqa: F811
    shop = Shop()
    shop.pay_until_otp()
    shop.lose_the_otp_answer("html_after")
    reference = shop.transaction().reference
    with shop.sandbox.serve("127.0.0.1", 0) as base_url:
        env = {"OMARI_API_BASE_URL": base_url, "OMARI_MERCHANT_KEY": shop.sandbox.merchant_key}
        shop.sandbox.inject("query", "unknown_status")
        text = flows(url, "payments", "reconcile", **env)
        shop.sandbox.inject("query", "unknown_status")
        as_json = flows(url, "payments", "reconcile", "--json", **env)
        listed = flows(url, "payments", "list")
        only_marked = json.loads(flows(url, "payments", "list", "--needs-person", "--json").stdout)
        settled = flows(url, "payments", "reconcile", **env)
    reason = "O'mari reports the status 'Processing', which is not one we know"
    assert text.exit_code == 1
    assert f"needs a person: {reference}  PENDING (unchanged)" in text.stdout and reason in text.stdout
    assert "1 checked: 0 settled (0 paid, 0 failed, 0 expired), 0 still pending, 1 need a person" in text.stdout
    assert "1 payment(s) need a person" in text.stderr and shop.sandbox.merchant_key not in text.output

    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert report["summary"]["needs_person"] == 1 and report["settlements"][0]["needs_person"] == reason
    assert f"NEEDS A PERSON: {reason}" in listed.stdout
    assert [(p["reference"], p["needs_person"]) for p in only_marked] == [(reference, reason)]

    assert settled.exit_code == 0, settled.output  # O'mari now answers "Success" with our amount
    assert f"settled:        {reference}  PENDING → SUCCESS" in settled.stdout
    assert shop.paid() == Decimal("50.00") and shop.transaction().review_reason is None
    assert flows(url, "payments", "list", "--needs-person").stdout.strip() == "no payments marked as needing a person"


def test_reconcile_json_sorts_settled_and_still_pending(url):  # noqa: F811
    from storage.db import utcnow

    shop = Shop()
    shop.clock.now = utcnow()  # the command reads the real clock: the OTP of the second payment is still young
    shop.pay_until_otp(amount="10")
    shop.lose_the_otp_answer()
    shop.pay_until_otp(amount="20")
    shop.sandbox.inject("request", "html_after")
    shop.say("999999")  # a wrong code behind an unreadable answer: O'mari still waits for the right one
    with shop.sandbox.serve("127.0.0.1", 0) as base_url:
        env = {"OMARI_API_BASE_URL": base_url, "OMARI_MERCHANT_KEY": shop.sandbox.merchant_key}
        result = flows(url, "payments", "reconcile", "--json", **env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [(s["kind"], s["after"]) for s in report["settlements"]] == [("settled", "SUCCESS"), ("pending", "PENDING")]
    assert report["summary"] == {
        "checked": 2,
        "settled": 1,
        "paid": 1,
        "failed": 0,
        "expired": 0,
        "still_pending": 1,
        "needs_person": 0,
    }


# ── 10.5: payment starts limited per contact and per wallet; every wrong OTP counted ──────────────────


def start_and_cancel(shop, contact: str = PHONE) -> str:
    for text in ("pay", REF, "5", "1"):
        shop.say(text, contact=contact)
    reply = shop.say(PHONE, contact=contact)
    if "Please enter the code" in reply:
        shop.say("cancel", contact=contact)
    return reply


def test_a_contact_may_start_three_payments_per_15_minutes(shop):
    for _ in range(3):
        assert "Please enter the code" in start_and_cancel(shop)
        shop.clock.advance(minutes=1)
    refused = start_and_cancel(shop)
    assert refused == (
        "⏳ You have started 3 payments in the last 15 minutes. To keep wallets safe from unwanted "
        "codes, please wait 12 minutes before starting another payment. Nothing was charged."
    )
    assert shop.sandbox.calls.count("auth") == 3 and len(shop.transactions()) == 3
    assert 'convoflow_payment_starts_limited{limit="contact"} 1' in metrics()
    assert 'convoflow_payment_starts_limited{limit="wallet"} 0' in metrics()

    shop.clock.advance(minutes=12)  # the first start leaves the window
    assert "Please enter the code" in start_and_cancel(shop)


def test_a_wallet_number_may_be_texted_five_codes_per_15_minutes_whoever_asks(shop):
    contacts = [f"26371000000{i}" for i in range(6)]
    for contact in contacts[:5]:
        assert "Please enter the code" in start_and_cancel(shop, contact)
    refused = start_and_cancel(shop, contacts[5])
    assert "The wallet number 2637****4567 has been sent 5 codes in the last 15 minutes." in refused
    assert "please wait 15 minutes" in refused and PHONE not in refused
    assert shop.sandbox.calls.count("auth") == 5
    assert 'convoflow_payment_starts_limited{limit="wallet"} 1' in metrics()


def test_the_limits_are_settings(shop):
    from dataclasses import replace

    shop.ctx.services["settings"] = replace(
        shop.settings, payment_starts_per_contact=1, payment_starts_window_minutes=60
    )
    assert "Please enter the code" in start_and_cancel(shop)
    shop.clock.advance(minutes=30)
    assert "please wait 30 minutes" in start_and_cancel(shop)


def test_every_wrong_otp_is_counted_the_third_too(shop):
    shop.pay_until_otp()
    for code in ("111111", "222222", "333333"):
        reply = shop.say(code)
    assert "did not go through" in reply and "Too many wrong codes" in reply
    assert shop.transaction().otp_attempts == 3
    assert "convoflow_payment_wrong_otps 3" in metrics()


# ── the migration ───────────────────────────────────────────────────────────────────────────────────


def test_migration_0006_adds_the_mark_to_an_existing_database(blank_db):
    upgrade(blank_db)
    for index in ("payment_transaction_contact_key_created_at", "payment_transaction_msisdn_created_at", "event_kind"):
        blank_db.execute_sql(f'DROP INDEX "{index}"')
    for column in ("review_reason", "review_at"):
        blank_db.execute_sql(f'ALTER TABLE payment_transaction DROP COLUMN "{column}"')
    blank_db.execute_sql("DELETE FROM schema_migrations WHERE name = '0006_payment_review_and_limits'")
    assert upgrade(blank_db) == ["0006_payment_review_and_limits"]
    assert {"review_reason", "review_at"} <= {c.name for c in blank_db.get_columns("payment_transaction")}
    assert "event_kind" in {ix.name for ix in blank_db.get_indexes("event")}
    assert payments.needs_person() == []
