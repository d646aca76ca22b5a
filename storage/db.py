"""The database: chosen at run time from DATABASE_URL through a proxy, so models exist before it.

SQLite (the embedded default) runs in WAL mode with a busy timeout and foreign keys on; PostgreSQL goes
through psycopg2 with a connection pool.

Each thread keeps its connection between uses. A connection can die under it (PostgreSQL restarted or
failed over, the SQLite file replaced), so one is checked before use when it sat idle, and one found dead
(or on a server that turned read-only) is dropped and replaced at its next use outside a transaction; the
statement that met the failure still fails, and its caller retries (Meta redelivers, the loops go round).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import peewee
from playhouse.db_url import parse
from playhouse.pool import MaxConnectionsExceeded, PooledPostgresqlDatabase

database = peewee.DatabaseProxy()

DEFAULT_URL = "sqlite:///convoflow.db"

SQLITE_PRAGMAS = {
    # A new database's pages are 2 KiB, not SQLite's default 4: a turn changes about a hundred bytes in each
    # of the six or so b-tree pages it writes, and COMMIT checksums and writes every byte of each page into
    # the WAL (the checksum alone about 4.6k instructions a 4 KiB page). Set before WAL mode, which fixes
    # the page size; a database created before keeps its own (this is then a no-op). See docs/storage.md.
    "page_size": 2048,
    "journal_mode": "wal",
    "busy_timeout": 10_000,  # ms: writers queue instead of failing with "database is locked"
    "foreign_keys": 1,
    "synchronous": "normal",  # safe with WAL: a crash loses no committed transaction's consistency
    # A deleted or overwritten value's bytes are zeroed, not left in a page's free space: a one-time code the
    # turn redacts must not stay readable in the file. Many builds (this one too) default to it; not all do.
    "secure_delete": 1,
    # No journal_size_limit: with a limit of 0 every restart of the WAL (each automatic checkpoint, some 150
    # turns) cut the file, and the next ~1,000 pages grew it again, which costs the kernel more than
    # writing over pages already there (about a third more system time a commit). The WAL's old page
    # images are cut instead by `empty_wal`, which the workers' housekeeping runs every sweep.
}


# _sqlite_time's memo: the text of each whole second formatted lately, by its (days, seconds) since datetime.min.
# A store passes three times in three seconds (the message's sent_at, now, and now less contacts.SEEN_WITHIN), so
# the one second kept before was never the next time's; a few seconds' are. Emptied when full rather than kept in
# order: a dict's get and set are each one step under the GIL, so threads share it as it is.
_seconds: dict[tuple[int, int], str] = {}
_SECONDS_KEPT = 8


def _sqlite_time(value: datetime) -> str:
    """How SQLite stores a datetime parameter: the text sqlite3's default adapter writes ("2026-01-05
    09:14:03.120000", which peewee reads back), registered explicitly (that default is deprecated).
    isoformat(" ") costs about 8.6k instructions, and the times a store or a turn formats fall in a few
    seconds: for a naive time in a second formatted lately, that second's text is kept and the
    microseconds appended by isoformat's rule (six digits, none when zero), about half the cost. Eight
    seconds kept, not one: a store's three times about 34k instructions fewer."""
    if value.tzinfo is not None:  # isoformat puts the offset after the microseconds
        return value.isoformat(" ")
    since = value - datetime.min  # a subtraction: value.replace(microsecond=0) parses keywords, about 8k
    second = since.days, since.seconds
    text = _seconds.get(second)
    if text is None:
        if len(_seconds) >= _SECONDS_KEPT:
            _seconds.clear()
        text = _seconds[second] = value.isoformat(" ", "seconds")
    micro = since.microseconds
    # printf-style: an f-string's `:06d` goes through int.__format__'s spec parser (about 0.7k instructions more)
    return "%s.%06d" % (text, micro) if micro else text


sqlite3.register_adapter(datetime, _sqlite_time)
# sqlite3 adapts every parameter but an int, float, str or bytearray; for None, with no adapter registered,
# that raised and cleared an AttributeError (its protocol's __adapt__) each time, about 4k instructions, and
# a turn's compare-and-set passes a few. A C callable that gives None back: dict.get of a key never there.
sqlite3.register_adapter(type(None), {}.get)

