"""Persisted turns per second through the payment flow's first steps, on a SQLite file and on PostgreSQL,
measured in the same run as the floor: a bare sqlite3 (psycopg2) transaction writing the same rows.
Goals: >= 1,500 turns/s on SQLite and a cost <= 3x the floor.

    python bench/storage.py [--contacts 300] [--runs 5] [--no-postgres]
    python bench/storage.py --big [--sessions 1000000] [--inbox 5000000]

Each contact makes 3 turns through channels.turns.handle_message: "pay" (a say and the reference
question), its booking reference (booking.lookup, a stored action result, the amount question) and an
amount (the wallet buttons). One thread, a fresh database per run. PostgreSQL is $TEST_DATABASE_URL, or
a throwaway cluster this script starts the way .ci/run does (when PostgreSQL 15 is installed).

--big first bulk-loads 1,000,000 contacts with sessions and 5,000,000 processed inbox rows (executemany
on SQLite, COPY on PostgreSQL; indexes dropped during the load and rebuilt), then measures the same turns
and a worker's process_inbox round, and compares them with an empty database. It prints the resident
memory after each phase and the peak: the turn path reads rows by index, never all of them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from typing import Callable, Iterator

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import actions  # noqa: E402
from channels import flowcache, inbox_turns, turn_save, turns  # noqa: E402
from engine.context import TurnContext, utcnow  # noqa: E402
from engine.load import load_text  # noqa: E402
from engine.messages import Inbound  # noqa: E402
from engine.model import FlowSet  # noqa: E402
from engine.registry import registry  # noqa: E402
from storage import flowstore, inbox  # noqa: E402
from storage.bookings import import_csv  # noqa: E402
from storage.contacts import upsert_contact  # noqa: E402
from storage.db import is_postgres, open_database  # noqa: E402
from storage.migrations import upgrade  # noqa: E402

FLOW = """\
flow: bench_payment
title: Bench payment
triggers: [pay]
steps:
  welcome:
    say: "Welcome to O'mari Mobile Payment!"
    next: ask_reference
  ask_reference:
    ask: Please send your booking reference, e.g. BK-SLYKER-TECH-20251023.
    save: reference
    next: find_booking
  find_booking:
    action: booking.lookup
    with: {reference: "{{ reference }}"}
    save: booking
    on: {found: ask_amount, not_found: missing, paid_in_full: missing}
  missing:
    end: "I could not find a booking with the reference {{ reference }}."
  ask_amount:
    ask: "Balance due: {{ booking.balance_due | money }}. How much would you like to pay?"
    expect: {amount: {min: "0.01", max: "{{ booking.balance_due }}"}}
    save: amount
    next: ask_channel
  ask_channel:
    ask: "You are paying {{ amount | money }}. Choose how you will pay."
    buttons: {ecocash: Ecocash, onemoney: OneMoney, zimswitch: ZimSwitch}
    save: channel
    next: done
  done:
    end: "Paying {{ amount | money }} by {{ channel }}."
