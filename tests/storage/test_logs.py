"""storage.logs' contexts: a `later` context's fields are worked out only for a line written inside. Each test
runs in a fresh contextvars.Context, so that fields another test left tagged in this thread (logs.tag outside
any context) do not make an outer context here."""

from __future__ import annotations

import contextvars

from storage import logs


def test_a_later_context_makes_its_fields_only_when_a_line_asks():
    made = []

    def make(contact: str) -> dict[str, object]:
        made.append(contact)
        return {"contact": contact[:4] + "****", "flow": None, "step": 3}

    def turn() -> None:
        with logs.context.later(make, "263771234567"):
            assert made == []  # nothing written yet: nothing worked out
            assert logs.current() == {"contact": "2637****", "step": "3"}  # None left out, values as text
            logs.tag(payment="P-1")
            assert logs.current() == {"contact": "2637****", "step": "3", "payment": "P-1"}
        assert logs.current() == {}

    contextvars.Context().run(turn)


def test_a_later_context_inside_another_keeps_the_outer_fields():
    def turn() -> None:
        with logs.context(flow="pay"), logs.context.later(lambda: {"step": "ask"}):
            assert logs.current() == {"flow": "pay", "step": "ask"}
            with logs.context(step="done"):
                assert logs.current() == {"flow": "pay", "step": "done"}
        assert logs.current() == {}

    contextvars.Context().run(turn)
