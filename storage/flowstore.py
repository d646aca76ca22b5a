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
from .models import FlowVersion, Session
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
                latest = (
                    FlowVersion.select(FlowVersion.version, FlowVersion.content_hash)
                    .where(FlowVersion.name == name)
                    .order_by(FlowVersion.version.desc())
                    .first()
                )
                if latest is not None and latest.content_hash == digest:
                    return StoredFlow(name, latest.version, digest, UNCHANGED)
                version = latest.version + 1 if latest else 1
                FlowVersion.create(
                    name=name, version=version, content_hash=digest, source=source, file=file, loaded_at=now
                )
                return StoredFlow(name, version, digest, UPDATED if latest else NEW)
        except peewee.IntegrityError:
            continue
    raise RuntimeError(f"could not store flow '{name}': other loaders kept storing versions at the same time")


def latest_versions() -> list[FlowVersionRow]:
    """The latest version of every stored flow, by name."""
    newest = (
        FlowVersion.select(FlowVersion.name, peewee.fn.MAX(FlowVersion.version).alias("top"))
        .group_by(FlowVersion.name)
        .alias("newest")
    )
    rows = (
        FlowVersion.select(
            FlowVersion.name, FlowVersion.version, FlowVersion.content_hash, FlowVersion.file, FlowVersion.loaded_at
        )
        .join(newest, on=((FlowVersion.name == newest.c.name) & (FlowVersion.version == newest.c.top)))
        .order_by(FlowVersion.name)
    )
    return [FlowVersionRow(r.name, r.version, r.content_hash, r.file, r.loaded_at) for r in rows]


def versions_in_use() -> list[FlowVersionRow]:
    """The latest version of every flow plus every older version an active conversation is on."""
    rows = {(r.name, r.version): r for r in latest_versions()}
    wanted = [key for key in active_counts() if key not in rows and key[0] is not None]
    for name, version in wanted:
        r = (
            FlowVersion.select(
                FlowVersion.name, FlowVersion.version, FlowVersion.content_hash, FlowVersion.file, FlowVersion.loaded_at
            )
            .where((FlowVersion.name == name) & (FlowVersion.version == version))
            .first()
        )
        if r is not None:
            rows[(name, version)] = FlowVersionRow(r.name, r.version, r.content_hash, r.file, r.loaded_at)
    return sorted(rows.values(), key=lambda r: (r.name, r.version))


def source(name: str, version: int) -> str:
    """The stored source text of one version (raises FlowVersion.DoesNotExist)."""
    return FlowVersion.get((FlowVersion.name == name) & (FlowVersion.version == version)).source


# ── history, rollback and what a load would do (issue 11) ───────────────────────────────────────────


class NoSuchVersion(LookupError):
    """A flow or version that is not stored; the message names what is (for the author)."""


@dataclass(frozen=True)
class VersionInfo:
    version: int
    loaded_at: datetime
    file: str
    active: int  # conversations running on this version now


def history(name: str) -> list[VersionInfo]:
    """Every stored version of a flow, oldest first, with its active conversations; [] when none."""
    active = active_counts()
    rows = (
        FlowVersion.select(FlowVersion.version, FlowVersion.loaded_at, FlowVersion.file)
        .where(FlowVersion.name == name)
        .order_by(FlowVersion.version)
    )
    return [VersionInfo(r.version, r.loaded_at, r.file, active.get((name, r.version), 0)) for r in rows]


def names() -> list[str]:
    """Every stored flow's name."""
    return [r.name for r in FlowVersion.select(FlowVersion.name).distinct().order_by(FlowVersion.name)]


def version_source(name: str, version: int | None = None) -> tuple[int, str]:
    """(version, source text) of one version, the latest when version is None; NoSuchVersion otherwise."""
    versions = [v.version for v in history(name)]
    if not versions:
        raise NoSuchVersion(f"no flow named '{name}' is stored" + _known(names()))
    chosen = versions[-1] if version is None else version
    if chosen not in versions:
        raise NoSuchVersion(f"flow '{name}' has no version {version} (it has v{versions[0]} to v{versions[-1]})")
    return chosen, source(name, chosen)


def _known(stored: list[str]) -> str:
    return f" (stored flows: {', '.join(stored)})" if stored else " (no flows are stored: run `flows load`)"


def rollback(name: str, to: int, now: datetime) -> StoredFlow:
    """Make version `to` live again by storing its content as the next version (UNCHANGED: it is live)."""
    _, text = version_source(name, to)
    file = FlowVersion.get((FlowVersion.name == name) & (FlowVersion.version == to)).file
    return store(name, text, file, now)


def waiting_steps(name: str) -> dict[tuple[int, str], int]:
    """Active conversations of one flow by (version, step they wait on)."""
    rows = (
        Session.select(Session.flow_version, Session.step, peewee.fn.COUNT(Session.id).alias("n"))
        .where((Session.status == "active") & (Session.flow == name))
        .group_by(Session.flow_version, Session.step)
        .tuples()
    )
    return {(version, step): n for version, step, n in rows if version is not None and step is not None}


def live_source(name: str) -> tuple[int, str] | None:
    """(version, source) of a flow's live (latest) version, None when it was never stored."""
    row = (
        FlowVersion.select(FlowVersion.version, FlowVersion.source)
        .where(FlowVersion.name == name)
        .order_by(FlowVersion.version.desc())
        .first()
    )
    return (row.version, row.source) if row is not None else None
