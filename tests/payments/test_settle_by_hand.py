"""`flows payments settle`: a person settles a payment that needs one (or any unfinished one) after
checking with the provider — the booking credited once, the mark cleared, the customer told, and who and
why kept in the audit log.
"""

from __future__ import annotations

from decimal import Decimal

from storage import events

from payment_kit import PHONE, REF, Shop, flows

UNKNOWN_WORD = "O'mari reports the status 'Processing', which is not one we know"


def marked_payment(url) -> Shop:
    """A payment left PENDING and marked as needing a person (O'mari answers a status word we do not know)."""
    shop = Shop()
    shop.pay_until_otp()
    shop.lose_the_otp_answer("html_after")
    with shop.sandbox.serve("127.0.0.1", 0) as base_url:
        shop.sandbox.inject("query", "unknown_status")
        env = {"OMARI_API_BASE_URL": base_url, "OMARI_MERCHANT_KEY": shop.sandbox.merchant_key}
        assert flows(url, "payments", "reconcile", **env).exit_code == 1
    assert shop.transaction().review_reason == UNKNOWN_WORD
    return shop


def test_settled_as_paid_credits_the_booking_once_clears_the_mark_and_tells_the_customer(url):
    shop = marked_payment(url)
    reference = shop.transaction().reference
    result = flows(
        url, "payments", "settle", reference, "--paid", "--why", "O'mari ticket 4411", "--by", "rudo", "--yes"
    )
    assert result.exit_code == 0, result.output
    assert (
        f"settled by hand: {reference}  PENDING → SUCCESS  settled by hand by rudo: O'mari ticket 4411" in result.stdout
    )
    assert "customer told" in result.stdout
    row = shop.transaction()
    assert row.status == "SUCCESS" and row.review_reason is None and shop.paid() == Decimal("50.00")
    assert "has gone through" in shop.outbox_texts(PHONE)[-1]
    audit = [e for e in events.for_subject(reference) if e.kind == "payment.settled_by_hand"]
    assert [e.detail for e in audit] == [
        {"from": "PENDING", "to": "SUCCESS", "by": "rudo", "why": "O'mari ticket 4411"}
    ]

    again = flows(url, "payments", "settle", reference, "--paid", "--why", "twice", "--yes")
    assert again.exit_code == 1 and "is already SUCCESS: nothing to settle" in again.stderr
    assert shop.paid() == Decimal("50.00")
    assert flows(url, "payments", "list", "--needs-person").stdout.strip() == "no payments marked as needing a person"


def test_settled_as_failed_credits_nothing_and_may_leave_the_customer_alone(url):
    shop = marked_payment(url)
    reference = shop.transaction().reference
    before = shop.outbox_texts(PHONE)
    result = flows(url, "payments", "settle", reference, "--failed", "--why", "reversed", "--no-tell", "--yes")
    assert result.exit_code == 0, result.output
    row = shop.transaction()
    assert row.status == "FAILED" and row.review_reason is None and shop.paid() == Decimal("0.00")
    assert "settled by hand" in row.error_message and shop.outbox_texts(PHONE) == before


def test_it_asks_first_and_a_no_changes_nothing(url):
    shop = marked_payment(url)
    reference = shop.transaction().reference
    result = flows(url, "payments", "settle", reference, "--paid", "--why", "x", input="n\n")
    assert result.exit_code == 1 and "Settle it as paid and credit 50.00 USD to booking" in result.output
    assert shop.transaction().status == "PENDING" and shop.paid() == Decimal("0.00")


def test_it_needs_an_outcome_and_a_known_payment(url):
    Shop()
    assert "--paid or --failed" in flows(url, "payments", "settle", "abc", "--why", "x").stderr
    unknown = flows(url, "payments", "settle", "no-such", "--paid", "--why", "x", "--yes")
    assert unknown.exit_code == 1 and "no payment with reference 'no-such'" in unknown.stderr


def test_a_paynow_payment_whose_start_answer_was_lost_is_settled_by_hand_once(url):
    """Paynow's signed answer to the start never arrived, so there is no poll URL to ask and reconcile
    leaves the payment to a person (docs/operations.md, Paynow): found paid in the Paynow dashboard, it is
    settled with the same command as an O'mari one, the booking credited once."""
    shop = Shop()
    shop.paynow.inject("remotetransaction", "timeout_after")
    shop.say("menu")
    for text in ("4", REF, "50", "1"):
        shop.say(text)
    assert "We are confirming your payment with Paynow" in shop.say(PHONE)
    row = shop.transaction()
    assert (row.provider, row.status, row.poll_url) == ("paynow", "PENDING", None)
    assert "look the payment up by its reference in the Paynow dashboard" in row.review_reason

    result = flows(url, "payments", "settle", row.reference, "--paid", "--why", "Paynow dashboard: paid", "--yes")
    assert result.exit_code == 0, result.output
    row = shop.transaction()
    assert row.status == "SUCCESS" and row.review_reason is None and shop.paid() == Decimal("50.00")
    again = flows(url, "payments", "settle", row.reference, "--paid", "--why", "twice", "--yes")
    assert again.exit_code == 1 and shop.paid() == Decimal("50.00")
