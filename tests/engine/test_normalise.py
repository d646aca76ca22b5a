"""normalise (how triggers, cancel words and typed choices are compared) takes a shortcut when a message
starts and ends with a letter or digit, and another when it is one word of letters and digits; both must
give what the edge walk gives for every character.
"""

from __future__ import annotations

import unicodedata

from engine.lookups import normalise


def _walked(text: str) -> str:
    folded = " ".join(text.split()).casefold()
    start, end = 0, len(folded)
    edge = lambda ch: ch.isspace() or unicodedata.category(ch).startswith("P")  # noqa: E731
    while start < end and edge(folded[start]):
        start += 1
    while end > start and edge(folded[end - 1]):
        end -= 1
    return folded[start:end]


def test_every_character_at_either_end_is_kept_or_dropped_as_the_edge_walk_does():
    for code in range(0x10000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        ch = chr(code)
        for text in (ch + "pay", "Pay" + ch, ch, f" {ch} menu {ch} "):
            assert normalise(text) == _walked(text), hex(code)


def test_a_one_word_message_of_any_letter_or_digit_is_what_the_edge_walk_gives():
    for code in range(0x110000):
        ch = chr(code)
        if ch.isalnum():
            for text in (ch, ch + "1", "A" + ch):
                assert normalise(text) == _walked(text), hex(code)


def test_the_messages_people_send():
    assert normalise("  Make  PAYMENT! ") == "make payment"
    assert normalise("¿menu?") == "menu"
    assert normalise("make-payment") == "make-payment"
    assert normalise("👋") == "👋"
    assert normalise("STRASSE") == normalise("Straße")
