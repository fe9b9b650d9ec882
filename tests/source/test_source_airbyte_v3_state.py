"""States saved by Airbyte's source-postgres 4.x (version 3, Bulk CDK), handed over when a
connection switches to pgbyte: cursor positions resume (re-reading the rows at the saved value,
which such a state does not count), first loads resume from their block, and positions pgbyte
cannot place re-read the stream with a LOG WARN — never a failed sync or a silent skip."""

from __future__ import annotations

import json

import pytest
from source_helpers import run_source
from test_source_state_mismatch import standard, state_file, table  # noqa: F401 (fixture)
from xmin_helpers import ids, read, stream_entry, stream_state, warnings


def infos(run) -> list[str]:
    return [m["log"]["message"] for m in run.of_type("LOG") if m["log"]["level"] == "INFO"]


def v3_state(stream_state_: dict, table_: str = "t") -> list[dict]:
    descriptor = {"name": table_, "namespace": "public"}
    return [{"type": "STREAM", "stream": {"stream_descriptor": descriptor,
                                          "stream_state": stream_state_}}]  # fmt: skip


def test_cursor_state_resumes_at_its_value(table, source_config, tmp_path) -> None:  # noqa: F811
    """cursors {"updated": 3}: rows from 3 on (3 again: the state does not count its rows);
    the state emitted after is pgbyte's (Airbyte 3.x shape), at the last value."""
    entry = standard(stream_entry("t", ["id", "v", "updated"]), "updated")
    run = read(tmp_path, source_config, [entry], state=state_file("v3_cursor_updated_3.json"))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    assert ids(run, "t") == [3, 4, 5]
    assert any("does not say how many rows" in m and "'3'" in m for m in infos(run))
    assert not warnings(run)
    final = stream_state(run)
    assert (final["state_type"], final["cursor_field"], final["cursor"]) == (
        "cursor_based", ["updated"], "5")  # fmt: skip


def test_timestamptz_cursor_in_its_iso_form_resumes(source_conn, source_config, tmp_path) -> None:
    """A timestamptz cursor as the 4.x source writes it (ISO 8601, `Z`) compares as UTC."""
    source_conn.execute(
        "CREATE TABLE t (id int PRIMARY KEY, ts timestamptz);"
        "INSERT INTO t SELECT g, timestamptz '2024-01-01 00:00+00' + (g - 1) * interval '1 day'"
        " FROM generate_series(1, 5) g"
    )
    entry = standard(stream_entry("t", ["id", "ts"]), "ts")
    saved = {"version": 3, "state_type": "cursor_based", "stream_name": "", "ctid": None,
             "stream_namespace": "", "cursors": {"ts": "2024-01-03T00:00:00.000000Z"}}  # fmt: skip
    run = read(tmp_path, source_config, [entry], state=v3_state(saved))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    assert ids(run, "t") == [3, 4, 5]
    assert not warnings(run)


@pytest.mark.parametrize("shape", ["airbyte 4.x", "pgbyte"])
def test_first_load_resumes_from_its_block(source_conn, source_config, tmp_path, shape) -> None:
    """ctid_based with the cursor noted at the start: the blocks from the saved one on (rows up
    to the noted cursor), then every row from the noted cursor on, wherever it lies — also a
    row given the noted value since, in a block the interrupted load had passed. The same for
    pgbyte's own ctid state, which counted the one row at the noted value then."""
    source_conn.execute(
        # fillfactor 50: the UPDATE below keeps row 1 in block 0 (a HOT update)
        "CREATE TABLE t (id int PRIMARY KEY, updated int, pad text) WITH (fillfactor = 50);"
        "INSERT INTO t SELECT g, g, repeat('x', 300) FROM generate_series(1, 200) g;"
        "UPDATE t SET updated = 1000 + id WHERE id IN (3, 150);"  # above the noted 190
        "UPDATE t SET updated = 190 WHERE id = 1"  # the noted value, after the 4.x load noted it
    )
    blocks, node, block_of_1 = source_conn.execute(
        "SELECT pg_relation_size('t') / current_setting('block_size')::int,"
        " pg_relation_filenode('t')::int8,"
        " (SELECT (ctid::text::point)[0]::int FROM t WHERE id = 1)"
    ).fetchone()
    start = blocks // 2
    assert blocks >= 4 and block_of_1 < start
    expected = {
        r[0]
        for r in source_conn.execute(
            "SELECT id FROM t WHERE (ctid >= %s::tid AND updated <= 190) OR updated >= 190",
            (f"({start},0)",),
        )
    }
    assert {1, 3} <= expected and 2 not in expected  # the oracle is not the whole table
    saved = {"version": 3, "state_type": "ctid_based", "ctid": f"({start},4)",
             "cursors": {"updated": 190}, "relation_filenode": node}  # fmt: skip
    if shape == "pgbyte":
        saved = {"version": 2, "state_type": "ctid", "ctid": f"({start},0)",
                 "relation_filenode": node, "incremental_state": {
                     "version": 2, "state_type": "cursor_based", "cursor_field": ["updated"],
                     "cursor": "190", "cursor_record_count": 1}}  # fmt: skip
    entry = standard(stream_entry("t", ["id", "updated"]), "updated")
    run = read(tmp_path, source_config, [entry], state=v3_state(saved))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    assert set(ids(run, "t")) == expected
    assert not warnings(run)
    assert stream_state(run)["cursor"] == "1150"