_monotonic = time.monotonic  # a module global: _check reads it before every statement outside a transaction
DEFAULT_WAIT = 5.0  # seconds to wait for a connection (see open_database)
IDLE_CHECK = 1.0  # seconds a connection may sit unused before it is checked again at its next use
# SQLSTATEs after which a PostgreSQL connection is not worth keeping: the server is shutting down or
# restarting (57P01-57P03), the link broke (class 08), or it is no longer the primary (25006, a failover).
_DEAD_STATES = ("57P01", "57P02", "57P03", "25006")


class _Checked:
    """A database whose per-thread connection is checked and, when dead, replaced (mixed into the
    peewee classes below). `_alive(conn)` says whether a connection still works.

    The statement path reads this thread's connection state (peewee's `_state`, a threading.local) through
    its `__dict__`, the thread's own attributes: one lookup of the thread's dict, where each attribute read
    of a threading.local makes its own (about 450 instructions each, some twenty-five times a turn)."""

    idle_check = IDLE_CHECK
    # Whether `_alive` has anything to look at on a connection used within idle_check (PostgreSQL's
    # conn.closed); where not, it is not called then (about 0.4k instructions, before two statements a turn).
    check_when_busy = True

    def cursor(self, *args, **kwargs):
        self._check(self._state.__dict__)
        return super().cursor(*args, **kwargs)

    def _check(self, here: dict) -> None:
        """Drop this thread's connection when it is doomed or, after sitting idle, found dead. here: this
        thread's connection state (`_state.__dict__`), which the caller has read already."""
        if not here["closed"] and not here["transactions"]:  # inside a transaction it was checked at BEGIN
            now = _monotonic()
            # used_at and doomed are set when the connection opens (connect); ping by position (a keyword costs)
            ping = now - here["used_at"] > self.idle_check
            if here["doomed"] or ((ping or self.check_when_busy) and not self._alive(here["conn"], ping)):
                self._drop()
            here["used_at"] = now

    def _execute_cursor(self, sql, params, **options):
        try:
            return super()._execute_cursor(sql, params, **options)
        except (peewee.DatabaseError, peewee.InterfaceError) as e:
            self._failed(e)
            raise

    def run(self, sql: str, params) -> Any:
        """One statement as storage.db.execute runs it (placeholders already the driver's): execute_sql's
        path without its per-query DEBUG logging (peewee's logger is kept quiet anyway: its lines would
        carry customers' answers), a few µs less on every statement of a turn. The connection checks
        (cursor), the driver's errors raised as peewee's and a dead connection marked stay the same."""
        if self.query_hooks:
            return self.execute_sql(sql, params)
        here = self._state.__dict__
        try:
            # Inside a transaction the connection was checked at its BEGIN: straight to a cursor.
            cursor = here["conn"].cursor() if here["transactions"] else self.cursor()
            self._send(cursor, sql, params)
        except Exception:
            self._raise_as_peewee()
        return cursor

    def _send(self, cursor, sql: str, params) -> None:
        cursor.execute(sql, params)

    def _raise_as_peewee(self) -> None:
        """Re-raise the exception being handled as peewee's execute_sql would: a driver's error as peewee's
        class of it (`orig` the driver's), the connection marked when the error says it is dead. Called
        from an `except` block only (the try costs nothing until something is raised)."""
        try:
            with peewee.__exception_wrapper__:
                raise
        except (peewee.DatabaseError, peewee.InterfaceError) as e:
            self._failed(e)
            raise

    def _failed(self, error: Exception) -> None:
        if self._fatal(getattr(error, "orig", error)):  # the driver's own error, with its SQLSTATE
            self._state.doomed = True  # replaced at its next use outside a transaction

    def connect(self, reuse_if_open=False):
        opened = super().connect(reuse_if_open)
        self._state.doomed = False
        self._state.used_at = time.monotonic()
        self._apply_wait(self._state.conn, getattr(self._state, "wait", None))
        return opened

    def limit_wait(self, seconds: float | None) -> None:
        """Bound how long this thread's statements wait for a lock held by others (SQLite's busy timeout,
        PostgreSQL's statement_timeout): a web request gives up in seconds instead of queueing. None: the
        defaults again."""
        if getattr(self._state, "wait", None) != seconds:
            self._state.wait = seconds
            if not self._state.closed:
                self._apply_wait(self._state.conn, seconds)

    def _drop(self) -> None:
        """Forget this thread's connection and close it (a pool does not take it back)."""
        conn = self._state.conn
        self._forget(conn)
        self._state.reset()
        try:
            conn.close()
        except Exception:  # closing a dead connection may fail; it is gone either way
            pass


