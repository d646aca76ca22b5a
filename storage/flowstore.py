"""Stored flow versions: a flow's source text gets a new version only when its content changed.

Running conversations stay on the version they started with (the session row keeps flow and version);
new conversations take the latest. Versions are never deleted, so a conversation can always finish.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import peewee

from .db import write_transaction
from .models import FlowVersion
from .sessions import active_counts

active_by_version = active_counts  # active conversations per (flow, version), for `flows list`

NEW, UPDATED, UNCHANGED = "new", "updated", "unchanged"


@dataclass(frozen=True)
class StoredFlow:
    name: str
    version: int
    content_hash: str
    status: str  # new | updated | unchanged


@dataclass(frozen=True)
class FlowVersionRow:
    name: str
    version: int
    content_hash: str
    file: str
    loaded_at: datetime


def content_hash(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def store(name: str, source: str, file: str, now: datetime) -> StoredFlow:
    """Store the source as the flow's next version unless the latest stored one has the same content."""
    digest = content_hash(source)
    for _ in range(3):  # two loaders racing for the same next version number: the loser looks again
        try:
            with write_transaction():
                latest = (FlowVersion.select(FlowVersion.version, FlowVersion.content_hash)
                          .where(FlowVersion.name == name).order_by(FlowVersion.version.desc()).first())
                if latest is not None and latest.content_hash == digest:
                    return StoredFlow(name, latest.version, digest, UNCHANGED)
                version = latest.version + 1 if latest else 1
                FlowVersion.create(name=name, version=version, content_hash=digest, source=source, file=file,
                                   loaded_at=now)
                return StoredFlow(name, version, digest, UPDATED if latest else NEW)
        except peewee.IntegrityError:
            continue
    raise RuntimeError(f"could not store flow '{name}': other loaders kept storing versions at the same time")


def latest_versions() -> list[FlowVersionRow]:
    """The latest version of every stored flow, by name."""
    newest = (FlowVersion.select(FlowVersion.name, peewee.fn.MAX(FlowVersion.version).alias("top"))
              .group_by(FlowVersion.name).alias("newest"))
    rows = (FlowVersion.select(FlowVersion.name, FlowVersion.version, FlowVersion.content_hash, FlowVersion.file,
                               FlowVersion.loaded_at)
            .join(newest, on=((FlowVersion.name == newest.c.name) & (FlowVersion.version == newest.c.top)))
            .order_by(FlowVersion.name))
    return [FlowVersionRow(r.name, r.version, r.content_hash, r.file, r.loaded_at) for r in rows]


def versions_in_use() -> list[FlowVersionRow]:
    """The latest version of every flow plus every older version an active conversation is on."""
    rows = {(r.name, r.version): r for r in latest_versions()}
    wanted = [key for key in active_counts() if key not in rows and key[0] is not None]
    for name, version in wanted:
        r = (FlowVersion.select(FlowVersion.name, FlowVersion.version, FlowVersion.content_hash, FlowVersion.file,
                                FlowVersion.loaded_at)
             .where((FlowVersion.name == name) & (FlowVersion.version == version)).first())
        if r is not None:
            rows[(name, version)] = FlowVersionRow(r.name, r.version, r.content_hash, r.file, r.loaded_at)
    return sorted(rows.values(), key=lambda r: (r.name, r.version))


def source(name: str, version: int) -> str:
    """The stored source text of one version (raises FlowVersion.DoesNotExist)."""
    return FlowVersion.get((FlowVersion.name == name) & (FlowVersion.version == version)).source
