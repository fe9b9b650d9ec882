"""Every JSON-schema type → its column type and value; uncastable → NULL; new columns."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from dest_helpers import (
    FIXTURES,
    catalog_for,
    column_types,
    count,
    record,
    state,
    table_names,
)

CATALOG = FIXTURES / "types_catalog.json"
RECORDS = FIXTURES / "types_records.jsonl"

EXPECTED_TYPES = {
    "int_col": "bigint",
    "int_as_number": "bigint",
    "big_int": "numeric",  # widened: a value does not fit in bigint
    "num_col": "numeric",
    "bool_col": "boolean",
    "date_col": "date",
    "ts_tz": "timestamp with time zone",
    "ts_plain": "timestamp without time zone",
    "ts_default": "timestamp with time zone",
    "time_tz": "time with time zone",
    "time_plain": "time without time zone",
    "str_col": "text",
    "obj_col": "jsonb",
    "arr_col": "jsonb",
    "union_col": "jsonb",
    "untyped": "jsonb",
    "ref_int": "bigint",
    "ref_tstz": "timestamp with time zone",
}


def test_column_types(run_write, dest_conn) -> None:
    """Each JSON-schema type gets its PostgreSQL column type (integers widened when needed)."""
    assert run_write(CATALOG, RECORDS).returncode == 0
    types = column_types(dest_conn, "all_types")
    assert {k: v for k, v in types.items() if not k.startswith("_airbyte")} == EXPECTED_TYPES


def test_values(run_write, dest_conn) -> None:
    """Each value arrives exactly: big integers and long decimals keep every digit."""
    assert run_write(CATALOG, RECORDS).returncode == 0
    cur = dest_conn.execute("SELECT * FROM all_types ORDER BY int_col NULLS LAST")
    names = [d.name for d in cur.description]
    row = dict(zip(names, cur.fetchone(), strict=True))
    utc = dt.UTC
    assert row["int_col"] == 42 and row["int_as_number"] == 7 and row["ref_int"] == -9
    assert row["big_int"] == Decimal("123456789012345678901234567890")
    assert row["num_col"] == Decimal("12345678901234567890.123456789012345678")
    assert row["bool_col"] is True
    assert row["date_col"] == dt.date(2021, 2, 28)
    assert row["ts_tz"] == dt.datetime(2022, 3, 4, 3, 6, 7, 123456, tzinfo=utc)
    assert row["ts_plain"] == dt.datetime(2022, 3, 4, 5, 6, 7, 500000)
    assert row["ts_default"] == dt.datetime(2022, 3, 4, 5, 6, 7, tzinfo=utc)
    assert row["time_tz"] == dt.time(10, 11, 12, tzinfo=dt.timezone(dt.timedelta(hours=3)))
    assert row["time_plain"] == dt.time(10, 11, 12, 250000)
    assert row["str_col"] == 'héllo "wörld" \\ \t tab'
    assert row["obj_col"] == {"a": 1, "b": [True, None]}
    assert row["arr_col"] == [1, 2, 3]
    assert row["union_col"] == "x"
    assert row["untyped"] == {"k": "v"}
    assert row["ref_tstz"] == dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=utc)


@pytest.mark.parametrize("castable", [True, False], ids=["plain casts", "guarded casts"])
def test_wide_rows_get_the_same_typed_values(run_write, dest_conn, castable: bool) -> None:
    """Rows over SMALL_ROW_BYTES (typed by one jsonb_to_record pass) get the same typed values
    as small ones (a `->>` lookup per column): with every value castable, so each takes its
    plain-cast INSERT, and with values that do not cast (both redone with guards)."""
    from destination_postgres.loader import SMALL_ROW_BYTES

    catalog = json.loads(CATALOG.read_text())
    (entry,) = catalog["streams"]
    wide = json.loads(json.dumps(entry))
    wide["stream"]["name"] = "all_types_wide"
    catalog["streams"].append(wide)
    lines = RECORDS.read_bytes().splitlines()
    if castable:  # big_int's value would overflow bigint: the plain INSERT would fail
        lines = [line.replace(b"123456789012345678901234567890", b"-98765") for line in lines]
    else:
        lines.append(
            record("all_types", {"int_col": "x", "date_col": "2021-02-30", "num_col": "1e2"})
        )
    pad = b'"data":{"pad":"' + b"p" * SMALL_ROW_BYTES + b'",'  # not in the schema: raw only
    lines += [
        line.replace(b'"all_types"', b'"all_types_wide"', 1).replace(b'"data":{', pad, 1)
        for line in lines
    ]
    result = run_write(catalog, b"\n".join(lines) + b"\n")
    assert result.returncode == 0
    assert castable is not any("could not be cast" in m for m in result.logs)
    columns = ", ".join(EXPECTED_TYPES)
    order = "_airbyte_emitted_at, int_col, num_col"
    small, wide_rows = (
        dest_conn.execute(f"SELECT {columns} FROM {t} ORDER BY {order}").fetchall()
        for t in ("all_types", "all_types_wide")
    )
    assert len(small) == len(lines) // 2 and small == wide_rows
    small_types, wide_types = (column_types(dest_conn, t) for t in ("all_types", "all_types_wide"))
    assert [small_types[c] for c in EXPECTED_TYPES] == [wide_types[c] for c in EXPECTED_TYPES]


def test_raw_keeps_exact_json(run_write, dest_conn) -> None:
    """The raw table holds the record's data as sent (numbers not rounded through floats)."""
    assert run_write(CATALOG, RECORDS).returncode == 0
    text = dest_conn.execute(
        "SELECT _airbyte_data->>'big_int', _airbyte_data->>'num_col' FROM _airbyte_raw_all_types"
        " WHERE _airbyte_data->>'int_col' = '42'"
    ).fetchone()
    assert text == ("123456789012345678901234567890", "12345678901234567890.123456789012345678")


