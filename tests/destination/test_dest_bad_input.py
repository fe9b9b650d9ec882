"""Bad input never loses committed data: one TRACE ERROR naming the line, non-zero exit.

Each file under fixtures/destination/bad_input/ holds two records, a STATE, the bad line (its
number is in the file name), then more records, a STATE and COMPLETE.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from dest_helpers import (
    FIXTURES,
    catalog_for,
    column_types,
    count,
    record,
    state,
    status,
    table_names,
)

BAD = sorted((FIXTURES / "bad_input").glob("*.jsonl"))
STREAM = "append_full_refresh_demo"


def _line(path: Path) -> int:
    match = re.search(r"\.line(\d+)\.", path.name)
    assert match
    return int(match.group(1))


def _catalog(mode: str) -> Path:
    return FIXTURES / f"tutorial_catalog_{mode}.json"


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name.split(".")[0])
def test_append_keeps_what_was_committed(run_write, dest_conn, path: Path) -> None:
    """append: the rows before the last echoed STATE stay; nothing after it is loaded."""
    result = run_write(_catalog("append"), path)
    assert result.returncode != 0
    assert len(result.errors) == 1
    assert f"line {_line(path)}" in result.errors[0]["message"]
    assert len(result.states) == 1
    assert count(dest_conn, STREAM) == 2
    assert count(dest_conn, f"_airbyte_raw_{STREAM}") == 2


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name.split(".")[0])
def test_overwrite_is_not_swapped(run_write, dest_conn, tmp_path: Path, path: Path) -> None:
    """overwrite: the previous tables stay exactly as they were; no temporary is left."""
    assert (
        run_write(_catalog("overwrite"), FIXTURES / "tutorial_sync1_overwrite.jsonl").returncode
        == 0
    )
    before = dest_conn.execute("SELECT * FROM overwrite_full_refresh_demo ORDER BY id").fetchall()
    bad = path.read_bytes().replace(STREAM.encode(), b"overwrite_full_refresh_demo")
    result = run_write(_catalog("overwrite"), bad)
    assert result.returncode != 0
    assert len(result.errors) == 1
    assert f"line {_line(path)}" in result.errors[0]["message"]
    after = dest_conn.execute("SELECT * FROM overwrite_full_refresh_demo ORDER BY id").fetchall()
    assert after == before
    assert table_names(dest_conn) == [
        "_airbyte_raw_overwrite_full_refresh_demo", "overwrite_full_refresh_demo",
    ]  # fmt: skip


def test_a_record_after_its_overwrite_stream_completed_is_named(run_write, dest_conn) -> None:
    """A RECORD of an overwrite stream after its STREAM_STATUS COMPLETE (two reads
    concatenated) ends the write with one TRACE ERROR naming the line and why, and saying
    that the completed stream was replaced; its tables hold what came before COMPLETE."""
    catalog = catalog_for([("o", {"id": {"type": "integer"}})], mode="overwrite")
    lines = [record("o", {"id": 1}), status("o", "COMPLETE"), record("o", {"id": 2}),
             state("o", {"n": 1})]  # fmt: skip
    result = run_write(catalog, b"\n".join(lines) + b"\n")
    assert result.returncode != 0
    (error,) = result.errors
    assert "Input line 3" in error["message"], error
    assert "after its STREAM_STATUS COMPLETE" in error["message"], error
    assert "completed before (o) were replaced" in error["message"], error
    assert dest_conn.execute("SELECT id FROM o").fetchall() == [(1,)]
    assert table_names(dest_conn) == ["_airbyte_raw_o", "o"]


@pytest.mark.parametrize("wide", [False, True], ids=["narrow", "wide"])
def test_properties_one_key_without_nul_get_one_column_and_a_warn(
    run_write, dest_conn, wide: bool
) -> None:
    """Properties that differ only by a NUL ("a\\u0000b", "ab") are one key once NULs go: one
    column holds the value PostgreSQL keeps (the later one), a WARN names both, and rows of
    any width load (wide rows take the jsonb_to_record path)."""
    filler = "x" * (2000 if wide else 1)
    catalog = catalog_for(
        [("s", {"a\u0000b": {"type": "string"}, "ab": {"type": "string"},
                "pad": {"type": "string"}})], mode="append",
    )  # fmt: skip
    data = {"a\u0000b": "FIRST", "ab": "SECOND", "pad": filler}
    result = run_write(catalog, record("s", data) + b"\n" + state("s", 1) + b"\n")
    assert result.returncode == 0, result.errors
    assert any("one key once NUL characters are removed" in log for log in result.logs), result.logs
    assert "ab_1" not in column_types(dest_conn, "s")
    assert dest_conn.execute("SELECT ab FROM s").fetchall() == [("SECOND",)]


def test_a_byte_order_mark_before_the_first_line_is_ignored(run_write, dest_conn) -> None:
    """A message file saved with a UTF-8 byte order mark (a Windows editor) loads as without."""
    catalog = catalog_for([("o", {"id": {"type": "integer"}})], mode="append")
    data = b"\xef\xbb\xbf" + record("o", {"id": 1}) + b"\n" + state("o", 1) + b"\n"
    result = run_write(catalog, data)
    assert result.returncode == 0, result.errors
    assert dest_conn.execute("SELECT id FROM o").fetchall() == [(1,)]


@pytest.mark.parametrize("mode", ["append", "overwrite"])
def test_records_whose_keys_match_no_property_are_warned_about(run_write, dest_conn, mode):
    """Records carrying other names than their catalog's properties (PyAirbyte writing a read
    result from its cache sends `orderid` for `OrderID`) give typed rows of NULLs: a WARN says
    so, naming both sides, once per stream. A matching stream gets no such WARN."""
    props = {"OrderID": {"type": "integer"}, "Customer Name": {"type": "string"}}
    catalog = catalog_for([("orders", props), ("fine", props)], mode=mode)
    result = run_write(catalog, b"\n".join([
        *(record("orders", {"orderid": i, "customer_name": "x"}) for i in (1, 2)),
        record("fine", {"OrderID": 1, "Customer Name": "y"}), state("orders", {"n": 2}),
    ]) + b"\n")  # fmt: skip
    assert result.returncode == 0, result.errors
    warns = [m["log"]["message"] for m in result.of_type("LOG") if m["log"]["level"] == "WARN"]
    (warn,) = [w for w in warns if "match none of the stream's properties" in w]
    assert warn.startswith("Stream orders: its first record's keys (orderid, customer_name)")
    assert "(OrderID, Customer Name)" in warn
    assert dest_conn.execute('SELECT count(*) FROM orders WHERE "OrderID" IS NULL').fetchone() == (
        2,)  # fmt: skip
    assert count(dest_conn, "_airbyte_raw_orders") == 2


@pytest.mark.parametrize("mode", ["overwrite", "append"])
def test_a_string_past_jsonbs_limit_is_named_by_its_line(run_write, dest_conn, mode):
    """A string of over 256 MB, more than jsonb holds: the write fails naming the input line
    (the fast COPY's refusal is redone line by line), not with a bare server error about a
    temporary table; the STATE before it is committed (append) and echoed."""
    props = {"id": {"type": "integer"}, "t": {"type": "string"}}
    big = b'{"type":"RECORD","record":{"stream":"s","data":{"id":2,"t":"'
    big += b"x" * (1 << 28) + b'"},"emitted_at":1732550000000}}'
    lines = [record("s", {"id": 1, "t": "a"}), state("s", {"n": 1}), big]
    result = run_write(catalog_for([("s", props)], mode), b"\n".join(lines) + b"\n")
    del big, lines
    assert result.returncode == 1
    (error,) = result.errors
    assert "Input line 3 was refused by PostgreSQL" in error["message"], error["message"][:500]
    assert "too long" in error["message"], error["message"][:500]
    if mode == "append":
        assert [m["state"]["stream"]["stream_state"] for m in result.states] == [{"n": 1}]
        assert count(dest_conn, "s") == 1


def test_the_key_check_parses_no_record_of_megabytes(run_write, dest_conn) -> None:
    """The key check parses one record whole: not a first one of megabytes (a JSON object of
    millions of keys costs ten times its size as Python objects), but a small one after it,
    whose keys still get the WARN; a stream of big records only is loaded without one."""
    props = {"OrderID": {"type": "integer"}, "blob": {"type": "object"}}
    catalog = catalog_for([("orders", props), ("big", props)], mode="append")
    huge = {f"k{i}": i for i in range(120_000)}  # about 1.6 MB of JSON
    result = run_write(catalog, b"\n".join([
        record("orders", {"orderid": 1, "blob": huge}), record("orders", {"orderid": 2}),
        record("big", {"OrderID": 1, "blob": huge}),
    ]) + b"\n")  # fmt: skip
    assert result.returncode == 0, result.errors
    warns = [m["log"]["message"] for m in result.of_type("LOG") if m["log"]["level"] == "WARN"]
    (warn,) = [w for w in warns if "match none of the stream's properties" in w]
    assert warn.startswith("Stream orders: its first record's keys (orderid)"), warn
    assert count(dest_conn, "_airbyte_raw_orders") == 2 and count(dest_conn, "big") == 1


@pytest.mark.parametrize(("line", "says"), [
    (b'{"type":"STATE"}', "without a state object"),
    (b'{"type":"STATE","state":"x"}', "without a state object"),
    (b'{"type":"STATE","state":{"type":"STREAM","stream":{}}}', "of type STREAM without"),
    (b'{"type":"STATE","state":{"type":"GLOBAL"}}', "of type GLOBAL without a global object"),
])  # fmt: skip
def test_a_state_no_source_could_resume_from_is_bad_input(run_write, dest_conn, line, says):
    """A STATE message that is no state (none, not an object, a STREAM state naming no stream)
    is refused like other bad input, naming its line; echoed, a client would save it as the
    connection's state. What came before the last good STATE stays committed."""
    catalog = catalog_for([("a", {"id": {"type": "integer"}})], mode="append")
    result = run_write(catalog, b"\n".join([
        record("a", {"id": 1}), state("a", {"n": 1}), record("a", {"id": 2}), line,
    ]) + b"\n")  # fmt: skip
    assert result.returncode == 1
    (error,) = result.errors
    assert f"Input line 4 is a STATE message {says}" in error["message"], error
    assert [m["state"]["stream"]["stream_state"] for m in result.states] == [{"n": 1}]
    assert count(dest_conn, "a") == 1
