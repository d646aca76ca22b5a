"""The action registry: developers register named handlers with their contract next to the code.

    from engine.registry import action, ActionContext, Result

    @action("booking.lookup", params={"type": "object", "required": ["reference"], ...},
            outcomes=["found", "not_found", "paid_in_full"], templates=["reference"])
    def lookup(ctx: ActionContext, params: dict) -> Result:
        ...
        return Result("found", {"reference": ..., "balance_due": "300.00"})

The engine renders templated parameters, validates them against the schema, then calls the handler with
an ActionContext. What a handler returns as data must be JSON-able (it is saved into conversation vars).
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .fast_schema import well_formed
from .problems import EngineError

if TYPE_CHECKING:
    import logging

    import jsonschema

ENTRY_POINT_GROUP = "convoflow.actions"


class RegistryError(EngineError):
    """A registration broke the rules (duplicate name, bad name, bad schema)."""


class ActionFailed(EngineError):
    """A handler could not do its job for a reason that is not an outcome (a bug, a dead database)."""


@dataclass(frozen=True)
class Result:
    """What a handler returns: one of its declared outcomes, plus JSON-able data to save."""

    outcome: str
    data: Any = None


@dataclass(frozen=True)
class ActionContext:
    """What a handler gets besides its parameters.

    idempotency_key is stable for one (conversation, inbound message, step): running the action again with
    the same key must return the stored result instead of acting twice.
    services holds what the host injects (database, O'mari client, settings…); pure tests pass {}.
    """

    clock: Callable[[], datetime]
    new_id: Callable[[], str]
    idempotency_key: str
    contact: str
    log: logging.Logger
    services: Mapping[str, Any] = field(default_factory=dict)
    vars: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ActionCall:
    """A record of one action the turn ran (for logs, tests and the audit event log). It lives here, beside
    what a handler gets and returns, so the action step can write it without engine.messages, which
    `flows validate` does not need."""

    step: str
    name: str
    params: dict
    idempotency_key: str
    outcome: str
    data: Any = None


Handler = Callable[[ActionContext, dict], Result]


@dataclass(frozen=True)
class ActionSpec:
    """A registered action and its contract."""

    name: str
    handler: Handler
    params: dict
    outcomes: tuple[str, ...]
    templates: tuple[str, ...]  # parameter names whose values may be Jinja templates
    description: str = ""
    # Only reads (changes nothing anywhere): running it again is safe, so a persisted turn neither stores
    # its result under the idempotency key nor claims the conversation before it (one commit, not three).
    reads_only: bool = False

    def check_params(self, params: dict) -> list[str]:
        """Plain-words problems with params against the schema (empty when fine)."""
        import jsonschema

        validator = jsonschema.Draft202012Validator(self.params)
        return [_describe(e) for e in sorted(validator.iter_errors(params), key=lambda e: list(e.path))]


def _describe(err: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in err.absolute_path)
    if err.validator == "required":
        return err.message.replace("is a required property", "is required")
    if err.validator == "additionalProperties":
        return err.message
    return f"'{where}': {err.message}" if where else err.message


def _check_schema(spec: ActionSpec) -> None:
    """Raise RegistryError when spec's params schema breaks the meta-schema.

    jsonschema is imported here, not at the top: importing it and checking every contract costs a new
    process about 0.1 s, and the contracts actions ship are judged by fast_schema.well_formed first.
    """
    import jsonschema

    try:
        jsonschema.Draft202012Validator.check_schema(spec.params)
    except jsonschema.SchemaError as e:
        raise RegistryError(f"action '{spec.name}' has an invalid params schema: {e.message}") from None


class ActionRegistry:
    """Named action handlers. A second registration of a name raises; tests may build a fresh registry.

    plugins names the entry-point group whose modules register more actions here (the process-wide registry's
    is `convoflow.actions`; a fresh registry has none). They are imported by load_entry_points, or the first
    time a name is not found among those registered: reading every installed package's entry points and
    importing importlib.metadata cost a new `flows validate` about 4 % of its instructions, and a flow that
    names only shipped actions never needs them.

    defer names modules that register actions, by namespace, to import when a name of theirs is first looked up
    (`flows validate` defers the shipped ones, actions.load_all(defer=True): a flow that names only `core.*`
    needs none of the others).
    """

    def __init__(self, plugins: str | None = None) -> None:
        self._specs: dict[str, ActionSpec] = {}
        self._deferred: dict[str, str] = {}  # namespace -> module that registers its actions, not imported yet
        self._plugins = plugins  # the group still to import; None once imported (or when there is none)
        self._plugins_failed: str | None = None  # why they could not be imported, said again at every miss

    def action(
        self,
        name: str,
        *,
        params: dict | None = None,
        outcomes: list[str] | tuple[str, ...] = ("ok",),
        templates: list[str] | tuple[str, ...] | None = None,
        description: str = "",
        reads_only: bool = False,
    ) -> Callable[[Handler], Handler]:
        """Decorator: register the handler under `name` ("namespace.name") with its contract."""

        def register(fn: Handler) -> Handler:
            self.register(
                ActionSpec(
                    name=name,
                    handler=fn,
                    params=params or {"type": "object"},
                    outcomes=tuple(outcomes),
                    templates=tuple(templates)
                    if templates is not None
                    else tuple((params or {}).get("properties", {})),
                    description=description or (fn.__doc__ or "").strip().split("\n")[0],
                    reads_only=reads_only,
                )
            )
            return fn

        return register

    def register(self, spec: ActionSpec) -> None:
        if "." not in spec.name or spec.name.startswith(".") or spec.name.endswith("."):
            raise RegistryError(f"action name '{spec.name}' must look like 'namespace.name'")
        if spec.name in self._specs:
            raise RegistryError(f"action '{spec.name}' is registered twice")
        if not spec.outcomes:
            raise RegistryError(f"action '{spec.name}' declares no outcomes")
        if not well_formed(spec.params):
            _check_schema(spec)
        self._specs[spec.name] = spec

    def defer(self, modules: Mapping[str, str]) -> None:
        """Import modules[namespace] (a module name) the first time a name in that namespace is looked up, and
        every deferred module before a name is given up as not found or all names are listed: a module that
        registers a name outside its own namespace is found all the same, only later."""
        self._deferred.update(modules)

    def get(self, name: str) -> ActionSpec | None:
        """The action registered under name, the deferred modules' and the plug-ins' included (imported here
        if name is not found)."""
        spec = self._specs.get(name)
        if spec is None and self._deferred:
            self.import_deferred(name.partition(".")[0])
            spec = self._specs.get(name)
            if spec is None:
                self.import_deferred()
                spec = self._specs.get(name)
        if spec is None and (self._plugins is not None or self._plugins_failed is not None):
            self.load_entry_points()
            spec = self._specs.get(name)
        return spec

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def names(self) -> list[str]:
        self.import_deferred()
        self.load_entry_points()
        return sorted(self._specs)

    def suggest(self, name: str) -> str | None:
        self.import_deferred()
        self.load_entry_points()
        close = difflib.get_close_matches(name, self._specs, n=1, cutoff=0.6)
        return close[0] if close else None

    def import_deferred(self, namespace: str | None = None) -> None:
        """Import the deferred module of namespace (None: every deferred module). One that fails to import raises
        RegistryError, now and at every later lookup that needs it (it stays deferred): a name it would have
        registered is never reported as unknown."""
        for space in [namespace] if namespace is not None else list(self._deferred):
            module = self._deferred.get(space)
            if module is None:
                continue
            try:
                importlib.import_module(module)
            except RegistryError:
                raise
            except Exception as e:
                raise RegistryError(f"action module '{module}' could not be loaded: {type(e).__name__}: {e}") from None
            del self._deferred[space]

    def load_entry_points(self) -> None:
        """Import the modules named in the plug-in entry-point group, once; their decorators register. A
        plug-in that fails to import (or registers a name twice) raises RegistryError, now and at every later
        lookup that needs the plug-ins: a name it would have registered is never reported as unknown."""
        if self._plugins_failed is not None:
            raise RegistryError(self._plugins_failed)
        group, self._plugins = self._plugins, None  # a plug-in's own lookups must not import the group again
        if group is None:
            return
        from importlib.metadata import entry_points

        for ep in entry_points(group=group):
            try:
                ep.load()
            except Exception as e:
                self._plugins_failed = f"plug-in '{ep.name}' ({ep.value}) could not be loaded: {type(e).__name__}: {e}"
                raise RegistryError(self._plugins_failed) from None


# The process-wide registry that `actions/` modules register into.
registry = ActionRegistry(plugins=ENTRY_POINT_GROUP)
action = registry.action
