"""Generic actions every flow can use: `core.set` (compute a value and save it) and `core.log`.

compute:
  action: core.set
  with: {value: {fee: "{{ (amount | float * 0.02) | round(2) }}", total: "{{ amount }}"}}
  save: totals            # later: {{ totals.fee }}
  next: confirm

note:
  action: core.log
  with: {message: "booking {{ reference }} paid {{ amount }}", level: info}
  next: thanks
"""

from __future__ import annotations

from engine.registry import ActionContext, Result, action

# The levels a flow may log at: logging's own level names, in lower case. logging itself is imported by the
# action that logs, not here: `flows validate` reads only this contract, and logging's import cost its new
# process about 1.3 % of its instructions.
LEVELS = ("debug", "error", "info", "warning")


@action(
    "core.set",
    params={
        "type": "object",
        "properties": {"value": {"description": "what to save: a template, or a mapping/list of templates"}},
        "required": ["value"],
        "additionalProperties": False,
    },
    outcomes=["ok"],
    templates=["value"],
    reads_only=True,
)
def set_value(ctx: ActionContext, params: dict) -> Result:
    """Save a rendered value (or a mapping of them) into the step's `save` variable."""
    return Result("ok", params["value"])


@action(
    "core.log",
    params={
        "type": "object",
        "properties": {
            "message": {"type": "string", "minLength": 1},
            "level": {"enum": list(LEVELS)},
        },
        "required": ["message"],
        "additionalProperties": False,
    },
    outcomes=["ok"],
    templates=["message"],
)
def log_line(ctx: ActionContext, params: dict) -> Result:
    """Write a line to the application log, tagged with the contact."""
    import logging

    level = logging.getLevelNamesMapping()[params.get("level", "info").upper()]
    ctx.log.log(level, "flow log [%s]: %s", ctx.contact, params["message"])
    return Result("ok")