def test_missing_and_null_values_are_null(run_write, dest_conn) -> None:
    """Absent properties and JSON nulls are SQL NULL (jsonb columns too)."""
    assert run_write(CATALOG, RECORDS).returncode == 0
    row = dest_conn.execute(
        "SELECT int_col, date_col, obj_col, str_col FROM all_types WHERE bool_col = false"
    ).fetchone()
    assert row == (None, None, None, None)


UNCASTABLE = {"i": "abc", "d": "2020-13-45", "b": "maybe", "n": "12x", "t": "25:99"}


def test_uncastable_values_become_null_and_are_counted(run_write, dest_conn) -> None:
    """A value that cannot be cast is NULL in its column, kept in raw, counted in a WARN log."""
    props = {
        "i": {"type": "integer"}, "d": {"type": "string", "format": "date"},
        "b": {"type": "boolean"}, "n": {"type": "number"},
        "t": {"type": "string", "format": "time"}, "ok": {"type": "integer"},
    }  # fmt: skip
    lines = [record("casts", {**UNCASTABLE, "ok": 1}), record("casts", {"i": 5, "ok": 2})]
    result = run_write(catalog_for([("casts", props)], "append"), b"\n".join(lines) + b"\n")
    assert result.returncode == 0
    rows = dest_conn.execute("SELECT i, d, b, n, t, ok FROM casts ORDER BY ok").fetchall()
    assert rows == [(None, None, None, None, None, 1), (5, None, None, None, None, 2)]
    raw = dest_conn.execute(
        "SELECT _airbyte_data FROM _airbyte_raw_casts WHERE _airbyte_data->>'ok' = '1'"
    ).fetchone()[0]
    assert {k: raw[k] for k in UNCASTABLE} == UNCASTABLE
    (warn,) = [m for m in result.logs if "could not be cast" in m]
    assert "5 value(s)" in warn


def test_new_column_in_later_append_sync(run_write, dest_conn) -> None:
    """A property new in a later append sync becomes a column; earlier rows keep NULL there."""
    first = catalog_for([("grow", {"id": {"type": "integer"}})], "append")
    assert run_write(first, record("grow", {"id": 1}) + b"\n").returncode == 0
    second = catalog_for(
        [("grow", {"id": {"type": "integer"}, "Added Col": {"type": "string"}})], "append"
    )
    result = run_write(second, record("grow", {"id": 2, "Added Col": "new"}) + b"\n")
    assert result.returncode == 0
    assert dest_conn.execute('SELECT id, "Added Col" FROM grow ORDER BY id').fetchall() == [
        (1, None), (2, "new"),
    ]  # fmt: skip