"""

BOOKINGS = 50
TURNS_PER_CONTACT = 3


# ── memory ───────────────────────────────────────────────────────────────────────────────────────────


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    import resource

    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, rss_mb())


# ── PostgreSQL ───────────────────────────────────────────────────────────────────────────────────────


@contextlib.contextmanager
def postgres(allow: bool) -> Iterator[str | None]:
    """$TEST_DATABASE_URL, or a throwaway cluster on a free loopback port (stopped on exit), or None."""
    if not allow:
        yield None
        return
    if os.environ.get("TEST_DATABASE_URL"):
        yield os.environ["TEST_DATABASE_URL"]
        return
    bins = (
        sorted(
            d
            for d in (f"/usr/lib/postgresql/{v}/bin" for v in os.listdir("/usr/lib/postgresql"))
            if os.path.exists(f"{d}/initdb")
        )
        if os.path.isdir("/usr/lib/postgresql")
        else []
    )
    if not bins:
        print("PostgreSQL is not installed: skipping it (set TEST_DATABASE_URL to use a server of yours)")
        yield None
        return
    pg_bin, root = bins[-1], os.geteuid() == 0
    tmp = tempfile.mkdtemp(prefix="convoflow-bench-pg.")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def as_pg(*cmd: str) -> None:
        full = ["runuser", "-u", "postgres", "--", *cmd] if root else list(cmd)
        subprocess.run(full, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    if root:
        shutil.chown(tmp, "postgres")
    # Durable settings (fsync on): the figures are those of a real server, unlike the test cluster.
    as_pg(f"{pg_bin}/initdb", "-D", f"{tmp}/data", "-U", "convoflow", "--auth=trust", "-E", "UTF8")
    as_pg(
        f"{pg_bin}/pg_ctl",
        "-D",
        f"{tmp}/data",
        "-l",
        f"{tmp}/server.log",
        "-w",
        "-o",
        f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c max_connections=50 -c shared_buffers=256MB",
        "start",
    )
    try:
        as_pg(f"{pg_bin}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "convoflow", "bench")
        yield f"postgresql://convoflow@127.0.0.1:{port}/bench"
    finally:
        as_pg(f"{pg_bin}/pg_ctl", "-D", f"{tmp}/data", "-m", "fast", "stop")
        shutil.rmtree(tmp, ignore_errors=True)


# ── databases ────────────────────────────────────────────────────────────────────────────────────────


def fresh(url: str):
    """An empty, upgraded database at url (a new SQLite file, or the PostgreSQL schema dropped)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1]
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path + suffix)
        db = open_database(url)
    else:
        db = open_database(url)
        db.execute_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    upgrade(db)
    return db


def seed(db) -> FlowSet:
    rows = "\n".join(f"BK-{i:05d},Customer {i},Victoria Falls,300.00,0,USD" for i in range(BOOKINGS))
    import_csv("reference,customer,tour,total,paid,currency\n" + rows + "\n")
    flowstore.store("bench_payment", FLOW, "bench/storage.py", utcnow())
    return flowcache.load_flowset(registry)


# ── the measured path and its floor ──────────────────────────────────────────────────────────────────


def persisted_turns(flows: FlowSet, contacts: range) -> int:
    ctx = turn_save.persistent(TurnContext(registry=registry))  # as flows serve builds it
    done = 0
    for c in contacts:
        contact = f"2637{c:08d}"
        for i, text in enumerate(("pay", f"bk-{c % BOOKINGS:05d}", "50")):
            result = turns.handle_message(Inbound(contact, f"wamid.{c}.{i}", text), flows, ctx, worker_id="bench")
            assert result.outbound, f"turn {i} of {contact} sent nothing"
            done += 1
    return done


_FLOOR_SQL = {
    "contact": 'INSERT INTO "contact" ("key", "wa_id", "profile_name", "created_at", "last_seen_at") '
    'VALUES (?, NULL, NULL, ?, ?) ON CONFLICT ("key") DO UPDATE SET "last_seen_at" = excluded."last_seen_at" '
    'RETURNING "id"',
    "inbox": 'INSERT INTO "inbox_message" ("channel_message_id", "contact_id", "payload", "sent_at", "received_at") '
    'VALUES (?, ?, ?, ?, ?) RETURNING "id"',
    "session": 'INSERT INTO "session" ("contact_id", "flow", "flow_version", "step", "vars", "attempts", "status", '
    '"started_at", "updated_at", "expires_at") VALUES (?, ?, ?, ?, ?, 0, \'active\', ?, ?, ?) '
    'ON CONFLICT ("contact_id") DO UPDATE SET "step" = excluded."step", "vars" = excluded."vars", '
    '"updated_at" = excluded."updated_at", "expires_at" = excluded."expires_at"',
    "outbox": 'INSERT INTO "outbox_message" ("contact_id", "payload", "status", "attempts", "next_attempt_at", '
    "\"created_at\") VALUES (?, ?, 'pending', 0, ?, ?)",
    "action": 'INSERT INTO "action_result" ("idempotency_key", "action", "outcome", "data", "created_at") '
    "VALUES (?, ?, ?, ?, ?)",
    "processed": 'UPDATE "inbox_message" SET "processed_at" = ? WHERE "id" = ?',
}

