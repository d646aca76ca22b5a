"""The flows to run, parsed once: the latest stored version of each flow plus every older version an active
conversation is still on, cached by action registry and (name, version, content hash).
"""

from __future__ import annotations

import logging
import threading
import weakref

from engine.model import Flow, FlowSet
from engine.registry import ActionRegistry
from engine.registry import registry as default_registry
from storage import flowstore

log = logging.getLogger("convoflow.turns")

# Parsed flows per action registry (a flow is checked against the actions it may call), then by
# (name, version, content hash). Weak keys: a test's throwaway registry takes its cache with it.
_parsed: weakref.WeakKeyDictionary[ActionRegistry, dict[tuple[str, int, str], Flow]] = weakref.WeakKeyDictionary()
_parsed_lock = threading.Lock()


class FlowsNotLoaded(RuntimeError):
    """Stored flows that no longer load (an action they use is gone); the message lists the problems."""


def load_flowset(registry: ActionRegistry | None = None) -> FlowSet:
    """The flows to run: the latest stored version of each flow plus every older version an active
    conversation is still on. Parsed flows are cached by registry and (name, version, content hash), so
    reloading (the workers do it periodically) parses only what changed.

    A stored version that no longer loads is left out with a logged warning (its conversations then
    continue on the latest version); when the latest version of a flow fails, FlowsNotLoaded is raised.
    """
    from engine.load import load_text  # the loader pulls in jsonschema and the flow schema: only when needed

    registry = registry if registry is not None else default_registry
    with _parsed_lock:
        parsed = _parsed.setdefault(registry, {})
    flows: list[Flow] = []
    failed: list[str] = []
    latest = {r.name: r.version for r in flowstore.latest_versions()}
    for row in flowstore.versions_in_use():
        key = (row.name, row.version, row.content_hash)
        flow = parsed.get(key)
        if flow is None:
            flow, problems = load_text(
                flowstore.source(row.name, row.version), row.file, registry=registry, version=row.version
            )
            errors = [p for p in problems if p.severity == "error"]
            if flow is None or errors:
                message = f"flow '{row.name}' version {row.version} no longer loads: " + "; ".join(map(str, errors))
                log.warning(message)
                if latest.get(row.name) == row.version:
                    failed.append(message)
                continue
            with _parsed_lock:
                parsed[key] = flow
        flows.append(flow)
    if failed:
        raise FlowsNotLoaded("\n".join(failed))
    return FlowSet.of(flows)
