"""Payment providers behind one interface (issue 12.4): the provider column and its migration, the
registry, and the services and reconcile wired from it for whatever providers are configured.
"""

from __future__ import annotations

import pytest

from actions.providers import Provider, ProviderRegistry, providers
from channels.worker import build_services
from storage import payments
from storage.bookings import add_booking
from storage.db import utcnow
from storage.migrations import upgrade
from storage.settings import Settings


def test_migration_0011_makes_every_existing_payment_an_omari_one(blank_db):
    upgrade(blank_db)
    booking = add_booking("BK-OLD-1", "Tendai Moyo", "Hwange day trip", "100.00")
    for column in ("provider", "poll_url"):
        blank_db.execute_sql(f'ALTER TABLE payment_transaction DROP COLUMN "{column}"')
    blank_db.execute_sql("DELETE FROM schema_migrations WHERE name = '0011_payment_provider'")
    now = utcnow()
    blank_db.execute_sql(  # a row as the release before 0011 wrote it
        "INSERT INTO payment_transaction (reference, booking_id, msisdn, amount_minor, currency, wallet, channel,"
        " status, otp_attempts, idempotency_key, status_history, created_at, updated_at)"
        " VALUES ('ref-old', ?, '263771234567', 350, 'USD', 'ecocash', 'WEB', 'PENDING', 0, 'key-old', '[]', ?, ?)".replace(
            "?", "%s" if blank_db.param == "%s" else "?"
        ),
        (booking.id, now, now),
    )
    assert upgrade(blank_db) == ["0011_payment_provider"]
    row = payments.get("ref-old")
    assert (row.provider, row.poll_url) == ("omari", None)
    assert payments.as_dict(row)["provider"] == "omari"


def test_the_registry_refuses_a_name_twice():
    registry = ProviderRegistry()

    class Gateway(Provider):
        name, title = "gateway", "Gateway"

    registry.register(Gateway)
    with pytest.raises(ValueError, match="'gateway' is registered twice"):
        registry.register(Gateway)
    assert registry.names() == ["gateway"]


def test_services_hold_a_client_for_each_provider_configured():
    assert set(build_services(Settings(), sandbox=True)) == {"omari", "paynow", "settings"}
    configured = Settings(omari_api_base_url="https://omari.invalid", omari_merchant_key="k")
    assert set(build_services(configured, sandbox=False)) == {"omari", "settings"}
    both = Settings(
        omari_api_base_url="https://omari.invalid",
        omari_merchant_key="k",
        paynow_integration_id="1201",
        paynow_integration_key="key",
        paynow_auth_email="merchant@example.com",
    )
    assert set(build_services(both, sandbox=False)) == {"omari", "paynow", "settings"}
    _, missing = providers.clients(Settings())
    assert missing == {"omari": "OMARI_API_BASE_URL is not set", "paynow": "PAYNOW_INTEGRATION_ID is not set"}
