"""Saved states that no longer fit the stream: a clear config_error, or a full re-read with a LOG
WARN where that is safe — never a silent skip. Each case's state is a fixture file under
tests/fixtures/source/states/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from source_helpers import FIXTURES
from xmin_helpers import ids, read, stream_entry, stream_state, warnings

STATES = FIXTURES / "states"


def state_file(name: str, table: str = "t") -> list[dict]:
    """A saved stream_state fixture wrapped as the STATE message list `read --state` takes."""
    stream_state = json.loads((STATES / name).read_text())
    descriptor = {"name": table, "namespace": "public"}
    return [{"type": "STREAM", "stream": {"stream_descriptor": descriptor,
                                          "stream_state": stream_state}}]  # fmt: skip


def standard(entry: dict, cursor: str) -> dict:
    return {**entry, "cursor_field": [cursor]}


@pytest.fixture
def xmin_config(source_config: dict) -> dict:
    return {**source_config, "replication_method": {"method": "Xmin"}}


@pytest.fixture
def table(source_conn) -> None:
    source_conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text, updated int);"
                        "INSERT INTO t SELECT g, 'a', g FROM generate_series(1, 5) g")  # fmt: skip


def rereads_all(run, table: str = "t", n: int = 5) -> bool:
    return run.returncode == 0 and ids(run, table) == list(range(1, n + 1))


def test_xmin_state_on_standard_stream_rereads_with_warning(table, source_config, tmp_path):
    """An Xmin state handed to a Standard cursor stream re-reads everything, with a WARN."""
    entry = standard(stream_entry("t", ["id", "v", "updated"]), "updated")
    run = read(tmp_path, source_config, [entry], state=state_file("xmin.json"))
    assert rereads_all(run), run.stdout[-2000:]
    assert any("Xmin state" in w and "Standard" in w for w in warnings(run))
    assert stream_state(run)["state_type"] == "cursor_based"


def test_cursor_state_on_xmin_stream_rereads_with_warning(table, xmin_config, tmp_path) -> None:
    """A cursor (Standard) state handed to an Xmin stream re-reads everything, with a WARN."""
    run = read(tmp_path, xmin_config, [stream_entry("t", ["id", "v"])],
               state=state_file("cursor_updated_3.json"))  # fmt: skip
    assert rereads_all(run), run.stdout[-2000:]
    assert any("cursor (Standard) state" in w and "Xmin" in w for w in warnings(run))
    assert stream_state(run)["state_type"] == "xmin"


def test_ctid_cursor_state_on_xmin_stream_rereads_with_warning(table, xmin_config, tmp_path):
    """A Standard first-load (ctid) state handed to an Xmin stream restarts it, with a WARN."""
    run = read(tmp_path, xmin_config, [stream_entry("t", ["id", "v"])],
               state=state_file("ctid_cursor.json"))  # fmt: skip
    assert rereads_all(run), run.stdout[-2000:]
    assert any("first-load (ctid) state" in w for w in warnings(run))


def test_xmin_state_from_the_future_rereads_with_warning(table, xmin_config, tmp_path) -> None:
    """An xmin state ahead of the server's xid counter (restored DB, other server) re-reads."""
    run = read(tmp_path, xmin_config, [stream_entry("t", ["id", "v"])],
               state=state_file("xmin_future.json"))  # fmt: skip
    assert rereads_all(run), run.stdout[-2000:]
    assert any("ahead of this server" in w for w in warnings(run))


@pytest.mark.parametrize("name", ["xmin_inconsistent.json", "xmin_negative.json"])
def test_malformed_xmin_state_is_config_error(table, xmin_config, tmp_path, name) -> None:
    """An xmin state whose numbers do not add up is refused with a config_error, no records."""
    run = read(tmp_path, xmin_config, [stream_entry("t", ["id", "v"])], state=state_file(name))
    assert run.returncode == 1 and run.records == []
    (error,) = run.errors()
    assert error["failure_type"] == "config_error" and "xmin state is malformed" in error["message"]


def test_unknown_state_type_is_config_error(table, source_config, tmp_path) -> None:
    """A stream_state of an unknown state_type is refused with a config_error naming it."""
    entry = standard(stream_entry("t", ["id", "v", "updated"]), "updated")
    run = read(tmp_path, source_config, [entry], state=state_file("unknown_type.json"))
    assert run.returncode == 1 and run.records == []
    (error,) = run.errors()
    assert error["failure_type"] == "config_error" and "'snapshot_lsn'" in error["message"]


def test_cursor_value_of_another_type_rereads_with_warning(source_conn, source_config, tmp_path):
    """A saved cursor that no longer casts to the column's (changed) type re-reads, with a WARN."""
    source_conn.execute("CREATE TABLE t (id int, updated int);"
                        "INSERT INTO t SELECT g, g FROM generate_series(1, 5) g")  # fmt: skip
    entry = standard(stream_entry("t", ["id", "updated"]), "updated")
    run = read(tmp_path, source_config, [entry], state=state_file("cursor_text.json"))
    assert rereads_all(run), run.stdout[-2000:] + run.stderr
    assert any("not a valid value" in w for w in warnings(run))