def test_nul_characters_are_stripped_and_counted(run_write, dest_conn) -> None:
    """\\u0000 (which PostgreSQL cannot store) is removed and counted; an escaped backslash
    followed by 'u0000' is ordinary text and stays."""
    line = (
        b'{"type":"RECORD","record":{"stream":"nul","emitted_at":1,"data":'
        b'{"s":"a\\u0000b","lit":"x\\\\u0000y","o":{"k\\u0000":"\\u0000"}}}}'
    )
    props = {"s": {"type": "string"}, "lit": {"type": "string"}, "o": {"type": "object"}}
    result = run_write(catalog_for([("nul", props)], "append"), line + b"\n")
    assert result.returncode == 0
    row = dest_conn.execute("SELECT s, lit, o FROM nul").fetchone()
    assert row == ("ab", "x\\u0000y", {"k": ""})
    assert any("3 NUL character(s)" in m for m in result.logs)


def test_lone_surrogates_are_replaced_and_counted(run_write, dest_conn) -> None:
    """Half a UTF-16 pair (valid JSON, refused by jsonb) becomes U+FFFD and is counted; a whole
    pair (an emoji from an ASCII-only encoder) and an escaped backslash stay as they are."""
    lines = [
        b'{"type":"RECORD","record":{"stream":"sur","emitted_at":1,"data":'
        b'{"id":1,"s":"cut \\ud83d","pair":"\\ud83d\\ude00","lit":"x\\\\ud83d"}}}',
        b'{"type": "RECORD", "record": {"stream": "sur", "emitted_at": 1, "data": '
        b'{"id": 2, "s": "\\ude00 low", "pair": null, "lit": null}}}',
    ]
    props = {k: {"type": "string"} for k in ("s", "pair", "lit")} | {"id": {"type": "integer"}}
    result = run_write(catalog_for([("sur", props)], "append"), b"\n".join(lines) + b"\n")
    assert result.returncode == 0, result.errors
    rows = dest_conn.execute("SELECT id, s, pair, lit FROM sur ORDER BY id").fetchall()
    assert rows == [(1, "cut \ufffd", "\U0001f600", "x\\ud83d"), (2, "\ufffd low", None, None)]
    assert any("2 lone UTF-16 surrogate escape(s)" in m for m in result.logs), result.logs


def test_fifty_megabyte_value_loads(run_write, dest_conn) -> None:
    """A single 50 MB string value loads intact into both tables."""
    big = "x" * (50 << 20)
    line = json.dumps({"type": "RECORD", "record": {"stream": "big", "emitted_at": 1,
                                                    "data": {"id": 1, "blob": big}}})  # fmt: skip
    props = {"id": {"type": "integer"}, "blob": {"type": "string"}}
    result = run_write(catalog_for([("big", props)], "overwrite"), line.encode() + b"\n")
    assert result.returncode == 0, result.errors
    assert dest_conn.execute("SELECT length(blob) FROM big").fetchone()[0] == 50 << 20
    assert (
        dest_conn.execute("SELECT length(_airbyte_data->>'blob') FROM _airbyte_raw_big").fetchone()[
            0
        ]
        == 50 << 20
    )


def test_a_row_too_wide_for_a_page_keeps_the_stream_raw(run_write, dest_conn) -> None:
    """1,100 integer properties: a typed row of 1,100 bigints (8 bytes each, which TOAST cannot
    shrink) exceeds the 8,160 bytes a row may hold. The stream is kept in its raw table with a
    WARN (before, "row is too big" failed the whole write); 1,000 still get a typed table."""
    wide = {f"c{i}": {"type": "integer"} for i in range(1100)}
    fits = {f"c{i}": {"type": "integer"} for i in range(1000)}
    catalog = catalog_for([("wide", wide), ("fits", fits)], mode="append")
    data = b"\n".join([record("wide", {k: i for i, k in enumerate(wide)}),
                       record("fits", {k: i for i, k in enumerate(fits)})]) + b"\n"  # fmt: skip
    result = run_write(catalog, data)
    assert result.returncode == 0, result.errors
    assert any("wide" in line and "raw table only" in line for line in result.logs), result.logs
    assert "wide" not in table_names(dest_conn) and count(dest_conn, "_airbyte_raw_wide") == 1
    assert count(dest_conn, "fits") == 1


