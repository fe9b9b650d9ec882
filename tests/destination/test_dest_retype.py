"""The column type a later sync gets when a stream's declared type changes (typemap.common_kind),
and the values such a column holds then: typed again from the raw records, as Airbyte's soft
reset does (ddl._refill).

More end to end (real syncs across such changes): tests/orchestrator/test_roundtrip_shapes_e2e.py.
"""

from __future__ import annotations

import pytest
from dest_helpers import catalog_for, count
from destination_postgres.typemap import common_kind, is_our_type
from test_dest_dedup import EM, dedup_catalog, lines, rec, typed

CASES = [
    ("bigint", "numeric", "numeric"),
    ("numeric", "bigint", "numeric"),
    ("date", "timestamptz", "timestamptz"),
    ("timestamp", "date", "timestamp"),
    ("timestamp", "timestamptz", "timestamptz"),
    ("time", "timetz", "timetz"),
    ("bigint", "text", "text"),
    ("boolean", "bigint", "text"),
    ("date", "time", "text"),
    ("text", "jsonb", "jsonb"),
    ("numeric", "jsonb", "jsonb"),
    ("jsonb", "bigint", "jsonb"),
    ("text", "text", "text"),
]


@pytest.mark.parametrize(("old", "new", "expected"), CASES)
def test_common_kind_holds_old_and_new_values(old: str, new: str, expected: str) -> None:
    """The wider number/time type, else jsonb if either is, else text."""
    assert common_kind(old, new) == expected


def test_user_made_types_are_not_ours() -> None:
    """Only the types pgbyte creates are retyped; a user's varchar(20) or int4range is kept."""
    assert is_our_type("bigint") and is_our_type("timestamp with time zone")
    assert not is_our_type("character varying(20)") and not is_our_type("int4range")


def test_a_retyped_cursor_is_retyped_from_the_raw_records(run_write, dest_conn) -> None:
    """A date-time cursor declared a plain string later: the old rows' cursor is the records'
    text again (2021-06-01T10:00:00Z), not the timestamp's (2021-06-01 10:00:00+00, where the
    space sorts below "T"), so an older record of the next sync does not win over it."""
    as_time = {"id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
               "v": {"type": "string"}}  # fmt: skip
    first = run_write(
        dedup_catalog("cur", as_time, [["id"]], ["at"]),
        lines(rec("cur", {"id": 1, "at": "2021-06-01T10:00:00Z", "v": "new"})),
    )
    assert first.returncode == 0, first.errors
    as_text = {**as_time, "at": {"type": "string"}}
    older = rec("cur", {"id": 1, "at": "2021-06-01T09:00:00Z", "v": "stale"}, EM + 1)
    second = run_write(dedup_catalog("cur", as_text, [["id"]], ["at"]), lines(older))
    assert second.returncode == 0, second.errors
    assert typed(dest_conn, "cur", "at, v") == [("2021-06-01T10:00:00Z", "new")]


def test_a_key_retyped_to_jsonb_keeps_one_row_per_key(run_write, dest_conn) -> None:
    """A string key later declared string-or-integer (jsonb): the old rows' keys are the records'
    JSON values again (1, not "1"), so a record of key 1 replaces its row, not adds one."""
    as_string = {"id": {"type": "string"}, "v": {"type": "string"}}
    first = run_write(
        dedup_catalog("k", as_string, [["id"]]),
        lines(rec("k", {"id": 1, "v": "a"}), rec("k", {"id": 2, "v": "b"})),
    )
    assert first.returncode == 0, first.errors
    either = {**as_string, "id": {"type": ["string", "integer"]}}
    second = run_write(dedup_catalog("k", either, [["id"]]), lines(rec("k", {"id": 1, "v": "a2"})))
    assert second.returncode == 0, second.errors
    assert typed(dest_conn, "k", "id::text, v") == [("1", "a2"), ("2", "b")]


def test_retyped_and_new_columns_hold_the_records_values(run_write, dest_conn) -> None:
    """integer → string: values the integer column nulled ("abc", 12.5) come back; string →
    object: an object is JSON again, not its text; a property declared only now is filled
    for the rows whose records hold it. Rows stay as many as before."""
    old = {"id": {"type": "integer"}, "n": {"type": "integer"}, "o": {"type": "string"}}
    data = [{"id": 1, "n": "abc", "o": {"a": 1}, "late": "x"}, {"id": 2, "n": 12.5, "o": 5},
            {"id": 3, "n": 7, "o": "s"}]  # fmt: skip
    first = run_write(catalog_for([("ev", old)], "append"),
                      lines(*(rec("ev", d) for d in data)))  # fmt: skip
    assert first.returncode == 0, first.errors
    assert typed(dest_conn, "ev", "id, n") == [(1, None), (2, None), (3, 7)]
    new = {"id": {"type": "integer"}, "n": {"type": "string"}, "o": {"type": "object"},
           "late": {"type": "string"}}  # fmt: skip
    second = run_write(catalog_for([("ev", new)], "append"), b"")
    assert second.returncode == 0, second.errors
    rows = typed(dest_conn, "ev", "id, n, o, jsonb_typeof(o), late")
    assert rows == [(1, "abc", {"a": 1}, "object", "x"), (2, "12.5", 5, "number", None),
                    (3, "7", "s", "string", None)]  # fmt: skip
    assert count(dest_conn, "ev") == 3


