"""The expiry sweep's check (migration 0016): a lower bound of a session's expires_at, indexed, that a turn
writes only when a conversation's expiry comes nearer, so the turns of an expiring flow do not rewrite the
sweep's index; the sweep moves it up, or clears it, when it finds the session not due. On both databases."""

from __future__ import annotations

from datetime import timedelta

from channels import expiry, turns
from engine.messages import ACTIVE, ENDED, EXPIRED
from storage import sessions
from storage.db import execute, stored_time
from storage.migrations import check, upgrade
from storage_kit import counter_setup, message, texts

TEN_MINUTES = timedelta(minutes=10)


def stored(contact: str) -> tuple:
    """(expires_at, expiry_check_at) of the contact's session, as datetimes."""
    row = execute(
        'SELECT s."expires_at", s."expiry_check_at" FROM "session" s JOIN "contact" c ON c."id" = s."contact_id" '
        'WHERE c."key" = ?',
        (contact,),
    ).fetchone()
    return tuple(stored_time(value) for value in row)


def test_a_conversation_gets_its_check_when_it_starts_and_keeps_it_while_turns_push_the_expiry_later(db):
    clock, flows, ctx = counter_setup()
    started = clock()
    turns.handle_message(message("c1", "count"), flows, ctx)
    assert stored("c1") == (started + TEN_MINUTES, started + TEN_MINUTES)

    clock.advance(minutes=4)
    turns.handle_message(message("c1", "more"), flows, ctx)
    clock.advance(minutes=4)
    turns.handle_message(message("c1", "more"), flows, ctx)
    # The expiry moved with every turn; the check stayed where it was first set, a lower bound of it.
    assert stored("c1") == (clock() + TEN_MINUTES, started + TEN_MINUTES)


def test_the_sweep_moves_up_the_check_of_a_conversation_that_went_on_and_expires_it_when_due(db):
    clock, flows, ctx = counter_setup()
    turns.handle_message(message("c1", "count"), flows, ctx)
    clock.advance(minutes=8)
    turns.handle_message(message("c1", "more"), flows, ctx)
    extended = clock() + TEN_MINUTES

    clock.advance(minutes=3)  # past the first expiry, not the second
    assert expiry.expire_due(ctx, flows) == 0
    assert stored("c1") == (extended, extended)
    assert sessions.get_state("c1")["status"] == ACTIVE

    clock.advance(minutes=8)
    assert expiry.expire_due(ctx, flows) == 1
    assert sessions.get_state("c1")["status"] == EXPIRED
    assert texts("c1")[-1] == "Timed out at 2."
    # An expired conversation keeps no expiry; its check is gone at the next sweep that reaches it.
    assert stored("c1")[0] is None
    assert expiry.expire_due(ctx, flows) == 0
    assert stored("c1") == (None, None)


def test_a_save_that_brings_the_expiry_nearer_moves_the_check_down(db):
    clock, flows, ctx = counter_setup()
    turns.handle_message(message("c1", "count"), flows, ctx)
    claim = sessions.try_claim(_contact_id("c1"), "t", clock())
    nearer = clock() + timedelta(minutes=2)
    state = dict(claim.state, expires_at=nearer)
    sessions.save_and_release(claim, state)
    assert stored("c1") == (nearer, nearer)

    clock.advance(minutes=3)
    assert expiry.expire_due(ctx, flows) == 1
    assert sessions.get_state("c1")["status"] == EXPIRED


def test_an_ended_conversation_keeps_no_check_after_the_sweep_and_a_new_one_gets_a_new_check(db):
    clock, flows, ctx = counter_setup()
    turns.handle_message(message("c1", "count"), flows, ctx)
    claim = sessions.try_claim(_contact_id("c1"), "t", clock())
    sessions.save_and_release(claim, dict(claim.state, status=ENDED, expires_at=None))
    first = clock() + TEN_MINUTES
    assert stored("c1") == (None, first)  # left behind by the save: no index write for it

    clock.advance(minutes=11)
    assert expiry.expire_due(ctx, flows) == 0
    assert stored("c1") == (None, None)

    turns.handle_message(message("c1", "count"), flows, ctx)
    assert stored("c1") == (clock() + TEN_MINUTES, clock() + TEN_MINUTES)


