"""WhatsApp Cloud API payloads: webhook bodies in, message JSON out.

Parsing turns one webhook body into the people who wrote (phone number and/or business-scoped user id),
the user messages it carries (as Inbound), the events that are not answers (reactions, revokes, edits,
system notices: recorded, never a turn) and the delivery receipts for what we sent. Every entry, change,
message and status is handled; an item that cannot be used (no id, no sender) is skipped with a log line
rather than failing the whole delivery, so one odd item never makes Meta retry the others for days.

Rendering turns an Outbound into one or more Cloud API message bodies. WhatsApp refuses a message that
breaks a limit, so nothing is sent as-is over a limit, and nothing is cut silently:
- a text body over 4,096 characters is split into several text messages (at a paragraph, line or word
  boundary when there is one), sent in order — no words are lost;
- an interactive body over 1,024 characters is split the same way: the leading parts go first as text
  messages and the buttons or list ride on the last part;
- titles, labels, descriptions and ids have no room to split: they are cut to the limit (titles end with
  "…") with a logged warning. `flows validate` warns about these before a flow ever runs.
- more than 3 reply buttons are sent as a list; more than 10 list rows keep the first 10 (warning).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from engine.messages import Choice, Inbound, Outbound, quick_init
from storage.contacts import Identity, is_user_id
from storage.text import stored_json

log = logging.getLogger("convoflow.whatsapp")

TEXT_MAX = 4096
INTERACTIVE_BODY_MAX = 1024
BUTTON_TITLE_MAX = 20
BUTTON_ID_MAX = 256
MAX_BUTTONS = 3
LIST_BUTTON_MAX = 20
SECTION_TITLE_MAX = 24
ROW_TITLE_MAX = 24
ROW_ID_MAX = 200
ROW_DESCRIPTION_MAX = 72
MAX_ROWS = 10
DEFAULT_LIST_BUTTON = "Choose"
EMPTY_BODY = "Please choose:"  # an interactive message must have a body; used only when the flow gave none

# System notices that move a person to a new phone number (the new one is in system.wa_id).
NUMBER_CHANGES = frozenset({"user_changed_number", "customer_changed_number"})


class PayloadError(ValueError):
    """A webhook body that is not JSON or not a WhatsApp payload; the message is a short reason."""


ContactInfo = Identity  # who wrote: phone number and/or user id; .key is the key a new contact gets


@quick_init
@dataclass(frozen=True)
class StatusReceipt:
    """A delivery receipt for a message we sent (never user input)."""

    wamid: str
    status: str  # sent | delivered | read | failed (or whatever Meta adds)
    error: str | None = None


@quick_init
@dataclass(frozen=True)
class Received:
    """One item of `messages`: the parsed Inbound, the raw item as Meta sent it and who sent it.

    event names an item that is not an answer ("reaction", "reaction_removed", "revoke", "edit",
    "system.<type>"): it is recorded and never reaches a turn. new_wa_id: a number change's new number.
    """

    inbound: Inbound
    raw: dict
    sender: Identity | None = None
    event: str | None = None
    new_wa_id: str | None = None


@quick_init
@dataclass(frozen=True)
class Webhook:
    """Everything one webhook body carried."""

    contacts: tuple[ContactInfo, ...]
    messages: tuple[Received, ...]
    statuses: tuple[StatusReceipt, ...]


def _dict(x: Any) -> dict:
    return x if isinstance(x, dict) else {}


def _list(x: Any) -> list:
    return x if isinstance(x, list) else []


def _str(x: Any, limit: int | None = None) -> str | None:
    """A non-empty string from a JSON value (ids sometimes arrive as numbers), cut to `limit` characters,
    else None."""
    if isinstance(x, str):  # nearly always: one check instead of three
        return x.strip()[:limit] or None
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x).strip()[:limit] or None
    return None


_EPOCH = datetime(1970, 1, 1)  # naive UTC, as every time the engine and storage keep


def _timestamp(x: Any) -> datetime | None:
    """Meta's unix seconds (a string) as a naive UTC datetime; None when unreadable. (The epoch plus the
    seconds: half the instructions of fromtimestamp in UTC and then its tzinfo replaced.)"""
    try:
        return _EPOCH + timedelta(seconds=int(str(x)))
    except (TypeError, ValueError, OverflowError):
        return None


def _json_of(body: bytes) -> Any:
    """json.loads(body), its value and its errors. A body that opens with "{" and a byte other than NUL is
    UTF-8 by json's own detect_encoding: it is decoded as json.loads decodes it and read by json's C scanner
    (storage.text.stored_json), without detect_encoding's Python and the decoder's two whitespace matches
    (a bench body's json.loads 53.4k instructions, this 41.5k); any other body goes to json.loads itself."""
    if body[:1] == b"{" and body[1:2] != b"\x00":
        return stored_json(body.decode("utf-8", "surrogatepass"))
    return json.loads(body)


def parse_webhook(body: bytes) -> Webhook:
    """Parse a webhook body. Raises PayloadError when it is not JSON or not a WhatsApp payload."""
    try:
        doc = _json_of(body)
    except (UnicodeDecodeError, ValueError):
        raise PayloadError("body is not JSON") from None
    if not isinstance(doc, dict):
        raise PayloadError("not a WhatsApp payload: body is not an object")
    if doc.get("object") != "whatsapp_business_account":
        raise PayloadError("not a WhatsApp payload: object is not 'whatsapp_business_account'")
    if not isinstance(doc.get("entry"), list):
        raise PayloadError("not a WhatsApp payload: no entry list")

    contacts: dict[str, ContactInfo] = {}
    messages: list[Received] = []
    statuses: list[StatusReceipt] = []
    for entry in _list(doc["entry"]):
        for change in _list(_dict(entry).get("changes")):
            change = _dict(change)
            if change.get("field") != "messages":
                continue  # account updates, template reviews…: not conversation traffic
            value = _dict(change.get("value"))
            people = [_contact(c) for c in _list(value.get("contacts"))]
            people = [p for p in people if p is not None]
            for item in _list(value.get("messages")):
                received = _message(_dict(item), people)
                if received is not None:
                    messages.append(received)
                    contacts.setdefault(received.sender.key, received.sender)
            for item in _list(value.get("statuses")):
                receipt = _status(_dict(item))
                if receipt is not None:
                    statuses.append(receipt)
            for err in _list(value.get("errors")):
                err = _dict(err)
                log.warning("webhook reported an error: code=%s %s", err.get("code"), err.get("title"))
    return Webhook(tuple(contacts.values()), tuple(messages), tuple(statuses))


def _contact(c: Any) -> Identity | None:
    c = _dict(c)
    profile = _dict(c.get("profile"))
    who = Identity(
        wa_id=_str(c.get("wa_id"), 32),
        user_id=_str(c.get("user_id"), 128),
        parent_user_id=_str(c.get("parent_user_id"), 128),
        username=_str(profile.get("username") or c.get("username"), 128),
        profile_name=_str(profile.get("name"), 256),
    )
    return who if who.key else None


def _sender(m: dict, people: list[Identity]) -> Identity | None:
    """Who sent a message: its `from` / `from_user_id`, completed from the matching contacts[] entry."""
    wa_id, user_id = _str(m.get("from"), 32), _str(m.get("from_user_id"), 128)
    for match in people:
        if (user_id and match.user_id == user_id) or (wa_id and match.wa_id == wa_id):
            break
    else:
        match = people[0] if wa_id is None and user_id is None and len(people) == 1 else None
    if match is None:
        return Identity(wa_id=wa_id, user_id=user_id) if wa_id or user_id else None
    if (wa_id or match.wa_id) == match.wa_id and (user_id or match.user_id) == match.user_id:
        return match  # the usual delivery: the message names its sender as contacts[] does (a frozen value)
    return Identity(
        wa_id=wa_id or match.wa_id,
        user_id=user_id or match.user_id,
        parent_user_id=match.parent_user_id,
        username=match.username,
        profile_name=match.profile_name,
    )


def _event(m: dict, mtype: Any) -> tuple[str | None, str | None]:
    """(event name, new phone number) for an item that is not an answer; (None, None) for a message."""
    if mtype == "reaction":
        return ("reaction" if _str(_dict(m.get("reaction")).get("emoji")) else "reaction_removed"), None
    if mtype in ("revoke", "edit"):
        return mtype, None
    if mtype == "system":
        system = _dict(m.get("system"))
        kind = (_str(system.get("type")) or "unknown")[:48]
        new_wa_id = _str(system.get("wa_id") or system.get("new_wa_id"), 32) if kind in NUMBER_CHANGES else None
        return f"system.{kind}", new_wa_id
    return None, None


def _message(m: dict, people: list[Identity]) -> Received | None:
    message_id = _str(m.get("id"))
    sender = _sender(m, people)
    if message_id is None or sender is None:
        log.warning("webhook message skipped: it has no %s", "id" if message_id is None else "sender")
        return None
    kind, text, reply_id = "other", None, None
    mtype = m.get("type")
    if mtype == "text":
        kind, text = "text", _text(_dict(m.get("text")).get("body"))
    elif mtype == "interactive":
        inter = _dict(m.get("interactive"))
        reply = _dict(inter.get(inter.get("type"))) if inter.get("type") in ("button_reply", "list_reply") else None
        if reply is not None:
            kind = "button" if inter["type"] == "button_reply" else "list"
            reply_id, text = _str(reply.get("id")), _text(reply.get("title"))
    elif mtype == "button":  # a template's quick-reply: its text is what the user "said"
        button = _dict(m.get("button"))
        kind, text, reply_id = "text", _text(button.get("text")), _str(button.get("payload"))
    inbound = Inbound(
        contact=sender.key,
        message_id=message_id[:256],
        text=text,
        kind=kind,
        reply_id=reply_id,
        timestamp=_timestamp(m.get("timestamp")),
    )
    event, new_wa_id = _event(m, mtype)
    return Received(inbound, m, sender, event, new_wa_id)


def _text(x: Any) -> str:
    return x if isinstance(x, str) else ""


def _status(s: dict) -> StatusReceipt | None:
    wamid, status = _str(s.get("id")), _str(s.get("status"))
    if wamid is None or status is None:
        return None
    errors = [_dict(e) for e in _list(s.get("errors"))]
    error = "; ".join(f"{e.get('code')} {e.get('title') or e.get('message') or ''}".strip() for e in errors) or None
    return StatusReceipt(wamid=wamid, status=status[:16], error=error)


def inbox_payload(received: Received, contact: str | None = None) -> dict:
    """The inbox row's payload: the contact (the stored contact's key, when the caller resolved it), then
    message_fields."""
    return {"contact": contact or received.inbound.contact, **message_fields(received)}


def message_fields(received: Received) -> dict:
    """The inbox row's payload after its contact: the Inbound's fields (timestamp as ISO text), the raw item
    as `raw` and, for an event, its name. inbox.add_for_known_contact puts the stored contact's key first."""
    i = received.inbound
    payload = {
        "message_id": i.message_id,
        "text": i.text,
        "kind": i.kind,
        "reply_id": i.reply_id,
        "timestamp": i.timestamp.isoformat() if i.timestamp else None,
        "raw": received.raw,
    }
    if received.event:
        payload["event"] = received.event
    return payload


# ── Outbound → Cloud API ────────────────────────────────────────────────────────────────────────────


def split_text(text: str, limit: int) -> list[str]:
    """Split text into parts of at most `limit` characters, at a paragraph, line or word break when one
    falls in the second half of a part; no character is dropped except the break itself."""
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit]
        cut = -1
        for sep in ("\n\n", "\n", " "):
            at = window.rfind(sep)
            if at >= limit // 2:
                cut, skip = at, len(sep)
                break
        if cut < 0:
            cut, skip = limit, 0
        parts.append(rest[:cut])
        rest = rest[cut + skip :]
    parts.append(rest)
    return parts


