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
from typing import TYPE_CHECKING, Any, Callable

from ..fast_schema import compile_schema
from ..lookups import per_object
from ..registry import ActionCall, ActionContext, ActionRegistry, ActionSpec, Result
from ..template_check import is_template
from . import StepKind, shape

if TYPE_CHECKING:
    import jsonschema

    from ..model import Step
    from ..runner import Turn
    from ..validate import StepChecker

REDACTED = "***"
SAVES_ITS_VALUE = "core.set"  # the action whose saved result is its `value` parameter, rendered


def _validator(spec: ActionSpec) -> jsonschema.Draft202012Validator:
    import jsonschema  # only once a quick check refuses (or cannot judge): `flows validate` starts without it

    return jsonschema.Draft202012Validator(spec.params)


def _secret_params(spec: ActionSpec) -> frozenset[str]:
    """Parameters the schema marks `writeOnly: true` (an OTP, a PIN): kept out of the recorded ActionCall."""
    properties = spec.params.get("properties") or {}
    return frozenset(k for k, v in properties.items() if isinstance(v, dict) and v.get("writeOnly"))


def _params_check(spec: ActionSpec) -> Callable[[dict], bool]:
    """Whether params are valid under the action's schema: its compiled yes/no check (engine/fast_schema),
    and jsonschema for whatever that does not pass, or for a schema it cannot compile.
    """
    quick = compile_schema(spec.params)
    if quick is None:
        return validator_for(spec).is_valid
    return lambda params: quick(params) or validator_for(spec).is_valid(params)


validator_for = per_object(_validator)
params_valid = per_object(_params_check)
secrets_of = per_object(_secret_params)


def run(turn: "Turn", step: Step) -> str | None:
    """Render, check, invoke, save, route."""
    ctx = turn.ctx
    spec = ctx.registry.get(step.action or "")
    if spec is None:
        raise turn.abort("action.unknown", f"no action named '{step.action}' is registered")
    templated = spec.templates
    params = {k: (turn.render_value(v) if k in templated else v) for k, v in step.params.items()}
    if not params_valid(spec)(params):
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
        if ctx.outage(e):  # the host's store is down, not the action: nothing is saved, the turn runs again
            raise
        turn.actions.append(ActionCall(step.name, spec.name, recorded, key, "error"))
        raise turn.abort("action.error", f"action '{spec.name}' failed: {type(e).__name__}: {e}") from None
    if not isinstance(result, Result) or result.outcome not in spec.outcomes:
        got = result.outcome if isinstance(result, Result) else type(result).__name__
        raise turn.abort(
            "action.bad_outcome",
            f"action '{spec.name}' returned '{got}', not one of its outcomes {list(spec.outcomes)}",
        )
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
    raise turn.abort(
        "action.unhandled_outcome", f"action '{spec.name}' returned '{result.outcome}', which the step does not handle"
    )


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


# ── checking a flow's action steps against the actions' contracts ───────────────────────────────────


def check(checker: "StepChecker", name: str, step: dict) -> None:
    from ..flow_schema import suggest

    spec = checker.registry.get(step["action"])
    params = step.get("with") or {}
    _params_templates(checker, params, spec)
    if spec is None:
        hint = checker.registry.suggest(step["action"])
        checker.add(
            ("action",),
            "error",
            "action.unknown",
            f"{checker.label}: unknown action '{step['action']}'" + (f" — did you mean '{hint}'?" if hint else ""),
        )
        if "on" not in step:
            checker.dead_end("the conversation stops after the action")
        return
    _params_schema(checker, spec, params)
    if spec.name == SAVES_ITS_VALUE and isinstance(step.get("save"), str) and "value" in params:
        _saves_value(checker, params["value"])
    on = step.get("on") or {}
    for outcome in on:
        if outcome not in spec.outcomes:
            checker.add(
                ("on", outcome),
                "error",
                "action.unknown_outcome",
                f"{checker.label}: action '{spec.name}' never returns '{outcome}' (it returns "
                f"{', '.join(spec.outcomes)}){suggest(outcome, spec.outcomes)}",
                key=True,
            )
    if "next" in step:
        return
    if not on:
        checker.dead_end(f"every outcome of '{spec.name}' stops the conversation with an apology")
        return
    for outcome in spec.outcomes:
        if outcome not in on:
            checker.add(
                ("on",),
                "warning",
                "action.unhandled_outcome",
                f"{checker.label}: action '{spec.name}' may return '{outcome}', which 'on' does not handle "
                f"and there is no 'next': the conversation would stop with an apology",
                key=True,
            )