def test_a_column_the_user_retyped_keeps_its_type(run_write, dest_conn) -> None:
    """A typed column the user changed to a type pgbyte does not create (numeric(10,2), double
    precision) takes later values cast to that type; one that does not cast is NULL and counted,
    never a failed write (before, every later sync failed: 'expression is of type jsonb')."""
    props = {"id": {"type": "integer"}, "amount": {"type": "number"}, "ratio": {"type": "number"}}
    catalog = catalog_for([("paid", props)], mode="append")
    assert run_write(catalog, record("paid", {"id": 1, "amount": 1.5, "ratio": 0.5}) + b"\n"
                     ).returncode == 0  # fmt: skip
    dest_conn.execute("ALTER TABLE paid ALTER COLUMN amount TYPE numeric(10,2)")
    dest_conn.execute("ALTER TABLE paid ALTER COLUMN ratio TYPE double precision")
    lines = [record("paid", {"id": 2, "amount": 12.345, "ratio": 0.25}),
             record("paid", {"id": 3, "amount": 123456789012, "ratio": "n/a"})]  # fmt: skip
    result = run_write(catalog, b"\n".join(lines) + b"\n")
    assert result.returncode == 0, result.errors
    rows = dest_conn.execute("SELECT id, amount, ratio FROM paid ORDER BY id").fetchall()
    assert rows == [(1, Decimal("1.50"), 0.5), (2, Decimal("12.35"), 0.25), (3, None, None)]
    assert column_types(dest_conn, "paid")["amount"] == "numeric(10,2)"  # the user's type stays
    assert any("amount" in line and "ratio" in line for line in result.logs), result.logs


@pytest.mark.parametrize("mode", ["append", "append_dedup"])
def test_a_narrower_type_the_user_gave_nulls_what_it_cannot_hold(
    run_write, dest_conn, mode: str
) -> None:
    """Typed columns the user narrowed (smallint, integer, varchar(3), char(2)): a value that
    does not fit is NULL and counted, as any uncastable value, never a failed write (before:
    "smallint out of range" ended the write); the user's types stay."""
    props = {"id": {"type": "integer"}, "sm": {"type": "integer"}, "i4": {"type": "integer"},
             "code": {"type": "string"}, "ch": {"type": "string"}}  # fmt: skip
    catalog = catalog_for([("narrow", props)], mode=mode)
    if mode == "append_dedup":
        catalog["streams"][0].update(sync_mode="incremental", primary_key=[["id"]])
    first = {"id": 1, "sm": 1, "i4": 1, "code": "abc", "ch": "ab"}
    assert run_write(catalog, record("narrow", first) + b"\n").returncode == 0
    for column, pg_type in (("sm", "smallint"), ("i4", "integer"), ("code", "varchar(3)"),
                            ("ch", "char(2)")):  # fmt: skip
        dest_conn.execute(f"ALTER TABLE narrow ALTER COLUMN {column} TYPE {pg_type}")
    lines = [
        record("narrow", {"id": 2, "sm": 70000, "i4": 7, "code": "abcdef", "ch": "b  "}),
        state("narrow", {"n": 2}),
        record("narrow", {"id": 3, "sm": -5, "i4": 2**40, "code": "xy", "ch": "xyz"}),
        state("narrow", {"n": 3}),
    ]
    result = run_write(catalog, b"\n".join(lines) + b"\n")
    assert result.returncode == 0, result.errors
    assert len(result.states) == 2
    rows = dest_conn.execute("SELECT id, sm, i4, code, ch FROM narrow ORDER BY id").fetchall()
    assert rows == [(1, 1, 1, "abc", "ab"), (2, None, 7, None, "b "), (3, -5, None, "xy", None)]
    types = column_types(dest_conn, "narrow")
    assert [types[c] for c in ("sm", "i4", "code", "ch")] == [
        "smallint", "integer", "character varying(3)", "character(2)"]  # fmt: skip
    (report,) = [m for m in result.logs if "record(s) committed" in m]
    assert "4 value(s) could not be cast" in report, report
    assert "[ch: 1, code: 1, i4: 1, sm: 1]" in report, report
    # Trailing spaces beyond n are cut, as PostgreSQL's assignment does, on the guarded way too
    # (a bad value elsewhere in the batch sends it there).
    spaced = record("narrow", {"id": 4, "sm": 70000, "code": "abc   ", "ch": "z"})
    assert run_write(catalog, spaced + b"\n").returncode == 0
    assert dest_conn.execute("SELECT sm, code FROM narrow WHERE id = 4").fetchone() == (None, "abc")
    # The stream's type then changes: the column is retyped, and no longer narrow.
    props["sm"] = {"type": "string"}
    retyped = catalog_for([("narrow", props)], mode=mode)
    retyped["streams"][0].update({k: v for k, v in catalog["streams"][0].items()
                                  if k in ("sync_mode", "primary_key")})  # fmt: skip
    bad = record("narrow", {"id": 5, "sm": "five", "i4": "x"})
    result = run_write(retyped, bad + b"\n")
    assert result.returncode == 0, result.errors
    assert dest_conn.execute("SELECT sm, i4 FROM narrow WHERE id = 5").fetchone() == ("five", None)