def _cut(value: str, limit: int, what: str, ellipsis: bool = True) -> str:
    if len(value) <= limit:
        return value
    short = value[: limit - 1] + "…" if ellipsis else value[:limit]
    log.warning("whatsapp: %s longer than %d characters was cut: %r -> %r", what, limit, value, short)
    return short


def recipient_fields(to: str) -> dict:
    """Address a message: a phone number goes in `to`, a business-scoped user id in `recipient`."""
    return {"recipient": to} if is_user_id(to) else {"to": to}


def _envelope(to: str) -> dict:
    return {"messaging_product": "whatsapp", "recipient_type": "individual", **recipient_fields(to)}


def _text_message(to: str, body: str) -> dict:
    return {**_envelope(to), "type": "text", "text": {"preview_url": False, "body": body}}


def _unique_titles(choices: list[Choice], limit: int, what: str) -> list[str]:
    """Titles cut to the limit; two that became equal get a number so WhatsApp accepts them."""
    titles: list[str] = []
    for c in choices:
        title = _cut(c.title, limit, what) or c.id[:limit] or "-"
        n = 2
        base = title
        while title in titles:
            suffix = f" {n}"
            title = base[: limit - len(suffix)] + suffix
            n += 1
        if title != base:
            log.warning("whatsapp: %s %r made unique as %r", what, base, title)
        titles.append(title)
    return titles


