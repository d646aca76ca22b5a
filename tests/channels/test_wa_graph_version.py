"""The Graph API version (issue 9.3): a current one by default, and moving to the next is one setting."""

from __future__ import annotations

import re
from datetime import datetime

from channels.sender import Sender
from engine.messages import Outbound
from storage import outbox
from storage.contacts import upsert_contact
from storage.settings import Settings

import whatsapp_fakes as wa


def test_the_default_is_a_version_meta_serves_past_2027():
    version = re.fullmatch(r"https://graph\.facebook\.com/v(\d+)\.0", Settings().whatsapp_api_url)
    assert version and int(version.group(1)) >= 25  # v21.0 stops in January 2027; v25.0 runs to July 2028


def test_the_next_version_is_one_setting(db, settings, graph):
    moved = Settings(**{**settings.__dict__, "whatsapp_api_url": graph.url.replace("/v21.0", "/v26.0")})
    contact_id = upsert_contact("263771234567", datetime(2026, 1, 1), wa_id="263771234567")
    outbox.enqueue(contact_id, [Outbound(to="263771234567", text="Hello").as_dict()], datetime(2026, 1, 1))
    sender = Sender(moved)
    try:
        assert sender.run_once() == 1
    finally:
        sender.close()
    assert [s.path for s in graph.sent] == [f"/v26.0/{wa.PHONE_NUMBER_ID}/messages"]