def test_first_loads_with_nothing_joined_read_each_row_once(source_conn, source_config,
                                                           tmp_path) -> None:  # fmt: skip
    """A fresh first load, and one resumed from pgbyte's ctid state whose noted value no row
    has joined since: no row twice (the re-read is only for rows that may have been missed)."""
    source_conn.execute(
        "CREATE TABLE t (id int PRIMARY KEY, updated int, pad text);"
        "INSERT INTO t SELECT g, g, repeat('x', 300) FROM generate_series(1, 200) g"
    )
    entry = standard(stream_entry("t", ["id", "updated"]), "updated")
    fresh = read(tmp_path / "fresh", source_config, [entry], chunk=40)
    assert fresh.returncode == 0, fresh.stdout[-2000:] + fresh.stderr
    assert ids(fresh, "t") == list(range(1, 201))
    middle = [m["state"] for m in fresh.of_type("STATE")
              if m["state"]["stream"]["stream_state"]["state_type"] == "ctid"][1]  # fmt: skip
    block = int(middle["stream"]["stream_state"]["ctid"].strip("()").split(",")[0])
    resumed = read(tmp_path / "resumed", source_config, [entry], state=[middle], chunk=40)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr
    expected = sorted(r[0] for r in source_conn.execute(
        "SELECT id FROM t WHERE ctid >= %s::tid", (f"({block},0)",)))  # fmt: skip
    assert 0 < len(expected) < 200 and ids(resumed, "t") == expected


def test_uncounted_cursor_state_rereads_its_value(table, source_config, tmp_path) -> None:  # noqa: F811
    """cursor_record_count 0 (older Airbyte states; a 4.x load's value): the rows at the saved
    value are read again, not assumed read."""
    entry = standard(stream_entry("t", ["id", "v", "updated"]), "updated")
    saved = {"version": 2, "state_type": "cursor_based", "cursor_field": ["updated"],
             "cursor": "3", "cursor_record_count": 0}  # fmt: skip
    run = read(tmp_path, source_config, [entry], state=v3_state(saved))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    assert ids(run, "t") == [3, 4, 5]


@pytest.mark.parametrize(("value", "expected"), [("AAI=", [2, 3, 4]), ("not base64!", None)])
def test_bytea_cursor_in_base64_resumes(source_conn, source_config, tmp_path, value,
                                        expected) -> None:  # fmt: skip
    """The 4.x source saves a bytea cursor as base64 ("AAI=" is 0x0002): compared as bytes; a
    value that is not base64 re-reads the stream with a WARN."""
    source_conn.execute(
        "CREATE TABLE t (id int PRIMARY KEY, b bytea);"
        "INSERT INTO t VALUES (1, '\\x0001'), (2, '\\x0002'), (3, '\\x0003'), (4, '\\x41')"
    )
    entry = standard(stream_entry("t", ["id", "b"]), "b")
    saved = {"version": 3, "state_type": "cursor_based", "cursors": {"b": value}}
    run = read(tmp_path, source_config, [entry], state=v3_state(saved))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    assert ids(run, "t") == (expected or [1, 2, 3, 4])
    assert bool(warnings(run)) == (expected is None)
    assert expected or any("not base64" in w for w in warnings(run))