@pytest.mark.parametrize("later", ["text", "overflow"])
def test_a_retype_a_view_blocks_is_a_clear_error(run_write, dest_conn, later: str) -> None:
    """A view on a typed column whose type must change (the stream's type changed: integer →
    string at the start of the write; an integer over bigint while loading): one config_error
    naming the column, the table and the view, and the tables unchanged (before: "cannot alter
    type of a column used by a view or rule", naming nothing)."""
    props = {"id": {"type": "integer"}, "n": {"type": "integer"}}
    catalog = catalog_for([("viewed", props)], mode="append")
    assert run_write(catalog, record("viewed", {"id": 1, "n": 1}) + b"\n").returncode == 0
    dest_conn.execute("CREATE VIEW viewed_v AS SELECT id, n FROM viewed")
    if later == "text":
        catalog = catalog_for([("viewed", {**props, "n": {"type": "string"}})], mode="append")
        line = record("viewed", {"id": 2, "n": "two"})
    else:
        line = record("viewed", {"id": 2, "n": 10**30})
    result = run_write(catalog, line + b"\n")
    assert result.returncode == 1
    (error,) = result.errors
    assert error["failure_type"] == "config_error", error
    for part in ("Column n of public.viewed", "viewed_v", "Drop the view"):
        assert part in error["message"], error["message"]
    assert count(dest_conn, "viewed") == 1
    assert column_types(dest_conn, "viewed")["n"] == "bigint"


@pytest.mark.parametrize("mode", ["overwrite", "append"])
def test_values_the_source_nulled_are_counted(run_write, dest_conn, mode: str) -> None:
    """Records whose meta.changes say the source sent a value as null (NaN, Infinity): the
    rows load, and the end-of-write WARN counts them per field — with meta after the data
    (the CDK's order, and ours before), or before it (ours now) (before: not a word)."""
    changes = '"meta":{"changes":[{"field":"x","change":"NULLED",' \
              '"reason":"SOURCE_SERIALIZATION_ERROR"}]}'  # fmt: skip
    ours = ('{"type":"RECORD","record":{"stream":"m","namespace":"public","emitted_at":1,'
            '"data":{"id":%d,"x":null},' + changes + "}}")  # fmt: skip
    cdk = ('{"type":"RECORD","record":{"stream":"m","namespace":"public","data":{"id":%d,'
           '"x":null},"emitted_at":1,' + changes + "}}")  # fmt: skip
    plain = ('{"type":"RECORD","record":{"stream":"m","namespace":"public","emitted_at":1,'
             '"data":{"id":%d,"x":1.5}}}')  # fmt: skip
    before = ('{"type":"RECORD","record":{"stream":"m","namespace":"public","emitted_at":1,'
              + changes + ',"data":{"id":%d,"x":null}}}')  # fmt: skip
    lines = [ours % 1, ours % 2, cdk % 3, plain % 4, before % 5]
    props = {"id": {"type": "integer"}, "x": {"type": "number"}}
    catalog = catalog_for([("m", props)], mode, namespace="public")
    result = run_write(catalog, "\n".join(lines).encode() + b"\n")
    assert result.returncode == 0, result.errors
    assert count(dest_conn, "m") == 5
    (report,) = [m for m in result.logs if "record(s) committed" in m]
    assert "4 value(s) the source could not send" in report and "[x: 4]" in report, report