def test_state_of_a_dropped_cursor_column_is_config_error(table, source_conn, source_config,
                                                          tmp_path) -> None:  # fmt: skip
    """A state and catalog naming a cursor column since dropped give a config_error naming it."""
    source_conn.execute("ALTER TABLE t DROP COLUMN updated")
    entry = standard(stream_entry("t", ["id", "v"]), "updated")
    run = read(tmp_path, source_config, [entry], state=state_file("cursor_updated_3.json"))
    assert run.returncode == 1 and run.records == []
    (error,) = run.errors()
    assert error["failure_type"] == "config_error" and "'updated'" in error["message"]


def test_renamed_cursor_column_rereads_with_warning(table, source_conn, source_config, tmp_path):
    """Cursor column renamed (catalog updated, state not): a re-read with a WARN, not a skip."""
    source_conn.execute("ALTER TABLE t RENAME COLUMN updated TO changed")
    entry = standard(stream_entry("t", ["id", "v", "changed"]), "changed")
    run = read(tmp_path, source_config, [entry], state=state_file("cursor_updated_3.json"))
    assert rereads_all(run), run.stdout[-2000:]
    assert any("differs from the configured" in w for w in warnings(run))


def test_ctid_state_of_a_table_now_a_view_restarts_with_warning(source_conn, source_config,
                                                                tmp_path) -> None:  # fmt: skip
    """A first-load (ctid) state of a relation that is now a view restarts the load, with a WARN."""
    source_conn.execute("CREATE TABLE base (id int, updated int);"
                        "INSERT INTO base SELECT g, g FROM generate_series(1, 5) g;"
                        "CREATE VIEW t AS SELECT * FROM base")  # fmt: skip
    entry = standard(stream_entry("t", ["id", "updated"]), "updated")
    run = read(tmp_path, source_config, [entry], state=state_file("ctid_cursor.json"))
    assert rereads_all(run), run.stdout[-2000:] + run.stderr
    assert any("no longer a plain table" in w for w in warnings(run))


def test_rewritten_table_restarts_xmin_first_load(source_conn, xmin_config, tmp_path) -> None:
    """An Xmin first-load (ctid) state of a table rewritten since (VACUUM FULL) restarts it."""
    source_conn.execute("CREATE TABLE t (id int, v text, pad text); INSERT INTO t"
                        " SELECT g, 'a', repeat('x', 200) FROM generate_series(1, 300) g;"
                        "ANALYZE t")  # fmt: skip
    entry = stream_entry("t", ["id", "v"])
    first = read(tmp_path / "1", xmin_config, [entry], chunk=60)
    middle = [m["state"] for m in first.of_type("STATE")][1]
    assert middle["stream"]["stream_state"]["state_type"] == "ctid"
    source_conn.execute("VACUUM FULL t")
    again = read(tmp_path / "2", xmin_config, [entry], state=[middle], chunk=60)
    assert rereads_all(again, n=300), again.stdout[-2000:]
    assert any("rewritten" in w for w in warnings(again))


def test_fixtures_are_what_the_tests_say(tmp_path: Path) -> None:
    """Every state fixture parses as JSON (a broken fixture would make a test pass vacuously)."""
    names = sorted(p.name for p in STATES.glob("*.json"))
    assert len(names) == 10
    for name in names:
        assert isinstance(json.loads((STATES / name).read_text()), dict)