def test_a_refill_postgres_refuses_leaves_the_converted_values(run_write, dest_conn) -> None:
    """Two rows whose integer key did not cast (NULL: the unique index takes both) would share
    the key "abc" once typed again as strings: the refill is rolled back, with a WARN, and the
    write goes on as it would without it."""
    as_int = {"id": {"type": "integer"}, "v": {"type": "string"}}
    bad = lines(rec("s", {"id": "abc", "v": "a"}), rec("s", {"id": "abc", "v": "b"}))
    assert run_write(catalog_for([("s", as_int)], "append"), bad).returncode == 0
    assert run_write(dedup_catalog("s", as_int, [["id"]]), b"").returncode == 0
    as_text = {**as_int, "id": {"type": "string"}}
    result = run_write(
        dedup_catalog("s", as_text, [["id"]]), lines(rec("s", {"id": "x", "v": "c"}))
    )
    assert result.returncode == 0, result.errors
    assert any("could not be typed again from the raw records" in m for m in result.logs)
    assert typed(dest_conn, "s", "id, v", "v") == [(None, "a"), (None, "b"), ("x", "c")]


def test_a_refilled_integer_beyond_bigint_widens_its_column(run_write, dest_conn) -> None:
    """A property declared only now whose earlier records hold an integer beyond bigint: the
    column widens to numeric, as a batch's would, and the value is there; a value that does not
    cast is NULL and counted in the stream's report."""
    first = run_write(catalog_for([("w", {"id": {"type": "integer"}})], "append"),
                      lines(rec("w", {"id": 1, "big": 99999999999999999999999}),
                            rec("w", {"id": 2, "big": "n/a"})))  # fmt: skip
    assert first.returncode == 0, first.errors
    props = {"id": {"type": "integer"}, "big": {"type": "integer"}}
    second = run_write(catalog_for([("w", props)], "append"), b"")
    assert second.returncode == 0, second.errors
    assert typed(dest_conn, "w", "id, big::text") == [(1, "99999999999999999999999"), (2, None)]
    assert any("could not be cast" in m and "big: 1" in m for m in second.logs), second.logs


def test_a_typed_table_with_airbyte_text_ids_is_not_refilled(run_write, dest_conn) -> None:
    """A typed table whose _airbyte_ab_id is text (Airbyte's normalization made it) has no uuid
    to find its rows' raw records by: a new column is added, left NULL in the old rows."""
    dest_conn.execute("CREATE TABLE legacy (id bigint, _airbyte_ab_id varchar, "
                      "_airbyte_emitted_at timestamptz, _airbyte_normalized_at timestamptz, "
                      "_airbyte_legacy_hashid text)")  # fmt: skip
    dest_conn.execute("INSERT INTO legacy VALUES (1, 'x', now(), now(), 'h')")
    props = {"id": {"type": "integer"}, "v": {"type": "string"}}
    result = run_write(
        catalog_for([("legacy", props)], "append"), lines(rec("legacy", {"id": 2, "v": "b"}))
    )
    assert result.returncode == 0, result.errors
    assert typed(dest_conn, "legacy", "id, v") == [(1, None), (2, "b")]


@pytest.mark.parametrize(
    "user_object",
    ["CREATE INDEX ev_abs ON ev (abs(n))", "ALTER TABLE ev ADD CHECK (n > 0)"],
)  # fmt: skip
def test_a_users_object_on_the_old_type_blocking_a_retype_is_named(
    run_write, dest_conn, user_object: str
) -> None:
    """An expression index or CHECK written for the column's old type: the retype to text
    fails, as a config_error naming the column, the table and what to do (it was a
    system_error "function abs(text) does not exist", naming neither)."""
    old = {"id": {"type": "integer"}, "n": {"type": "integer"}}
    assert run_write(catalog_for([("ev", old)], "append"), rec("ev", {"id": 1, "n": 2})
                     ).returncode == 0  # fmt: skip
    dest_conn.execute(user_object)
    new = {"id": {"type": "integer"}, "n": {"type": "string"}}
    result = run_write(catalog_for([("ev", new)], "append"), rec("ev", {"id": 2, "n": "x"}))
    assert result.returncode == 1
    (error,) = result.errors
    assert error["failure_type"] == "config_error", error
    message = error["message"]
    assert "Column n of public.ev must become text" in message, message
    assert "An index, CHECK constraint or default" in message, message
    assert count(dest_conn, "ev") == 1
