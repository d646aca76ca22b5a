"""What several benchmarks share: a wiped database with the current schema, timing a command, a process's
CPU from /proc, printing times as a median with its spread.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fresh_database(url: str):
    """Open `url` emptied (SQLite file deleted, PostgreSQL schema dropped) and upgraded to the schema."""
    from storage.db import is_postgres, open_database
    from storage.migrations import upgrade

    if url.startswith("sqlite:///"):
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(url[len("sqlite:///") :] + suffix):
                os.remove(url[len("sqlite:///") :] + suffix)
    db = open_database(url)
    if is_postgres(db):
        db.execute_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    upgrade(db)
    return db


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds a process has used so far, from /proc (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(cmd: list[str], env: dict | None = None) -> float:
    """Seconds a command takes as a fresh process, run from the repository; it must succeed."""
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return elapsed


def report(label: str, times: list[float]) -> None:
    print(f"{label}: " + " ".join(f"{t * 1000:.0f}" for t in times) + " ms")
    print(
        f"  median {statistics.median(times) * 1000:.0f} ms, spread {min(times) * 1000:.0f}-{max(times) * 1000:.0f} ms"
    )