def test_long_decimal_cursor_read_as_a_double_skips_nothing(source_conn, source_config,
                                                            tmp_path) -> None:  # fmt: skip
    """A numeric cursor saved as a JSON number with more digits than a double holds: read as
    the double above it (1.0000000000000002), it would pass over the rows in between."""
    source_conn.execute(
        "CREATE TABLE t (id int PRIMARY KEY, n numeric);"
        "INSERT INTO t VALUES (1, 1), (2, 1.00000000000000015), (3, 1.00000000000000018), (4, 2)"
    )
    entry = standard(stream_entry("t", ["id", "n"]), "n")
    files = {"config": json.dumps(source_config), "catalog": json.dumps({"streams": [entry]}),
             "state": '[{"type": "STREAM", "stream": {"stream_descriptor": {"name": "t", '
                      '"namespace": "public"}, "stream_state": {"version": 3, "state_type": '
                      '"cursor_based", "cursors": {"n": 1.00000000000000015}}}}]'}  # fmt: skip
    args = ["read"]
    for name, text in files.items():
        (tmp_path / f"{name}.json").write_text(text)
        args += [f"--{name}", str(tmp_path / f"{name}.json")]
    run = run_source(*args)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    assert {2, 3, 4} <= set(ids(run, "t"))  # 1 may come again: at least once


def test_xmin_position_resumes(table, source_conn, source_config, tmp_path) -> None:  # noqa: F811
    """xmin_based: its xmin (a 64-bit txid_current()) is where the next read starts."""
    (xmin,) = source_conn.execute("SELECT txid_current()").fetchone()
    source_conn.commit()
    source_conn.execute("UPDATE t SET v = 'b' WHERE id = 2; INSERT INTO t VALUES (6, 'c', 6)")
    saved = {"version": 3, "state_type": "xmin_based", "ctid": None, "cursors": {},
             "relation_filenode": None, "xmin": xmin}  # fmt: skip
    config = {**source_config, "replication_method": {"method": "Xmin"}}
    run = read(tmp_path, config, [stream_entry("t", ["id", "v"])], state=v3_state(saved))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    assert ids(run, "t") == [2, 6]
    assert not warnings(run)
    assert stream_state(run)["state_type"] == "xmin"


@pytest.mark.parametrize(
    ("state", "why"),
    [
        ({"state_type": "xmin_based", "cursors": {}, "xmin": None}, "holds no transaction id"),
        ({"state_type": "ctid_based", "ctid": "(0,1)", "cursors": {}, "relation_filenode": 16384},
         "full refresh position"),
    ],
)  # fmt: skip
def test_missing_positions_reread_with_warning(table, source_config, tmp_path,  # noqa: F811
                                               state, why) -> None:  # fmt: skip
    """No xmin (that source may checkpoint a null one), or a full refresh position on an
    incremental stream: the whole stream again, with a WARN that names Airbyte's 4.x source."""
    config = {**source_config, "replication_method": {"method": "Xmin"}}
    run = read(tmp_path, config, [stream_entry("t", ["id", "v"])],
               state=v3_state({"version": 3, **state}))  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    assert ids(run, "t") == [1, 2, 3, 4, 5]
    assert any(why in w and "4.x" in w and "re-reading" in w for w in warnings(run))


def test_xmin_position_on_a_standard_stream_rereads_with_warning(table, source_config,  # noqa: F811
                                                                 tmp_path) -> None:  # fmt: skip
    """An xmin position handed to a stream read by cursor: everything again, with a WARN."""
    entry = standard(stream_entry("t", ["id", "v", "updated"]), "updated")
    run = read(tmp_path, source_config, [entry], state=state_file("v3_xmin.json"))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    assert ids(run, "t") == [1, 2, 3, 4, 5]
    assert any("Xmin state" in w and "Standard" in w for w in warnings(run))


def test_two_cursors_is_config_error(table, source_config, tmp_path) -> None:  # noqa: F811
    """A cursor state naming two cursor columns is malformed: a config_error, no records."""
    saved = {"version": 3, "state_type": "cursor_based", "cursors": {"updated": 1, "id": 2}}
    entry = standard(stream_entry("t", ["id", "v", "updated"]), "updated")
    run = read(tmp_path, source_config, [entry], state=v3_state(saved))
    assert run.returncode == 1 and run.records == []
    (error,) = run.errors()
    assert error["failure_type"] == "config_error" and "malformed" in error["message"]
