"""Schema migrations: an ordered list of named steps, each applied once and recorded in `schema_migrations`.

`upgrade(db)` applies what is missing and returns the names it applied; running it again applies nothing.
Two processes upgrading at once are serialised: on SQLite by `BEGIN IMMEDIATE` (the second waits on the
busy timeout, then finds everything applied), on PostgreSQL by a transaction-scoped advisory lock. DDL
is transactional on both, so a failed migration leaves nothing half done and is not recorded.

Rules for a new migration (append to MIGRATIONS, never edit or reorder a shipped one):
- the first migration creates every table and index from the models as they are at the time it runs, so
  on a fresh database a later migration can find its change already there: write later steps so they
  skip what exists (`_add_columns`, `_add_index` below do);
- change the model (add a field, never rename one) and add a migration that makes the same change to an
  existing database through playhouse.migrate's SchemaMigrator.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

import peewee
from playhouse.migrate import SchemaMigrator

from .contacts import is_user_id
from .db import execute, is_postgres, utcnow, write_transaction
from .models import (
    ALL_MODELS,
    Contact,
    DeadLetter,
    EarlyReceipt,
    Event,
    Heartbeat,
    InboxMessage,
    OutboxMessage,
    PaymentTransaction,
    Session,
)

# A fixed 64-bit key for pg_advisory_xact_lock, the same in every process that upgrades this schema.
_LOCK_KEY = zlib.crc32(b"convoflow.schema_migrations")

UPGRADE_HINT = "run `flows db upgrade`"


class SchemaError(RuntimeError):
    """The database has no schema, or an older one than this code needs."""


@dataclass(frozen=True)
class Migration:
    name: str
    apply: Callable[[peewee.Database, SchemaMigrator], None]
    description: str


@dataclass(frozen=True)
class MigrationStatus:
    name: str
    description: str
    applied_at: datetime | None  # None: not applied yet


def _initial(db: peewee.Database, migrator: SchemaMigrator) -> None:
    db.create_tables(ALL_MODELS, safe=True)


def _add_index(db: peewee.Database, migrator: SchemaMigrator, table: str, columns: tuple[str, ...], unique=False):
    name = f"{table}_{'_'.join(columns)}"
    if name not in {ix.name for ix in db.get_indexes(table)}:
        migrator.add_index(table, columns, unique).run()


def _add_columns(db: peewee.Database, migrator: SchemaMigrator, model: type[peewee.Model], *names: str) -> None:
    """Add the model's fields `names` to its table where they are missing (kept for later migrations)."""
    table = model._meta.table_name
    existing = {c.name for c in db.get_columns(table)}
    for name in names:
        field = model._meta.fields[name]
        if field.column_name not in existing:
            migrator.add_column(table, field.column_name, field).run()


def _create_indexes(db: peewee.Database, model: type[peewee.Model]) -> None:
    """Create the model's indexes that are missing (the model's own definitions, partial ones included, which
    SchemaMigrator.add_index cannot express), leaving out any on a column the table does not have yet: an
    earlier migration run on an old database must not index a column a later one adds (that one creates
    its index)."""
    existing = {c.name for c in db.get_columns(model._meta.table_name)}
    for index in model._meta.fields_to_index():
        columns = {e.column_name for e in index._expressions if isinstance(e, peewee.Field)}
        if columns <= existing:
            db.execute(model._schema._create_index(index, safe=True))


def _event_subject_index(db: peewee.Database, migrator: SchemaMigrator) -> None:
    _add_index(db, migrator, Event._meta.table_name, ("subject",))


def _outbox_pending_index(db: peewee.Database, migrator: SchemaMigrator) -> None:
    # A partial index (WHERE status = 'pending'): the model's own index definition, created only when missing.
    _create_indexes(db, OutboxMessage)


def _contact_user_ids(db: peewee.Database, migrator: SchemaMigrator) -> None:
    """Business-scoped user ids on contacts: the columns, a contact keyed by one gets it as its user_id, and
    one person split over two rows by an earlier version (same phone number) becomes one row again."""
    _add_columns(db, migrator, Contact, "user_id", "parent_user_id", "username")
    for contact_id, key in execute(
        'SELECT "id", "key" FROM "contact" WHERE "user_id" IS NULL AND "key" LIKE ?', ("%.%",), db=db
    ).fetchall():
        if is_user_id(key):
            execute('UPDATE "contact" SET "user_id" = ? WHERE "id" = ?', (key, contact_id), db=db)
    split = execute(
        'SELECT "wa_id" FROM "contact" WHERE "wa_id" IS NOT NULL GROUP BY "wa_id" HAVING COUNT(*) > 1', db=db
    ).fetchall()
    for (wa_id,) in split:
        _join_split_contact(db, wa_id)
    _add_index(db, migrator, Contact._meta.table_name, ("wa_id",), unique=True)
    _add_index(db, migrator, Contact._meta.table_name, ("user_id",), unique=True)


