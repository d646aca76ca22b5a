"""docs/alerts.yml (issue 13.6): a Prometheus rule file whose alerts use metrics convoflow really exports,
and that operations.md explains one by one."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from channels.metrics import Metrics, database_gauges

DOCS = Path(__file__).resolve().parents[2] / "docs"
NEEDED = {
    "payments needing a person": "convoflow_payments_needing_person",
    "payments pending": "convoflow_payments",
    "inbox backlog": "convoflow_inbox_backlog",
    "sender failures": "convoflow_outbox_messages",
    "webhook signature failures": "convoflow_webhook_rejected_total",
}


def exported(db) -> set[str]:
    metrics = Metrics()
    metrics.gauges_from(database_gauges)
    metrics.webhook_rejected.inc(reason="401")
    metrics.statuses.inc(status="read")
    metrics.send_failures.inc(outcome="gave_up", code="131047")
    return set(re.findall(r"^# TYPE (\S+) ", metrics.render(), re.M)) | {
        name for name in re.findall(r"^(\w+)[{ ]", metrics.render(), re.M)
    }


def test_every_alert_reads_metrics_that_exist_and_is_explained(db):
    rules = [rule for group in yaml.safe_load((DOCS / "alerts.yml").read_text())["groups"] for rule in group["rules"]]
    names = exported(db)
    operations = (DOCS / "operations.md").read_text()
    used = set()
    for rule in rules:
        assert set(rule) >= {"alert", "expr", "annotations"}, rule
        metrics = set(re.findall(r"\bconvoflow_\w+", rule["expr"]))
        assert metrics and metrics <= names, f"{rule['alert']} reads {metrics - names}, which /metrics does not export"
        used |= metrics
        assert f"`{rule['alert']}`" in operations, f"operations.md does not explain {rule['alert']}"
    assert set(NEEDED.values()) <= used