class PooledPostgresqlCheckedDatabase(_Checked, PooledPostgresqlDatabase):
    """The PostgreSQL pool, with dead connections dropped instead of handed out again."""

    prepare = True  # run execute's statements as server-side prepared statements (see _send)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._waits: dict[int, float | None] = {}
        self._prepared: dict[tuple[int, int], set[str]] = {}  # per connection: the names PREPAREd on it

    def _send(self, cursor, sql: str, params) -> None:
        """Run one of storage.db.execute's fixed statements as a prepared statement: PREPAREd on this
        connection at its first use (parsed and analysed once), EXECUTEd after that. A statement the server
        cannot prepare (a parameter whose type it cannot infer) runs as plain SQL from then on; one this
        connection has lost (DISCARD ALL) is prepared again, at once outside a transaction, else at the
        caller's retry."""
        name = _statement_name(sql) if self.prepare else None
        if name is None:
            cursor.execute(_postgres_placeholders(sql), params)
            return
        conn = cursor.connection
        key = _backend(conn)
        known = self._prepared.setdefault(key, set())
        if name not in known:
            if len(known) >= MAX_PREPARED or not self._prepare(cursor, name, sql, inside=self._in_transaction(conn)):
                cursor.execute(_postgres_placeholders(sql), params)
                return
            known.add(name)
        try:
            cursor.execute(_execute_sql(name, len(params)), params or None)
        except Exception as e:
            if getattr(e, "pgcode", None) != "26000":  # "prepared statement does not exist"
                raise
            known.clear()  # the server forgot them all (DISCARD ALL): prepared again at their next use
            if self._in_transaction(conn):
                raise  # the transaction is aborted: its caller retries it
            self._send(cursor, sql, params)

    def _prepare(self, cursor, name: str, sql: str, inside: bool) -> bool:
        """PREPARE sql as name on cursor's connection; False when the server refuses it (the statement is
        then never prepared again). Inside a transaction a savepoint keeps a refusal from aborting it."""
        prepare = f"PREPARE {name} AS {_numbered_placeholders(sql)}"
        try:
            cursor.execute(f"SAVEPOINT cf_prepare; {prepare}; RELEASE SAVEPOINT cf_prepare" if inside else prepare)
        except Exception as e:
            if not str(getattr(e, "pgcode", "") or "").startswith("42"):  # not a statement fault: an outage
                raise
            if inside:
                cursor.execute("ROLLBACK TO SAVEPOINT cf_prepare; RELEASE SAVEPOINT cf_prepare")
            _UNPREPARABLE.add(sql)
            return False
        return True

    def _in_transaction(self, conn) -> bool:
        """Whether the server has a transaction open on conn (peewee's or a raw BEGIN's, failed or not)."""
        return self._adapter.txn_status(conn) != self._adapter.txn_idle

    def _close_raw(self, conn):
        self._prepared.pop(_backend(conn), None)
        return super()._close_raw(conn)

    def _alive(self, conn, ping: bool) -> bool:
        if conn.closed:
            return False
        if not ping:
            return True
        status = self._adapter.txn_status(conn)
        if status not in (self._adapter.txn_idle, self._adapter.txn_unknown):
            # A transaction is open (peewee takes it off its stack before the COMMIT, which comes through
            # here): the ping would roll it back, silently losing what the caller is committing.
            return True
        return not self._adapter.is_connection_closed(conn)

    def _fatal(self, error: Exception) -> bool:
        code = getattr(error, "pgcode", None) or ""
        conn = self._state.conn
        return code.startswith("08") or code in _DEAD_STATES or conn is None or conn.closed != 0

    def _apply_wait(self, conn, seconds: float | None) -> None:
        # Pooled connections move between threads: remember what each was set to, change it only when needed.
        key = _backend(conn)
        if self._waits.get(key) != seconds:
            conn.cursor().execute(f"SET statement_timeout = {round(seconds * 1000) if seconds else 0}")
            self._waits[key] = seconds

    def _forget(self, conn) -> None:
        self._waits.pop(_backend(conn), None)
        self._prepared.pop(_backend(conn), None)
        with self._pool_lock:
            self._in_use.pop(self.conn_key(conn), None)
            self._pool_available.notify()