_VARS = (
    '{"booking":{"amount_paid":"0.00","balance_due":"300.00","currency":"USD","customer":"Customer 1",'
    '"payment_status":"UNPAID","reference":"BK-00001","total":"300.00","tour":"Victoria Falls"},'
    '"reference":"bk-00001"}'
)


def floor_turns(execute: Callable, begin: Callable, commit: Callable, contacts: range) -> int:
    """The same rows each turn writes (contact, inbox, session, outbox, action result, inbox processed),
    in one transaction per turn, with fixed SQL and no engine: what the database itself costs.
    """
    done = 0
    for c in contacts:
        contact = f"2637{c:08d}"
        for i in range(TURNS_PER_CONTACT):
            now = utcnow()
            begin()
            contact_id = execute(_FLOOR_SQL["contact"], (contact, now, now)).fetchone()[0]
            inbox_id = execute(
                _FLOOR_SQL["inbox"], (f"wamid.{c}.{i}", contact_id, f'{{"contact":"{contact}","text":"pay"}}', now, now)
            ).fetchone()[0]
            if i == 1:
                execute(
                    _FLOOR_SQL["action"],
                    (f"{contact}:wamid.{c}.{i}:find_booking:1", "booking.lookup", "found", _VARS, now),
                )
            execute(
                _FLOOR_SQL["session"],
                (contact_id, "bench_payment", 1, "ask_amount", _VARS, now, now, now + timedelta(minutes=10)),
            )
            execute(
                _FLOOR_SQL["outbox"], (contact_id, '{"to":"%s","text":"Balance due: $300.00."}' % contact, now, now)
            )
            execute(_FLOOR_SQL["processed"], (now, inbox_id))
            commit()
            done += 1
    return done


def sqlite_floor(path: str, contacts: range) -> int:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=wal", "synchronous=normal", "foreign_keys=1", "busy_timeout=10000"):
        conn.execute(f"PRAGMA {pragma}")
    try:
        return floor_turns(
            conn.execute, lambda: conn.execute("BEGIN IMMEDIATE"), lambda: conn.execute("COMMIT"), contacts
        )
    finally:
        conn.close()


def postgres_floor(url: str, contacts: range, prepared: bool = False) -> int:
    """The floor on PostgreSQL; prepared: each statement PREPAREd once and then EXECUTEd, as convoflow's
    own statements are (storage/db.py), so the two are compared like for like."""
    import psycopg2

    conn = psycopg2.connect(url)
    cur = conn.cursor()
    names: dict[str, str] = {}

    def execute(sql: str, params: tuple):
        if not prepared:
            cur.execute(sql.replace("?", "%s"), params)
            return cur
        if sql not in names:
            names[sql] = f"floor_{len(names)}"
            parts = sql.split("?")
            numbered = "".join(part + (f"${n + 1}" if n < len(parts) - 1 else "") for n, part in enumerate(parts))
            cur.execute(f"PREPARE {names[sql]} AS {numbered}")
        cur.execute(f"EXECUTE {names[sql]} ({', '.join(['%s'] * len(params))})", params)
        return cur

    try:
        return floor_turns(execute, lambda: None, conn.commit, contacts)
    finally:
        conn.close()


# ── measuring ────────────────────────────────────────────────────────────────────────────────────────


_cpu: dict[int, list[float]] = {}  # id of a rates list -> this process's CPU µs per turn, run by run


