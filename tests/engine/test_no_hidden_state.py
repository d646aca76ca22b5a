"""Module-level state made explicit: what is built from a registry is keyed on it, so the order tests run in
(or registrations made after a first use) cannot leave a stale copy behind.

Registering into the process-wide check registry would change it for every later test, so the check that
registers runs in a fresh interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLOW = """
flow: pick
triggers: [pick]
steps:
  start:
    ask: Which colour?
    expect: colour
    save: colour
    next: done
  done:
    end: You chose {{ colour }}.
"""

REGISTER_AFTER_FIRST_USE = textwrap.dedent(
    """
    import sys
    from engine.flow_schema import schema
    from engine.inputs import Checked, input_check
    from engine.load import load_text
    from engine.registry import ActionRegistry

    flow = sys.stdin.read()
    _, before = load_text(flow, "pick.yaml", ActionRegistry())
    first_schema = schema()

    @input_check("colour", accepts="red or blue", saves="the colour", hint="red or blue", examples=("colour",))
    def colour(text, context):
        return Checked(text.strip().lower()) if text.strip().lower() in ("red", "blue") else Checked(problem="red or blue")

    loaded, after = load_text(flow, "pick.yaml", ActionRegistry())
    print("before:", sorted({p.code for p in before if p.severity == "error"}))
    print("after:", sorted({p.code for p in after if p.severity == "error"}), loaded is not None)
    print("schema:", "colour" in schema()["$defs"]["expect"]["then"]["enum"], schema() is not first_schema)
    """
)


def test_a_check_registered_after_a_first_validation_is_seen():
    done = subprocess.run(
        [sys.executable, "-c", REGISTER_AFTER_FIRST_USE],
        input=FLOW,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] != "before: []"  # `colour` is not a check yet: the flow is refused
    assert lines[1] == "after: [] True"  # the same process, after registering it: the flow loads
    assert lines[2] == "schema: True True"
