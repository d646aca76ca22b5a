"""Schema migrations: applied once, recorded, safe to run twice and from two processes at once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from storage import migrations
from storage.db import is_postgres
from storage.migrations import MIGRATIONS, SchemaError, check, status, upgrade

ALL = [m.name for m in MIGRATIONS]


def test_upgrade_applies_every_migration_once_and_status_says_so(blank_db):
    assert [s.applied_at for s in status(blank_db)] == [None] * len(ALL)
    assert upgrade(blank_db) == ALL
    assert upgrade(blank_db) == []
    rows = status(blank_db)
    assert [r.name for r in rows] == ALL and all(r.applied_at is not None for r in rows)
    check(blank_db)


def test_commands_on_a_database_without_schema_are_told_to_upgrade(blank_db):
    with pytest.raises(SchemaError, match="run `flows db upgrade`"):
        check(blank_db)


def test_later_migrations_run_on_a_database_that_has_only_the_first(blank_db):
    upgrade(blank_db)
    # Put the database back to how a release with only the first migration left it.
    blank_db.execute_sql('DROP INDEX "event_subject"')
    blank_db.execute_sql('DROP INDEX "outbox_message_pending_contact"')
    blank_db.execute_sql("DELETE FROM schema_migrations WHERE name <> '0001_initial'")
    with pytest.raises(SchemaError, match=f"{len(ALL) - 1} migration"):
        check(blank_db)
    assert upgrade(blank_db) == ALL[1:]
    assert "event_subject" in {ix.name for ix in blank_db.get_indexes("event")}
    assert "outbox_message_pending_contact" in {ix.name for ix in blank_db.get_indexes("outbox_message")}
    check(blank_db)


def test_lean_indexes_replace_what_an_older_release_left_and_the_pending_lookup_uses_them(blank_db):
    upgrade(blank_db)
    # Put the indexes back to how a release before 0008 left them.
    blank_db.execute_sql('DROP INDEX "inbox_message_pending_contact"')
    blank_db.execute_sql('CREATE INDEX "session_status" ON "session" ("status")')
    blank_db.execute_sql(
        'CREATE INDEX "inbox_message_processed_at_contact_id_sent_at" ON "inbox_message" '
        '("processed_at", "contact_id", "sent_at")'
    )
    blank_db.execute_sql("DELETE FROM schema_migrations WHERE name = '0008_lean_indexes'")
    assert upgrade(blank_db) == ["0008_lean_indexes"]
    assert "session_status" not in {ix.name for ix in blank_db.get_indexes("session")}
    inbox = {ix.name for ix in blank_db.get_indexes("inbox_message")}
    assert "inbox_message_pending_contact" in inbox and "inbox_message_processed_at_contact_id_sent_at" not in inbox
    if not is_postgres(blank_db):  # PostgreSQL plans a scan for a table this small, whatever its indexes
        plan = blank_db.execute_sql(
            'EXPLAIN QUERY PLAN SELECT "id" FROM "inbox_message" WHERE "processed_at" IS NULL AND "contact_id" = ? '
            'ORDER BY "sent_at", "id" LIMIT 1',
            (1,),
        ).fetchall()
        assert "inbox_message_pending_contact" in str(plan)
    check(blank_db)


def test_two_processes_upgrading_at_once_apply_each_migration_exactly_once(blank_db, tmp_path):
    script = textwrap.dedent("""
        import sys
        from storage.db import open_database
        from storage.migrations import upgrade
        print(",".join(upgrade(open_database(sys.argv[1]))))
    """)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, blank_db.url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outputs]
    applied = [name for out, _ in outputs for name in out.strip().split(",") if name]
    assert sorted(applied) == sorted(ALL)
    assert len(migrations.status(blank_db)) == len(ALL)


def test_the_wamid_index_holds_only_sent_messages_and_receipts_use_it(blank_db):
    upgrade(blank_db)
    # Put the index back to how a release before 0012 left it: every reply wrote a NULL into it.
    blank_db.execute_sql('DROP INDEX "outbox_message_wamid"')
    blank_db.execute_sql('CREATE INDEX "outbox_message_channel_message_id" ON "outbox_message" ("channel_message_id")')
    blank_db.execute_sql("DELETE FROM schema_migrations WHERE name = '0012_outbox_wamid_index'")
    assert upgrade(blank_db) == ["0012_outbox_wamid_index"]
    outbox = {ix.name for ix in blank_db.get_indexes("outbox_message")}
    assert "outbox_message_wamid" in outbox and "outbox_message_channel_message_id" not in outbox
    if not is_postgres(blank_db):  # PostgreSQL plans a scan for a table this small, whatever its indexes
        plan = blank_db.execute_sql(
            'EXPLAIN QUERY PLAN SELECT "id" FROM "outbox_message" WHERE "channel_message_id" IN (?, ?)', ("a", "b")
        ).fetchall()
        assert "outbox_message_wamid" in str(plan)
    check(blank_db)


TURN_INDEXES_BEFORE_0013 = (
    'CREATE INDEX "inbox_message_contact_id" ON "inbox_message" ("contact_id")',
    'CREATE INDEX "outbox_message_contact_id" ON "outbox_message" ("contact_id")',
    'CREATE INDEX "outbox_message_status_next_attempt_at" ON "outbox_message" ("status", "next_attempt_at")',
    'CREATE INDEX "session_expires_at" ON "session" ("expires_at")',
    'CREATE INDEX "session_status_flow_flow_version" ON "session" ("status", "flow", "flow_version")',
)


def test_turn_indexes_drop_what_no_query_reads_and_claim_expiry_and_counts_use_what_is_left(blank_db):
    from storage import outbox, sessions

    upgrade(blank_db)
    # Put the indexes back to how a release before 0013 left them.
    blank_db.execute_sql('DROP INDEX "session_active"')
    blank_db.execute_sql('DROP INDEX "session_expiry_check"')
    for ddl in TURN_INDEXES_BEFORE_0013:
        blank_db.execute_sql(ddl)
    blank_db.execute_sql("DELETE FROM schema_migrations WHERE name = '0013_turn_indexes'")
    assert upgrade(blank_db) == ["0013_turn_indexes"]
    names = {ix.name for table in ("inbox_message", "outbox_message", "session") for ix in blank_db.get_indexes(table)}
    assert {"session_active", "session_expiry_check"} <= names and not names & {
        ddl.split('"')[1] for ddl in TURN_INDEXES_BEFORE_0013
    }
    check(blank_db)
    if is_postgres(blank_db):  # PostgreSQL plans a scan for a table this small, whatever its indexes
        return
    plans = (
        # the sender's claim walks the pending rows, never the whole sent history in id order
        ("outbox_message_pending_contact", outbox._CLAIM[False], (None, None, 64)),
        ("session_expiry_check", sessions._DUE, (None, None, None, 100)),
        (
            "session_active",
            'SELECT "flow", "flow_version", COUNT(*) FROM "session" WHERE "status" = ? GROUP BY "flow", "flow_version"',
            ("active",),
        ),
    )
    plans += (
        (
            "outbox_message_done",
            'SELECT "status", COUNT(*) FROM "outbox_message" WHERE "status" <> ? GROUP BY "status"',
            ("pending",),
        ),
    )
    for index, sql, params in plans:
        plan = " | ".join(row[3] for row in blank_db.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall())
        assert f"INDEX {index}" in plan and "SCAN f |" not in plan and not plan.endswith("SCAN f"), plan


def test_session_revision_is_added_to_a_database_before_0014_and_its_rows_start_at_zero(blank_db):
    upgrade(blank_db)
    # Put the session table back to how a release before 0014 left it, with a contact's session in it.
    blank_db.execute_sql('ALTER TABLE "session" DROP COLUMN "revision"')
    blank_db.execute_sql("DELETE FROM schema_migrations WHERE name = '0014_session_revision'")
    blank_db.execute_sql(
        'INSERT INTO "contact" ("key", "created_at", "last_seen_at") VALUES (\'c1\', \'2026-01-05\', \'2026-01-05\')'
    )
    blank_db.execute_sql(
        'INSERT INTO "session" ("contact_id", "vars", "attempts", "status") SELECT "id", \'{}\', 0, \'ended\' FROM "contact"'
    )
    assert upgrade(blank_db) == ["0014_session_revision"]
    check(blank_db)
    assert blank_db.execute_sql('SELECT "revision" FROM "session"').fetchall() == [(0,)]
    # A row inserted without it (a claim's INSERT names no revision) starts at 0 too.
    blank_db.execute_sql(
        'INSERT INTO "contact" ("key", "created_at", "last_seen_at") VALUES (\'c2\', \'2026-01-05\', \'2026-01-05\')'
    )
    blank_db.execute_sql(
        'INSERT INTO "session" ("contact_id", "vars", "attempts", "status") '
        "SELECT \"id\", '{}', 0, 'ended' FROM \"contact\" WHERE \"key\" = 'c2'"
    )
    assert blank_db.execute_sql('SELECT "revision" FROM "session" ORDER BY "id"').fetchall() == [(0,), (0,)]