def timed(fn: Callable[[], int], rates: list[float]) -> None:
    """Append the turns per second of one call of fn (which returns how many turns it made) to rates, and
    note the CPU time this process spent per turn: on a shared machine the wall figure moves with the
    neighbours' load, the CPU figure much less.
    """
    start, cpu = time.perf_counter(), time.process_time()
    n = fn()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    rates.append(n / wall)
    _cpu.setdefault(id(rates), []).append(cpu / n * 1e6)


def summary(label: str, rates: list[float]) -> str:
    median = statistics.median(rates)
    cpu = _cpu.get(id(rates), [0.0])
    return (
        f"{label:<34} median {median:8.0f} turns/s  ({1e6 / median:6.0f} µs/turn, CPU here "
        f"{statistics.median(cpu):4.0f} µs)  spread {min(rates):.0f}-{max(rates):.0f}  "
        f"runs {', '.join(f'{r:.0f}' for r in rates)}"
    )


def compare(
    name: str,
    url: str,
    floor: Callable[[range], int],
    contacts: int,
    runs: int,
    floor_prepared: Callable[[range], int] | None = None,
) -> None:
    """Our turns against the floor, alternating; on PostgreSQL also ours with execute's statements sent as
    plain SQL (`?prepare_statements=off`), what they were before they were prepared, and the floor with
    its statements prepared (floor_prepared), the like-for-like floor of our prepared statements."""
    ours, bare, plain, bare_prepared = [], [], [], []
    plain_url = url + ("&" if "?" in url else "?") + "prepare_statements=off" if url.startswith("postgres") else None
    warm = fresh(url)
    persisted_turns(seed(warm), range(contacts))  # warm-up: template and flow caches, not counted
    warm.close()
    for run in range(runs):
        # Alternate which goes first so neither always gets the warmer cache.
        order = [("ours", ours), ("floor", bare)] if run % 2 == 0 else [("floor", bare), ("ours", ours)]
        if plain_url:
            order.insert(run % 3, ("plain", plain))
        if floor_prepared is not None:
            order.insert((run + 1) % (len(order) + 1), ("floor prepared", bare_prepared))
        for which, rates in order:
            db = fresh(plain_url if which == "plain" else url)
            if which in ("ours", "plain"):
                flows = seed(db)
                timed(lambda: persisted_turns(flows, range(contacts)), rates)
            else:
                seed(db)
                db.close()
                bare_floor = floor_prepared if which == "floor prepared" else floor
                timed(lambda: bare_floor(range(contacts)), rates)
            db.close()
    print(summary(f"{name}: persisted turns", ours))
    print(summary(f"{name}: floor (bare driver, same rows)", bare))
    print(f"{name}: cost of a persisted turn = {statistics.median(bare) / statistics.median(ours):.2f}x the floor")
    if plain:
        print(summary(f"{name}: turns, statements not prepared", plain))
        print(f"{name}: cost with statements not prepared = {statistics.median(bare) / statistics.median(plain):.2f}x")
    if bare_prepared:
        print(summary(f"{name}: floor, statements prepared", bare_prepared))
        print(
            f"{name}: cost of a persisted turn = {statistics.median(bare_prepared) / statistics.median(ours):.2f}x "
            "the prepared floor (like for like)"
        )


# ── --big ────────────────────────────────────────────────────────────────────────────────────────────


def _index_ddl(db) -> list[tuple[str, str]]:
    tables = ("contact", "session", "inbox_message")
    if is_postgres(db):
        rows = db.execute_sql(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND "
            "tablename IN ('contact', 'session', 'inbox_message')"
        )
        return [(name, ddl) for name, ddl in rows.fetchall() if not name.endswith("_pkey")]
    placeholders = ", ".join("?" * len(tables))
    return list(
        db.execute_sql(
            f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
            f"AND tbl_name IN ({placeholders})",
            tables,
        ).fetchall()
    )


