"""Counting the SQL statements of a `flows serve` process on PostgreSQL, by kind, and whether each found
anything: what bench/webhook.py --statements prints per message (a figure the machine's load does not
move, unlike a rate or a CPU time).

bench/webhook.py starts each server through `boot()`'s command, which installs the counter before
`flows serve` opens its database: every psycopg2 connection the process makes counts each statement sent
on it (a `PREPARE` of a statement at its first use on a connection, each `EXECUTE`, plain SQL, and
peewee's `BEGIN`, `COMMIT` and `ROLLBACK`, which it sends as statements) and a daemon thread writes the counts, as JSON, to the file named by the
CONVOFLOW_BENCH_STATEMENTS environment variable every STEP seconds, with the CPU seconds of the process's
threads by what they do (the turn threads, the sender's loop and its sending threads, waitress's request
threads and socket loop…: thread_cpu) as of bench/webhook.py's last ask, which it prints a message too. A statement is classified by its text
(KINDS, the first pattern found); a pick, a claim or a read is "empty" when it returned no row (a pick
whose claim another worker won returns a row: it counts as found). It does not touch the repository's
code, so a checkout of another commit can be counted the same way (bench/webhook.py --checkout).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

STEP = 0.1  # seconds between two writes of the counts

# (kind, a piece of SQL only that kind's statements hold), the first match wins. Kinds that end in "?"
# are counted apart when they return no row ("… empty").
KINDS = (
    ("sender mark and claim?", "claimed AS (UPDATE"),  # outbox.record_sent_and_claim: empty, claiming none
    ("pick?", "WITH pick AS ("),  # sessions._CLAIM_NEXT: a turn thread's look
    ("save", 'WITH i AS (SELECT "id"'),  # a worker's one-statement save (sessions._save_processed_sql)
    ("message read?", 'FROM "inbox_message" i JOIN "contact" c ON c."id" = i."contact_id" WHERE i."processed_at"'),
    ("sender claim?", 'WHERE "id" IN (SELECT f."id" FROM "outbox_message" f'),
    ("sender mark", 'WITH v ("id", "wamid")'),  # outbox.record_sent
    ("webhook insert", 'INSERT INTO "inbox_message"'),
    ("contact", '"contact"'),
    ("session", '"session"'),
    ("flows", '"flow_version"'),
    ("outbox", '"outbox_message"'),
    ("inbox", '"inbox_message"'),
)


def classify(sql: str) -> str:
    """The kind of a statement's text (placeholders in any style)."""
    head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
    if head in ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"):
        return head.lower()
    for kind, piece in KINDS:
        if piece in sql:
            return kind
    return "other: " + " ".join(sql.split())[:40]


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.prepared: dict[str, str] = {}  # prepared name -> kind (names are per process in storage.db)
        self.threads: dict[str, float] = {}  # thread_cpu() when last asked

    def add(self, kind: str, rows: int) -> None:
        if kind.endswith("?"):
            kind = kind[:-1] + (" empty" if rows == 0 else "")
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1

    def kind_of(self, query: str) -> str:
        if query.startswith("PREPARE "):
            name, _, sql = query[len("PREPARE ") :].partition(" AS ")
            self.prepared[name] = classify(sql)
            return "prepare"
        if query.startswith("EXECUTE "):
            return self.prepared.get(query.split(None, 2)[1], "other: unknown prepared statement")
        return classify(query)

    def write(self, path: str) -> None:
        # The threads' CPU is read only when bench/webhook.py asks (a file path + ".ask", removed once
        # answered): read from /proc every STEP it cost the server more than some of what it measures.
        asked = os.path.exists(path + ".ask")
        if asked:
            self.threads = thread_cpu()
        with self.lock:
            text = json.dumps({**self.counts, **self.threads})
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
        if asked:
            os.remove(path + ".ask")


COUNTS = Counts()

# The process's threads by what they do (their names' beginnings), for thread_cpu.
THREADS = (
    ("convoflow-turns", "turn threads"),
    ("convoflow-sender", "sender loop"),
    ("convoflow-send", "sending threads"),
    ("convoflow-housekeeping", "housekeeping"),
    ("waitress", "waitress request threads"),
    ("MainThread", "main (waitress's socket loop)"),
    ("bench-statements", "this counter"),
)


def thread_cpu() -> dict[str, float]:
    """CPU seconds so far of this process's threads, by what they do ("thread: <group>"), from /proc; the
    process's total less its live threads' is "thread: ended or unnamed" (a thread that ended takes its
    CPU with it)."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")

    def cpu(stat_path: str) -> float:
        with open(stat_path) as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / tick

    live = 0.0
    for thread in threading.enumerate():
        try:
            seconds = cpu(f"/proc/self/task/{thread.native_id}/stat")
        except (OSError, TypeError):
            continue
        group = next((g for prefix, g in THREADS if thread.name.startswith(prefix)), thread.name)
        out[f"thread: {group}"] = out.get(f"thread: {group}", 0.0) + seconds
        live += seconds
    out["thread: ended or unnamed"] = max(0.0, cpu("/proc/self/stat") - live)
    return out


def install(path: str) -> None:
    """Count every statement of this process's psycopg2 connections, written to `path` every STEP s."""
    import psycopg2
    import psycopg2.extensions

    class CountingCursor(psycopg2.extensions.cursor):
        def execute(self, query, vars=None):
            text = query.decode() if isinstance(query, bytes) else query
            result = super().execute(query, vars)
            for part in text.split("; ") if text.startswith("SAVEPOINT") else [text]:
                COUNTS.add(COUNTS.kind_of(part.strip()), self.rowcount if self.description else 1)
            return result

    class CountingConnection(psycopg2.extensions.connection):
        # peewee runs its connections in autocommit and sends BEGIN and COMMIT as statements: counted there
        def cursor(self, *args, **kwargs):
            kwargs.setdefault("cursor_factory", CountingCursor)
            return super().cursor(*args, **kwargs)

    connect = psycopg2.connect

    def counting_connect(*args, **kwargs):
        kwargs.setdefault("connection_factory", CountingConnection)
        return connect(*args, **kwargs)

    psycopg2.connect = counting_connect

    def writer() -> None:
        while True:
            COUNTS.write(path)
            time.sleep(STEP)

    threading.Thread(target=writer, name="bench-statements", daemon=True).start()


def boot() -> list[str]:
    """Python's arguments that run `flows serve …` (the arguments that follow) with the counter installed;
    the cwd's code serves, as `python -m cli` would run it."""
    return [
        "-c",
        "import importlib.util, os, runpy, sys; "
        f"spec = importlib.util.spec_from_file_location('bench_statements', {os.path.abspath(__file__)!r}); "
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
        "module.install(os.environ['CONVOFLOW_BENCH_STATEMENTS']); "
        "sys.path.insert(0, os.getcwd()); runpy.run_module('cli', run_name='__main__', alter_sys=True)",
    ]


def read(path: str) -> dict[str, float]:
    """The counts last written to path, with the threads' CPU seconds ("thread: …" keys; empty before the
    first write)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


if __name__ == "__main__":
    sys.exit("imported by bench/webhook.py (--statements), not run")