class SqliteCheckedDatabase(_Checked, peewee.SqliteDatabase):
    """SQLite that notices its file was deleted or replaced: it reopens the file now at that path, and
    never creates an empty one in place of a database it had opened (a vanished file is an error)."""

    _opened_once = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # SQLite admits one writer at a time and makes the others sleep and retry (1, 2, 5, 10 ms …): this
        # database's writers that would collide (the webhook's threads, every write_transaction) wait here
        # instead, so each starts the moment the previous one commits (lower p99). One lock per database.
        self.writer = threading.RLock()  # re-entrant: write_transaction takes it too, nested in the webhook's

    def run(self, sql: str, params) -> Any:
        """_Checked.run with the statement straight on the connection (sqlite3 makes the cursor in C), checked
        first outside a transaction (inside one it was checked at BEGIN)."""
        if self.query_hooks:
            return self.execute_sql(sql, params)
        here = self._state.__dict__  # see _Checked
        try:
            if here["transactions"]:
                return here["conn"].execute(sql, params)
            self._check(here)
            # The connection the check kept (None when it dropped one, or none was open: connect then).
            return (here["conn"] or self.connection()).execute(sql, params)
        except Exception:
            self._raise_as_peewee()

    def _connect(self):
        if self._opened_once and self.database != ":memory:" and not os.path.exists(self.database):
            raise peewee.OperationalError(f"the SQLite database file is missing: {self.database}")
        conn = super()._connect()
        self._opened_once = True
        return conn

    def connect(self, reuse_if_open=False):
        opened = super().connect(reuse_if_open)
        self._state.identity = _file_identity(self.database)
        # The cursor a write transaction's own statements (BEGIN, COMMIT, savepoints) run on, rows of none
        # read: Connection.execute makes and frees a cursor for each, about 1.1k instructions.
        self._state.control = self._state.conn.cursor()
        return opened

    check_when_busy = False  # _alive answers True without a ping

    def _alive(self, conn, ping: bool) -> bool:
        # An open transaction (its COMMIT comes through here) is finished on the file it began on.
        return (
            not ping or conn.in_transaction or _file_identity(self.database) == getattr(self._state, "identity", None)
        )

    def _fatal(self, error: Exception) -> bool:
        name = getattr(error, "sqlite_errorname", "") or ""
        return name.startswith("SQLITE_IOERR") or name in ("SQLITE_READONLY_DBMOVED", "SQLITE_CANTOPEN")

    def _apply_wait(self, conn, seconds: float | None) -> None:
        if seconds is not None or getattr(self._state, "waited", False):
            busy = round(seconds * 1000) if seconds else SQLITE_PRAGMAS["busy_timeout"]
            conn.execute(f"PRAGMA busy_timeout = {busy}")
            self._state.waited = seconds is not None

    def _forget(self, conn) -> None:
        pass


def _backend(conn) -> tuple[int, int]:
    """A pooled connection's identity: its object and its server process (an id alone can be reused)."""
    try:
        return id(conn), conn.info.backend_pid
    except Exception:  # a closed connection no longer says
        return id(conn), 0


def _file_identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def limit_wait(seconds: float | None) -> None:
    """Bound this thread's waits for locks held by others (see _Checked.limit_wait); a no-op on a database
    opened some other way."""
    limit = getattr(database.obj, "limit_wait", None)
    if limit is not None:
        limit(seconds)


def unavailable(error: BaseException) -> bool:
    """True when error says the database cannot be reached or used right now (down, restarting, locked,
    every pooled connection busy), as opposed to a fault in what was asked of it."""
    if isinstance(error, MaxConnectionsExceeded):
        return True
    if not isinstance(error, (peewee.OperationalError, peewee.InterfaceError)):
        return False
    # SQLite says OperationalError for a bad statement too ("no such column"): only these codes are outages.
    name = getattr(getattr(error, "orig", None), "sqlite_errorname", None)
    return name is None or name.split("_")[1] in ("BUSY", "LOCKED", "CANTOPEN", "IOERR", "READONLY", "FULL")