def bulk_load(db, sessions: int, inbox_rows: int) -> float:
    """Fill contacts, sessions and processed inbox rows; returns seconds taken."""
    start = time.perf_counter()
    base = datetime(2026, 1, 1)
    indexes = _index_ddl(db)
    for name, _ in indexes:
        db.execute_sql(f'DROP INDEX "{name}"')
    per_contact = max(1, inbox_rows // sessions)
    active_until = utcnow() + timedelta(days=365)

    def contacts() -> Iterator[tuple]:
        for i in range(sessions):
            yield (i + 1, f"2639{i:08d}", base, base)

    def session_rows() -> Iterator[tuple]:
        for i in range(sessions):
            active = i % 10 == 0  # one in ten still waiting for an answer, expiring far in the future
            yield (
                i + 1,
                i + 1,
                "bench_payment",
                1,
                "ask_amount" if active else "done",
                '{"reference":"BK-00001"}',
                0,
                "active" if active else "ended",
                base,
                base,
                active_until if active else None,
            )

    def inbox_rows_() -> Iterator[tuple]:
        n = 0
        for i in range(sessions):
            for j in range(per_contact):
                if n >= inbox_rows:
                    return
                n += 1
                at = base + timedelta(seconds=n)
                yield (n, f"wamid.big.{n}", i + 1, '{"contact":"x","text":"hello"}', at, at, at)

    inserts = [
        ('"contact" ("id", "key", "created_at", "last_seen_at")', contacts),
        (
            '"session" ("id", "contact_id", "flow", "flow_version", "step", "vars", "attempts", "status", '
            '"started_at", "updated_at", "expires_at")',
            session_rows,
        ),
        (
            '"inbox_message" ("id", "channel_message_id", "contact_id", "payload", "sent_at", "received_at", '
            '"processed_at")',
            inbox_rows_,
        ),
    ]
    if is_postgres(db):
        conn = db.connection()
        with conn.cursor() as cur:
            for table, rows in inserts:
                cur.copy_expert(f"COPY {table} FROM STDIN", _CopyStream(rows()))
        conn.commit()
        for table in ("contact", "session", "inbox_message"):
            db.execute_sql(
                f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), (SELECT MAX(id) FROM \"{table}\"))"
            )
    else:
        conn = db.connection()
        conn.execute("BEGIN")
        for table, rows in inserts:
            columns = table.split("(", 1)[1].count('"') // 2
            conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * columns)})", rows())
        conn.execute("COMMIT")
    for _, ddl in indexes:
        db.execute_sql(ddl)
    db.execute_sql("ANALYZE")
    return time.perf_counter() - start


class _CopyStream(io.RawIOBase):
    """A file-like stream of COPY text lines produced from a row iterator (never the whole table)."""

    def __init__(self, rows: Iterator[tuple]) -> None:
        self._rows = rows
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while len(self._buffer) < len(target):
            chunk = [self._line(r) for _, r in zip(range(2000), self._rows)]
            if not chunk:
                break
            self._buffer += "".join(chunk).encode()
        n = min(len(target), len(self._buffer))
        target[:n], self._buffer = self._buffer[:n], self._buffer[n:]
        return n

    @staticmethod
    def _line(row: tuple) -> str:
        return "\t".join("\\N" if v is None else str(v).replace("\\", "\\\\") for v in row) + "\n"


def worker_round(flows: FlowSet, contacts: range) -> tuple[int, float, float]:
    """Queue one "pay" per contact in the inbox, then let a worker take them: (turns, wall s, CPU s)."""
    now = utcnow()
    for c in contacts:
        contact = f"2638{c:08d}"
        contact_id = upsert_contact(contact, now)
        inbox.add(
            contact_id,
            f"wamid.worker.{c}",
            {"contact": contact, "message_id": f"wamid.worker.{c}", "text": "pay"},
            now,
            now,
        )
    ctx = turn_save.persistent(TurnContext(registry=registry))  # as flows serve builds it
    start, cpu = time.perf_counter(), time.process_time()
    done = inbox_turns.process_inbox(ctx, flows, limit=len(contacts) + 1, worker_id="bench")
    assert done == len(contacts), done
    return done, time.perf_counter() - start, time.process_time() - cpu


