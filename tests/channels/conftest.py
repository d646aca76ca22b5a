"""Fixtures for the WhatsApp channel tests: settings, the Graph API stand-in, the webhook server, and the payment
conversation's channel (`channel`, on the O'mari sandbox `sandbox`; a module may override either)."""

from __future__ import annotations

import os

import pytest
import requests

from actions.omari_sandbox import OmariSandbox
from storage.bookings import add_booking
from storage.settings import Settings

import whatsapp_fakes as wa
from channel_harness import REF, REPO, Channel, store_flows


@pytest.fixture
def graph():
    stand_in = wa.GraphStandIn()
    yield stand_in
    stand_in.close()


@pytest.fixture
def settings(graph) -> Settings:
    return Settings(
        whatsapp_access_token=wa.ACCESS_TOKEN,
        whatsapp_phone_number_id=wa.PHONE_NUMBER_ID,
        whatsapp_app_secret=wa.SECRET,
        whatsapp_verify_token=wa.VERIFY_TOKEN,
        whatsapp_api_url=graph.url,
    )


@pytest.fixture
def webhook(db, settings):
    """The webhook app (no workers) served by waitress on a free loopback port; yields its base URL."""
    from channels.whatsapp import create_app

    server = wa.ServerThread(create_app(settings))
    yield server.url
    server.close()


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


@pytest.fixture
def sandbox():
    return OmariSandbox()


@pytest.fixture
def channel(db, settings, sandbox):
    """The payment conversation's channel: the shipped menu and O'mari flows, Tendai's booking, the sandbox."""
    store_flows(os.path.join(REPO, "flows", "main_menu.yaml"), os.path.join(REPO, "flows", "omari_payment.yaml"))
    add_booking(REF, "Tendai Moyo", "Victoria Falls 3 days", "300.00")
    ch = Channel(settings, services={"omari": sandbox.client(), "settings": settings})
    ch.start()
    yield ch
    ch.close()