def _join_split_contact(db: peewee.Database, wa_id: str) -> None:
    """Rows sharing a phone number: the one with a live conversation (else the latest seen) keeps the
    number and takes the user id; the others keep their history under their key but no longer match."""
    rows = execute(
        'SELECT c."id", c."user_id" FROM "contact" c LEFT JOIN "session" s ON s."contact_id" = c."id" '
        'WHERE c."wa_id" = ? ORDER BY CASE WHEN s."status" = \'active\' THEN 0 ELSE 1 END, '
        'c."last_seen_at" DESC, c."id" DESC',
        (wa_id,),
        db=db,
    ).fetchall()
    keeper, others = rows[0], rows[1:]
    user_id = keeper[1] or next((r[1] for r in others if r[1]), None)
    for other_id, _ in others:
        execute('UPDATE "contact" SET "wa_id" = NULL, "user_id" = NULL WHERE "id" = ?', (other_id,), db=db)
    execute('UPDATE "contact" SET "user_id" = ? WHERE "id" = ?', (user_id, keeper[0]), db=db)


def _payment_review_and_limits(db: peewee.Database, migrator: SchemaMigrator) -> None:
    _add_columns(db, migrator, PaymentTransaction, "review_reason", "review_at")
    table = PaymentTransaction._meta.table_name
    _add_index(db, migrator, table, ("contact_key", "created_at"))  # payment starts per contact
    _add_index(db, migrator, table, ("msisdn", "created_at"))  # payment starts per wallet
    _add_index(db, migrator, Event._meta.table_name, ("kind",))  # /metrics counts refused starts


def _lean_indexes(db: peewee.Database, migrator: SchemaMigrator) -> None:
    # Every turn writes the inbox and the session: keep only the indexes a query reads. The status index
    # is the first column of (status, flow, flow_version); the (processed_at, contact, sent_at) index held
    # every processed row, where a partial one holds the backlog only.
    _create_indexes(db, InboxMessage)
    for table, name in (
        ("session", "session_status"),
        ("inbox_message", "inbox_message_processed_at_contact_id_sent_at"),
    ):
        if name in {ix.name for ix in db.get_indexes(table)}:
            migrator.drop_index(table, name).run()


def _outbox_wamid_index(db: peewee.Database, migrator: SchemaMigrator) -> None:
    # The wamid index held a NULL for every reply inserted by a turn; the partial one only sent messages.
    _create_indexes(db, OutboxMessage)
    if "outbox_message_channel_message_id" in {ix.name for ix in db.get_indexes("outbox_message")}:
        migrator.drop_index("outbox_message", "outbox_message_channel_message_id").run()


def _turn_indexes(db: peewee.Database, migrator: SchemaMigrator) -> None:
    # A stored turn wrote 5 indexes no query needs (bench/turn_pages.py; docs/storage.md): the contact_id
    # indexes of inbox and outbox (queries by contact read the partial pending indexes; contacts are never
    # deleted), the outbox's (status, next_attempt_at) (the claim reads the pending partial index), and
    # the session's expires_at and (status, flow, flow_version), now partial: a turn writes them only when
    # the value moves.
    _create_indexes(db, Session)
    _create_indexes(db, OutboxMessage)  # outbox_message_done: /metrics' count of sent and failed
    for table, name in (
        ("inbox_message", "inbox_message_contact_id"),
        ("outbox_message", "outbox_message_contact_id"),
        ("outbox_message", "outbox_message_status_next_attempt_at"),
        ("session", "session_expires_at"),
        ("session", "session_status_flow_flow_version"),
    ):
        if name in {ix.name for ix in db.get_indexes(table)}:
            migrator.drop_index(table, name).run()


def _expiry_check(db: peewee.Database, migrator: SchemaMigrator) -> None:
    # The sweep's index moves from expires_at, which a turn of an expiring flow rewrites every time, to a
    # lower bound of it that a turn writes only when the expiry comes nearer (storage/sessions.py). Every
    # session with an expiry gets its check at its expiry.
    _add_columns(db, migrator, Session, "expiry_check_at")
    execute('UPDATE "session" SET "expiry_check_at" = "expires_at" WHERE "expires_at" IS NOT NULL', db=db)
    _create_indexes(db, Session)
    if "session_expiring" in {ix.name for ix in db.get_indexes("session")}:
        migrator.drop_index("session", "session_expiring").run()


