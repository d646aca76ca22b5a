"""Cases for "booking.lookup" and "booking.apply_payment", on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from decimal import Decimal

import pytest

import actions
from engine.registry import ActionContext, registry
from storage import payments
from storage.bookings import add_booking, find_booking
from storage.money import from_minor

actions.load_all()
NOW = datetime(2026, 11, 26, 9, 0, 0)
REF = "BK-SLYKER-TECH-20251023"


def call(name: str, params: dict, key: str = "263771234567:wamid.1:step:1"):
    spec = registry.get(name)
    assert spec.check_params(params) == []
    ctx = ActionContext(
        clock=lambda: NOW,
        new_id=lambda: "id",
        idempotency_key=key,
        contact="263771234567",
        log=logging.getLogger("test.booking"),
        services={},
    )
    return spec.handler(ctx, params)


@pytest.fixture
def booking(db):
    return add_booking(REF, "Tendai Moyo", "Victoria Falls 3-day safari", "300.00", "20.50")


@pytest.mark.parametrize("typed", [REF, "bk-slyker-tech-20251023", "  Bk-Slyker-Tech-20251023 \n"])
def test_lookup_finds_a_booking_ignoring_case_and_space(booking, typed):
    result = call("booking.lookup", {"reference": typed})
    assert result.outcome == "found"
    assert result.data == {
        "reference": REF,
        "customer": "Tendai Moyo",
        "tour": "Victoria Falls 3-day safari",
        "currency": "USD",
        "total": "300.00",
        "total_amount": "300.00",
        "amount_paid": "20.50",
        "balance_due": "279.50",
        "payment_status": "PARTIAL",
    }


@pytest.mark.parametrize("typed", ["INVALID123", "", "   ", "BK-SLYKER-TECH-2025102", "{{ 7*7 }}"])
def test_lookup_of_an_unknown_reference_is_not_found(booking, typed):
    result = call("booking.lookup", {"reference": typed})
    assert result.outcome == "not_found" and result.data == {"reference": typed.strip()}


def test_lookup_of_a_booking_paid_in_full(db):
    add_booking("BK-DONE", "A", "B", "100.00", "100.00")
    result = call("booking.lookup", {"reference": "bk-done"})
    assert result.outcome == "paid_in_full" and result.data["balance_due"] == "0.00"


def _succeeded_payment(booking, amount="50.00", key="k1"):
    """A transaction O'mari said SUCCESS to, recorded without applying it (as an older tool might)."""
    row, _ = payments.create(
        booking,
        reference=f"00000000-0000-4000-8000-00000000000{key[-1]}",
        idempotency_key=key,
        msisdn="263771234567",
        amount=Decimal(amount),
        wallet="ecocash",
        channel="WEB",
        contact_key=None,
        now=NOW,
    )
    payments.transition(row.reference, payments.SUCCESS, from_statuses=[payments.INITIATED], now=NOW)
    return row.reference


def test_apply_payment_adds_the_amount_once(booking):
    reference = _succeeded_payment(booking)
    first = call("booking.apply_payment", {"reference": reference})
    assert first.outcome == "applied"
    assert (first.data["amount_paid"], first.data["balance_due"], first.data["payment_status"]) == (
        "70.50",
        "229.50",
        "PARTIAL",
    )
    second = call("booking.apply_payment", {"reference": reference.upper()})
    assert second.outcome == "already_applied" and second.data["amount_paid"] == "70.50"
    assert from_minor(find_booking(REF).paid_minor) == Decimal("70.50")


def test_apply_payment_that_fills_the_balance_marks_the_booking_paid(booking):
    reference = _succeeded_payment(booking, amount="279.50")
    assert call("booking.apply_payment", {"reference": reference}).data["payment_status"] == "PAID"
    assert find_booking(REF).payment_status == "PAID"


def test_apply_payment_of_an_unknown_transaction(booking):
    assert call("booking.apply_payment", {"reference": "nope"}).outcome == "not_found"


def test_apply_payment_refuses_a_transaction_that_did_not_succeed(booking):
    row, _ = payments.create(
        booking,
        reference="00000000-0000-4000-8000-000000000009",
        idempotency_key="k9",
        msisdn="263771234567",
        amount=Decimal("5"),
        wallet="ecocash",
        channel="WEB",
        contact_key=None,
        now=NOW,
    )
    result = call("booking.apply_payment", {"reference": row.reference})
    assert result.outcome == "not_paid" and result.data["status"] == "INITIATED"
    assert find_booking(REF).paid_minor == 2050


def test_apply_payment_from_many_threads_applies_once(booking):
    reference = _succeeded_payment(booking)
    outcomes, errors = [], []
    start = threading.Barrier(6, timeout=10)

    def apply():
        try:
            start.wait()
            outcomes.append(call("booking.apply_payment", {"reference": reference}).outcome)
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=apply) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert sorted(outcomes) == ["already_applied"] * 5 + ["applied"]
    assert from_minor(find_booking(REF).paid_minor) == Decimal("70.50")