def to_cloud_api(out: Outbound, to: str | None = None) -> list[dict]:
    """The Cloud API bodies that deliver `out`, in sending order (usually one). `to` overrides out.to
    (the sender passes the contact's phone number when it knows one)."""
    to = to or out.to
    choices = list(out.buttons) or list(out.options)
    if not choices:
        if not out.text:
            log.warning("whatsapp: an empty text message to a contact was not sent")
            return []
        parts = split_text(out.text, TEXT_MAX)
        if len(parts) > 1:
            log.warning("whatsapp: a text of %d characters was split into %d messages", len(out.text), len(parts))
        return [_text_message(to, p) for p in parts]

    parts = split_text(out.text, INTERACTIVE_BODY_MAX) if out.text else [EMPTY_BODY]
    if len(parts) > 1:
        log.warning(
            "whatsapp: an interactive body of %d characters was split into %d messages", len(out.text), len(parts)
        )
    leading = [_text_message(to, p) for p in parts[:-1]]
    body = {"text": parts[-1]}
    if out.buttons and len(out.buttons) <= MAX_BUTTONS:
        titles = _unique_titles(choices, BUTTON_TITLE_MAX, "button title")
        buttons = [
            {"type": "reply", "reply": {"id": _cut(c.id, BUTTON_ID_MAX, "button id", ellipsis=False), "title": t}}
            for c, t in zip(choices, titles)
        ]
        interactive = {"type": "button", "body": body, "action": {"buttons": buttons}}
    else:
        if out.buttons:
            log.warning("whatsapp: %d reply buttons (at most %d) were sent as a list", len(choices), MAX_BUTTONS)
        if len(choices) > MAX_ROWS:
            log.warning(
                "whatsapp: a list of %d rows keeps the first %d; dropped: %s",
                len(choices),
                MAX_ROWS,
                ", ".join(c.title for c in choices[MAX_ROWS:]),
            )
            choices = choices[:MAX_ROWS]
        titles = _unique_titles(choices, ROW_TITLE_MAX, "list row title")
        rows = []
        for c, t in zip(choices, titles):
            row = {"id": _cut(c.id, ROW_ID_MAX, "list row id", ellipsis=False), "title": t}
            if c.description:
                row["description"] = _cut(c.description, ROW_DESCRIPTION_MAX, "list row description")
            rows.append(row)
        label = _cut(out.list_button or DEFAULT_LIST_BUTTON, LIST_BUTTON_MAX, "list button label")
        section = {"title": _cut(label, SECTION_TITLE_MAX, "list section title"), "rows": rows}
        interactive = {"type": "list", "body": body, "action": {"button": label, "sections": [section]}}
    return leading + [{**_envelope(to), "type": "interactive", "interactive": interactive}]
