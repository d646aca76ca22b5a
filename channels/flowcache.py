"""The flows to run, parsed once: the latest stored version of each flow plus every older version an active
conversation is still on. A FlowCache holds the parsed flows for one action registry (a flow is checked
against the actions it may call), keyed by (name, version, content hash); its owner (the workers) keeps it
for as long as it reloads, so there is no process-wide cache to leak from one test into the next.
"""

from __future__ import annotations

import logging
import threading

from engine.model import Flow, FlowSet
from engine.registry import ActionRegistry
from storage import flowstore

log = logging.getLogger("convoflow.turns")


class FlowsNotLoaded(RuntimeError):
    """Stored flows that no longer load (an action they use is gone); the message lists the problems."""


class FlowCache:
    """The stored flows parsed against one action registry, by (name, version, content hash), so reloading
    (the workers do it periodically) parses only what changed. Safe to share between threads."""

    def __init__(self, registry: ActionRegistry) -> None:
        self.registry = registry
        self._parsed: dict[tuple[str, int, str], Flow] = {}
        self._lock = threading.Lock()

    def load(self) -> FlowSet:
        """The flows to run: the latest stored version of each flow plus every older version an active
        conversation is still on.

        A stored version that no longer loads is left out with a logged warning (its conversations then
        continue on the latest version); when the latest version of a flow fails, FlowsNotLoaded is raised.
        """
        from engine.load import load_text  # the loader pulls in jsonschema and the flow schema: only when needed

        flows: list[Flow] = []
        failed: list[str] = []
        latest = {r.name: r.version for r in flowstore.latest_versions()}
        for row in flowstore.versions_in_use():
            key = (row.name, row.version, row.content_hash)
            flow = self._parsed.get(key)
            if flow is None:
                flow, problems = load_text(
                    flowstore.source(row.name, row.version), row.file, registry=self.registry, version=row.version
                )
                errors = [p for p in problems if p.severity == "error"]
                if flow is None or errors:
                    message = f"flow '{row.name}' version {row.version} no longer loads: " + "; ".join(map(str, errors))
                    log.warning(message)
                    if latest.get(row.name) == row.version:
                        failed.append(message)
                    continue
                with self._lock:
                    self._parsed[key] = flow
            flows.append(flow)
        if failed:
            raise FlowsNotLoaded("\n".join(failed))
        return FlowSet.of(flows)


def load_flowset(registry: ActionRegistry) -> FlowSet:
    """The flows to run, parsed against registry once (a command that loads them one time); a caller that
    reloads keeps a FlowCache instead."""
    return FlowCache(registry).load()
