"""The outbox: messages a turn produced, written in the turn's own transaction, delivered by the sender.

Every statement that touches `outbox_message` lives here: the turn's save queues rows (enqueue, or
insert_sql inside PostgreSQL's one-statement save), the sender leases and records them (claim,
record_sent, retry_later, mark_failed) and the webhook records the delivery receipts Meta reports
(record_deliveries; one that comes before its send is recorded waits in early_receipt for the sweep,
apply_early_receipts).

A row is `pending` until the channel accepts it (`sent`, with the id the channel returned) or the sender
gives up (`failed`). One contact's messages leave in id order: claim() offers a contact's row only when
no earlier row of that contact is still pending.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Iterable

from .db import execute, is_postgres, write_transaction
from .models import EarlyReceipt, OutboxMessage
from .text import compact_json

PENDING, SENT, FAILED = "pending", "sent", "failed"

_INSERT = (
    'INSERT INTO "outbox_message" ("contact_id", "payload", "status", "attempts", "next_attempt_at", "created_at") '
)

# Lease the first pending, due row of each contact whose earlier rows are all sent or failed (so one
# contact's messages leave in order). On PostgreSQL the candidates are locked with SKIP LOCKED, so two
# senders never take the same row; the UPDATE then moves them out of reach for the lease. One statement,
# atomic without an explicit transaction. The candidates come from the partial index of pending rows:
# ORDER BY +id (an expression, not the key) stops both planners from walking the whole sent history in id
# order instead (PostgreSQL did: 78 ms a claim with 300,000 sent rows, 4 ms from the pending index).
# "First of its contact": SQLite stops at the first earlier pending row (NOT EXISTS). PostgreSQL is asked
# for the contact's smallest pending id, one index probe a candidate whatever its statistics say; its
# NOT EXISTS became a nested-loop anti-join on a new or freshly grown table (10 ms a claim with 200
# pending rows, 0.6 ms asked this way).
_CLAIM_SQL = (
    'UPDATE "outbox_message" SET "next_attempt_at" = ? WHERE "id" IN ('
    'SELECT f."id" FROM "outbox_message" f WHERE f."status" = \'pending\' AND f."next_attempt_at" <= ? '
    'AND {first} ORDER BY +f."id" LIMIT ?{lock}) '
    'RETURNING "id", "payload", "attempts", '
    '(SELECT c."key" FROM "contact" c WHERE c."id" = "outbox_message"."contact_id"), '
    '(SELECT COALESCE(c."wa_id", c."user_id") FROM "contact" c WHERE c."id" = "outbox_message"."contact_id")'
)
_CLAIM = {
    False: _CLAIM_SQL.format(
        first='NOT EXISTS (SELECT 1 FROM "outbox_message" p WHERE p."contact_id" = f."contact_id" '
        'AND p."status" = \'pending\' AND p."id" < f."id")',
        lock="",
    ),
    True: _CLAIM_SQL.format(
        first='f."id" = (SELECT min(p."id") FROM "outbox_message" p WHERE p."contact_id" = f."contact_id" '
        "AND p.\"status\" = 'pending')",
        lock=" FOR UPDATE OF f SKIP LOCKED",
    ),
}
# Every row the channel accepted, with its id, in one statement; each marked row says whether its contact
# has a later pending row, which the mark has just made claim()'s "first of its contact" (the statement's
# snapshot still shows the marked rows pending, but a contact has one row in flight at a time).
_SENT = (
    'WITH v ("id", "wamid") AS (VALUES {values}) '
    'UPDATE "outbox_message" SET "status" = \'sent\', '
    '"channel_message_id" = (SELECT v."wamid" FROM v WHERE v."id" = "outbox_message"."id"), '
    '"sent_at" = ?, "attempts" = "attempts" + 1, "error" = NULL WHERE "id" IN (SELECT "id" FROM v) '
    'RETURNING EXISTS (SELECT 1 FROM "outbox_message" n WHERE n."contact_id" = "outbox_message"."contact_id" '
    'AND n."status" = \'pending\' AND n."id" > "outbox_message"."id")'
)

# Receipts arrive unordered; a later "delivered" must not overwrite "read".
_STATUS_RANK = {"sent": 1, "delivered": 2, "read": 3, "failed": 4}
# A receipt that found no row waits this long for one: its send recorded, or never (a message sent from
# outside convoflow on the same number, or a post whose answer was lost and which was sent again).
EARLY_RECEIPT_KEEP = timedelta(hours=1)


def _rank_sql(column: str) -> str:
    return f"CASE {column} " + " ".join(f"WHEN '{s}' THEN {r}" for s, r in _STATUS_RANK.items()) + " ELSE 0 END"


# Kept receipts keep the highest status reported, as the rows do (two webhooks may report one wamid at once).
_KEEP_EARLY = (
    'INSERT INTO "early_receipt" ("channel_message_id", "status", "error", "received_at") VALUES (?, ?, ?, ?) '
    'ON CONFLICT ("channel_message_id") DO UPDATE SET "status" = excluded."status", "error" = excluded."error" '
    "WHERE " + _rank_sql('excluded."status"') + " >= " + _rank_sql('"early_receipt"."status"')
)
# The kept receipts whose wamid a row now holds (one probe of the wamid index each, in the database).
_EARLY_FOUND = (
    'SELECT e."channel_message_id", e."status", e."error" FROM "early_receipt" e '
    'WHERE EXISTS (SELECT 1 FROM "outbox_message" o WHERE o."channel_message_id" = e."channel_message_id")'
)


@dataclass(frozen=True)
class Claimed:
    """An outbox row leased for sending: its payload (JSON text) and where it goes."""

    id: int
    contact_key: str
    to: str
    payload: str
    attempts: int


def encode(payload: dict[str, Any]) -> str:
    """A message as the outbox stores it (compact JSON, text as written)."""
    return compact_json(payload)


def enqueue(contact_id: int, payloads: list[dict[str, Any]], now: datetime | str) -> None:
    """Queue messages for one contact in the given order (one multi-row INSERT); `now` a datetime or its
    db.time_param form."""
    enqueue_encoded(contact_id, [encode(payload) for payload in payloads], now)


def enqueue_encoded(contact_id: int, bodies: list[str], now: datetime | str) -> None:
    """enqueue of messages already encoded (encode's text; a turn writes its replies' fixed shape by hand)."""
    if not bodies:
        return
    postgres = is_postgres()  # asked once: a call costs about 0.4k instructions
    if postgres:
        params: list[Any] = []
        for body in bodies:
            params += [contact_id, body, now, now]
    else:  # the contact and the time bound once, by number (_enqueue_sql)
        params = [contact_id, now, *bodies]
    execute(_enqueue_sql(len(bodies), postgres), params)


@lru_cache(maxsize=16)
def _enqueue_sql(count: int, postgres: bool) -> str:
    if postgres:
        return _INSERT + "VALUES " + ", ".join(["(?, ?, 'pending', 0, ?, ?)"] * count)
    # SQLite: numbered, so the contact and the time (next_attempt_at, created_at) are bound once for every
    # row (sqlite3 copies every text bound: about 1.1k instructions a time)
    return _INSERT + "VALUES " + ", ".join(f"(?1, ?{n}, 'pending', 0, ?2, ?2)" for n in range(3, count + 3))


def insert_sql(count: int, guard: str) -> str:
    """The INSERT of `count` rows for one contact as a statement to embed in a larger one (PostgreSQL's
    one-statement save): parameters contact id, next_attempt_at, created_at, then each payload in order;
    `guard` is a condition the rows are written under (e.g. that the session update matched)."""
    values = ", ".join(f"({n}, ?)" for n in range(count))
    return _INSERT + f"SELECT ?, v.p, 'pending', 0, ?, ? FROM (VALUES {values}) AS v (n, p) WHERE {guard} ORDER BY v.n"


def claim(now: datetime, lease_until: datetime, limit: int) -> list[Claimed]:
    """Lease up to `limit` rows to send (until `lease_until`): the oldest pending, due row of each contact
    with no older pending row, oldest first."""
    return _claimed(execute(_CLAIM[is_postgres()], (lease_until, now, limit)).fetchall())


def _claimed(rows: list[tuple]) -> list[Claimed]:
    # The contact's address as Meta expects it: its phone number, else its user id (sent as `recipient`).
    return [
        Claimed(id=row_id, contact_key=key, to=address or key, payload=payload, attempts=attempts)
        for row_id, payload, attempts, key, address in sorted(rows)
    ]


def record_sent(sent: list[tuple[int, str | None]], at: datetime) -> bool:
    """Mark rows the channel accepted as sent, each with the id the channel returned (one statement).
    True when one of their contacts has a later pending row, which claim() offers from now on."""
    if not sent:
        return False
    return any(later for (later,) in execute(_sent_sql(len(sent)), [x for pair in sent for x in pair] + [at]))


@lru_cache(maxsize=64)
def _sent_sql(count: int) -> str:
    # The first row's casts type the VALUES list: PostgreSQL cannot infer bare parameters' types there,
    # refused to PREPARE the statement and planned it anew on every mark.
    return _SENT.format(values=", ".join(["(CAST(? AS INTEGER), CAST(? AS TEXT))"] + ["(?, ?)"] * (count - 1)))


def record_sent_and_claim(
    sent: list[tuple[int, str]], at: datetime, lease_until: datetime, limit: int, look: bool
) -> list[Claimed]:
    """PostgreSQL, outside a transaction: record_sent and then claim, in one statement (its own
    transaction, durable at commit) instead of BEGIN, the two and COMMIT. The claim runs when `look`, or
    when a marked row's contact has a later pending row (record_sent's answer); it reads the statement's
    snapshot, where the marked rows are still pending, so "first of its contact" leaves them out."""
    params = [x for pair in sent for x in pair] + [at, lease_until, at, look, limit]
    return _claimed(execute(_sent_and_claim_sql(len(sent)), params).fetchall())


@lru_cache(maxsize=64)
def _sent_and_claim_sql(count: int) -> str:
    mark = _sent_sql(count).replace("RETURNING EXISTS", 'RETURNING "contact_id", EXISTS', 1) + ' AS "later"'
    first = (
        'f."id" = (SELECT min(p."id") FROM "outbox_message" p WHERE p."contact_id" = f."contact_id" '
        'AND p."status" = \'pending\' AND p."id" NOT IN (SELECT "id" FROM v))'
    )
    claim = _CLAIM_SQL.format(
        first=f'{first} AND (? OR EXISTS (SELECT 1 FROM m WHERE m."later"))', lock=" FOR UPDATE OF f SKIP LOCKED"
    )
    with_v, _, update = mark.partition(") UPDATE ")
    return f"{with_v}), m AS (UPDATE {update}), claimed AS ({claim}) SELECT * FROM claimed"


def retry_later(row_id: int, next_attempt_at: datetime, error: str) -> None:
    (
        OutboxMessage.update(attempts=OutboxMessage.attempts + 1, next_attempt_at=next_attempt_at, error=error[:2000])
        .where(OutboxMessage.id == row_id)
        .execute()
    )


def mark_failed(row_id: int, error: str) -> None:
    (
        OutboxMessage.update(status=FAILED, attempts=OutboxMessage.attempts + 1, error=error[:2000])
        .where(OutboxMessage.id == row_id)
        .execute()
    )


def record_deliveries(receipts: Iterable[tuple[str, str, str | None]], now: datetime) -> list[tuple[int, str]]:
    """Record the statuses the channel reported ((channel message id, sent|delivered|read|failed, error))
    on the rows it accepted; a status never goes back (read stays read when a late "delivered" arrives).
    A receipt whose row does not hold its id yet (Meta reported it before the sender recorded the send) is
    kept for apply_early_receipts. Returns (row id, error) for each message newly reported as not delivered."""
    latest: dict[str, tuple[str, str | None]] = {}
    for wamid, status, error in receipts:
        prev = latest.get(wamid)
        if prev is None or _STATUS_RANK.get(status, 0) >= _STATUS_RANK.get(prev[0], 0):
            latest[wamid] = (status, error)
    if not latest:
        return []
    undelivered, found = _apply_receipts(latest)
    for wamid in latest.keys() - found:  # before the sender recorded it: apply_early_receipts, later
        execute(_KEEP_EARLY, (wamid, *latest[wamid], now))
    return undelivered


def apply_early_receipts(now: datetime) -> list[tuple[int, str]]:
    """The sweep: record the kept receipts whose rows now hold their ids, and forget those that waited
    EARLY_RECEIPT_KEEP for none. Returns (row id, error) for each message newly reported as not delivered."""
    if execute('SELECT 1 FROM "early_receipt" LIMIT 1').fetchone() is None:
        return []
    with write_transaction():
        found = execute(_EARLY_FOUND).fetchall()
        undelivered, _ = _apply_receipts({wamid: (status, error) for wamid, status, error in found})
        for wamid, status, _ in found:  # the receipt read: a higher one kept meanwhile waits for the next sweep
            EarlyReceipt.delete().where(
                (EarlyReceipt.channel_message_id == wamid) & (EarlyReceipt.status == status)
            ).execute()
        EarlyReceipt.delete().where(EarlyReceipt.received_at < now - EARLY_RECEIPT_KEEP).execute()
    return undelivered


def _apply_receipts(latest: dict[str, tuple[str, str | None]]) -> tuple[list[tuple[int, str]], set[str]]:
    """Each receipt (wamid -> status, error) recorded on the row holding its wamid; (row id, error) of the
    rows newly reported as not delivered, and the wamids a row held."""
    rows = OutboxMessage.select(
        OutboxMessage.id, OutboxMessage.channel_message_id, OutboxMessage.delivery_status
    ).where(OutboxMessage.channel_message_id.in_(list(latest)))
    undelivered, found = [], set()
    for row in rows:
        found.add(row.channel_message_id)
        status, error = latest[row.channel_message_id]
        if _STATUS_RANK.get(status, 0) < _STATUS_RANK.get(row.delivery_status or "", 0):
            continue
        changes = {OutboxMessage.delivery_status: status}
        if error:
            changes[OutboxMessage.error] = f"delivery failed: {error}"
            undelivered.append((row.id, error))
        OutboxMessage.update(changes).where(OutboxMessage.id == row.id).execute()
    return undelivered, found


def counts_by_status() -> dict[str, int]:
    """How many rows are in each status (for metrics): the pending ones from the partial index of pending
    rows, the others from the index of sent and failed rows (no scan of the table)."""
    done = execute(
        'SELECT "status", COUNT(*) FROM "outbox_message" WHERE "status" <> \'pending\' GROUP BY "status"'
    ).fetchall()
    pending = execute('SELECT COUNT(*) FROM "outbox_message" WHERE "status" = \'pending\'').fetchone()[0]
    return dict(done) | ({PENDING: pending} if pending else {})


def for_contact(contact_id: int) -> list[dict[str, Any]]:
    """Payloads queued for a contact, in order (for `flows chat` and tests)."""
    return [
        json.loads(p)
        for (p,) in execute(
            'SELECT "payload" FROM "outbox_message" WHERE "contact_id" = ? ORDER BY "id"', (contact_id,)
        ).fetchall()
    ]


def release(row_ids: list[int], now: datetime) -> None:
    """Hand leased rows back at once (a sender stopping before it sent them), instead of after the lease."""
    if row_ids:
        (
            OutboxMessage.update(next_attempt_at=now)
            .where(OutboxMessage.id.in_(row_ids) & (OutboxMessage.status == PENDING))
            .execute()
        )
