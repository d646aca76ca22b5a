from storage.models import Booking
from datetime import datetime


def test_a_booking_round_trips(db):
    now = datetime(2026, 1, 1)
    Booking.create(
        reference="BK-1",
        reference_key="BK-1",
        customer="A",
        tour="T",
        total_minor=30000,
        created_at=now,
        updated_at=now,
    )
    assert Booking.get(Booking.reference_key == "BK-1").total_minor == 30000