def describe(error: BaseException) -> str:
    """A database error in one line for a log: its kind and the first line of its text (drivers add hints
    on further lines; neither holds a password)."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


_UTC, _NOW = timezone.utc, datetime.now  # module globals: read faster than a class's attributes
_EPOCH, _EPOCH_UTC = datetime(1970, 1, 1), datetime(1970, 1, 1, tzinfo=timezone.utc)


def utcnow() -> datetime:
    """Naive UTC now, the project's one time convention: the twin of engine.context.utcnow, computed the same
    way (the naive epoch plus the time since the aware one; see there why). Two copies because the layers
    share none: storage imports only peewee, and the engine never imports storage.
    tests/storage/test_clock_twins.py checks that the two agree."""
    return _EPOCH + (_NOW(_UTC) - _EPOCH_UTC)


def stored_time(value: Any) -> datetime | None:
    """A datetime column as read back: PostgreSQL gives a datetime, SQLite the text its adapter wrote
    (above), parsed in C; any other text as peewee's DateTimeField reads it."""
    if type(value) is str:  # SQLite's text, first: three of a turn's four reads (about 0.8k instructions each)
        try:
            return _FROM_ISO(value)
        except ValueError:
            return _PEEWEE_TIME(value)
    if value is None or isinstance(value, datetime):
        return value
    try:
        return _FROM_ISO(value)
    except (TypeError, ValueError):
        return _PEEWEE_TIME(value)


_FROM_ISO = datetime.fromisoformat
_PEEWEE_TIME = peewee.DateTimeField().python_value


def time_param(value: datetime, db: peewee.Database | None = None) -> datetime | str:
    """A datetime as a statement's parameter, for a value several statements of one transaction pass (a
    save's now, five times): on SQLite the text its adapter writes, made once, so that sqlite3 does not call
    the adapter, a Python function, for each (about 2.8k instructions a call); PostgreSQL's driver takes the
    datetime itself."""
    return value if is_postgres(db) else _sqlite_time(value)


def database_url(url: str | None = None) -> str:
    return url or os.environ.get("DATABASE_URL") or DEFAULT_URL


def is_postgres(db: peewee.Database | None = None) -> bool:
    if db is None:
        return _postgres  # the proxy's database, whose kind _proxied keeps (asked three times a turn)
    return isinstance(db, peewee.PostgresqlDatabase)


def empty_wal(wait: float = 1.0) -> bool:
    """SQLite: copy the write-ahead log's pages into the database file and cut the log to nothing, so that
    no page image older than the next write stays in it (a redacted one-time code's page among them); the
    workers' housekeeping runs it every sweep. SQLite's own checkpoint copies the pages only once the log
    holds 1,000 and keeps the file for reuse (overwriting it is cheaper for the kernel than growing it), so
    without this a code's old page could sit in the log for days on a quiet channel.

    The copy runs first without holding anyone up (PASSIVE); the cut then takes the write lock (this
    process's writers queue on its lock as they do for each other) and waits for readers of older images,
    at most `wait` seconds for each (the lock, then SQLite's busy wait: a bound set on this thread for the
    call, then back to the default).
    True when the log was emptied; False when a reader or another process's writer kept it (the next sweep
    tries again). PostgreSQL has nothing to do: True."""
    db = database.obj
    if not isinstance(db, peewee.SqliteDatabase):
        return True
    db.execute_sql("PRAGMA wal_checkpoint(PASSIVE)")
    writer = getattr(db, "writer", None)
    if writer is not None and not writer.acquire(timeout=wait):
        return False
    limit_wait(wait)
    try:
        busy = db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    finally:
        limit_wait(None)
        if writer is not None:
            writer.release()
    return not busy


def write_transaction(db: peewee.Database | None = None):
    """A transaction that will write: on SQLite it takes the write lock at BEGIN (BEGIN IMMEDIATE), so two
    writers queue on the busy timeout instead of one failing later with "database is locked" when it
    upgrades a read lock. Nested use becomes a savepoint.
    """
    target = db if db is not None else database.obj
    if isinstance(target, peewee.SqliteDatabase):
        transaction = _sqlite_write()  # its database set here: an __init__ costs a frame (about 0.8k instructions)
        transaction.db = target
        return transaction
    return target.atomic()


