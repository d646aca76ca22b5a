"""What goes into a turn and what comes out: inbound message, outbound messages, conversation state."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields, asdict, replace
from datetime import datetime
from typing import Any, TypeVar

from .registry import ActionCall  # noqa: F401 (a turn's record of an action: TurnResult.actions)

_T = TypeVar("_T")


def quick_init(cls: type[_T]) -> type[_T]:
    """A frozen dataclass whose __init__ fills the instance's __dict__ at once instead of calling
    object.__setattr__ once per field (what frozen=True generates, to get past its own __setattr__): a
    ten-field Conversation is built in about a third of the time, and a turn builds several of these.
    Same parameters, defaults and factories; the instance is as frozen as before afterwards."""
    params, values, env = [], [], {"_MISSING": MISSING}
    for f in fields(cls):
        if f.default is not MISSING:
            env[f"_d_{f.name}"] = f.default
            params.append(f"{f.name}=_d_{f.name}")
            values.append(f"{f.name!r}: {f.name}")
        elif f.default_factory is not MISSING:
            env[f"_f_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_MISSING")
            values.append(f"{f.name!r}: _f_{f.name}() if {f.name} is _MISSING else {f.name}")
        else:
            params.append(f.name)
            values.append(f"{f.name!r}: {f.name}")
    source = f"def __init__(self, {', '.join(params)}):\n    self.__dict__.update({{{', '.join(values)}}})\n"
    exec(source, env)
    init = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init
    return cls


@quick_init
@dataclass(frozen=True)
class Inbound:
    """One message from a contact, already parsed from the channel's payload.

    kind: "text" (typed text, or a template quick-reply's text), "button" (reply button pressed),
    "list" (list row picked), or "other" (image, audio, sticker, location, reaction, unknown…).
    For "button"/"list", reply_id is the id we sent and text is the title the user saw.
    """

    contact: str
    message_id: str
    text: str | None = None
    kind: str = "text"
    reply_id: str | None = None
    timestamp: datetime | None = None


@dataclass(frozen=True)
class Choice:
    """A reply button or a list row."""

    id: str
    title: str
    description: str | None = None


@quick_init
@dataclass(frozen=True)
class Outbound:
    """One message to send. Plain text when buttons and options are empty.

    buttons -> WhatsApp reply buttons (at most 3); options -> a WhatsApp list (at most 10 rows),
    list_button is the label of the button that opens the list.
    """

    to: str
    text: str
    buttons: tuple[Choice, ...] = ()
    options: tuple[Choice, ...] = ()
    list_button: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Outbound":
        return cls(
            to=d["to"],
            text=d["text"],
            buttons=tuple(Choice(**c) for c in d.get("buttons") or ()),
            options=tuple(Choice(**c) for c in d.get("options") or ()),
            list_button=d.get("list_button"),
        )


ACTIVE, ENDED, EXPIRED = "active", "ended", "expired"


@quick_init
@dataclass(frozen=True)
class Conversation:
    """The state of one contact's conversation between turns. JSON-able through as_dict/from_dict.

    vars holds only JSON values (str, int, bool, None, lists, dicts): amounts are Decimal strings.
    step is the step waiting for an answer (an ask step) while status is active.
    """

    contact: str
    flow: str
    version: int
    step: str
    vars: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    status: str = ACTIVE
    started_at: datetime | None = None
    updated_at: datetime | None = None
    expires_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.status == ACTIVE

    def evolve(self, **changes: Any) -> "Conversation":
        return replace(self, **changes)

    def as_dict(self) -> dict:
        d = asdict(self)
        for k in ("started_at", "updated_at", "expires_at"):
            d[k] = d[k].isoformat() if d[k] else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Conversation":
        d = dict(d)
        for k in ("started_at", "updated_at", "expires_at"):
            if d.get(k):
                d[k] = datetime.fromisoformat(d[k])
        return cls(**d)


@dataclass(frozen=True)
class Event:
    """Something worth logging that happened during a turn (undefined variable, step limit, …)."""

    level: str  # "info" | "warning" | "error"
    code: str
    message: str


@quick_init
@dataclass(frozen=True)
class TurnResult:
    """What a turn produced.

    conversation is the state to store: status active (waiting at an ask step), ended or expired.
    It is None only when the message started no flow and no conversation existed (the default reply).
    """

    conversation: Conversation | None
    outbound: list[Outbound]
    actions: list[ActionCall] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    # The message answered an ask step whose check is `otp`: the store redacts it when saving the turn.
    secret_answer: bool = False
    # When the turn ran: the clock it read once, at its start (None for a result made outside a turn). A turn
    # that called no action took microseconds, so its save may take this as its own time (channels/turn_save.py).
    at: datetime | None = None
