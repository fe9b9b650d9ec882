"""How `stream_cursor_state` reads the version 3 states of Airbyte's source-postgres 4.x, and
what it refuses (no database: the end-to-end reads are in test_source_airbyte_v3_state.py)."""

from __future__ import annotations

import pytest
from pgbyte_common.errors import ConfigError
from source_postgres.state import CtidState, CursorState, Unusable, XminState, stream_cursor_state


def parse(**fields):
    return stream_cursor_state("public.t", {"version": 3, **fields})


def test_cursor_resumes_inclusively_at_its_value() -> None:
    assert parse(state_type="cursor_based", cursors={"updated_at": "2024-01-01T00:00:00Z"}) == (
        CursorState(("updated_at",), "2024-01-01T00:00:00Z", 0, airbyte_v3=True)
    )


def test_a_double_cursor_steps_down_so_nothing_is_passed_over() -> None:
    saved = parse(state_type="cursor_based", cursors={"n": 1.0000000000000002})
    assert isinstance(saved, CursorState) and float(saved.cursor) < 1.0000000000000002


@pytest.mark.parametrize("cursors", [None, {}])
def test_no_cursor_value_is_a_cold_start(cursors) -> None:
    assert parse(state_type="cursor_based", cursors=cursors) is None


@pytest.mark.parametrize(
    "cursors", [[], 0, False, "x", {"a": 1, "b": 2}, {"a": True}, {"a": [1]}, {"a": {}}]
)
def test_malformed_cursors_are_a_config_error(cursors) -> None:
    with pytest.raises(ConfigError, match="malformed"):
        parse(state_type="cursor_based", cursors=cursors)


def test_first_load_with_a_cursor_or_an_xmin_resumes_at_its_block() -> None:
    with_cursor = parse(state_type="ctid_based", ctid="(7,3)", relation_filenode=16401,
                        cursors={"id": 90})  # fmt: skip
    assert with_cursor == CtidState(7, 16401, CursorState(("id",), "90", 0, airbyte_v3=True))
    with_xmin = parse(state_type="ctid_based", ctid="(7,3)", relation_filenode=16401, xmin=812)
    assert with_xmin == CtidState(7, 16401, XminState(812))


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"state_type": "xmin_based", "xmin": None}, "no transaction id"),
        ({"state_type": "xmin_based", "xmin": -1}, "no transaction id"),
        ({"state_type": "xmin_based", "xmin": "812"}, "no transaction id"),
        ({"state_type": "ctid_based", "ctid": "(0,1)", "relation_filenode": 1}, "full refresh"),
        ({"state_type": "cursor_based", "cursors": {"a": None}}, "no value for cursor 'a'"),
        ({"state_type": "ctid_based", "ctid": "(0,1)", "relation_filenode": 1,
          "cursors": {"a": None}}, "no value for cursor 'a'"),
        ({"state_type": "ctid_based", "ctid": "(²,1)", "relation_filenode": 1,
          "cursors": {"id": 1}}, "not one pgbyte can resume"),
        ({"state_type": "ctid_based", "ctid": 7, "relation_filenode": 1, "cursors": {"id": 1}},
         "not one pgbyte can resume"),
        ({"state_type": "ctid_based", "ctid": "(7,1)", "relation_filenode": "1",
          "cursors": {"id": 1}}, "not one pgbyte can resume"),
    ],
)  # fmt: skip
def test_positions_without_a_usable_place_are_reread(fields, why) -> None:
    saved = parse(**fields)
    assert isinstance(saved, Unusable) and why in saved.reason


def test_version_2_states_read_as_before() -> None:
    """pgbyte's own (Airbyte 3.x) shapes are untouched by the version 3 reading."""
    cursor = {"version": 2, "state_type": "cursor_based", "cursor_field": ["u"], "cursor": "5",
              "cursor_record_count": 2}  # fmt: skip
    assert stream_cursor_state("t", cursor) == CursorState(("u",), "5", 2)
    ctid = {"version": 2, "state_type": "ctid", "ctid": "(3,0)", "relation_filenode": 9,
            "incremental_state": cursor}  # fmt: skip
    assert stream_cursor_state("t", ctid) == CtidState(3, 9, CursorState(("u",), "5", 2))
    with pytest.raises(ConfigError, match="malformed"):
        stream_cursor_state("t", {**ctid, "ctid": "(²,0)"})


@pytest.mark.parametrize(
    "raw", [None, [], {}, {"cdc": False, "streams": []}, [{"type": "LEGACY", "data": {}}],
            {"type": "LEGACY", "data": {}}, [{"type": "LEGACY"}]],
)  # fmt: skip
def test_every_empty_input_state_starts_fresh(raw) -> None:
    """An empty legacy state in a list ([{"type": "LEGACY", "data": {}}]) was a config_error
    while `{}` alone, `[]` and an empty legacy object started fresh."""
    from source_postgres.state import parse_input_state

    assert parse_input_state(raw) == {}


def test_a_saved_count_past_any_row_count_is_read_as_zero_at_once() -> None:
    """A state file read exactly (a cursor past 64 bits sends it down the Decimal path) whose
    cursor_record_count is 1e9999999: int() of that Decimal never returned, hanging the read.
    It counts no rows (they are read again), as an infinite float does."""
    from decimal import Decimal

    for count in (Decimal("1e9999999"), float("inf"), Decimal("NaN")):
        saved = {"state_type": "cursor_based", "cursor_field": ["c"], "cursor_record_count": count,
                 "cursor": Decimal("12345678901234567890")}  # fmt: skip
        position = stream_cursor_state("public.t", saved)
        assert isinstance(position, CursorState), position
        assert (position.cursor, position.cursor_record_count) == ("12345678901234567890", 0)