def test_a_retype_a_generated_column_blocks_is_not_blamed_on_a_view(run_write, dest_conn) -> None:
    """A generated column of the user's uses the column whose type must change: a config_error
    with PostgreSQL's own reason, not the advice to drop a view."""
    props = {"id": {"type": "integer"}, "n": {"type": "integer"}}
    catalog = catalog_for([("gen", props)], mode="append")
    assert run_write(catalog, record("gen", {"id": 1, "n": 1}) + b"\n").returncode == 0
    dest_conn.execute("ALTER TABLE gen ADD COLUMN twice bigint GENERATED ALWAYS AS (n * 2) STORED")
    catalog = catalog_for([("gen", {**props, "n": {"type": "string"}})], mode="append")
    result = run_write(catalog, record("gen", {"id": 2, "n": "two"}) + b"\n")
    assert result.returncode == 1
    (error,) = result.errors
    assert error["failure_type"] == "config_error", error
    assert "generated column" in error["message"] and "view" not in error["message"], error


def test_a_table_of_airbyte_destinations_v2_is_refused_untouched(run_write, dest_conn) -> None:
    """Appending into a table Airbyte's current destination wrote (_airbyte_raw_id NOT NULL,
    _airbyte_extracted_at, _airbyte_meta): one config_error saying whose layout it is and what
    to do, and the table exactly as it was (before: our columns and key index were added, then
    every row was refused)."""
    dest_conn.execute(
        "CREATE TABLE orders (_airbyte_raw_id varchar NOT NULL, _airbyte_extracted_at "
        "timestamptz NOT NULL, _airbyte_meta jsonb NOT NULL, _airbyte_generation_id bigint, "
        "id bigint, note varchar)"
    )
    before = column_types(dest_conn, "orders")
    catalog = catalog_for([("orders", {"id": {"type": "integer"}, "note": {"type": "string"}})],
                          mode="append_dedup")  # fmt: skip
    catalog["streams"][0].update(sync_mode="incremental", primary_key=[["id"]])
    result = run_write(catalog, record("orders", {"id": 1, "note": "a"}) + b"\n")
    assert result.returncode == 1
    (error,) = result.errors
    assert error["failure_type"] == "config_error", error
    assert "written by Airbyte's Destinations V2" in error["message"], error
    assert column_types(dest_conn, "orders") == before
    indexes = dest_conn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'orders'")
    assert indexes.fetchone()[0] == 0
    assert table_names(dest_conn) == ["orders"]  # no raw table made either


@pytest.mark.parametrize("pad", [0, 3000], ids=["small rows", "wide rows"])
def test_an_integer_column_widened_to_numeric_still_takes_only_whole_numbers(
    run_write, dest_conn, pad: int
) -> None:
    """A value beyond bigint widens an integer property's column to numeric; a value that is
    not whole (5.5) is still NULL and counted there, as the bigint column refused it — in the
    widening batch, in a later batch and in a later sync — not kept in an integer column
    depending on which batch it came with. 1e400 is whole: kept, every digit."""
    catalog = catalog_for([("w", {"id": {"type": "integer"}, "n": {"type": "integer"},
                                  "pad": {"type": "string"}})], mode="append")  # fmt: skip
    filler = "x" * pad

    def lines(*pairs: tuple[int, object]) -> bytes:
        body = b"\n".join(record("w", {"id": i, "n": n, "pad": filler}) for i, n in pairs)
        return body.replace(b'"1e400"', b"1e400") + b"\n"  # a JSON number json.dumps cannot write

    first = run_write(catalog, lines((1, 2**70), (2, 5.5), (3, 7)))
    assert first.returncode == 0, first.errors
    second = run_write(catalog, lines((4, 6.5), (5, "1e400"), (6, -8), (7, "NaN")))
    assert second.returncode == 0, second.errors
    rows = dict(dest_conn.execute("SELECT id, n FROM w").fetchall())
    assert rows == {1: 2**70, 2: None, 3: 7, 4: None, 5: 10**400, 6: -8, 7: None}
    assert column_types(dest_conn, "w")["n"] == "numeric"
    for run, bad in ((first, 1), (second, 2)):
        warns = [m["log"]["message"] for m in run.of_type("LOG") if m["log"]["level"] == "WARN"]
        assert any(f"{bad} value(s) could not be cast" in w and f"n: {bad}" in w
                   for w in warns), warns  # fmt: skip