def test_a_conversation_an_older_release_saved_without_a_check_expires_after_the_backfill(db):
    clock, flows, ctx = counter_setup()
    turns.handle_message(message("c1", "count"), flows, ctx)
    # A process of the release before 0016 saved this session: its expiry only, no check.
    execute('UPDATE "session" SET "expiry_check_at" = NULL')
    clock.advance(minutes=11)
    assert expiry.expire_due(ctx, flows) == 0  # the sweep's index does not hold it
    assert sessions.get_state("c1")["status"] == ACTIVE

    assert expiry.expire_due(ctx, flows, backfill=True) == 1
    assert sessions.get_state("c1")["status"] == EXPIRED


def test_the_backfill_also_brings_down_a_check_later_than_its_expiry(db):
    clock, flows, ctx = counter_setup()
    turns.handle_message(message("c1", "count"), flows, ctx)
    # An older release shortened the expiry (its save wrote expires_at alone).
    execute('UPDATE "session" SET "expires_at" = ?', (clock() + timedelta(minutes=1),))
    clock.advance(minutes=2)
    assert expiry.expire_due(ctx, flows) == 0
    assert sessions.backfill_expiry_checks() == 1
    assert sessions.backfill_expiry_checks() == 0
    assert expiry.expire_due(ctx, flows) == 1


def test_migration_0016_gives_every_expiring_session_its_check_and_moves_the_sweep_to_its_index(blank_db):
    upgrade(blank_db)
    # Back to how a release before 0016 left it: the expiry index on expires_at, no check column.
    blank_db.execute_sql('DROP INDEX "session_expiry_check"')
    blank_db.execute_sql('ALTER TABLE "session" DROP COLUMN "expiry_check_at"')
    blank_db.execute_sql('CREATE INDEX "session_expiring" ON "session" ("expires_at") WHERE "expires_at" IS NOT NULL')
    blank_db.execute_sql("DELETE FROM schema_migrations WHERE name = '0016_expiry_check'")
    for key, expires in (("c1", "2026-01-05 10:00:00"), ("c2", None)):
        execute(
            'INSERT INTO "contact" ("key", "created_at", "last_seen_at") VALUES (?, ?, ?)',
            (key, "2026-01-05 09:00:00", "2026-01-05 09:00:00"),
            db=blank_db,
        )
        execute(
            'INSERT INTO "session" ("contact_id", "vars", "attempts", "status", "expires_at") '
            'SELECT "id", \'{}\', 0, ?, ? FROM "contact" WHERE "key" = ?',
            ("active" if expires else "ended", expires, key),
            db=blank_db,
        )
    assert upgrade(blank_db) == ["0016_expiry_check"]
    check(blank_db)
    names = {ix.name for ix in blank_db.get_indexes("session")}
    assert "session_expiry_check" in names and "session_expiring" not in names
    rows = blank_db.execute_sql(
        'SELECT c."key", s."expiry_check_at" FROM "session" s JOIN "contact" c ON c."id" = s."contact_id" '
        'ORDER BY c."key"'
    ).fetchall()
    assert [(key, stored_time(at)) for key, at in rows] == [
        ("c1", stored_time("2026-01-05 10:00:00")),
        ("c2", None),
    ]


def test_an_old_database_without_the_check_column_upgrades_through_the_earlier_index_migrations(blank_db):
    """0013 creates the session's indexes from the model: on a database older than 0016 it must leave out
    the index on the column 0016 adds."""
    upgrade(blank_db)
    blank_db.execute_sql('DROP INDEX "session_expiry_check"')
    blank_db.execute_sql('ALTER TABLE "session" DROP COLUMN "expiry_check_at"')
    blank_db.execute_sql('DROP INDEX "session_active"')
    blank_db.execute_sql("DELETE FROM schema_migrations WHERE name IN ('0013_turn_indexes', '0016_expiry_check')")
    assert upgrade(blank_db) == ["0013_turn_indexes", "0016_expiry_check"]
    check(blank_db)
    names = {ix.name for ix in blank_db.get_indexes("session")}
    assert {"session_active", "session_expiry_check"} <= names


def _contact_id(key: str) -> int:
    return execute('SELECT "id" FROM "contact" WHERE "key" = ?', (key,)).fetchone()[0]
