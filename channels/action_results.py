"""Stored action results: an action called again with the same idempotency key (a message handled again
after a crash, a redo) returns the result it stored the first time instead of acting twice.
"""

from __future__ import annotations

import json

from engine.context import call_handler
from engine.registry import ActionContext, ActionSpec, Result
from storage.db import execute


def stored_invoke(spec: ActionSpec, params: dict, actx: ActionContext) -> Result:
    """TurnContext.invoke for persisted turns: the stored result when this idempotency key ran before,
    otherwise run the handler and store its result at once (committed before the turn goes on, so a
    crash later in the turn cannot make the action run twice). An action that only reads (spec.reads_only)
    is simply run: running it again is safe, and a turn handled again reads afresh.
    """
    if spec.reads_only:
        return call_handler(spec, params, actx)
    key = actx.idempotency_key
    row = execute('SELECT "outcome", "data" FROM "action_result" WHERE "idempotency_key" = ?', (key,)).fetchone()
    if row is not None:
        return Result(row[0], json.loads(row[1]))
    result = call_handler(spec, params, actx)
    execute(
        'INSERT INTO "action_result" ("idempotency_key", "action", "outcome", "data", "created_at") '
        'VALUES (?, ?, ?, ?, ?) ON CONFLICT ("idempotency_key") DO NOTHING',
        (key, spec.name, result.outcome, json.dumps(result.data, separators=(",", ":"), default=str), actx.clock()),
    )
    return result