@pytest.mark.parametrize(
    ("saved", "why"),
    [
        ({"stream_name": "t", "stream_namespace": "public", "cursor_field": []},
         "holds no cursor position"),
        ({"version": 2, "state_type": "ctid", "ctid": "(0,3)", "relation_filenode": 16384},
         "no incremental position"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("method", ["Standard", "Xmin"])
@pytest.mark.parametrize("shape", ["GLOBAL", "LEGACY"])
def test_airbyte_cdc_state_rereads_with_warning(table, source_config, tmp_path, saved, why,
                                                shape, method) -> None:  # fmt: skip
    """The state of Airbyte's CDC read (a connection switched to pgbyte's Standard replication),
    GLOBAL or legacy: its streams' states hold no cursor, or a snapshot's ctid with no
    incremental position after it. Each stream is read again with a WARN, not refused."""
    descriptor = {"name": "t", "namespace": "public"}
    streams = [{"stream_descriptor": descriptor, "stream_state": saved}]
    shared = {"state": {"lsn": 23896935}}
    state: Any = [{"type": "GLOBAL", "global": {"shared_state": shared, "stream_states": streams}}]
    if shape == "LEGACY":
        state = {"cdc": True, "cdc_state": shared, "streams": [
            {"stream_name": "t", "stream_namespace": "public", **saved}]}  # fmt: skip
    entry = stream_entry("t", ["id", "v", "updated"])
    config = {**source_config, "replication_method": {"method": method}}
    if method == "Standard":
        entry = standard(entry, "updated")
    run = read(tmp_path, config, [entry], state=state)
    assert rereads_all(run), run.stdout[-2000:] + run.stderr
    assert any(why in w and "re-reading" in w for w in warnings(run)), warnings(run)
    assert stream_state(run)["state_type"] == ("cursor_based" if method == "Standard" else "xmin")


def test_a_state_saved_without_namespace_resumes_its_stream(table, source_config, tmp_path):
    """A STREAM state whose descriptor has no namespace (older or hand-written clients) is the
    state of the one configured stream of that name: the read resumes after its cursor."""
    (message,) = state_file("cursor_updated_3.json")
    del message["stream"]["stream_descriptor"]["namespace"]
    entry = standard(stream_entry("t", ["id", "v", "updated"]), "updated")
    run = read(tmp_path, source_config, [entry], state=[message])
    assert run.returncode == 0, run.stdout[-2000:]
    assert ids(run, "t") == [4, 5]
    assert not warnings(run)


@pytest.mark.parametrize(
    "ddl",
    [
        "CREATE TYPE pair AS (a int, b point); CREATE TABLE c (id int PRIMARY KEY, cur pair)",
        "CREATE TABLE c (id int PRIMARY KEY, cur point)",
    ],
    ids=["composite", "point"],
)
def test_a_cursor_of_a_type_that_cannot_be_compared_is_a_config_error(
    source_conn, source_config, tmp_path, ddl: str
) -> None:
    """A cursor column whose values cannot be ordered or compared with a saved one ends its
    stream with a config_error telling the user to choose another cursor, not a bare server
    error classed as a system error."""
    source_conn.execute(ddl)
    value = "ROW(1, point(1, 2))" if "pair" in ddl else "point(1, 2)"
    source_conn.execute(f"INSERT INTO c VALUES (1, {value}), (2, {value})")
    run = read(tmp_path, source_config, [standard(stream_entry("c", ["id", "cur"]), "cur")])
    assert run.returncode != 0
    (error,) = run.errors()
    assert error["failure_type"] == "config_error", error
    assert "Choose a cursor_field of a" in error["message"], error


def test_a_ctid_block_past_32_bits_is_a_malformed_state(table, source_config, tmp_path) -> None:
    """A first-load state whose block number no tid can hold (hand-edited): a config_error
    calling the state malformed, not a bare server error about tid syntax."""
    state = state_file("ctid_cursor.json")
    state[0]["stream"]["stream_state"]["ctid"] = "(4294967296,0)"
    entry = standard(stream_entry("t", ["id", "v", "updated"]), "updated")
    run = read(tmp_path, source_config, [entry], state=state)
    assert run.returncode == 1 and run.records == []
    (error,) = run.errors()
    assert error["failure_type"] == "config_error" and "malformed" in error["message"], error


def test_a_chunk_size_past_bigint_reads_as_the_largest(table, source_config, tmp_path) -> None:
    """PGBYTE_CURSOR_CHUNK_ROWS beyond what a LIMIT takes: every row read, no bigint error."""
    entry = standard(stream_entry("t", ["id", "v", "updated"]), "updated")
    run = read(tmp_path, source_config, [entry], chunk=99999999999999999999)
    assert rereads_all(run), run.stdout[-2000:] + run.stderr


def test_a_table_created_again_under_its_name_is_warned_of(
    table, source_conn, source_config, tmp_path
) -> None:
    """The saved cursor state notes the table's oid: a table dropped and created again since
    (rows below the saved cursor in it) gets a WARN saying those rows are not read and how to
    read them; the same table, read again, gets none."""
    entry = standard(stream_entry("t", ["id", "v", "updated"]), "updated")
    first = read(tmp_path / "1", source_config, [entry])
    assert rereads_all(first), first.stdout[-2000:]
    saved = stream_state(first)
    assert saved["pgbyte_relation_oid"] == source_conn.execute(
        "SELECT 'public.t'::regclass::oid::int8").fetchone()[0]  # fmt: skip
    state = [{"type": "STREAM", "stream": {"stream_descriptor": {"name": "t",
              "namespace": "public"}, "stream_state": saved}}]  # fmt: skip
    again = read(tmp_path / "2", source_config, [entry], state=state)
    assert again.returncode == 0 and warnings(again) == []
    source_conn.execute("DROP TABLE t; CREATE TABLE t (id int PRIMARY KEY, v text, updated int);"
                        "INSERT INTO t SELECT g, 'b', g FROM generate_series(1, 3) g")  # fmt: skip
    rebuilt = read(tmp_path / "3", source_config, [entry], state=state)
    assert rebuilt.returncode == 0 and rebuilt.records == []
    (warning,) = warnings(rebuilt)
    assert "not the one the saved state was read from" in warning, warning
    assert "pgbyte state reset" in warning
