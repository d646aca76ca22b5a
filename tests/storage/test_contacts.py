"""Contacts found by phone number or business-scoped user id, and migration 0005 that brings old rows there."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import peewee
import pytest

from storage.contacts import Identity, change_number, resolve
from storage.db import write_transaction
from storage.migrations import upgrade
from storage.models import Contact, Session

T0 = datetime(2026, 1, 1, 12, 0)
PHONE, OTHER_PHONE = "263771234567", "263779876543"
USER_ID = "ZW.13491208655302741918"


def find(who: Identity, at: datetime = T0) -> tuple[int, str]:
    with write_transaction():
        return resolve(who, at)


def test_a_person_named_by_phone_then_both_then_user_id_is_one_contact(db):
    first = find(Identity(wa_id=PHONE, profile_name="Tendai"))
    assert find(Identity(wa_id=PHONE, user_id=USER_ID, parent_user_id="ZW.ENT.1", username="@tendai")) == first
    assert find(Identity(user_id=USER_ID)) == first
    (c,) = Contact.select()
    assert (c.key, c.wa_id, c.user_id, c.parent_user_id, c.username, c.profile_name) == (
        PHONE,
        PHONE,
        USER_ID,
        "ZW.ENT.1",
        "@tendai",
        "Tendai",
    )


def test_a_user_id_only_person_gets_their_phone_attached_later(db):
    first = find(Identity(user_id=USER_ID))
    assert first[1] == USER_ID
    assert find(Identity(wa_id=PHONE, user_id=USER_ID)) == first
    assert Contact.get().wa_id == PHONE


def test_a_number_change_moves_the_contact_unless_the_number_is_taken(db):
    tendai, _ = find(Identity(wa_id=PHONE))
    with write_transaction():
        assert change_number(tendai, OTHER_PHONE)
    assert find(Identity(wa_id=OTHER_PHONE))[0] == tendai
    # Someone new gets the old number: a new contact, whose key cannot be the number (Tendai's key).
    newcomer, key = find(Identity(wa_id=PHONE))
    assert newcomer != tendai and key.startswith(PHONE + "~")
    with write_transaction():
        assert not change_number(newcomer, OTHER_PHONE)
    assert Contact.get_by_id(tendai).wa_id == OTHER_PHONE and Contact.get_by_id(newcomer).wa_id == PHONE


def test_two_requests_for_a_new_person_at_once_make_one_contact(db):
    barrier, results, errors = threading.Barrier(4), [], []

    def run() -> None:
        try:
            barrier.wait(5)
            results.append(find(Identity(wa_id=PHONE, user_id=USER_ID)))
        except Exception as e:  # reported below
            errors.append(e)
        finally:
            db.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and len(set(results)) == 1 and Contact.select().count() == 1


def _back_to_0004(database) -> None:
    """Put the contact table back to how releases up to migration 0004 left it."""
    for index in ("contact_wa_id", "contact_user_id"):
        database.execute_sql(f'DROP INDEX "{index}"')
    for column in ("user_id", "parent_user_id", "username"):
        database.execute_sql(f'ALTER TABLE "contact" DROP COLUMN "{column}"')
    database.execute_sql("DELETE FROM schema_migrations WHERE name = '0005_contact_user_ids'")


def _old_contact(database, key: str, wa_id: str | None, seen: datetime) -> int:
    cursor = database.execute_sql(
        'INSERT INTO "contact" ("key", "wa_id", "created_at", "last_seen_at") VALUES (%s, %s, %s, %s) RETURNING "id"'.replace(
            "%s", "?" if isinstance(database, peewee.SqliteDatabase) else "%s"
        ),
        (key, wa_id, seen, seen),
    )
    return cursor.fetchone()[0]


def test_migration_0005_gives_old_rows_their_user_id_and_joins_a_person_split_in_two(db):
    _back_to_0004(db)
    paying = _old_contact(db, PHONE, PHONE, T0)  # mid-payment, waiting for the OTP
    Session.create(contact=paying, flow="omari_payment", step="ask_otp", status="active", started_at=T0)
    split = _old_contact(db, USER_ID, PHONE, T0 + timedelta(minutes=5))  # the same person, split by user_id
    username = _old_contact(db, "US.99887766", None, T0)
    terminal = _old_contact(db, "c1", None, T0)

    assert upgrade(db) == ["0005_contact_user_ids"]
    rows = {c.id: (c.key, c.wa_id, c.user_id) for c in Contact.select()}
    assert rows == {
        paying: (PHONE, PHONE, USER_ID),
        split: (USER_ID, None, None),
        username: ("US.99887766", None, "US.99887766"),
        terminal: ("c1", None, None),
    }
    assert find(Identity(wa_id=PHONE, user_id=USER_ID), T0 + timedelta(hours=1))[0] == paying
    with pytest.raises(peewee.IntegrityError), db.atomic():
        _old_contact(db, "another", PHONE, T0)
    assert upgrade(db) == []


def test_a_turn_records_last_seen_to_the_minute_and_a_new_name_or_number_at_once(db):
    from channels import flowcache, turns
    from storage_kit import Clock, context, counter_registry, message, store_counter

    clock = Clock(T0)
    registry = counter_registry()
    store_counter(clock)
    flows, ctx = flowcache.load_flowset(registry), context(registry, clock)

    def turn(text: str, **who) -> Contact:
        turns.handle_message(message("c1", text, at=clock.now), flows, ctx, **who)
        return Contact.get(Contact.key == "c1")

    assert turn("count", profile_name="Tendai").last_seen_at == T0
    clock.advance(seconds=59)
    assert turn("one").last_seen_at == T0  # within the minute: the contact row is not rewritten
    clock.advance(seconds=2)
    assert turn("two").last_seen_at == T0 + timedelta(seconds=61)
    clock.advance(seconds=5)
    renamed = turn("three", profile_name="Tendai M")
    assert (renamed.profile_name, renamed.last_seen_at) == ("Tendai M", clock.now)
    clock.advance(seconds=5)
    numbered = turn("four", wa_id=PHONE, profile_name="Tendai M")
    assert (numbered.wa_id, numbered.profile_name, numbered.last_seen_at) == (PHONE, "Tendai M", clock.now)
    clock.advance(seconds=5)
    assert turn("five", wa_id=PHONE, profile_name="Tendai M").last_seen_at == clock.now - timedelta(seconds=5)


def test_resolve_rewrites_a_known_contact_only_for_something_new_or_a_minute_on(db):
    def resolved(after: int, **given) -> Contact:
        find(Identity(**{"wa_id": PHONE, **given}), T0 + timedelta(seconds=after))
        return Contact.get(Contact.wa_id == PHONE)

    first = resolved(0, profile_name="Tendai")
    assert resolved(59, profile_name="Tendai").last_seen_at == T0  # nothing new within the minute: no UPDATE
    later = resolved(61)
    assert later.last_seen_at == T0 + timedelta(seconds=61) and later.profile_name == "Tendai"
    renamed = resolved(62, profile_name="Tendai M")
    assert (renamed.profile_name, renamed.last_seen_at) == ("Tendai M", T0 + timedelta(seconds=62))
    with_id = resolved(63, user_id=USER_ID, profile_name="Tendai M")
    assert (with_id.id, with_id.user_id, with_id.last_seen_at) == (first.id, USER_ID, T0 + timedelta(seconds=63))
    assert resolved(64, user_id=USER_ID, profile_name="Tendai M").last_seen_at == T0 + timedelta(seconds=63)
    assert resolved(65, username="tendai").username == "tendai"


def test_the_postgresql_webhook_insert_rewrites_a_known_contact_only_for_a_new_name_or_a_minute_on(db):
    import json

    from storage import inbox
    from storage.db import execute, is_postgres

    if not is_postgres():
        pytest.skip("the one-statement insert for a known contact is PostgreSQL's webhook path")
    first = find(Identity(wa_id=PHONE, profile_name="Tendai"))

    def delivered(after: int, mid: str, **given) -> tuple[Contact, int]:
        at = T0 + timedelta(seconds=after)
        payload = {"contact": "ignored", "message_id": mid, "text": "hi"}
        assert inbox.add_for_known_contact(given.get("wa_id", PHONE), None, given.get("name"), mid, payload, at, at)
        version = execute('SELECT xmin::text::bigint FROM "contact" WHERE "id" = ?', (first[0],)).fetchone()[0]
        return Contact.get_by_id(first[0]), version

    _, before = delivered(0, "m0", name="Tendai")
    seen, version = delivered(59, "m1", name="Tendai")
    assert (seen.last_seen_at, version) == (T0, before)  # nothing new within the minute: the row is not rewritten
    later, _ = delivered(61, "m2")
    assert (later.last_seen_at, later.profile_name) == (T0 + timedelta(seconds=61), "Tendai")
    renamed, _ = delivered(62, "m3", name="Tendai M")
    assert (renamed.profile_name, renamed.last_seen_at) == ("Tendai M", T0 + timedelta(seconds=62))
    assert not inbox.add_for_known_contact(PHONE, None, None, "m3", {"message_id": "m3"}, T0, T0)  # a duplicate
    assert not inbox.add_for_known_contact(OTHER_PHONE, None, None, "m4", {"message_id": "m4"}, T0, T0)  # unknown
    stored = execute('SELECT "payload" FROM "inbox_message" ORDER BY "id"').fetchall()
    assert [json.loads(p)["contact"] for (p,) in stored] == [PHONE] * 4
