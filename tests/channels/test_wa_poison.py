"""Poison deliveries and replays (issue 10, points 2 and 7), posted signed through the real webhook app on
SQLite and PostgreSQL: odd text is stored cleaned, a body that can never be stored is answered 200 and
kept as a dead letter, the messages next to it are kept, and old messages are refused and counted.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timedelta, timezone

import pytest

from channels.metrics import Metrics
from channels.whatsapp import create_app
from storage import deadletters
from storage.db import is_postgres
from storage.models import Contact, InboxMessage
from storage.settings import Settings

import whatsapp_fakes as wa

TENDAI, RUDO = "263771234567", "263772222222"


@pytest.fixture
def app(db, settings):
    """The webhook on waitress with its metrics; yields (url, metrics)."""
    metrics = Metrics()
    server = wa.ServerThread(create_app(settings, metrics=metrics))
    yield server.url, metrics
    server.close()


def post(http, url: str, doc: dict | None = None, raw: bytes | None = None):
    # json.dumps escapes a lone surrogate as \ud800 and NUL as \u0000: valid JSON, as Meta would send it.
    body = raw if raw is not None else json.dumps(doc).encode()
    return http.post(
        url + "/webhook",
        data=body,
        timeout=10,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": wa.sign(body)},
    )


def stored() -> dict[str, dict]:
    return {row.channel_message_id: json.loads(row.payload) for row in InboxMessage.select()}


def test_lone_surrogates_and_nul_are_stored_cleaned_with_the_messages_next_to_them(app, http, caplog):
    url, metrics = app
    odd = wa.text("26377\ud8001234", "pay\ud800", mid="wamid.odd\ud800")
    good = wa.text(RUDO, "menu", mid="wamid.good")
    doc = wa.envelope([odd, good], [wa.contact("26377\ud8001234", "Tendai\x00\ud800"), wa.contact(RUDO, "Ru\x00do")])
    with caplog.at_level(logging.WARNING):
        r = post(http, url, doc)
    assert (r.status_code, r.text) == (200, "OK")
    rows = stored()
    assert set(rows) == {"wamid.odd\ufffd", "wamid.good"}
    assert (
        rows["wamid.odd\ufffd"]["text"] == "pay\ufffd" and rows["wamid.odd\ufffd"]["raw"]["from"] == "26377\ufffd1234"
    )
    names = {c.key: c.profile_name for c in Contact.select()}
    assert names == {"26377\ufffd1234": "Tendai\ufffd\ufffd", RUDO: "Ru\ufffddo"}
    assert deadletters.count() == 0 and metrics.messages_in.value() == 2
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("where", ["id", "from", "name"])
def test_one_odd_message_alone_is_stored_too(app, http, where):
    """The single-message delivery takes a shorter path on PostgreSQL (one statement): clean there too."""
    url, _ = app
    wa_id = TENDAI + ("\ud800" if where == "from" else "")
    item = wa.text(wa_id, "hi", mid="wamid.one" + ("\udfff" if where == "id" else ""))
    doc = wa.envelope([item], [wa.contact(wa_id, "T\x00\ud800" if where == "name" else "Tendai")])
    assert post(http, url, doc).status_code == 200
    assert InboxMessage.select().count() == 1 and deadletters.count() == 0


def test_json_nested_a_thousand_deep_is_a_dead_letter_not_a_500(app, http, caplog):
    url, metrics = app
    body = b'{"object": "whatsapp_business_account", "entry": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    with caplog.at_level(logging.WARNING):
        r = post(http, url, raw=body)
        again = post(http, url, raw=body)  # Meta delivering it twice adds no second row
    assert (r.status_code, r.text, again.status_code) == (200, "OK", 200)
    (kept,) = deadletters.recent()
    assert (kept.body, kept.item, kept.reason) == (body, None, "the body could not be read (RecursionError)")
    assert "Traceback" not in caplog.text and metrics.dead_letters.value() == 2


def _refuse_in_the_database(message_id: str) -> None:
    """Make the real database refuse one message id, as it would a value it cannot hold."""
    from storage.db import database

    if is_postgres():
        database.execute_sql(
            f'ALTER TABLE "inbox_message" ADD CONSTRAINT "refuse_one" CHECK ("channel_message_id" <> \'{message_id}\')'
        )
    else:
        database.execute_sql(
            'CREATE TRIGGER "refuse_one" BEFORE INSERT ON "inbox_message" '
            f"WHEN NEW.\"channel_message_id\" = '{message_id}' "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )


def test_a_message_the_database_refuses_is_a_dead_letter_and_its_neighbours_are_kept(app, http, caplog):
    url, metrics = app
    _refuse_in_the_database("wamid.poison")
    items = [
        wa.text(TENDAI, "pay", mid="wamid.before"),
        wa.text(TENDAI, "x", mid="wamid.poison"),
        wa.text(RUDO, "menu", mid="wamid.after"),
    ]
    doc = wa.envelope(items, [wa.contact(TENDAI), wa.contact(RUDO)], [wa.status("wamid.unknown", "read")])
    with caplog.at_level(logging.WARNING):
        r = post(http, url, doc)
        again = post(http, url, doc)  # a redelivery stores nothing twice
    assert (r.status_code, again.status_code) == (200, 200)
    assert set(stored()) == {"wamid.before", "wamid.after"}
    (kept,) = deadletters.recent()
    assert kept.item == "wamid.poison" and kept.body == json.dumps(doc).encode()
    assert kept.reason.startswith("the database refused it (IntegrityError")
    assert metrics.messages_in.value() == 2 and metrics.duplicates.value() == 2 and metrics.dead_letters.value() == 1
    assert "wamid.poison of a delivery kept as a dead letter" in caplog.text and "Traceback" not in caplog.text


def _ts(dt: datetime) -> int:
    return int(dt.replace(tzinfo=timezone.utc).timestamp())


def test_a_message_older_than_the_window_is_refused_and_counted_and_the_fresh_one_kept(app, http, caplog):
    url, metrics = app
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    old = wa.text(TENDAI, "pay", ts=_ts(now - timedelta(days=7, minutes=5)), mid="wamid.replayed")
    fresh = wa.text(RUDO, "menu", ts=_ts(now - timedelta(days=6, hours=23)), mid="wamid.fresh")
    with caplog.at_level(logging.WARNING):
        r = post(http, url, wa.envelope([old, fresh], [wa.contact(TENDAI), wa.contact(RUDO)]))
        alone = post(http, url, wa.envelope([old], [wa.contact(TENDAI)]))
    assert (r.status_code, alone.status_code) == (200, 200)  # refused, but nothing Meta should retry
    assert set(stored()) == {"wamid.fresh"}
    assert [c.key for c in Contact.select()] == [RUDO]
    assert metrics.too_old.value() == 2 and metrics.messages_in.value() == 1
    assert "webhook message wamid.replayed refused" in caplog.text
    assert "convoflow_messages_too_old_total 2" in metrics.render()


def test_the_window_is_a_setting(db, settings, http):
    settings = Settings.from_env(
        {**{f.metadata["env"]: str(v) for f, v in _env(settings)}, "WHATSAPP_MAX_MESSAGE_AGE_DAYS": "1"}, dotenv=False
    )
    assert settings.whatsapp_max_message_age_days == 1
    server = wa.ServerThread(create_app(settings))
    try:
        day_old = wa.text(TENDAI, "pay", ts=int(datetime.now(timezone.utc).timestamp()) - 86_400 - 60)
        assert post(http, server.url, wa.envelope([day_old], [wa.contact(TENDAI)])).status_code == 200
        assert InboxMessage.select().count() == 0
    finally:
        server.close()


def _env(settings: Settings):
    import dataclasses

    return [
        (f, getattr(settings, f.name)) for f in dataclasses.fields(settings) if getattr(settings, f.name) is not None
    ]


def test_flows_dead_letters_lists_them_and_shows_one(app, http, db, monkeypatch):
    from click.testing import CliRunner

    import cli

    url, _ = app
    assert post(http, url, raw=b"\x1b[2Jnot json").status_code == 200
    monkeypatch.setenv("DATABASE_URL", db.url)
    listing = CliRunner().invoke(cli.main, ["dead-letters"])
    assert listing.exit_code == 0
    (line,) = listing.stdout.splitlines()
    assert line.startswith("#1  ") and line.endswith("      12 bytes  whole body: body is not JSON")
    shown = CliRunner().invoke(cli.main, ["dead-letters", "--show", "1"])
    assert shown.exit_code == 0 and shown.stdout.splitlines()[1] == "\\x1b[2Jnot json"  # the terminal escape defused
    missing = CliRunner().invoke(cli.main, ["dead-letters", "--show", "99"])
    assert missing.exit_code == 1 and "no dead letter #99" in missing.stderr


SHARED = "/work/shared/reference/whatsapp-payloads"  # real bodies (see its README), when present


def _reference(name: str) -> dict:
    path = os.path.join(SHARED, name)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    pytest.skip(f"the reference payloads ({SHARED}) are not on this machine")


def test_a_real_text_body_with_poison_in_it_is_stored_and_the_same_body_from_2023_is_refused(app, http):
    url, metrics = app
    doc = _reference("pywa_msg_text.json")  # sent in October 2023
    assert post(http, url, doc).status_code == 200
    assert InboxMessage.select().count() == 0 and metrics.too_old.value() == 1
    value = doc["entry"][0]["changes"][0]["value"]
    value["messages"][0].update(id="wamid.xyz\ud800", timestamp=str(wa.TS))
    value["contacts"][0]["profile"]["name"] = "Test\x00Name\udfff"
    assert post(http, url, doc).status_code == 200
    (row,) = InboxMessage.select()
    assert row.channel_message_id == "wamid.xyz\ufffd" and json.loads(row.payload)["text"] == "Body Text"
    assert row.contact.key == "US.13491208655302741918" and row.contact.profile_name == "Test\ufffdName\ufffd"
