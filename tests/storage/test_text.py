"""Text made storable (storage/text.py): a NUL or a lone surrogate becomes U+FFFD wherever it sits, in ASCII
text (looked for without the regular expression) and in any other text alike; clean text is left as it is."""

from __future__ import annotations

import json

import pytest

from storage.text import REPLACEMENT, storable, storable_json, stored_json

CLEAN = ["hello", "", "wamid.HBgLMjYzNzcxMjM0NTY3FQIAEhgg", "café", "ndatenda 🙏", "a\\u0000b (typed, not a NUL)"]
UNSTORABLE = [
    ("a\x00b", f"a{REPLACEMENT}b"),
    ("\x00", REPLACEMENT),
    ("x\ud800y", f"x{REPLACEMENT}y"),
    ("café\x00", f"café{REPLACEMENT}"),
    ("🙏\udfff", f"🙏{REPLACEMENT}"),
]


@pytest.mark.parametrize("text", CLEAN)
def test_clean_text_is_stored_as_it_is(text):
    assert storable(text) == text
    assert json.loads(storable_json({"text": text, "raw": [text]})) == {"text": text, "raw": [text]}


@pytest.mark.parametrize("text, stored", UNSTORABLE)
def test_a_nul_or_a_lone_surrogate_becomes_the_replacement_character(text, stored):
    assert storable(text) == stored
    assert storable({text: [text]}) == {stored: [stored]}
    assert json.loads(storable_json({"text": text, "raw": [text]})) == {"text": stored, "raw": [stored]}


STORED = [
    '{"contact":"263700000000","text":"café 🙏","raw":{"id":"wamid.1","n":[1,2.5,null,true]}}',
    '{"to": "263700000000", "buttons": []}',  # an older row written with json.dumps' spaces
    " {} ",  # whitespace around the value
    '"a"',
    "0",
    "[]",
]
NOT_ONE_VALUE = ["", "  ", "{}{}", '{"a":1} x', "{", '{"a":}', "nope"]


@pytest.mark.parametrize("text", STORED)
def test_stored_json_reads_what_json_loads_reads(text):
    assert stored_json(text) == json.loads(text)


@pytest.mark.parametrize("text", NOT_ONE_VALUE)
def test_stored_json_refuses_what_json_loads_refuses_with_its_error(text):
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as raised:
        stored_json(text)
    assert (raised.value.msg, raised.value.pos) == (expected.value.msg, expected.value.pos)
