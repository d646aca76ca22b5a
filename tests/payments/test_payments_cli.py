"""`flows payments list|show|reconcile` and `flows demo`, run as the operator runs them (click's runner,
DATABASE_URL in the environment), on payments made through real conversations.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from storage.bookings import find_booking

from payment_kit import PHONE, REF, Shop, flows

ISSUE_FIELDS = {
    "reference",
    "booking",
    "msisdn",
    "amount",
    "currency",
    "wallet",
    "channel",
    "status",
    "otp_reference",
    "payment_reference",
    "debit_reference",
    "response_code",
    "error_message",
    "created_at",
    "updated_at",
}


@pytest.fixture
def two_payments(url):
    shop = Shop()
    shop.pay_until_otp(amount="50")
    shop.say(shop.sandbox.last_otp(PHONE))
    shop.pay_until_otp(amount="20")
    shop.say("cancel")
    return shop


def test_list_json_holds_the_issue_fields_with_amounts_as_strings(url, two_payments):
    result = flows(url, "payments", "list", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["status"], r["amount"]) for r in rows] == [("CANCELLED", "20.00"), ("SUCCESS", "50.00")]
    for row in rows:
        assert ISSUE_FIELDS <= set(row)
        assert row["booking"] == REF and row["msisdn"] == PHONE and row["currency"] == "USD"


def test_list_filters_by_status(url, two_payments):
    rows = json.loads(flows(url, "payments", "list", "--status", "success", "--json").stdout)
    assert [r["status"] for r in rows] == ["SUCCESS"]
    text = flows(url, "payments", "list", "--status", "CANCELLED").stdout
    assert "CANCELLED" in text and "20.00 USD" in text and "SUCCESS" not in text
    assert flows(url, "payments", "list", "--status", "PENDING").stdout.strip() == "no payments with status PENDING"


def test_show_one_payment(url, two_payments):
    paid = two_payments.transactions()[0]
    shown = json.loads(flows(url, "payments", "show", paid.reference.upper(), "--json").stdout)
    assert shown["reference"] == paid.reference and shown["amount"] == "50.00"
    assert shown["payment_reference"] == paid.payment_reference
    assert [h["status"] for h in shown["status_history"]] == ["INITIATED", "OTP_SENT", "SUCCESS"]
    text = flows(url, "payments", "show", paid.reference).stdout
    assert f"payment_reference: {paid.payment_reference}" in text and "OTP_SENT" in text


def test_show_an_unknown_payment_exits_1(url, two_payments):
    result = flows(url, "payments", "show", "no-such-payment")
    assert result.exit_code == 1
    assert "no payment with reference 'no-such-payment'" in result.stderr


def test_reconcile_settles_a_pending_payment_over_http(url):
    shop = Shop()
    shop.pay_until_otp(amount="50")
    shop.lose_the_otp_answer()
    with shop.sandbox.serve("127.0.0.1", 0) as base_url:
        env = {"OMARI_API_BASE_URL": base_url, "OMARI_MERCHANT_KEY": shop.sandbox.merchant_key}
        first = flows(url, "payments", "reconcile", **env)
        again = flows(url, "payments", "reconcile", **env)
    assert first.exit_code == 0, first.output
    assert "PENDING → SUCCESS" in first.stdout and "customer told" in first.stdout
    assert "settled:" in first.stdout
    assert "1 checked: 1 settled (1 paid, 0 failed, 0 expired), 0 still pending, 0 need a person" in first.stdout
    assert (
        again.stdout.strip() == "0 checked: 0 settled (0 paid, 0 failed, 0 expired), 0 still pending, 0 need a person"
    )
    assert Decimal(find_booking(REF).paid_minor) / 100 == Decimal("50.00")
    assert shop.sandbox.merchant_key not in first.output


def test_reconcile_without_the_api_configured_exits_1(url):
    Shop()
    result = flows(url, "payments", "reconcile")
    assert result.exit_code == 1 and "OMARI_API_BASE_URL is not set" in result.stderr


def demo(tmp_path, *args, input: str):
    """`flows demo` in its own store (tmp_path/demo.db) beside a live database (tmp_path/live.db)."""
    return flows(f"sqlite:///{tmp_path / 'live.db'}", "demo", "--store", str(tmp_path / "demo.db"), *args, input=input)


def test_demo_pays_the_demo_booking_from_a_script(tmp_path):
    script = "pay\nBK-SLYKER-TECH-20251023\n50\n1\n263771234567\n123456\n"
    result = demo(tmp_path, "--otp", "123456", input=script)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "balance due $300.00" in out
    assert "[O'mari sandbox SMS to 2637****4567] Your O'mari OTP is 123456" in out
    assert "Payment successful" in out and "New balance: $250.00" in out

    again = demo(tmp_path, input="")
    assert again.exit_code == 0 and "balance due $250.00" in again.stdout  # same booking, not a second one


def test_demo_closes_a_payment_left_waiting_for_its_code_so_pay_starts_afresh(tmp_path):
    left = demo(tmp_path, input="pay\nBK-SLYKER-TECH-20251023\n50\n1\n263771234567\n")
    assert left.exit_code == 0 and "Please enter the code" in left.stdout

    script = "pay\nBK-SLYKER-TECH-20251023\n50\n1\n263771234567\n123456\n"
    again = demo(tmp_path, "--otp", "123456", input=script)
    assert again.exit_code == 0, again.output
    assert "The conversation you left open last time has been closed." in again.stdout
    assert "Payment successful" in again.stdout and "New balance: $250.00" in again.stdout
    statuses = flows(f"sqlite:///{tmp_path / 'demo.db'}", "payments", "list", "--json")
    assert sorted(p["status"] for p in json.loads(statuses.stdout)) == ["EXPIRED", "SUCCESS"]


def test_demo_never_writes_to_the_live_database(tmp_path):
    """An operator trying the demo on a deployed machine: DATABASE_URL's flows, bookings and payments are
    left as they were (the shipped flows are not published over the live ones, no sandbox payment is
    recorded there); the demo says where it keeps its own, and refuses the live file as its store."""
    live = f"sqlite:///{tmp_path / 'live.db'}"
    assert flows(live, "db", "upgrade").exit_code == 0
    script = "pay\nBK-SLYKER-TECH-20251023\n50\n1\n263771234567\n123456\n"
    result = demo(tmp_path, "--otp", "123456", input=script)
    assert result.exit_code == 0 and "Payment successful" in result.stdout
    assert f"store     {tmp_path / 'demo.db'} (its own SQLite file, never DATABASE_URL)" in result.stdout
    assert json.loads(flows(live, "list", "--json").stdout) == []
    assert json.loads(flows(live, "payments", "list", "--json").stdout) == []
    booked = flows(live, "bookings", "list")
    assert booked.exit_code == 0 and "BK-SLYKER-TECH-20251023" not in booked.stdout

    refused = flows(live, "demo", "--store", str(tmp_path / "live.db"), input="")
    assert refused.exit_code == 2
    assert "is the live database (DATABASE_URL): give the demo a file of its own" in refused.stderr


def test_demo_refuses_a_code_that_is_not_digits(tmp_path):
    result = flows(f"sqlite:///{tmp_path / 'demo.db'}", "demo", "--otp", "12ab", input="")
    assert result.exit_code == 2 and "4 to 8 digits" in result.stderr
