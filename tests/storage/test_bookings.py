"""Bookings: add, find ignoring case and space, list, show as JSON, import CSV all or nothing."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from storage.bookings import (
    BookingError,
    BookingExists,
    BookingImportError,
    add_booking,
    as_dict,
    find_booking,
    import_csv,
    list_bookings,
)
from storage.models import Booking

NOW = datetime(2026, 3, 1, 9, 0)


def test_added_booking_is_found_ignoring_case_and_surrounding_space(db):
    add_booking("BK-SLYKER-TECH-20251023", "Tendai Moyo", "Victoria Falls", "300", now=NOW)
    booking = find_booking("  bk-slyker-tech-20251023 ")
    assert booking is not None and booking.reference == "BK-SLYKER-TECH-20251023"
    assert as_dict(booking) == {
        "reference": "BK-SLYKER-TECH-20251023",
        "customer": "Tendai Moyo",
        "tour": "Victoria Falls",
        "currency": "USD",
        "total_amount": "300.00",
        "amount_paid": "0.00",
        "balance_due": "300.00",
        "payment_status": "UNPAID",
    }
    assert find_booking("BK-OTHER") is None
    assert find_booking("   ") is None


@pytest.mark.parametrize(
    "paid,status,balance", [("0", "UNPAID", "300.00"), ("100.50", "PARTIAL", "199.50"), ("300", "PAID", "0.00")]
)
def test_payment_status_follows_paid_against_total(db, paid, status, balance):
    booking = add_booking("BK-1", "A", "T", Decimal("300"), paid=paid, currency="zwg", now=NOW)
    shown = as_dict(find_booking("bk-1"))
    assert (shown["payment_status"], shown["balance_due"], shown["currency"]) == (status, balance, "ZWG")
    assert booking.paid_minor == int(Decimal(paid) * 100)


def test_a_reference_is_unique_ignoring_case(db):
    add_booking("BK-1", "A", "T", "300", now=NOW)
    with pytest.raises(BookingExists, match="'bk-1 ' already exists|'bk-1' already exists"):
        add_booking("bk-1 ", "B", "T", "100", now=NOW)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"total": "0"}, "total must be more than 0"),
        ({"total": "50.123"}, "not an amount"),
        ({"total": "-5"}, "not an amount"),
        ({"paid": "400"}, "paid 400.00 is more than the total 300.00"),
        ({"currency": "EUR"}, "currency 'EUR' is not one of USD, ZWG"),
        ({"reference": "BK 1"}, "without spaces"),
        ({"customer": " "}, "customer is empty"),
    ],
)
def test_bad_fields_are_refused_with_the_field_named(db, kwargs, message):
    fields = {"reference": "BK-1", "customer": "A", "tour": "T", "total": "300", **kwargs}
    with pytest.raises(BookingError, match=message):
        add_booking(**fields, now=NOW)
    assert Booking.select().count() == 0


def test_list_streams_bookings_in_reference_order(db):
    for ref in ("BK-3", "bk-1", "BK-2"):
        add_booking(ref, "A", "T", "10", now=NOW)
    assert [b.reference for b in list_bookings()] == ["bk-1", "BK-2", "BK-3"]
    add_booking("BK-4", "A", "T", "10", paid="10", now=NOW)
    assert [b.reference for b in list_bookings(status="PAID")] == ["BK-4"]


def test_csv_import_stores_every_row_with_computed_status(db):
    count = import_csv(
        "reference,customer,tour,total,paid,currency\n"
        "BK-1,Tendai Moyo,Victoria Falls,300,0,USD\n"
        'BK-2,"Moyo, Rudo",Hwange,"1,250.50",250.50,ZWG\n'
        "\n"
        "BK-3,Farai,Mana Pools,100,100,\n",
        now=NOW,
    )
    assert count == 3
    assert [as_dict(b)["payment_status"] for b in list_bookings()] == ["UNPAID", "PARTIAL", "PAID"]
    assert as_dict(find_booking("bk-2"))["balance_due"] == "1000.00"
    assert find_booking("BK-3").currency == "USD"


def test_csv_import_with_bad_rows_reports_each_by_line_and_imports_nothing(db):
    add_booking("BK-OLD", "A", "T", "10", now=NOW)
    text = (
        "reference,customer,tour,total,paid,currency\n"
        "BK-1,Tendai,Falls,300,0,USD\n"
        "BK-2,Rudo,Hwange,abc,0,USD\n"
        "bk-1,Farai,Mana,100,0,USD\n"
        "BK-OLD,Farai,Mana,100,0,USD\n"
        "BK-5,Farai,Mana,100,200,USD\n"
        "BK-6,Farai\n"
    )
    with pytest.raises(BookingImportError) as caught:
        import_csv(text, now=NOW)
    assert [str(p) for p in caught.value.problems] == [
        "line 3: 'abc' is not an amount like 300 or 300.00 (at most two decimals, not negative)",
        "line 4: reference 'bk-1' is also on line 2",
        "line 5: booking 'BK-OLD' already exists",
        "line 6: paid 200.00 is more than the total 100.00",
        "line 7: expected 6 fields, found 2",
    ]
    assert [b.reference for b in list_bookings()] == ["BK-OLD"]


@pytest.mark.parametrize(
    "text,message",
    [
        ("", "the file is empty"),
        ("ref,customer,tour,total\nBK-1,A,T,1\n", "unknown column(s) ref; missing column(s) reference"),
    ],
)
def test_csv_import_with_a_bad_header_says_what_it_expected(db, text, message):
    with pytest.raises(BookingImportError) as caught:
        import_csv(text, now=NOW)
    assert message in str(caught.value)
    assert "line 1:" in str(caught.value)
