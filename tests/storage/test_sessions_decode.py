"""storage.sessions._decode: a session row read back as the state every save writes (_STATE_COLUMNS)."""

from __future__ import annotations


from storage.sessions import _STATE_COLUMNS, _decode

from storage_kit import stored_state


def test_a_row_decodes_to_the_state_columns_in_order_times_parsed_and_vars_decoded():
    row = (7, "pay", 3, "ask", '{"a":[1,"b"]}', 2, "active", "2026-01-05 09:14:03", "2026-01-05 09:14:03.120000", None)
    session_id, state = _decode((*row, "extra", "columns"))  # a peek's row: more columns after the state

    assert session_id == 7
    assert tuple(state) == _STATE_COLUMNS
    assert state == stored_state(expires_at=None)