class _sqlite_write:
    """BEGIN IMMEDIATE, this process's writers queued first on the database's writer lock: they take turns
    the moment the previous one commits instead of sleeping in SQLite's busy handler (1, 2, 5, 10 ms …),
    which under load cost the turn threads and the sender a sixth of the end-to-end throughput. After the
    thread's own wait on the lock the transaction goes to SQLite anyway, which then decides as before.

    peewee's atomic() without its layers (a dozen µs of a turn): the connection is checked at BEGIN as
    `run` checks it, a driver error is peewee's (`_control`), and the transaction sits on peewee's stack, so
    a nested write_transaction or atomic() is a savepoint and model queries see it open. As with peewee, a
    COMMIT that fails is rolled back and its error raised."""

    __slots__ = ("db", "held", "nested", "here")  # db: the peewee.SqliteDatabase, set by write_transaction

    def __enter__(self) -> None:
        db = self.db
        here = self.here = db._state.__dict__  # this thread's connection state (see _Checked)
        writer = getattr(db, "writer", None)
        # A free lock is taken without the timed wait's keyword call (most transactions find it free).
        self.held = writer is not None and (
            writer.acquire(False) or writer.acquire(timeout=here.get("wait") or SQLITE_PRAGMAS["busy_timeout"] / 1000)
        )
        try:
            if here["transactions"]:  # nested: a savepoint, as peewee's atomic() makes one
                self.nested = f"cf_s{id(self):x}"  # unique while this one is open
                self._control(f'SAVEPOINT "{self.nested}"')
                return
            self.nested = None
            db._check(here)  # the engine may have run for long since the connection's last statement
            if here["conn"] is None:  # none open, or the check dropped it
                db.connect()
            self._control("BEGIN IMMEDIATE")
            here["transactions"].append(self)
        except BaseException:
            self._release()
            raise

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self.nested is not None:
                self._end_savepoint(exc_type is not None)
                return
            db = self.db
            self.here["transactions"].pop()
            if exc_type is not None:
                self._rollback()
                return
            try:
                self._control("COMMIT")
            except Exception:
                self._rollback()
                raise
            if self.here["commit_callbacks"]:  # nearly always none: peewee's call not made (about 0.8k instructions)
                db._run_commit_callbacks()
        finally:
            self._release()

    def _end_savepoint(self, failed: bool) -> None:
        """Release the savepoint, or roll back to it and release it: peewee's savepoint without its uuid4 and
        execute_sql (35 µs against 3.5 a savepoint; a turn thread's group saves each turn in one)."""
        name = self.nested
        if not failed:
            try:
                self._control(f'RELEASE SAVEPOINT "{name}"')
                return
            except Exception:
                self._control(f'ROLLBACK TO SAVEPOINT "{name}"')
                self._control(f'RELEASE SAVEPOINT "{name}"')
                raise
        self._control(f'ROLLBACK TO SAVEPOINT "{name}"')
        self._control(f'RELEASE SAVEPOINT "{name}"')

    def _rollback(self) -> None:
        db = self.db
        conn = self.here["conn"]
        if conn is not None and conn.in_transaction:
            self._control("ROLLBACK")
        db._clear_commit_callbacks()

    def _control(self, sql: str) -> None:
        """One of the transaction's own statements (BEGIN, COMMIT, ROLLBACK, a savepoint's), a driver error
        raised as peewee's. On the connection checked at BEGIN, through the cursor it keeps for them
        (SqliteCheckedDatabase.connect)."""
        try:
            self.here["control"].execute(sql)
        except Exception:
            self.db._raise_as_peewee()

    def _release(self) -> None:
        if self.held:
            self.db.writer.release()


@lru_cache(maxsize=512)
def _postgres_placeholders(sql: str) -> str:
    return sql.replace("?", "%s")


MAX_PREPARED = 200  # statements prepared per PostgreSQL connection; further ones (rare batch sizes) run plain
_PREPARABLE = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "VALUES")
_UNPREPARABLE: set[str] = set()  # statements the server refused to prepare: run as plain SQL
_names: dict[str, str] = {}
_name_lock = threading.Lock()


def _statement_name(sql: str) -> str | None:
    """The prepared-statement name of a statement (one per SQL text in this process), or None for one not
    to prepare: DDL and the like, a statement with a quoted `?`, one the server refused."""
    if sql in _UNPREPARABLE:
        return None
    name = _names.get(sql)
    if name is not None:
        return name
    words = sql.lstrip(" (\n").split(None, 1)
    if not words or words[0].upper() not in _PREPARABLE or "'?" in sql or "?'" in sql:
        return None
    with _name_lock:
        return _names.setdefault(sql, f"cf_{len(_names)}")


