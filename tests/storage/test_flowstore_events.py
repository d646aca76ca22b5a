"""Flow versions and the audit log."""

from __future__ import annotations

from datetime import datetime, timedelta

from channels import flowcache
from storage import events, flowstore
from storage.events import EventRecord
from storage_kit import COUNTER, counter_registry

NOW = datetime(2026, 11, 26, 9, 0)


def test_a_flow_gets_a_new_version_only_when_its_text_changes(db):
    assert flowstore.store("counter", COUNTER, "a.yaml", NOW).status == flowstore.NEW
    assert flowstore.store("counter", COUNTER, "a.yaml", NOW).status == flowstore.UNCHANGED
    changed = flowstore.store("counter", COUNTER + "\n# edited\n", "a.yaml", NOW)
    assert (changed.version, changed.status) == (2, flowstore.UPDATED)
    # Going back to the first text is a change too: it becomes version 3, never a rewrite of history.
    assert flowstore.store("counter", COUNTER, "a.yaml", NOW).version == 3
    assert [(r.name, r.version) for r in flowstore.latest_versions()] == [("counter", 3)]


def test_loaded_flows_are_parsed_once_per_version(db):
    registry = counter_registry()
    flowstore.store("counter", COUNTER, "a.yaml", NOW)
    cache = flowcache.FlowCache(registry)
    first, second = cache.load(), cache.load()
    assert first.latest("counter") is second.latest("counter")
    assert first.latest("counter").version == 1


def test_events_are_kept_by_subject_and_newest_first(db):
    events.record_many(
        [
            EventRecord(NOW, "payment.status", "263771234567", "ref-1", {"status": "INITIATED"}),
            EventRecord(NOW + timedelta(seconds=1), "payment.status", "263771234567", "ref-1", {"status": "OTP_SENT"}),
            EventRecord(NOW + timedelta(seconds=2), "turn.error", "263779999999", None, {"message": "boom"}),
        ]
    )
    assert [e.detail["status"] for e in events.for_subject("ref-1")] == ["INITIATED", "OTP_SENT"]
    assert [e.kind for e in events.recent(2)] == ["turn.error", "payment.status"]
    assert [e.detail for e in events.recent(contact_key="263779999999")] == [{"message": "boom"}]
