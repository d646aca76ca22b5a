"""Text made storable (storage/text.py): a NUL or a lone surrogate becomes U+FFFD wherever it sits, in ASCII
text (looked for without the regular expression) and in any other text alike; clean text is left as it is."""

from __future__ import annotations

import json

import pytest

from storage.text import REPLACEMENT, storable, storable_json

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
