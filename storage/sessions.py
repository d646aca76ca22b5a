"""Conversation sessions and the claim that serialises one contact's turns.

Why a claim and not a lock: a turn may run actions that call O'mari for up to 40 s. Holding a database
lock that long would stall every other writer on SQLite and pin a connection and a row lock on
PostgreSQL. So a turn runs in three parts:

1. claim — one short write transaction, in fact one statement: `INSERT … ON CONFLICT (contact_id) DO
   UPDATE SET claimed_by = <token>, claimed_until = now + lease WHERE the current claim is empty or
   ran out RETURNING <state>`. It creates the session row when missing (what `INSERT … ON CONFLICT DO
   NOTHING` would) and takes the row lock `SELECT … FOR UPDATE` would take (PostgreSQL), or the
   database write lock for its duration (SQLite, like `BEGIN IMMEDIATE`), in one round trip; it returns
   no row when another live claim holds the contact, and the state otherwise, so loading it costs
   nothing more. Workers run it inside the `BEGIN IMMEDIATE` / `FOR UPDATE SKIP LOCKED` transaction
   that picks their inbox row (on PostgreSQL the pick and the claim are one statement: claim_next). On
   PostgreSQL a claim's commit does not wait for the disk: only the save has to be durable.
2. the turn — outside any transaction: the engine, actions, HTTP calls.
3. save — one write transaction: `UPDATE session … SET <new state>, claimed_by = NULL WHERE id = ? AND
   claimed_by = <token>`, plus the outbox rows and the inbox row marked processed. When the update
   finds no row the claim was lost (the lease ran out and another worker took over): the transaction is
   rolled back and ClaimLost raised, so a stale worker never overwrites newer state. On PostgreSQL a
   worker's save is one statement whose writes all depend on that update (save_and_release's `processed`).

A worker that dies mid-turn leaves its claim behind; the lease (LEASE, longer than the 40 s action
timeout plus margin) lets another worker take the contact once it runs out, and the inbox row is still
unprocessed, so the message is handled again — actions return their stored results for the same
idempotency key, so nothing is paid twice. A second worker for a claimed contact either waits
(handle_message polls with a growing pause, bounded) or moves on to another contact (process_inbox).
The claim token is unique per claim (worker id plus a random part) so two claims by one worker differ.
A clean stop mid-turn (Ctrl-C, SIGTERM) gives the claim back at once instead of waiting out the lease.

A turn that needs no claim at all (handle_message, and an inbox worker on SQLite through peek_next): the claim's own commit is skipped when
nothing contends. peek reads the stored session (no write, no commit) with whether the message was handled
already; the turn runs on that state and its save is a compare-and-set — `… WHERE "id" = ? AND
("claimed_by" = <token> OR "claimed_by" IS NULL AND "revision" IS <as read> AND "updated_at" IS <as read>)` —
every save counts itself in the session's revision, so the turn is saved, in one commit, only onto the state it
was computed from. When another turn saved in between (or holds a
claim) nothing is written and the turn runs again under a claim; the engine is pure, so running it twice
changes nothing outside. Only actions act outside: a turn that reaches one first claims the session it
read with the same compare-and-set (claim_read) and checks the message was not handled meanwhile, so an
action never runs on a state that moved on, and from there the turn is a claimed one.

Lock order on PostgreSQL: a worker's pick locks the inbox row, then the session row; the save writes the
inbox row, then the session row. Same order, so two workers never wait on each other in a cycle, and a
pick tries one contact per transaction (a failed `ON CONFLICT … WHERE` still locks the row it found).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from operator import itemgetter
from typing import Any, Callable, NamedTuple

from . import inbox, outbox
from .contacts import SEEN, TOUCH_SQL
from .db import execute, is_postgres, stored_time
from .text import ascii_json, stored_json

LEASE = timedelta(seconds=120)

_STATE_COLUMNS = (
    "flow",
    "flow_version",
    "step",
    "vars",
    "attempts",
    "status",
    "started_at",
    "updated_at",
    "expires_at",
)
_RETURNING = ", ".join(f'"{c}"' for c in ("id", *_STATE_COLUMNS))
# What the compare-and-set of a turn read without a claim compares (see peek), instead of every state column
# (nine parameters bound and compared, six of them texts copied: about 7k instructions a turn): the session's
# revision, which every save below counts one up, and updated_at, which a process of a release before the
# revision (still serving between `flows db upgrade` and its restart) changes on every save that changes
# anything. A read row's (revision, updated_at): _read_as, of a row laid out as _PEEK's first columns.
_READ_COLUMNS = ("revision", "updated_at")
_read_as = itemgetter(1 + len(_STATE_COLUMNS), 1 + _STATE_COLUMNS.index("updated_at"))

_CLAIM_TAIL = (
    'ON CONFLICT ("contact_id") DO UPDATE SET "claimed_by" = excluded."claimed_by", '
    '"claimed_until" = excluded."claimed_until" '
    'WHERE "session"."claimed_until" IS NULL OR "session"."claimed_until" < ? '
    f"RETURNING {_RETURNING}"
)
_CLAIM_COLUMNS = 'INSERT INTO "session" ("contact_id", "vars", "attempts", "status", "claimed_by", "claimed_until") '
_CLAIM = {
    False: _CLAIM_COLUMNS + "VALUES (?, '{}', 0, 'ended', ?, ?) " + _CLAIM_TAIL,
    # PostgreSQL: the claim's transaction commits without waiting for the WAL flush (set_config(…, true)
    # is local to the transaction, and the setting is read at commit), in the same single round trip.
    True: _CLAIM_COLUMNS + "SELECT ?, '{}', 0, 'ended', ?, ? "
    "FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit " + _CLAIM_TAIL,
}

# The same claim for a known contact, found by its key in the same statement: no row when the contact is
# new (nothing to insert from) or claimed; the caller then takes the slow path (create, claim or wait).
_CLAIM_BY_KEY_TAIL = _CLAIM_TAIL + ', "contact_id"'
_CLAIM_BY_KEY = {
    False: _CLAIM_COLUMNS
    + 'SELECT c."id", \'{}\', 0, \'ended\', ?, ? FROM "contact" c WHERE c."key" = ? '
    + _CLAIM_BY_KEY_TAIL,
    True: _CLAIM_COLUMNS + "SELECT c.\"id\", '{}', 0, 'ended', ?, ? FROM \"contact\" c "
    "CROSS JOIN (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit "
    'WHERE c."key" = ? ' + _CLAIM_BY_KEY_TAIL,
}

# PostgreSQL: a worker's pick in one statement (its own transaction): lock the oldest unprocessed inbox
# row of a contact nobody holds (SKIP LOCKED, so concurrent workers pick different contacts), then claim
# that contact's session — inbox row before session row, the lock order of the save. One row back when a
# candidate was found: its contact id, then the claimed session (NULLs when another worker won the race).
# Ordered by sent_at alone, the pending index's key, so the scan stops at the first row of an unclaimed
# contact: "sent_at, id" needed an incremental sort, which reads at least 32 rows (and joins each to its
# session) before giving one — several times the CPU of a pick. Which contact goes first among messages
# sent in the same second does not matter; a contact's own messages are still read in (sent_at, id) order
# (inbox.oldest_pending_with_key).
# The column after the session says whether another message was waiting, of this contact or of one nobody
# held, beside the one taken: only then does the worker look again after its turn and wake one more idle
# thread. It looks from the taken row's sent_at on: every row before it the pick passed over, its contact
# held, or locked by another pick or a save (SKIP LOCKED), or handled since the snapshot, none of them a
# message for this thread (when another pick had locked the contact's older row, the worker handles that
# one and its save's "next" finds the row taken); from the start of the pending index it walked the held
# contacts' backlog a second time (6 held contacts with 10 waiting messages each: 522 buffer hits a pick,
# 282 from the taken row).
# Then the pick hands over the row it took, with its contact's key, when no earlier unprocessed row of the
# contact shows in the statement's snapshot (one probe of the pending contact index): the row is
# locked and was checked unprocessed in its latest version, and nobody else may handle it while the claim
# holds, so the worker needs no read after the claim. Else (another pick had locked the contact's older
# row, or it was sent in the same second with a lower id) the last column is false and the worker reads
# the contact's oldest message, as before.
_CLAIM_NEXT = (
    'WITH pick AS (SELECT i."contact_id", i."id", i."sent_at" FROM "inbox_message" i LEFT JOIN "session" s ON s."contact_id" = '
    'i."contact_id" WHERE i."processed_at" IS NULL AND (s."claimed_until" IS NULL OR s."claimed_until" < ?) '
    'ORDER BY i."sent_at" LIMIT 1 FOR UPDATE OF i SKIP LOCKED), '
    "claimed AS (" + _CLAIM_COLUMNS + "SELECT pick.\"contact_id\", '{}', 0, 'ended', ?, ? FROM pick "
    "CROSS JOIN (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit " + _CLAIM_TAIL + ") "
    f'SELECT pick."contact_id", {", ".join("claimed." + c for c in _RETURNING.split(", "))}, '
    '(SELECT 1 FROM "inbox_message" m LEFT JOIN "session" o ON o."contact_id" = m."contact_id" '
    'WHERE m."processed_at" IS NULL AND m."id" <> pick."id" AND m."sent_at" >= pick."sent_at" '
    'AND (o."claimed_until" IS NULL OR o."claimed_until" < ?) ORDER BY m."sent_at" LIMIT 1) IS NOT NULL, '
    'pick."id", h."channel_message_id", h."payload", pick."sent_at", '
    '(SELECT c."key" FROM "contact" c WHERE c."id" = pick."contact_id"), NOT EXISTS (SELECT 1 FROM '
    '"inbox_message" e WHERE e."contact_id" = pick."contact_id" AND e."processed_at" IS NULL '
    'AND e."sent_at" <= pick."sent_at" AND (e."sent_at" < pick."sent_at" OR e."id" < pick."id")) '
    "FROM pick LEFT JOIN claimed ON true "
    'CROSS JOIN LATERAL (SELECT "channel_message_id", "payload" FROM "inbox_message" WHERE "id" = pick."id") h'
)
_MORE = 1 + len(_STATE_COLUMNS) + 1  # claim_next's row: the contact, the session, more, the row handed over

# The expiry sweep's lower bound of expires_at (storage/models.py): a save sets it only when the turn brings
# the expiry nearer (a conversation starting, or an expiry earlier than the one read); a NULL parameter
# keeps it, and SQLite's save leaves it out of the SET list then (_save_keeping), so its index is not
# rewritten by every turn of an expiring flow.
_CHECK_SET = '"expiry_check_at" = COALESCE(?, "expiry_check_at"), '
_SAVE = (
    'UPDATE "session" SET "flow" = ?, "flow_version" = ?, "step" = ?, "vars" = ?, "attempts" = ?, "status" = ?, '
    '"started_at" = ?, "updated_at" = ?, "expires_at" = ?, ' + _CHECK_SET + '"revision" = "revision" + 1, '
    '"claimed_by" = NULL, "claimed_until" = NULL WHERE "id" = ? AND "claimed_by" = ?'
)

# handle_message's optimistic turn (see peek): the save and the late claim apply only while the session
# is unclaimed and still holds the state read — a compare-and-set on its revision (_READ_COLUMNS), so a turn
# computed from a state someone else has since changed is never saved.
_UNCHANGED = {
    False: " AND ".join(f'"{c}" IS ?' for c in _READ_COLUMNS),
    True: " AND ".join(f'"{c}" IS NOT DISTINCT FROM ?' for c in _READ_COLUMNS),
}
_SAVE_READ = {
    pg: _SAVE.replace('"claimed_by" = ?', f'("claimed_by" = ? OR "claimed_by" IS NULL AND {cas})')
    for pg, cas in _UNCHANGED.items()
}
# The same saves leaving out of the SET list each of flow, flow_version, status and started_at that the turn
# left unchanged (SQLite): SQLite rewrites an index whose column is in the SET list even to the same value,
# and most turns move the step only (a page fewer written per turn); a conversation's start, unchanged on
# every turn but its first, is then not formatted again for SQLite (isoformat and the adapter's call, about
# 8k instructions), nor are flow and version bound when a conversation starts again or ends.
_KEPT = (0, 1, 5, 6)  # their places in _STATE_COLUMNS (save_and_release compares them in this order)
_CHECK = len(_STATE_COLUMNS)  # the expiry check's place in a save's parameters, after the state's
_SETS = {place: f'"{_STATE_COLUMNS[place]}" = ?, ' for place in _KEPT} | {_CHECK: _CHECK_SET}
_STARTED, _UPDATED, _EXPIRES = (_STATE_COLUMNS.index(c) for c in ("started_at", "updated_at", "expires_at"))


# One argument, the variant's whole key: an lru_cache of three built and hashed a key tuple of its own (about
# 0.8k instructions a turn more).
@lru_cache(maxsize=64)
def _save_keeping(variant: tuple[bool, ...]) -> tuple[str, Callable[[list], tuple]]:
    """The SQLite save (_SAVE, or _SAVE_READ's compare-and-set when `read`) without the kept columns whose
    place in `variant` is True (each of _KEPT unchanged, then the expiry check kept), and the getter of its
    parameters out of save_and_release's list. Then `expires_none`: the expiry is None, written as a NULL
    in the statement (a None parameter goes through sqlite3's adapter lookup and call, about 1.4k
    instructions); `read`; and `tokenless`: a read with no token (see Claim.token), whose save is the
    compare-and-set alone, its NULL token not bound."""
    *kept, expires_none, read, tokenless = variant
    sql = _SAVE_READ[False] if read else _SAVE
    left_out = {place for place, unchanged in zip((*_KEPT, _CHECK), kept) if unchanged}
    for place in left_out:
        sql = sql.replace(_SETS[place], "", 1)
    if expires_none:
        sql = sql.replace('"expires_at" = ?', '"expires_at" = NULL', 1)
        left_out.add(_EXPIRES)
    if tokenless:
        sql = sql.replace('"claimed_by" = ? OR ', "", 1)
        left_out.add(_CHECK + 2)  # the token's place, after the expiry check and the session id
    count = len(_STATE_COLUMNS) + 3 + (len(_READ_COLUMNS) if read else 0)
    return sql, itemgetter(*(i for i in range(count) if i not in left_out))


_CLAIM_READ = {
    pg: f'UPDATE "session" SET "claimed_by" = ?, "claimed_until" = ? WHERE "id" = ? AND "claimed_by" IS NULL AND {cas}'
    for pg, cas in _UNCHANGED.items()
}

# One read, no write: the contact's session as stored and its revision, what the turn's touch compares
# (contacts.SEEN; when the channel names nobody, last_seen_at alone: the names would be compared with nothing,
# and each column read costs about 0.5k instructions), and
# in one column NULL when a claim holds the session (live or run out), else whether this message id was
# handled already (1 or 0; a column fewer to describe and convert than the claim's end and the handled time).
_PEEK = {
    names: (
        f'SELECT s.{_RETURNING.replace(", ", ", s.")}, s."revision", {", ".join("c." + c for c in seen)}, '
        's."contact_id", CASE WHEN s."claimed_until" IS NULL THEN EXISTS (SELECT 1 FROM "inbox_message" i '
        'WHERE i."channel_message_id" = ? AND i."processed_at" IS NOT NULL) END '
        'FROM "session" s JOIN "contact" c ON c."id" = s."contact_id" WHERE c."key" = ?'
    )
    for names, seen in ((True, SEEN), (False, SEEN[:1]))
}
_PEEK_SEEN = slice(2 + len(_STATE_COLUMNS), -2)

# A worker's optimistic pick (peek_next): the oldest unprocessed message of a contact nobody holds and that
# this process's other threads are not handling, with the contact's key and session as stored: one read,
# no write, no commit.
_PEEK_NEXT = (
    f'SELECT {", ".join("i." + c for c in inbox.COLUMNS.split(", "))}, c."key", '
    f's.{_RETURNING.replace(", ", ", s.")}, s."revision", s."claimed_until" FROM "inbox_message" i '
    'JOIN "contact" c ON c."id" = i."contact_id" LEFT JOIN "session" s ON s."contact_id" = i."contact_id" '
    'WHERE i."processed_at" IS NULL AND (s."claimed_until" IS NULL OR s."claimed_until" < ?){skip} '
    'ORDER BY i."sent_at", i."id" LIMIT {limit}'
)

_RELEASE = 'UPDATE "session" SET "claimed_by" = NULL, "claimed_until" = NULL WHERE "id" = ? AND "claimed_by" = ?'

# The expiry sweep (due_for_expiry): first the sessions whose check has come but that are not due move their
# check up to their expiry (a turn pushed it later) or clear it (ended, or no expiry any more), in one
# statement over the check's index; then the due ones not claimed are read, in the order they came due.
_RECHECK = (
    'UPDATE "session" SET "expiry_check_at" = CASE WHEN "status" = \'active\' THEN "expires_at" END '
    'WHERE "expiry_check_at" <= ? AND ("status" <> \'active\' OR "expires_at" IS NULL OR "expires_at" > ?)'
)
_DUE = (
    'SELECT s."id", s."contact_id", c."key" FROM "session" s JOIN "contact" c ON c."id" = s."contact_id" '
    'WHERE s."expiry_check_at" <= ? AND s."status" = \'active\' AND s."expires_at" <= ? '
    'AND (s."claimed_until" IS NULL OR s."claimed_until" < ?) ORDER BY s."expiry_check_at" LIMIT ?'
)
# Sessions an older release saved (it wrote expires_at only) whose check is missing or later than their
# expiry, during a rolling upgrade: given their expiry as check. A scan of the active sessions, run now and
# then (channels/expiry.py), not on every sweep.
_BACKFILL = (
    'UPDATE "session" SET "expiry_check_at" = "expires_at" WHERE "status" = \'active\' AND "expires_at" IS NOT NULL '
    'AND ("expiry_check_at" IS NULL OR "expiry_check_at" > "expires_at")'
)


class ClaimLost(RuntimeError):
    """The claim ran out and another worker took the contact before this turn saved: its work is dropped."""


class ContactBusy(RuntimeError):
    """Another worker holds the contact's claim and did not release it in time."""


class Claim(NamedTuple):
    """A held claim on one contact's session, with the state as it was when claimed. (Immutable, built by
    tuple's constructor: a frozen dataclass set each of its six fields through object.__setattr__, about
    3.5k instructions more a turn.)"""

    session_id: int | None  # None: no session stored yet (unstored)
    contact_id: int | None  # None: the contact may not be stored yet either (unstored)
    token: str | None  # None: a read that claims nothing yet (handle_message's peek; see OptimisticTurn)
    state: dict[str, Any]  # the _STATE_COLUMNS, vars decoded, times as datetimes
    # A read, not yet a claim (peek): the _READ_COLUMNS as stored, which the save and claim_read compare.
    read_as: tuple | None = None
    seen: tuple | None = None  # the contact's contacts.SEEN columns as peek read them (the save's touch), or
    # the first of them alone when the message named nobody (peek's `names`)


@dataclass(frozen=True)
class Processed:
    """What a turn's save writes besides the session (save_and_release's one-statement form, PostgreSQL):
    the inbox row to mark processed (a worker's, by id) or, for a message handled as it arrived, `received`
    (inbox.processed_params and contacts.touch_params: the message to store processed, the contact to
    refresh); the outbox rows (JSON texts, in order) and the events ((at, kind, contact key, subject,
    detail JSON) tuples)."""

    inbox_id: int | None
    at: datetime
    outbound: list[str]
    events: list[tuple]
    received: tuple[tuple, tuple] | None = None


# A contact's first turn (handle_message): no session row yet, so the turn runs on the state a new row
# holds and its save inserts the row — unless one appeared meanwhile (then ClaimLost: claim and run again).
_NEW_STATE = (None, None, None, "{}", 0, "ended", None, None, None)  # the _STATE_COLUMNS of a row _CLAIM inserts
_NEW_READ = (0, None)  # its _READ_COLUMNS
_INSERT_NEW = (
    'INSERT INTO "session" ("contact_id", ' + ", ".join(f'"{c}"' for c in _STATE_COLUMNS) + ', "expiry_check_at") '
    'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT ("contact_id") DO NOTHING'
)


def _decode(row: tuple) -> tuple[int, dict[str, Any]]:
    """A row laid out as _RETURNING (the session's id, then _STATE_COLUMNS) as (id, state). One dict literal in
    _STATE_COLUMNS' order, not the columns zipped and three of them set again: about 5k instructions less at
    every peek and claim."""
    _, flow, version, step, variables, attempts, status, started, updated, expires = row[: 1 + len(_STATE_COLUMNS)]
    return row[0], {
        "flow": flow,
        "flow_version": version,
        "step": step,
        "vars": stored_json(variables or "{}"),
        "attempts": attempts,
        "status": status,
        "started_at": stored_time(started),
        "updated_at": stored_time(updated),
        "expires_at": stored_time(expires),
    }


def try_claim(contact_id: int, token: str, now: datetime, lease: timedelta = LEASE) -> Claim | None:
    """Claim the contact's session (creating it when missing) unless a live claim holds it.

    One statement: run alone it is its own transaction (on SQLite it takes the write lock for its
    duration, like BEGIN IMMEDIATE); a worker runs it inside the transaction that picks its inbox row.
    On PostgreSQL that transaction's commit does not wait for the disk: a claim is soft state, and one
    lost in a server crash only means the save finds its token gone (ClaimLost) and the message is
    handled again, with the stored action results.
    """
    row = execute(_CLAIM[is_postgres()], (contact_id, token, now + lease, now)).fetchone()
    if row is None:
        return None
    session_id, state = _decode(row)
    return Claim(session_id, contact_id, token, state)


def try_claim_by_key(contact_key: str, token: str, now: datetime, lease: timedelta = LEASE) -> Claim | None:
    """try_claim for a contact already stored, looked up by its key in the same statement (one round trip
    for the common case). None when the contact is unknown or claimed: use try_claim with its id then.
    """
    row = execute(_CLAIM_BY_KEY[is_postgres()], (token, now + lease, contact_key, now)).fetchone()
    if row is None:
        return None
    session_id, state = _decode(row[:-1])
    return Claim(session_id, row[-1], token, state)


def peek(contact_key: str, message_id: str, token: str | None, names: bool = True) -> tuple[Claim | None, bool] | None:
    """Read a stored contact's session without claiming it (one read, no commit), for a turn run
    optimistically: (the unclaimed Claim, whether message_id was handled already). (None, False) when a
    claim holds it, None when the contact or its session is new: take the claim then.

    The turn's save applies only if the session is still unclaimed and unchanged (else ClaimLost, and the
    caller claims and runs the turn again); a turn that reaches an action first claims with claim_read, so
    an action never runs on a state that moved on. `names`: whether the message names the person (a profile
    name or a wa_id for the touch to compare); when not, the Claim's `seen` is last_seen_at alone.
    """
    row = execute(_PEEK[names], (message_id, contact_key)).fetchone()
    if row is None:
        return None
    handled = row[-1]
    if handled is None:  # claimed, live or run out: the claim path waits for it or takes it over
        return None, False
    session_id, state = _decode(row)
    # By position (read_as, seen): a keyword made the call pack a dict for Claim's __new__ (about 3k instructions).
    claim = Claim(session_id, row[-2], token, state, _read_as(row), row[_PEEK_SEEN])
    return claim, bool(handled)


def unstored(token: str | None) -> Claim:
    """A read of a contact with no session yet (peek gave None), for a first turn run like a peek's: its
    save (save_and_release, after `with_contact`) creates the session. It never claims (claim_read finds no
    row), so a turn that reaches an action takes the claim path."""
    return Claim(None, None, token, _decode((None, *_NEW_STATE))[1], read_as=_NEW_READ)


def with_contact(claim: Claim, contact_id: int) -> Claim:
    """An unstored read's Claim once its contact is known (its save resolves or creates the contact)."""
    return Claim(claim.session_id, contact_id, claim.token, claim.state, claim.read_as)


def claim_read(claim: Claim, now: datetime, lease: timedelta = LEASE) -> bool:
    """Claim the session a peek read, if it is still unclaimed and unchanged (one statement, its own
    transaction); False when it moved on."""
    if claim.session_id is None:  # unstored: nothing to claim yet
        return False
    params = (claim.token, now + lease, claim.session_id, *claim.read_as)
    return execute(_CLAIM_READ[is_postgres()], params).rowcount == 1


def peek_next(token: str, now: datetime, skip: frozenset[int] = frozenset()) -> tuple[Claim | None, Any, str] | None:
    """The oldest unprocessed message of a contact nobody holds (and not in `skip`, the contacts this
    process is handling), read without a claim: (the session's unclaimed Claim, the inbox.InboxRow, the
    contact's key), or None when there is no such message. The Claim is None when the session is new or
    held by a claim that ran out: take the claim path then. See peek for how the read turn saves.
    """
    found = peek_waiting(lambda: token, now, skip, 1)
    return found[0] if found else None


def peek_waiting(
    tokens: Callable[[], str], now: datetime, skip: frozenset[int] = frozenset(), contacts: int = 1
) -> list[tuple[Claim | None, Any, str]]:
    """peek_next for up to `contacts` contacts at once, in one read: each one's oldest unprocessed message,
    oldest first, each Claim with a token from `tokens()` (a turn thread's group, channels/inbox_turns.py)."""
    marks = f' AND i."contact_id" NOT IN ({", ".join("?" * len(skip))})' if skip else ""
    # A contact may have several messages waiting: read a few more rows than contacts, keep each one's first.
    rows = execute(_PEEK_NEXT.format(skip=marks, limit=contacts if contacts == 1 else 4 * contacts), (now, *skip))
    rows = rows.fetchall()
    found: list[tuple[Claim | None, Any, str]] = []
    seen: set[int] = set()
    for row in rows:
        if row[1] in seen:
            continue
        seen.add(row[1])
        message, key, session = inbox.row_of(row[:6]), row[6], row[7:]
        if session[0] is None or session[-1] is not None:
            found.append((None, message, key))
        else:
            session_id, state = _decode(session[:-1])
            found.append(
                (Claim(session_id, message.contact_id, tokens(), state, read_as=_read_as(session)), message, key)
            )
        if len(found) == contacts:
            break
    return found


class Pick(tuple):
    """claim_next's (found, claim), in `more` whether another message was waiting to be taken, and in
    `taken` the claimed contact's oldest unprocessed message with its key, when the pick could hand it over
    (else None: read it with inbox.oldest_pending_with_key)."""

    more = False
    taken: tuple[inbox.InboxRow, str] | None = None

    @classmethod
    def of(cls, found: bool, claim: Claim | None, more: bool, taken: tuple[inbox.InboxRow, str] | None = None) -> Pick:
        pick = cls((found, claim))
        pick.more, pick.taken = more, taken
        return pick


def claim_next(token: str, now: datetime, lease: timedelta = LEASE) -> Pick:
    """PostgreSQL only, outside a transaction: claim the contact with the oldest unprocessed message nobody
    holds, in one statement (see _CLAIM_NEXT). Returns (False, None) when there is no such contact,
    (True, None) when another worker claimed it first, (True, claim) otherwise; its `more` says whether
    another message was waiting beside it, of this contact or of one nobody held (the pick's snapshot), and
    its `taken` is the message the claim is for, when the pick could hand it over.
    """
    row = execute(_CLAIM_NEXT, (now, token, now + lease, now, now)).fetchone()
    if row is None:
        return Pick.of(False, None, False)
    more = row[_MORE]
    if row[1] is None:
        return Pick.of(True, None, more)
    session_id, state = _decode(row[1:_MORE])
    taken = None
    if row[-1]:  # the contact's oldest unprocessed message: handed over
        message_id, channel_message_id, payload, sent_at, key = row[_MORE + 1 : -1]
        taken = inbox.row_of((message_id, row[0], channel_message_id, payload, sent_at, None)), key
    return Pick.of(True, Claim(session_id, row[0], token, state), more, taken)


def _expiry_check(before: dict[str, Any], expires: datetime | None) -> datetime | None:
    """The expiry check a save writes (None: keep the stored one). The stored check is at most the expiry
    `before` held while that conversation was active (the invariant the sweep relies on), so it stays a lower
    bound when the expiry only moves later: it is set only when an expiry comes where there was none, or
    nearer than before."""
    if expires is None:
        return None  # ended, or no expiry: a check left behind is cleared by the next sweep that reaches it
    was = before["expires_at"]
    if was is None or before["status"] != "active" or expires < was:
        return expires
    return None


def save_and_release(
    claim: Claim, state: dict[str, Any], processed: Processed | None = None, at: tuple[datetime, Any] | None = None
) -> bool:
    """Write the new state and release the claim; raise ClaimLost when the claim is no longer ours (or, for
    a peek's unclaimed Claim, when the session changed since it was read). Returns whether another message
    of the contact may be waiting: only a worker's one-statement save (below) looks; the others say True.

    Call inside the write transaction that also writes the outbox and marks the inbox row processed.

    With `processed` (PostgreSQL only, outside a transaction): a turn's whole save in one statement, its
    own transaction, durable at commit — the inbox row marked processed (a worker's row, locked first: the
    lock order of a worker's pick; or a message handled as it arrived, stored processed), the new state
    with the claim released, the outbox rows and the events. Every write depends on the session update:
    when the claim is no longer ours nothing is written and ClaimLost is raised, as in the transaction
    form; ClaimLost too when a message handled as it arrived was marked processed meanwhile (nothing but
    the session is then written, and only if its state is as this turn read it). A worker's row: the same
    statement says whether the contact had another unprocessed message (its snapshot), which nobody could
    take while this turn held the contact.

    `at`: the save's time and the form db.time_param made of it, when the caller has made it (a turn's save);
    a state time that is that very time (the turn's updated_at, and started_at when the conversation started
    in it) is bound in that form: sqlite3 formats a datetime through its adapter, a Python call, about 6.7k
    instructions a parameter.
    """
    before, expires = claim.state, state["expires_at"]
    # Each of _STATE_COLUMNS by name, in its order: list(map(state.get, _STATE_COLUMNS)) and the two set
    # again after it cost about 2.4k instructions more.
    params = [
        state["flow"],
        state["flow_version"],
        state["step"],
        ascii_json(state["vars"] or {}),
        state["attempts"] or 0,
        state["status"],
        state["started_at"],
        state["updated_at"],
        expires,
        _expiry_check(before, expires),
        claim.session_id,
        claim.token,
    ]
    if claim.read_as is not None:  # a peek's turn: saved if still ours or unclaimed and unchanged
        params += claim.read_as
    if at is not None:
        now, stamp = at
        if params[_UPDATED] is now:
            params[_UPDATED] = stamp
        if params[_STARTED] is now:
            params[_STARTED] = stamp
    more = True
    if claim.session_id is None:  # an unstored read's first turn: the session is created, if still missing
        saved = execute(_INSERT_NEW, (claim.contact_id, *params[: _CHECK + 1])).rowcount
    elif processed is not None:
        saved, more = _save_processed(claim, params, processed)
    elif not is_postgres():
        # Each kept column unchanged since claimed (no one else writes a claimed session) or read (the
        # compare-and-set holds), and the expiry check when kept, is left out of the SET list. _KEPT's
        # columns compared one by one: map(eq, …) over two itemgetters cost about 3k instructions more.
        sql, kept_params = _save_keeping(
            (
                params[0] == before["flow"],
                params[1] == before["flow_version"],
                params[5] == before["status"],
                params[6] == before["started_at"],
                params[_CHECK] is None,
                expires is None,
                claim.read_as is not None,
                claim.token is None,
            )
        )
        saved = execute(sql, kept_params(params)).rowcount
    else:
        saved = execute(_SAVE_READ[is_postgres()] if claim.read_as is not None else _SAVE, params).rowcount
    if saved != 1:
        raise ClaimLost(f"the claim on session {claim.session_id} ran out before the turn saved")
    return more


def _writes_under(guard: str, outbound: int, events: int) -> list[str]:
    """The outbox rows and events of a one-statement save, written only under `guard`."""
    parts = []
    if outbound:
        parts.append(f"o AS ({outbox.insert_sql(outbound, guard)})")
    if events:
        values = ", ".join(f"({n}, ?, ?, ?, ?, ?)" for n in range(events))
        parts.append(
            'e AS (INSERT INTO "event" ("at", "kind", "contact_key", "subject", "detail") '
            f"SELECT v.a, v.k, v.c, v.s, v.d FROM (VALUES {values}) AS v (n, a, k, c, s, d) "
            f"WHERE {guard} ORDER BY v.n)"
        )
    return parts


# A worker's save also says whether the contact has another unprocessed message (the pending contact
# index, one probe): its next message, stored while this turn held the contact, was found held by every
# look, so the worker looks again at once instead of leaving it to the next delivery or the poll.
_NEXT_OF_CONTACT = (
    'EXISTS (SELECT 1 FROM "inbox_message" p, i WHERE p."contact_id" = i."contact_id" '
    'AND p."processed_at" IS NULL AND p."id" <> i."id")'
)


@lru_cache(maxsize=64)
def _save_processed_sql(outbound: int, events: int) -> str:
    parts = [
        # The inbox row is locked first (the lock order of a worker's pick), then the session row.
        'WITH i AS (SELECT "id", "contact_id" FROM "inbox_message" WHERE "id" = ? FOR UPDATE), '
        "s AS (" + _SAVE + ' AND (SELECT COUNT(*) FROM i) >= 0 RETURNING "id"), '
        'm AS (UPDATE "inbox_message" SET "processed_at" = ?, "error" = NULL WHERE "id" = ? AND EXISTS (SELECT 1 FROM s))'
    ]
    return (
        ", ".join(parts + _writes_under("EXISTS (SELECT 1 FROM s)", outbound, events))
        + f" SELECT COUNT(*), {_NEXT_OF_CONTACT} FROM s"
    )


@lru_cache(maxsize=64)
def _save_received_sql(outbound: int, events: int, read: bool) -> str:
    # The message's row, when the webhook stored it, is locked first (the lock order of a worker's pick),
    # and a turn does not save over a message handled meanwhile; the message is stored processed and the
    # contact refreshed only under the session update, the rest only under the message's write.
    parts = [
        'WITH l AS (SELECT "processed_at" FROM "inbox_message" WHERE "channel_message_id" = ? FOR UPDATE), '
        "s AS ("
        + (_SAVE_READ[True] if read else _SAVE)
        + ' AND NOT EXISTS (SELECT 1 FROM l WHERE l."processed_at" IS NOT NULL) RETURNING "id"), '
        "i AS (" + inbox.add_processed_sql("EXISTS (SELECT 1 FROM s)") + "), "
        "c AS (" + TOUCH_SQL + " AND EXISTS (SELECT 1 FROM i))"
    ]
    return ", ".join(parts + _writes_under("EXISTS (SELECT 1 FROM i)", outbound, events)) + " SELECT COUNT(*) FROM i"


def _save_processed(claim: Claim, params: list[Any], processed: Processed) -> tuple[int, bool]:
    """(sessions saved, whether the contact may have another message waiting)."""
    if processed.received is None:
        sql = _save_processed_sql(len(processed.outbound), len(processed.events))
        params = [processed.inbox_id, *params, processed.at, processed.inbox_id]
    else:
        sql = _save_received_sql(len(processed.outbound), len(processed.events), claim.read_as is not None)
        message, touch = processed.received
        params = [message[0], *params, *message, *touch]
    if processed.outbound:
        params += [claim.contact_id, processed.at, processed.at, *processed.outbound]
    for event in processed.events:
        params += event
    row = execute(sql, params).fetchone()
    return row[0], processed.received is not None or row[1]


def release(claim: Claim) -> None:
    """Give the claim back without changing the state (a redelivered message, nothing to do)."""
    execute(_RELEASE, (claim.session_id, claim.token))


def due_for_expiry(now: datetime, limit: int = 100) -> list[tuple[int, int, str]]:
    """(session id, contact id, contact key) of active sessions past expires_at and not claimed, the earliest
    first. Reads the sessions whose expiry check has come (their index) and moves the check of those that
    are not due: up to the expiry a turn pushed later, or away when the conversation ended."""
    execute(_RECHECK, (now, now))
    return [tuple(r) for r in execute(_DUE, (now, now, now, limit)).fetchall()]


def backfill_expiry_checks() -> int:
    """Give an expiry check to active sessions saved without one (or with one past their expiry) by a process
    of a release before migration 0016, still serving during a rolling upgrade; returns how many. A scan of
    the active sessions: for now and then, not for every sweep."""
    return execute(_BACKFILL).rowcount


def get_state(contact_key: str) -> dict[str, Any] | None:
    """The stored state of a contact's session (None when the contact never wrote)."""
    row = execute(
        f'SELECT s.{_RETURNING.replace(", ", ", s.")} FROM "session" s JOIN "contact" c ON c."id" = s."contact_id" '
        'WHERE c."key" = ?',
        (contact_key,),
    ).fetchone()
    return _decode(row)[1] if row else None


def active_counts() -> dict[tuple[str, int], int]:
    """How many conversations are active on each (flow, version), from the (status, flow, version) index."""
    rows = execute(
        'SELECT "flow", "flow_version", COUNT(*) FROM "session" WHERE "status" = \'active\' '
        'GROUP BY "flow", "flow_version"'
    ).fetchall()
    return {(flow, version): n for flow, version, n in rows}
