"""What the host gives a turn: the action registry, a clock, an id generator, services and a logger.

The engine does no I/O of its own: everything with a side effect comes in here, so tests run turns
with a fake clock and no database.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from .inputs import DEFAULT_TIMEZONE, DEFAULT_ZW_PREFIXES
from .registry import ActionContext, ActionRegistry, ActionSpec, Result

Invoke = Callable[[ActionSpec, dict, ActionContext], Result]


_UTC = timezone.utc  # a global read, not an attribute of the class on every call
_NOW = datetime.now  # the same: a classmethod read off the class costs 0.5k of the clock's 4.3k
_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=_UTC)


def utcnow() -> datetime:
    """Naive UTC now: the one time convention of the project. The naive epoch plus the time since the aware
    one (exact, to the microsecond): two arithmetic operations cost less than combine(now.date(), now.time())
    and far less than replace(tzinfo=None) (its keyword parsing), and a turn asks the clock at least twice."""
    return _EPOCH + (_NOW(_UTC) - _EPOCH_UTC)


def call_handler(spec: ActionSpec, params: dict, actx: ActionContext) -> Result:
    """The default way to run an action: call its handler directly (no stored results)."""
    return spec.handler(actx, params)


@dataclass(frozen=True)
class TurnContext:
    """Injected services for one turn.

    invoke runs one action; the host replaces it with one that returns the stored result for an
    idempotency key already seen (storage.turns), so a redelivered message never acts twice.
    """

    registry: ActionRegistry  # the actions a turn may call: the host's, always given (no process-wide default)
    clock: Callable[[], datetime] = utcnow
    new_id: Callable[[], str] = lambda: str(uuid.uuid4())
    services: Mapping[str, Any] = field(default_factory=dict)
    log: logging.Logger = logging.getLogger("convoflow.engine")
    invoke: Invoke = call_handler
    # True for an error that says the host's own store went away (a database restart, a lock held past
    # its wait): such an error out of an action stops the turn unsaved, for the host to run it again as
    # after a crash, instead of becoming the action's failure (an apology, the message marked handled).
    outage: Callable[[BaseException], bool] = lambda error: False
    max_steps: int = 50
    business_timezone: str = DEFAULT_TIMEZONE  # what day "today" is for `expect: date` (an IANA name)
    zw_mobile_prefixes: tuple[str, ...] = DEFAULT_ZW_PREFIXES  # what `expect: phone_zw` accepts after 263