MIGRATIONS: tuple[Migration, ...] = (
    Migration("0001_initial", _initial, "every table and index"),
    Migration("0002_event_subject_index", _event_subject_index, "look up a payment's audit trail by reference"),
    Migration("0003_outbox_pending_index", _outbox_pending_index, "senders find each contact's next message fast"),
    Migration(
        "0004_inbox_attempts",
        lambda db, m: _add_columns(db, m, InboxMessage, "attempts"),
        "count failed turns per message, so one that always fails stops holding its contact up",
    ),
    Migration(
        "0005_contact_user_ids",
        _contact_user_ids,
        "find a contact by phone number or business-scoped user id: one person, one contact",
    ),
    Migration(
        "0006_payment_review_and_limits",
        _payment_review_and_limits,
        "mark payments that need a person; find recent payment starts per contact and per wallet",
    ),
    Migration(
        "0007_dead_letters",
        lambda db, m: db.create_tables([DeadLetter], safe=True),
        "keep webhook deliveries that can never be stored, for a person, instead of refusing them for ever",
    ),
    Migration(
        "0008_lean_indexes",
        _lean_indexes,
        "a turn writes fewer indexes: a partial one for each contact's unhandled messages, no duplicate",
    ),
    Migration(
        "0009_heartbeat",
        lambda db, m: db.create_tables([Heartbeat], safe=True),
        "a row per serving process that /readyz rewrites, proving a write commits",
    ),
    Migration(
        "0011_payment_provider",
        lambda db, m: _add_columns(db, m, PaymentTransaction, "provider", "poll_url"),
        "which payment provider takes each payment (existing rows: omari) and where its status is asked",
    ),
    Migration(
        "0012_outbox_wamid_index",
        _outbox_wamid_index,
        "a turn's reply no longer writes the wamid index: it holds only messages that were sent",
    ),
    Migration(
        "0013_turn_indexes",
        _turn_indexes,
        "a turn writes fewer indexes: none on contact_id, pending outbox rows only, sessions' when they move",
    ),
    Migration(
        "0014_session_revision",
        lambda db, m: _add_columns(db, m, Session, "revision"),
        "a turn read without a claim checks one count of the session's saves, not every state column",
    ),
    Migration(
        "0015_early_receipts",
        lambda db, m: db.create_tables([EarlyReceipt], safe=True),
        "keep a delivery receipt that arrives before its send is recorded, instead of dropping it",
    ),
    Migration(
        "0016_expiry_check",
        _expiry_check,
        "a turn that only pushes a conversation's expiry later no longer rewrites the expiry sweep's index",
    ),
)


class SchemaMigration(peewee.Model):
    name = peewee.CharField(max_length=128, primary_key=True)
    applied_at = peewee.DateTimeField()

    class Meta:
        table_name = "schema_migrations"


def _lock(db: peewee.Database) -> None:
    if is_postgres(db):
        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))


def upgrade(db: peewee.Database, now: Callable[[], datetime] | None = None) -> list[str]:
    """Apply every migration not applied yet, in order, under a lock; return the names applied."""
    clock = now or utcnow
    with SchemaMigration.bind_ctx(db):
        with write_transaction(db):
            _lock(db)
            db.create_tables([SchemaMigration], safe=True)
            applied = {m.name for m in SchemaMigration.select(SchemaMigration.name)}
            migrator = SchemaMigrator.from_database(db)
            done = []
            for migration in MIGRATIONS:
                if migration.name in applied:
                    continue
                migration.apply(db, migrator)
                SchemaMigration.create(name=migration.name, applied_at=clock())
                done.append(migration.name)
    return done


def status(db: peewee.Database) -> list[MigrationStatus]:
    """Every known migration with when it was applied (None when pending)."""
    applied = _applied(db)
    return [MigrationStatus(m.name, m.description, applied.get(m.name)) for m in MIGRATIONS]


def _applied(db: peewee.Database) -> dict[str, datetime]:
    if not db.table_exists(SchemaMigration._meta.table_name):
        return {}
    with SchemaMigration.bind_ctx(db):
        return {m.name: m.applied_at for m in SchemaMigration.select()}


def check(db: peewee.Database) -> None:
    """Raise SchemaError unless every migration is applied (commands other than upgrade call this)."""
    applied = _applied(db)
    if not applied:
        raise SchemaError(f"the database has no convoflow schema yet: {UPGRADE_HINT}")
    pending = [m.name for m in MIGRATIONS if m.name not in applied]
    if pending:
        raise SchemaError(f"the database schema is behind ({len(pending)} migration(s) pending): {UPGRADE_HINT}")
