"""`action` steps: call a registered action with the step's `with:` parameters, save its data, route by
its outcome.

Only the parameters the action lists in its `templates` are rendered; the others are passed exactly as
the flow wrote them. The rendered parameters are checked against the action's params schema before the
call. The call goes through ctx.invoke (the host's, which returns the stored result for an idempotency key
already seen) with the key f"{contact}:{inbound message id}:{step}:{n}".
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import jsonschema

from ..lookups import per_object
from ..messages import ActionCall
from ..model import Step
from ..registry import ActionContext, ActionSpec, Result

if TYPE_CHECKING:
    from ..runner import Turn

REDACTED = "***"


def _validator(spec: ActionSpec) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(spec.params)


def _secret_params(spec: ActionSpec) -> frozenset[str]:
    """Parameters the schema marks `writeOnly: true` (an OTP, a PIN): kept out of the recorded ActionCall."""
    properties = spec.params.get("properties") or {}
    return frozenset(k for k, v in properties.items() if isinstance(v, dict) and v.get("writeOnly"))


validator_for = per_object(_validator)
secrets_of = per_object(_secret_params)


def run(turn: "Turn", step: Step) -> str | None:
    """Render, check, invoke, save, route."""
    ctx = turn.ctx
    spec = ctx.registry.get(step.action or "")
    if spec is None:
        raise turn.abort("action.unknown", f"no action named '{step.action}' is registered")
    templated = spec.templates
    params = {k: (turn.render_value(v) if k in templated else v) for k, v in step.params.items()}
    if not validator_for(spec).is_valid(params):
        problems = _hide_secrets(spec, params, "; ".join(spec.check_params(params)))
        raise turn.abort("action.params", f"action '{spec.name}': {problems}")

    n = turn.calls.get(step.name, 0) + 1
    turn.calls[step.name] = n
    key = f"{turn.contact}:{turn.message_id}:{step.name}:{n}"
    actx = ActionContext(
        clock=ctx.clock,
        new_id=ctx.new_id,
        idempotency_key=key,
        contact=turn.contact,
        log=ctx.log,
        services=ctx.services,
        vars=MappingProxyType(turn.vars),
    )
    recorded = _redact(spec, params)
    try:
        result = ctx.invoke(spec, params, actx)
    except Exception as e:  # a handler's bug or a dead dependency must not reach the user as a traceback
        turn.actions.append(ActionCall(step.name, spec.name, recorded, key, "error"))
        raise turn.abort("action.error", f"action '{spec.name}' failed: {type(e).__name__}: {e}") from None
    if not isinstance(result, Result) or result.outcome not in spec.outcomes:
        got = result.outcome if isinstance(result, Result) else type(result).__name__
        raise turn.abort("action.bad_outcome",
                         f"action '{spec.name}' returned '{got}', not one of its outcomes {list(spec.outcomes)}")
    try:
        data = jsonable(result.data)
    except TypeError as e:
        raise turn.abort("action.data", f"action '{spec.name}' returned data that cannot be saved: {e}") from None
    turn.actions.append(ActionCall(step.name, spec.name, recorded, key, result.outcome, data))
    if step.save:
        turn.vars[step.save] = data

    target = step.on.get(result.outcome)
    if target is not None:
        return target
    if step.next:
        return turn.route(step)
    raise turn.abort("action.unhandled_outcome",
                     f"action '{spec.name}' returned '{result.outcome}', which the step does not handle")


def _hide_secrets(spec: ActionSpec, params: dict, message: str) -> str:
    """Schema messages quote the failing value: an OTP must not reach the logs that way."""
    for name in secrets_of(spec):
        value = params.get(name)
        if isinstance(value, str) and value:
            message = message.replace(value, REDACTED)
    return message


def _redact(spec: ActionSpec, params: dict) -> dict:
    secret = secrets_of(spec)
    if not secret:
        return params
    return {k: (REDACTED if k in secret else v) for k, v in params.items()}


def jsonable(value: Any) -> Any:
    """value as JSON types for conversation vars: Decimal -> str, datetime -> ISO text, tuple -> list."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")
