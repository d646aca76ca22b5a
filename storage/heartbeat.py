"""Readiness: a committed write, the proof that the database accepts what the webhook must store.

Each check rewrites this process's row of the `heartbeat` table (one small upsert, its own transaction),
so a database that answers reads but cannot write (read-only after a failover, disk full, the SQLite file
locked by another writer) fails the check, while `/healthz` stays the cheap liveness probe.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime

from .db import execute

PROCESS = f"{socket.gethostname()}:{os.getpid()}"[:128]


def beat(now: datetime, process: str = PROCESS) -> None:
    """Record that `process` wrote at `now`; raises the database's error when the write cannot commit."""
    execute(
        'INSERT INTO "heartbeat" ("process", "checked_at") VALUES (?, ?) '
        'ON CONFLICT ("process") DO UPDATE SET "checked_at" = excluded."checked_at"',
        (process, now),
    )