def _params_templates(checker: "StepChecker", params: dict, spec: ActionSpec | None) -> None:
    for key, value in params.items():
        for value_path, text in _strings(value, ("with", key)):
            if not is_template(text):
                continue
            if spec is not None and key not in spec.templates:
                if key not in (spec.params.get("properties") or {}):
                    continue  # an unknown parameter: _params_schema says so, once
                checker.add(
                    value_path,
                    "error",
                    "action.param_not_template",
                    f"{checker.label}: '{key}' of action '{spec.name}' is sent exactly as written, so it "
                    f"cannot hold a template ({{{{ … }}}})",
                )
                continue
            checker.message(value_path, text, None)


def _params_schema(checker: "StepChecker", spec: ActionSpec, params: dict) -> None:
    from ..flow_schema import and_list, suggest

    # A templated value is judged when the conversation runs (or, where the action takes no template,
    # by action.param_not_template already).
    if params_valid(spec)(params):
        return  # nothing to say: jsonschema is asked only to explain a refusal
    templated = {k for k, v in params.items() if any(is_template(t) for _, t in _strings(v, ()))}
    required_seen: set[tuple] = set()
    for err in validator_for(spec).iter_errors(params):
        where = ("with", *err.absolute_path)
        if len(where) > 1 and where[1] in templated:
            continue
        if err.validator == "required":
            if where in required_seen:
                continue  # jsonschema reports each missing parameter apart; one line names them all
            required_seen.add(where)
            missing = [r for r in err.validator_value if r not in err.instance] or list(err.validator_value)
            message = f"action '{spec.name}' needs {and_list(missing)} in 'with'"
        elif err.validator == "additionalProperties":
            known = list(err.schema.get("properties", {}))
            for extra in (k for k in err.instance if k not in known):
                checker.add(
                    where + (extra,),
                    "error",
                    "action.bad_params",
                    f"{checker.label}: action '{spec.name}' takes no '{extra}'{suggest(extra, known)}",
                    key=True,
                )
            continue
        else:
            message = _param_words(err, str(where[-1]))
        checker.add(where, "error", "action.bad_params", f"{checker.label}: {message}")


def _saves_value(checker: "StepChecker", value: Any) -> None:
    """What core.set keeps: a rendered template is text, a literal mapping is a table with those keys."""
    if isinstance(value, dict):
        checker.saves("table", table=value)
    elif isinstance(value, str):
        checker.saves("text", f"{checker.label} saves a template's text")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        checker.saves("number")


def _strings(value: Any, path: tuple) -> list[tuple[tuple, str]]:
    """Every string inside a parameter value, with its path."""
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [found for k, v in value.items() for found in _strings(v, path + (k,))]
    if isinstance(value, list):
        return [found for i, v in enumerate(value) for found in _strings(v, path + (i,))]
    return []


def _param_words(err: jsonschema.ValidationError, label: str) -> str:
    """Plain words for a parameter that breaks its action's schema; actions' patterns carry no prose."""
    from ..flow_schema import plain_words

    if err.validator == "pattern":
        return f"'{label}' is '{err.instance}', which is not in the form the action needs ({err.validator_value})"
    if err.validator == "type" and isinstance(err.instance, int | float) and "string" in str(err.validator_value):
        return f"'{label}' must be text: put {err.instance} in quotes"
    return plain_words(err, label)[1]


def may_stop(step: dict, registry: ActionRegistry) -> bool:
    """An action step with no `next` stops the walk on any outcome its `on` does not route."""
    if "next" in step:
        return False
    spec = registry.get(step["action"])
    return spec is None or not all(o in (step.get("on") or {}) for o in spec.outcomes)


KIND = StepKind(
    name="action",
    key="action",
    order=30,
    schema=shape(
        "Call a registered action, save its result and go on by its outcome.",
        "action",
        {
            "action": {"type": "string", "minLength": 1, "description": "The action's name, e.g. booking.lookup."},
            "with": {
                "type": "object",
                "description": "The action's parameters; values may be templates where the action allows it.",
            },
            "save": {"$ref": "#/$defs/variable", "description": "The variable that keeps the action's result."},
            "on": {
                "type": "object",
                "description": "The step to go to for each outcome, e.g. {found: ask_amount, not_found: no_booking}.",
                "additionalProperties": {"$ref": "#/$defs/step_name"},
            },
            "next": {"$ref": "#/$defs/next"},
        },
    ),
    build=lambda spec: {
        "action": spec["action"],
        "params": dict(spec.get("with") or {}),
        "save": spec.get("save"),
        "on": dict(spec.get("on") or {}),
    },
    run=run,
    check=check,
    may_stop=may_stop,
)
