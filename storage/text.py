"""Text on its way into the database: made storable, and a secret taken out of what a turn keeps; and
JSON text on its way back (stored_json).

JSON may carry what neither database can hold: a lone surrogate (`"\\ud800"` is valid JSON, but not
UTF-8) and, for PostgreSQL, a NUL character. One such character from WhatsApp made the whole delivery
fail on every retry. `storable` swaps each for U+FFFD (the Unicode replacement character), so the
message is kept with that one character marked unreadable.
"""

from __future__ import annotations

import json
import re
from json.encoder import c_make_encoder, encode_basestring, encode_basestring_ascii
from typing import Any, Callable

REPLACEMENT = "\ufffd"
REDACTED = "[one-time code removed]"


def _compact_encoder(ensure_ascii: bool, default: Callable[[Any], Any] | None) -> Callable[[Any], str]:
    """Compact JSON text, the encoder built once: json.dumps with options builds one on every call, and
    JSONEncoder.encode its C encoder (a few µs, three times a turn). No check for circular references (a
    value that holds itself raises RecursionError, not ValueError): what we store comes from JSON and YAML."""
    if c_make_encoder is None:  # an interpreter without the C accelerator
        return json.JSONEncoder(separators=(",", ":"), ensure_ascii=ensure_ascii, default=default).encode
    strings = encode_basestring_ascii if ensure_ascii else encode_basestring
    encoder = c_make_encoder(None, default or _not_json, strings, None, ":", ",", False, False, True)
    return lambda value: "".join(encoder(value, 0))


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_COMPACT = _compact_encoder(ensure_ascii=False, default=str)
compact_json = _compact_encoder(ensure_ascii=False, default=None)  # JSON-native values only
ascii_json = _compact_encoder(ensure_ascii=True, default=None)  # any character escaped: always storable

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# In JSON text written with ensure_ascii=False a lone surrogate stays itself and NUL becomes \u0000.
_UNSTORABLE_JSON = re.compile(r"[\ud800-\udfff]|\\u0000")


def storable(value: Any) -> Any:
    """value with every string in it (dict keys, list items, nested) holdable by SQLite and PostgreSQL."""
    if value is None:  # an optional field left out (a turn's profile name and wa_id): three type checks less
        return value
    if isinstance(value, str):
        # str.isascii is a flag read; the regular expression's scan costs about a hundred instructions a character
        return value if value.isascii() and "\x00" not in value else _UNSTORABLE.sub(REPLACEMENT, value)
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(v) for v in value]
    return value


def storable_json(value: Any) -> str:
    """value as compact JSON text both databases can hold, its strings cleaned as by storable. One scan of
    the text, not a walk of the value, in the usual case where there is nothing to clean."""
    text = _COMPACT(value)
    return _COMPACT(storable(value)) if unstorable_json(text) else text


def unstorable_json(text: str) -> bool:
    """Whether JSON text written with non-ASCII kept (compact_json's, storable_json's) holds what a database
    cannot: a lone surrogate, or NUL's escape. A caller that wrote a fixed-shape object by hand with
    json_string asks this, and falls back to storable_json when it says yes."""
    # ASCII text holds no surrogate: only NUL's escape to look for, a substring search instead of the scan
    return "\\u0000" in text if text.isascii() else _UNSTORABLE_JSON.search(text) is not None


# A str as JSON text, as compact_json and storable_json write it (non-ASCII kept; TypeError for any other
# type): for an object of a fixed shape written by hand, each key once in the format rather than quoted on
# every call. The C encoder walking a six-key dict costs about 16.7k instructions, the same text written with
# this about 5.8k (an inbox row's payload, on every turn).
json_string = encode_basestring


# The decoder's C scanner: what stored_json calls first.
_scan_json = json.JSONDecoder().scan_once


def stored_json(text: str) -> Any:
    """JSON text read back from the database (a row's payload), as json.loads reads it. What we store has no
    whitespace around it, so json's C scanner alone reads it: json.loads checks its argument's type and
    encoding and JSONDecoder.decode matches whitespace around the text twice with a regular expression (an
    inbox row's payload 32.3k instructions -> 25.3k). Any other text (blank, spaced, more than one value)
    goes to json.loads, for its value or its error. The webhook reads a UTF-8 body through it too
    (channels.payloads; one with whitespace after it is read twice, by the scanner then by json.loads)."""
    try:
        value, end = _scan_json(text, 0)
    except StopIteration:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def without(value: Any, secrets: frozenset[str]) -> Any:
    """value with every string equal to one of `secrets` (exactly: a phone number that happens to contain
    the code's digits is left alone) replaced by REDACTED, however deep it sits."""
    if isinstance(value, str):
        return REDACTED if value in secrets else value
    if isinstance(value, dict):
        return {k: without(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without(v, secrets) for v in value]
    return value


def secret_forms(typed: str | None) -> frozenset[str]:
    """The forms a typed code takes in what we store: as sent, trimmed, and without its spaces (the way
    the otp check saves it)."""
    if not typed or not typed.strip():
        return frozenset()
    return frozenset({typed, typed.strip(), "".join(typed.split())})