def big(name: str, url: str, contacts: int, runs: int, sessions: int, inbox_rows: int) -> None:
    def measure(db) -> tuple[list[float], list[float]]:
        flows = flowcache.load_flowset(registry)
        persisted_turns(flows, range(90_000_000, 90_000_000 + contacts))  # warm-up: caches and pages, not counted
        turn_rates, worker_rates = [], []
        for run in range(runs):
            offset = (run + 1) * 10_000_000
            timed(lambda: persisted_turns(flows, range(offset, offset + contacts)), turn_rates)
            n, seconds, cpu = worker_round(flows, range(offset + 5_000_000, offset + 5_000_000 + contacts))
            worker_rates.append(n / seconds)
            _cpu.setdefault(id(worker_rates), []).append(cpu / n * 1e6)
        return turn_rates, worker_rates

    db = fresh(url)
    seed(db)
    print(f"{name}: RSS {rss_mb():.0f} MB before measuring the empty database")
    empty_turns, empty_worker = measure(db)
    print(summary(f"{name} empty: persisted turns", empty_turns))
    print(summary(f"{name} empty: worker (process_inbox)", empty_worker))
    rss_empty = rss_mb()
    print(f"{name}: RSS {rss_empty:.0f} MB after the empty-database runs")

    db = fresh(url)
    seed(db)
    seconds = bulk_load(db, sessions, inbox_rows)
    counts = {
        t: db.execute_sql(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in ("contact", "session", "inbox_message")
    }
    print(f"{name}: bulk-loaded {counts} in {seconds:.0f} s; RSS {rss_mb():.0f} MB")
    big_turns, big_worker = measure(db)
    print(summary(f"{name} big: persisted turns", big_turns))
    print(summary(f"{name} big: worker (process_inbox)", big_worker))
    slower = statistics.median(empty_turns) / statistics.median(big_turns) - 1
    slower_worker = statistics.median(empty_worker) / statistics.median(big_worker) - 1
    print(
        f"{name}: a turn on the big database takes {slower:+.0%} vs empty (goal within 20%); "
        f"a worker turn {slower_worker:+.0%}"
    )
    print(
        f"{name}: RSS {rss_mb():.0f} MB after the big-database runs (empty: {rss_empty:.0f} MB); "
        f"peak RSS of the process {peak_rss_mb():.0f} MB"
    )
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=300, help="contacts per run (3 turns each)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--big", action="store_true", help="measure against 1M sessions and 5M inbox rows")
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--inbox", type=int, default=5_000_000)
    parser.add_argument("--dir", default=None, help="where the SQLite files go (default: a temporary folder)")
    args = parser.parse_args()

    actions.load_all()
    if load_text(FLOW, "bench", registry)[0] is None:
        sys.exit("the bench flow does not load: " + "; ".join(map(str, load_text(FLOW, "bench", registry)[1])))
    folder = args.dir or tempfile.mkdtemp(prefix="convoflow-bench.")
    sqlite_url = f"sqlite:///{os.path.join(folder, 'bench.db')}"
    print(
        f"{args.contacts} contacts x {TURNS_PER_CONTACT} turns per run, {args.runs} runs, one thread; "
        f"SQLite at {folder}"
    )
    with postgres(not args.no_postgres) as pg_url:
        targets = [("SQLite", sqlite_url, lambda r: sqlite_floor(sqlite_url.split("///", 1)[1], r))]
        if pg_url:
            targets.append(("PostgreSQL", pg_url, lambda r: postgres_floor(pg_url, r)))
        for name, url, floor in targets:
            if args.big:
                big(name, url, args.contacts, args.runs, args.sessions, args.inbox)
            elif url == pg_url:
                compare(name, url, floor, args.contacts, args.runs, lambda r: postgres_floor(pg_url, r, prepared=True))
            else:
                compare(name, url, floor, args.contacts, args.runs)
    if not args.dir:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
