"""WhatsApp's limits on interactive messages, checked before a flow runs.

Meta refuses a message that breaks them (the user then gets nothing), so they are errors. A title that is a
template is measured by its literal text only: what the variables will hold is not known yet.

    reply buttons   at most 3, titles at most 20 characters, ids at most 256
    list rows       at most 10, titles at most 24, descriptions at most 72, ids at most 200
    list button     at most 20 characters
    body            at most 1024 characters with buttons or a list, 4096 for plain text
"""

from __future__ import annotations

from typing import Any, Iterator

from .lookups import normalise
from .template_check import literal_text
from .yaml_source import Path

MAX_BUTTONS = 3
MAX_BUTTON_TITLE = 20
MAX_BUTTON_ID = 256
MAX_OPTIONS = 10
MAX_OPTION_TITLE = 24
MAX_OPTION_DESCRIPTION = 72
MAX_OPTION_ID = 200
MAX_LIST_BUTTON = 20
MAX_INTERACTIVE_BODY = 1024
MAX_TEXT_BODY = 4096

Finding = tuple[Path, str, str, str]  # (path, severity, code, message)


def choices_of(value: Any) -> list[tuple[Any, str, str, str | None]]:
    """(key as written, id, title, description) for each button or option, in order.

    A mapping gives id -> title (or {title, description}); a list gives titles whose ids are the titles
    lowercased (or {id, title, description}).
    """
    found = []
    items = value.items() if isinstance(value, dict) else enumerate(value or ())
    for key, choice in items:
        if isinstance(choice, dict):
            title, description = choice.get("title", ""), choice.get("description")
            choice_id = choice.get("id") or (key if isinstance(value, dict) else str(title).lower())
        else:
            title, description = str(choice), None
            choice_id = key if isinstance(value, dict) else title.lower()
        found.append((key, str(choice_id), title, description))
    return found


def _name(key: Any) -> str:
    """A choice as the author knows it: its id when written as a mapping, else its position."""
    return str(key + 1) if isinstance(key, int) else f"'{key}'"


def _title_path(base: Path, key: Any, choice: Any) -> Path:
    return base + (key, "title") if isinstance(choice, dict) else base + (key,)


def check_step_limits(step: dict, base: Path, label: str) -> Iterator[Finding]:
    """Every WhatsApp limit an ask step's buttons, options and list button break."""
    if "buttons" in step:
        yield from _choices(
            step["buttons"], base + ("buttons",), label, "button", MAX_BUTTONS, MAX_BUTTON_TITLE, MAX_BUTTON_ID
        )
    if "options" in step:
        yield from _choices(
            step["options"], base + ("options",), label, "option", MAX_OPTIONS, MAX_OPTION_TITLE, MAX_OPTION_ID
        )
    list_button = step.get("list_button")
    if isinstance(list_button, str) and len(literal_text(list_button)) > MAX_LIST_BUTTON:
        yield (
            base + ("list_button",),
            "error",
            "whatsapp.list_button_too_long",
            f"{label}: the list button '{list_button}' is {len(literal_text(list_button))} characters; "
            f"WhatsApp allows {MAX_LIST_BUTTON}",
        )


def _choices(
    value: Any, path: Path, label: str, noun: str, most: int, title_limit: int, id_limit: int
) -> Iterator[Finding]:
    plural = "buttons" if noun == "button" else "options"
    choices = choices_of(value)
    if len(choices) > most:
        hint = " (use options for a list of up to 10)" if noun == "button" else " (split the list over two questions)"
        # "[Yes, pay now, No]": a title that starts in lower case is most likely the rest of the one before.
        if isinstance(value, list) and any(isinstance(c, str) and c[:1].islower() for c in value[1:]):
            hint += (
                f". In [ … ] every ',' starts a new {noun}: put a title that holds a comma in quotes, "
                f'e.g. ["Yes, pay now", "No, later"]'
            )
        yield (
            path,
            "error",
            f"whatsapp.too_many_{plural}",
            f"{label} has {len(choices)} {plural}; WhatsApp shows at most {most}{hint}",
        )
    seen: dict[str, Any] = {}
    raw = value if isinstance(value, dict) else dict(enumerate(value or ()))
    for key, choice_id, title, description in choices:
        title_path = _title_path(path, key, raw[key])
        literal = literal_text(title)
        if len(literal) > title_limit:
            yield (
                title_path,
                "error",
                f"whatsapp.{noun}_title_too_long",
                f"{label}: the {noun} title '{title}' is {len(literal)} characters; WhatsApp allows {title_limit}",
            )
        if len(choice_id) > id_limit:
            yield (
                path + (key,),
                "error",
                "whatsapp.choice_id_too_long",
                f"{label}: the {noun} id '{choice_id[:30]}…' is {len(choice_id)} characters; WhatsApp allows {id_limit}",
            )
        if isinstance(description, str) and len(literal_text(description)) > MAX_OPTION_DESCRIPTION:
            yield (
                path + (key, "description"),
                "error",
                "whatsapp.option_description_too_long",
                f"{label}: the description of '{title}' is {len(literal_text(description))} characters; "
                f"WhatsApp allows {MAX_OPTION_DESCRIPTION}",
            )
        same = normalise(title)
        if same in seen:
            yield (
                title_path,
                "error",
                f"whatsapp.duplicate_{noun}_title",
                f"{label}: {noun} {_name(key)} has the same title as {noun} {_name(seen[same])} ('{title}', "
                f"ignoring case and punctuation): a typed answer could not tell them apart",
            )
        else:
            seen[same] = key


__all__ = ["check_step_limits", "choices_of", "MAX_INTERACTIVE_BODY", "MAX_TEXT_BODY"]
