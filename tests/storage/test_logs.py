"""storage.logs' contexts: a `later` context's fields are worked out only for a line written inside, and a
tag lasts until its context ends, so no field is left behind on a thread (tests/conftest.py checks that the
main thread carries none after every test)."""

from __future__ import annotations

import threading

from storage import logs


def test_a_later_context_makes_its_fields_only_when_a_line_asks():
    made = []

    def make(contact: str) -> dict[str, object]:
        made.append(contact)
        return {"contact": contact[:4] + "****", "flow": None, "step": 3}

    with logs.context.later(make, "263771234567"):
        assert made == []  # nothing written yet: nothing worked out
        assert logs.current() == {"contact": "2637****", "step": "3"}  # None left out, values as text
        logs.tag(payment="P-1")
        assert logs.current() == {"contact": "2637****", "step": "3", "payment": "P-1"}
    assert logs.current() == {}


def test_a_later_context_inside_another_keeps_the_outer_fields():
    with logs.context(flow="pay"), logs.context.later(lambda: {"step": "ask"}):
        assert logs.current() == {"flow": "pay", "step": "ask"}
        with logs.context(step="done"):
            assert logs.current() == {"flow": "pay", "step": "done"}
    assert logs.current() == {}


def test_a_tag_outside_any_context_is_not_kept():
    # A thread that runs no turn (the workers' housekeeping, a command) would otherwise carry the payment
    # into every line it writes afterwards, however unrelated.
    seen = []

    def housekeeping() -> None:
        logs.tag(payment="P-1")
        seen.append(logs.current())
        with logs.context(flow="pay"):
            seen.append(logs.current())

    thread = threading.Thread(target=housekeeping)
    thread.start()
    thread.join()
    assert seen == [{}, {"flow": "pay"}]