def _numbered_placeholders(sql: str) -> str:
    """`?` placeholders as PREPARE numbers them: $1, $2, …"""
    parts = sql.split("?")
    return "".join(f"{part}${i}" for i, part in enumerate(parts[:-1], 1)) + parts[-1]


@lru_cache(maxsize=512)
def _execute_sql(name: str, count: int) -> str:
    return f"EXECUTE {name} ({', '.join(['%s'] * count)})" if count else f"EXECUTE {name}"


# The `run` of the database the proxy holds (None when it has none: one opened some other way) and whether it
# is PostgreSQL, kept as the proxy is initialised rather than looked up on each of a turn's statements (about
# 1k instructions each) and each is_postgres().
_run: Callable[[str, Any], Any] | None = None
_postgres = False


@database.attach_callback
def _proxied(db: peewee.Database | None) -> None:
    global _run, _postgres
    _run = getattr(db, "run", None)
    _postgres = isinstance(db, peewee.PostgresqlDatabase)


def execute(sql: str, params: tuple | list = (), db: peewee.Database | None = None):
    """Run one SQL statement written with `?` placeholders on either database; returns the cursor.

    The turn path uses a handful of fixed statements (upserts with RETURNING, conditional updates);
    writing them once as SQL keeps each turn to a few round trips without building queries every time.
    """
    if db is None and _run is not None:  # the database the proxy holds, one open_database made
        return _run(sql, params)
    target = db if db is not None else database.obj
    run = getattr(target, "run", None)  # the lean path of the databases open_database makes
    if run is not None:
        return run(sql, params)
    if isinstance(target, peewee.PostgresqlDatabase):
        sql = _postgres_placeholders(sql)
    return target.execute_sql(sql, params)


def _postgres_params(url: str) -> dict:
    """A PostgreSQL URL's connection parameters. Several hosts, libpq's form for a primary and its standbys
    (`postgresql://u@h1:5432,h2:5432/db?target_session_attrs=read-write`), are read by libpq itself, which
    tries them in turn for every new connection until one is the primary; playhouse reads one host."""
    if "," not in urlsplit(url).netloc.rpartition("@")[2]:
        return parse(url)
    from psycopg2.extensions import parse_dsn  # only PostgreSQL needs the driver

    try:
        params = parse_dsn(url)
    except Exception:  # libpq's message may quote the URL, password included: say what is wrong instead
        raise ValueError(
            "DATABASE_URL names several hosts but libpq cannot read it: "
            "use postgresql://user@host1:port1,host2:port2/database?target_session_attrs=read-write"
        ) from None
    params["database"] = params.pop("dbname", None)
    return params


def _prepare_option(url: str) -> tuple[str, bool]:
    """The URL without the project's own `prepare_statements` option, and whether statements are prepared:
    `?prepare_statements=off` behind a pooler in transaction mode (PgBouncer), where a connection's server
    session changes under it and statements PREPAREd on one are missing on the next."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    values = [v for k, v in query if k == "prepare_statements"]
    if not values:
        return url, True
    rest = urlencode([(k, v) for k, v in query if k != "prepare_statements"])
    return urlunsplit(parts._replace(query=rest)), values[-1].lower() not in ("off", "false", "0", "no")


def open_database(url: str | None = None, *, wait: float = DEFAULT_WAIT, max_connections: int = 32) -> peewee.Database:
    """Connect the models to the database named by url (or DATABASE_URL, or the SQLite default).

    wait bounds, in seconds, how long a caller waits for a PostgreSQL connection: to open one (the TCP
    connect) and to get one from the pool when all max_connections are in use. TCP keepalives notice a
    server that vanished without closing its connections (a failover) within about a minute.
    """
    url = database_url(url)
    if url.startswith("sqlite"):
        params = parse(url)
        db = SqliteCheckedDatabase(params.pop("database"), pragmas=SQLITE_PRAGMAS, check_same_thread=False, **params)
    elif url.startswith(("postgres", "postgresql")):
        url, prepare = _prepare_option(url)
        params = {
            "connect_timeout": max(2, round(wait)),
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            **_postgres_params(url),
        }
        db = PooledPostgresqlCheckedDatabase(
            params.pop("database"), max_connections=max_connections, stale_timeout=300, timeout=wait, **params
        )
        db.prepare = prepare
    else:
        raise ValueError(f"DATABASE_URL must start with sqlite:// or postgresql:// (got '{url.split(':', 1)[0]}')")
    database.initialize(db)
    return db
