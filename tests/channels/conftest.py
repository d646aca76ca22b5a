"""Fixtures for the WhatsApp channel tests: settings, the Graph API stand-in and the webhook server."""
from __future__ import annotations

import pytest
import requests

from storage.settings import Settings

import whatsapp_fakes as wa


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
