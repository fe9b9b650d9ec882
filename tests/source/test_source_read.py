"""`source-postgres read` through the console script: values, ordering, snapshot, failures."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest
from db_roles import throwaway_role
from hangups import hangups_end_it
from psycopg import sql
from source_helpers import FIXTURES, REPO_ROOT, Run, configured_catalog, run_source
from test_source_discover import WEIRD_NAMES

SOURCE = str(REPO_ROOT / ".venv" / "bin" / "source-postgres")


def read(write_json, config: dict, streams: list[dict], sync_mode: str = "full_refresh"):
    return run_source(
        "read",
        "--config",
        write_json("config.json", config),
        "--catalog",
        write_json("catalog.json", configured_catalog(streams, sync_mode)),
    )


def table_stream(name: str, columns: dict, namespace: str | None = "public") -> dict:
    stream = {
        "name": name,
        "json_schema": {"type": "object", "properties": columns},
        "supported_sync_modes": ["full_refresh"],
    }
    if namespace is not None:
        stream["namespace"] = namespace
    return stream


def test_all_types_values_as_airbyte_expects(source_conn, discover_and_read) -> None:
    """Every supported type's value comes out as the fixture says, numbers exact, meta included."""
    source_conn.execute((FIXTURES / "all_types.sql").read_text())
    expected = json.loads((FIXTURES / "all_types.expected.json").read_text(), parse_float=Decimal)[
        "records"
    ]
    _, result = discover_and_read("all_types")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    got = [
        json.loads(line, parse_float=Decimal)["record"]
        for line in result.stdout.splitlines()
        if line.startswith('{"type":"RECORD"')
    ]
    assert [{k: v for k, v in r.items() if k in ("data", "meta")} for r in got] == expected


def test_nan_and_infinity_become_null_with_meta_change(source_conn, discover_and_read) -> None:
    """NaN/±Infinity are nulled and listed in the record's meta.changes; finite rows have none."""
    source_conn.execute(
        "CREATE TABLE f (id int, x float8, n numeric);"
        "INSERT INTO f VALUES (1, 'NaN', 1.5), (2, 2.5, 'Infinity'), (3, '-Infinity', 'NaN'),"
        " (4, 4.5, 4.25), (5, NULL, NULL)"
    )
    _, result = discover_and_read("f")
    records = sorted(result.records, key=lambda r: r["data"]["id"])
    assert [r["data"] for r in records] == [
        {"id": 1, "x": None, "n": 1.5},
        {"id": 2, "x": 2.5, "n": None},
        {"id": 3, "x": None, "n": None},
        {"id": 4, "x": 4.5, "n": 4.25},
        {"id": 5, "x": None, "n": None},
    ]
    changes = [[c["field"] for c in r.get("meta", {}).get("changes", [])] for r in records]
    assert changes == [["x"], ["n"], ["x", "n"], [], []]
    assert all(
        c == {"field": c["field"], "change": "NULLED", "reason": "SOURCE_SERIALIZATION_ERROR"}
        for r in records
        for c in r.get("meta", {}).get("changes", [])
    )


def test_tricky_strings_round_trip(source_conn, discover_and_read) -> None:
    """Backslashes, quotes, control characters and unicode arrive exactly as stored."""
    strings = json.loads((FIXTURES / "tricky_strings.json").read_text())
    source_conn.execute("CREATE TABLE s (id int, v text, j jsonb)")
    with source_conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO s VALUES (%s, %s, %s)",
            [(i, v, json.dumps({"v": v})) for i, v in enumerate(strings)],
        )
    stored = {
        i: (v, j) for i, v, j in source_conn.execute("SELECT id, v, j::text FROM s").fetchall()
    }
    _, result = discover_and_read("s")
    got = {d["id"]: (d["v"], d["j"]) for d in result.data("s")}
    assert got == stored
    assert [got[i][0] for i in range(len(strings))] == strings
    assert "\u2028" not in result.stdout and "\u0085" not in result.stdout


def test_records_equal_rows_value_for_value(source_conn, discover_and_read) -> None:
    """Generated rows come back equal to what psycopg reads from the table."""
    source_conn.execute(
        "CREATE TABLE g AS SELECT i AS id, md5(i::text) AS h, i * 1.5 AS x, "
        "(i % 7 = 0) AS b, date '2000-01-01' + i AS d FROM generate_series(1, 5000) i"
    )
    rows = source_conn.execute("SELECT id, h, x, b, d::text FROM g").fetchall()
    _, result = discover_and_read("g")
    got = sorted((d["id"], d["h"], Decimal(str(d["x"])), d["b"], d["d"]) for d in result.data("g"))
    assert got == sorted((i, h, Decimal(x), b, d) for i, h, x, b, d in rows)
    (state,) = result.of_type("STATE")
    assert state["state"]["sourceStats"]["recordCount"] == 5000


def test_weird_names_read(source_conn, discover_and_read) -> None:
    """Tables and columns with awkward names are read under their exact names."""
    for name in WEIRD_NAMES:
        source_conn.execute(
            sql.SQL("CREATE TABLE {0} ({0} int); INSERT INTO {0} VALUES (7)").format(
                sql.Identifier(name)
            )
        )
    _, result = discover_and_read()
    assert result.returncode == 0, result.stdout[-2000:]
    for name in WEIRD_NAMES:
        assert result.data(name) == [{name: 7}]
        assert {r["namespace"] for r in result.records if r["stream"] == name} == {"public"}


def test_message_order_and_counts(source_conn, discover_and_read) -> None:
    """Per stream: STARTED, ESTIMATE, RUNNING, records, STATE with the count, COMPLETE."""
    source_conn.execute(
        "CREATE TABLE a AS SELECT generate_series(1, 3) AS id;"
        "CREATE TABLE b AS SELECT generate_series(1, 2) AS id; CREATE TABLE e (id int);"
        "ANALYZE a"
    )
    _, result = discover_and_read()
    assert result.returncode == 0
    for stream, count in (("a", 3), ("b", 2), ("e", 0)):
        kinds = []
        for m in result.messages:
            if m["type"] == "RECORD" and m["record"]["stream"] == stream:
                kind = "RECORD"
            elif m["type"] == "STATE":
                if m["state"]["stream"]["stream_descriptor"]["name"] != stream:
                    continue
                kind = "STATE"
                assert m["state"]["sourceStats"]["recordCount"] == count
            elif m["type"] == "TRACE" and m["trace"]["type"] == "ESTIMATE":
                if m["trace"]["estimate"]["name"] != stream:
                    continue
                kind = "ESTIMATE"
            elif m["type"] == "TRACE" and m["trace"]["type"] == "STREAM_STATUS":
                if m["trace"]["stream_status"]["stream_descriptor"]["name"] != stream:
                    continue
                kind = m["trace"]["stream_status"]["status"]
            else:
                continue
            if not kinds or kinds[-1] != kind:
                kinds.append(kind)
        records = ["RECORD"] if count else []
        assert kinds == ["STARTED", "ESTIMATE", "RUNNING", *records, "STATE", "COMPLETE"]
    estimate = next(
        m["trace"]["estimate"]
        for m in result.of_type("TRACE")
        if m["trace"]["type"] == "ESTIMATE" and m["trace"]["estimate"]["name"] == "a"
    )
    assert estimate["row_estimate"] == 3 and estimate["byte_estimate"] > 0
    # b was never analyzed (reltuples -1): counted, not estimated as 0.
    estimate_b = next(
        m["trace"]["estimate"]
        for m in result.of_type("TRACE")
        if m["trace"]["type"] == "ESTIMATE" and m["trace"]["estimate"]["name"] == "b"
    )
    assert estimate_b["row_estimate"] == 2


def test_only_configured_columns(source_conn, source_config, write_json) -> None:
    """Columns left out of the configured json_schema are not in the records."""
    source_conn.execute("CREATE TABLE t (a int, b text, c int); INSERT INTO t VALUES (1, 'x', 3)")
    stream = table_stream("t", {"c": {"type": "integer"}, "a": {"type": "integer"}})
    result = read(write_json, source_config, [stream])
    assert result.data("t") == [{"a": 1, "c": 3}]


def test_stream_without_namespace_uses_configured_schema(
    source_conn, source_config, write_json
) -> None:
    """A catalog stream with no namespace is looked up in the configured schemas."""
    source_conn.execute("CREATE SCHEMA s2; CREATE TABLE s2.t (a int); INSERT INTO s2.t VALUES (5)")
    config = {**source_config, "schemas": ["s2"]}
    result = read(write_json, config, [table_stream("t", {"a": {}}, namespace=None)])
    assert result.returncode == 0, result.stdout
    assert result.data("t") == [{"a": 5}]
    assert "namespace" not in result.records[0]


def test_stream_without_namespace_in_several_schemas_says_which_is_read(
    source_conn, source_config, write_json
) -> None:
    """Two configured schemas each hold the table: the first configured one is read, as
    before, and a WARN now says so (which relation was read was said nowhere)."""
    source_conn.execute(
        "CREATE SCHEMA s2; CREATE TABLE s2.t (a int); INSERT INTO s2.t VALUES (5);"
        "CREATE TABLE public.t (a int); INSERT INTO public.t VALUES (1)"
    )
    config = {**source_config, "schemas": ["s2", "public"]}
    result = read(write_json, config, [table_stream("t", {"a": {}}, namespace=None)])
    assert result.returncode == 0, result.stdout
    assert result.data("t") == [{"a": 5}]
    logs = [m["log"]["message"] for m in result.of_type("LOG")]
    (warn,) = [m for m in logs if "has no namespace" in m]
    assert "s2, public" in warn and "read from s2" in warn, warn


def test_missing_table_fails_only_its_stream(source_conn, source_config, write_json) -> None:
    """A stream whose table is gone ends INCOMPLETE with a TRACE ERROR; the others complete."""
    source_conn.execute("CREATE TABLE ok (id int); INSERT INTO ok VALUES (1)")
    streams = [table_stream("gone", {"id": {}}), table_stream("ok", {"id": {}})]
    result = read(write_json, source_config, streams)
    assert result.returncode != 0
    assert result.statuses("gone") == ["STARTED", "INCOMPLETE"]
    assert result.statuses("ok") == ["STARTED", "RUNNING", "COMPLETE"]
    (error,) = result.errors()
    assert error["stream_descriptor"] == {"name": "gone", "namespace": "public"}
    assert error["failure_type"] == "config_error"
    assert "gone" in error["message"]
    assert result.data("ok") == [{"id": 1}]


def _run_until(proc: subprocess.Popen, predicate) -> list[dict]:
    """Read the connector's stdout until a message satisfies `predicate`."""
    seen = []
    for line in proc.stdout:
        message = json.loads(line)
        seen.append(message)
        if predicate(message):
            return seen
    raise AssertionError(f"connector ended first: {seen[-3:]}")


def _completed(name: str):
    def check(m: dict) -> bool:
        return (
            m["type"] == "TRACE"
            and m["trace"]["type"] == "STREAM_STATUS"
            and m["trace"]["stream_status"]["stream_descriptor"]["name"] == name
            and m["trace"]["stream_status"]["status"] == "COMPLETE"
        )

    return check


def _start_read(write_json, config: dict, streams: list[dict]) -> subprocess.Popen:
    proc = subprocess.Popen(
        [SOURCE, "read", "--config", write_json("config.json", config), "--catalog",
         write_json("catalog.json", configured_catalog(streams))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    watchdog = threading.Timer(120, proc.kill)
    watchdog.daemon = True
    watchdog.start()
    return proc


def test_snapshot_is_consistent_across_streams(
    pg_server, source_db, source_conn, source_config, write_json
) -> None:
    """Rows committed by another session after the read began appear in no stream.

    Deterministic: a second session holds a lock on table b, so the read of b waits; once
    stream a is COMPLETE, that session inserts into a and b, commits and lets the read go on.
    """
    source_conn.execute(
        "CREATE TABLE a (id int); CREATE TABLE b (id int);"
        "INSERT INTO a SELECT generate_series(1, 3); INSERT INTO b SELECT generate_series(1, 3)"
    )
    streams = [table_stream("a", {"id": {}}), table_stream("b", {"id": {}})]
    with psycopg.connect(pg_server.conninfo(source_db)) as other:
        other.execute("LOCK TABLE b IN ACCESS EXCLUSIVE MODE")
        proc = _start_read(write_json, source_config, streams)
        before = _run_until(proc, _completed("a"))
        other.execute("INSERT INTO a VALUES (100); INSERT INTO b VALUES (100)")
        other.commit()
        rest, _ = proc.communicate(timeout=120)
    messages = before + [json.loads(line) for line in rest.splitlines()]
    assert proc.returncode == 0
    ids = {
        name: sorted(m["record"]["data"]["id"] for m in messages
                     if m["type"] == "RECORD" and m["record"]["stream"] == name)
        for name in ("a", "b")
    }  # fmt: skip
    assert ids == {"a": [1, 2, 3], "b": [1, 2, 3]}
    assert source_conn.execute("SELECT count(*) FROM b").fetchone()[0] == 4


@pytest.mark.parametrize(("rewrite", "b_namespace"), [
    ("TRUNCATE b; INSERT INTO b SELECT generate_series(1, 3)", "public"),
    ("ALTER TABLE b ALTER COLUMN id TYPE bigint", "public"),
    ("TRUNCATE b; INSERT INTO b SELECT generate_series(1, 3)", None),
])  # fmt: skip
def test_a_later_streams_table_cannot_be_emptied_from_the_reads_view(
    pg_server, source_db, source_conn, source_config, write_json, rewrite, b_namespace
) -> None:
    """TRUNCATE and rewriting ALTERs are not MVCC-safe: run while stream a is read, they would
    leave table b empty to the read's older snapshot, and b would sync as 0 rows. The read
    locks its tables when it starts, so the command waits for the read to end instead: b named
    with or without namespace, and with a materialized view among the streams (LOCK refuses
    those: the others are locked one by one)."""
    source_conn.execute(
        "CREATE TABLE a (id int, pad text); CREATE TABLE b (id int);"
        # a's records fill the pipe we leave unread: the read stays inside stream a
        "INSERT INTO a SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;"
        "INSERT INTO b SELECT generate_series(1, 3); CREATE MATERIALIZED VIEW mv AS SELECT 1 AS id"
    )
    streams = [table_stream("a", {"id": {}, "pad": {}}), table_stream("mv", {"id": {}}),
               table_stream("b", {"id": {}}, namespace=b_namespace)]  # fmt: skip
    with psycopg.connect(pg_server.conninfo(source_db), autocommit=True) as other:
        proc = _start_read(write_json, source_config, streams)
        before = _run_until(proc, lambda m: m["type"] == "RECORD")
        done = threading.Event()
        worker = threading.Thread(target=lambda: (other.execute(rewrite), done.set()))
        worker.start()
        waited = done.wait(2)  # the command waits on the read's lock (it would not, unlocked)
        rest = proc.stdout.read()  # not communicate(): it would skip what the reader buffered
        proc.wait(120)
        worker.join(60)
    messages = before + [json.loads(line) for line in rest.splitlines()]
    assert proc.returncode == 0
    b_rows = [m for m in messages if m["type"] == "RECORD" and m["record"]["stream"] == "b"]
    assert sorted(m["record"]["data"]["id"] for m in b_rows) == [1, 2, 3]
    assert not waited and done.is_set()


def test_a_table_truncated_after_the_snapshot_fails_its_stream_not_syncs_empty(
    pg_server, source_db, source_conn, source_config, write_json
) -> None:
    """A session holds a TRUNCATE of b when the read starts (b cannot be locked ahead) and
    commits it while a is read: b, read later with the older snapshot, would look empty and
    sync as 0 rows. It ends INCOMPLETE with a transient error saying so instead, and the next
    stream, c, is still read (a stream's error other than a lost connection ends only it)."""
    source_conn.execute(
        "CREATE TABLE a (id int, pad text); CREATE TABLE b (id int); CREATE TABLE c (id int);"
        "INSERT INTO a SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;"
        "INSERT INTO b SELECT generate_series(1, 3); INSERT INTO c VALUES (7)"
    )
    streams = [table_stream(n, {"id": {}, "pad": {}} if n == "a" else {"id": {}})
               for n in ("a", "b", "c")]  # fmt: skip
    with psycopg.connect(pg_server.conninfo(source_db)) as other:
        other.execute("TRUNCATE b; INSERT INTO b SELECT generate_series(11, 13)")
        proc = _start_read(write_json, source_config, streams)
        before = _run_until(proc, lambda m: m["type"] == "RECORD")  # the snapshot is taken
        other.commit()
        rest = proc.stdout.read()
        proc.wait(120)
    messages = before + [json.loads(line) for line in rest.splitlines()]
    result = Run(proc.returncode, "\n".join(json.dumps(m) for m in messages), "")
    assert proc.returncode == 1
    assert result.statuses("b")[-1] == "INCOMPLETE" and result.data("b") == []
    (error,) = result.errors()
    assert error["stream_descriptor"]["name"] == "b", error
    assert "b was truncated or rewritten" in error["message"], error
    assert error["failure_type"] == "transient_error"
    assert result.statuses("c")[-1] == "COMPLETE" and result.data("c") == [{"id": 7}]


def test_a_materialized_view_refreshed_during_the_read_is_read_as_refreshed(
    pg_server, source_db, source_conn, source_config, write_json
) -> None:
    """A materialized view cannot be locked ahead; REFRESHed while an earlier stream is read,
    its new rows are frozen (every snapshot sees them): the stream reads them and completes
    (its storage changed, but not as a TRUNCATE's does)."""
    source_conn.execute(
        "CREATE TABLE a (id int, pad text); CREATE TABLE b (id int);"
        "INSERT INTO a SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;"
        "INSERT INTO b VALUES (1); CREATE MATERIALIZED VIEW mv AS SELECT id FROM b"
    )
    streams = [table_stream("a", {"id": {}, "pad": {}}), table_stream("mv", {"id": {}})]
    with psycopg.connect(pg_server.conninfo(source_db), autocommit=True) as other:
        proc = _start_read(write_json, source_config, streams)
        before = _run_until(proc, lambda m: m["type"] == "RECORD")
        other.execute("INSERT INTO b VALUES (2); REFRESH MATERIALIZED VIEW mv")
        rest = proc.stdout.read()
        proc.wait(120)
    messages = before + [json.loads(line) for line in rest.splitlines()]
    result = Run(proc.returncode, "\n".join(json.dumps(m) for m in messages), "")
    assert proc.returncode == 0, result.errors()
    assert result.statuses("mv")[-1] == "COMPLETE"
    assert sorted(r["id"] for r in result.data("mv")) == [1, 2]


def test_table_dropped_mid_read_fails_only_its_stream(
    pg_server, source_db, source_conn, source_config, write_json
) -> None:
    """A table dropped while the sync runs ends INCOMPLETE; streams after it still complete."""
    source_conn.execute(
        "CREATE TABLE a (id int); CREATE TABLE b (id int); CREATE TABLE c (id int);"
        "INSERT INTO a VALUES (1); INSERT INTO b VALUES (2); INSERT INTO c VALUES (3)"
    )
    streams = [table_stream(n, {"id": {}}) for n in ("a", "b", "c")]
    with psycopg.connect(pg_server.conninfo(source_db)) as other:
        other.execute("LOCK TABLE b IN ACCESS EXCLUSIVE MODE")
        proc = _start_read(write_json, source_config, streams)
        before = _run_until(proc, _completed("a"))
        other.execute("DROP TABLE b")
        other.commit()
        rest, _ = proc.communicate(timeout=120)
    messages = before + [json.loads(line) for line in rest.splitlines()]
    assert proc.returncode != 0
    statuses = {
        name: [m["trace"]["stream_status"]["status"] for m in messages
               if m["type"] == "TRACE" and m["trace"]["type"] == "STREAM_STATUS"
               and m["trace"]["stream_status"]["stream_descriptor"]["name"] == name]
        for name in ("a", "b", "c")
    }  # fmt: skip
    assert statuses["a"][-1] == "COMPLETE" and statuses["c"][-1] == "COMPLETE"
    assert statuses["b"][-1] == "INCOMPLETE"
    errors = [m["trace"]["error"] for m in messages
              if m["type"] == "TRACE" and m["trace"]["type"] == "ERROR"]  # fmt: skip
    assert [e["stream_descriptor"]["name"] for e in errors] == ["b"]
    assert [m["record"]["data"] for m in messages if m["type"] == "RECORD"] == [
        {"id": 1},
        {"id": 3},
    ]


def test_incremental_without_cursor_reads_by_xmin_with_warning(
    source_conn, source_config, write_json
) -> None:
    """An incremental stream with a primary key but no cursor column is read by xmin, with a
    LOG WARN."""
    source_conn.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)")
    stream = {**table_stream("t", {"id": {}}), "source_defined_primary_key": [["id"]]}
    result = read(write_json, source_config, [stream], "incremental")
    assert result.returncode == 0, result.stdout[-2000:]
    assert sorted(r["id"] for r in result.data("t")) == [1, 2]
    (state,) = result.of_type("STATE")
    assert state["state"]["stream"]["stream_state"]["state_type"] == "xmin"
    logs = [m["log"]["message"] for m in result.of_type("LOG") if m["log"]["level"] == "WARN"]
    assert any("without a cursor_field" in m and "xmin" in m for m in logs)


def test_incremental_without_cursor_or_key_reads_whole(
    source_conn, source_config, write_json
) -> None:
    """Without cursor column and primary key, every incremental read is the whole table (a
    client that replaces such a stream each sync must not be left with the changed rows)."""
    source_conn.execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2)")
    result = read(write_json, source_config, [table_stream("t", {"id": {}})], "incremental")
    assert result.returncode == 0, result.stdout[-2000:]
    assert sorted(r["id"] for r in result.data("t")) == [1, 2]
    (state,) = result.of_type("STATE")
    assert state["state"]["stream"]["stream_state"].get("state_type") != "xmin"
    logs = [m["log"]["message"] for m in result.of_type("LOG") if m["log"]["level"] == "WARN"]
    assert any("no primary key" in m and "reads all of its rows" in m for m in logs)


def test_unsupported_method_fails_read(source_conn, source_config, write_json) -> None:
    """replication_method CDC makes read fail with a config_error saying not supported yet,
    and discover too (it gave a catalog, and pgbyte then asked for cursors instead)."""
    source_conn.execute("CREATE TABLE t (id int)")
    method = {"method": "CDC", "replication_slot": "s", "publication": "p"}
    config = {**source_config, "replication_method": method}
    result = read(write_json, config, [table_stream("t", {"id": {}})])
    assert result.returncode != 0
    (error,) = result.errors()
    assert error["failure_type"] == "config_error" and "CDC" in error["message"]
    proc = subprocess.run(
        [SOURCE, "discover", "--config", write_json("cdc.json", config)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    found = Run(proc.returncode, proc.stdout, proc.stderr)
    assert found.returncode == 1 and not found.of_type("CATALOG")
    (error,) = found.errors()
    assert error["failure_type"] == "config_error"
    assert "replication_method CDC is not supported by pgbyte yet" in error["message"]


def test_bad_credentials_fail_read_without_leaking(source_config, write_json) -> None:
    """A wrong password makes read fail with config_error and never prints the password."""
    secret = "wrong-Pa55word-77"
    result = read(write_json, {**source_config, "password": secret}, [table_stream("t", {})])
    assert result.returncode != 0
    (error,) = result.errors()
    assert error["failure_type"] == "config_error"
    assert secret not in result.stdout + result.stderr


def test_malformed_catalog_is_a_config_error(source_config, write_json) -> None:
    """A catalog with an invalid sync_mode fails with a config_error naming it."""
    catalog = {"streams": [{"stream": {"name": "t", "json_schema": {}}, "sync_mode": "INVALID"}]}
    result = run_source(
        "read", "--config", write_json("config.json", source_config),
        "--catalog", write_json("catalog.json", catalog),
    )  # fmt: skip
    assert result.returncode != 0
    (error,) = result.errors()
    assert error["failure_type"] == "config_error" and "INVALID" in error["message"]


def test_read_path_does_not_import_the_cdk(source_conn, source_config, write_json) -> None:
    """The lean read path never imports airbyte_cdk (about a second per process)."""
    source_conn.execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
    args = ["read", "--config", write_json("config.json", source_config),
            "--catalog", write_json("catalog.json", configured_catalog(
                [table_stream("t", {"id": {}})]))]  # fmt: skip
    code = (
        "import sys, io\n"
        "from source_postgres.lean import main_read\n"
        "out = io.BytesIO()\n"
        f"rc = main_read({args!r}, out)\n"
        "assert rc == 0, out.getvalue()\n"
        "assert b'RECORD' in out.getvalue()\n"
        "assert not [m for m in sys.modules if m.startswith('airbyte_cdk')]\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_nan_row_of_a_wide_table(source_conn, discover_and_read) -> None:
    """A NaN in a table of more than 50 columns still yields every column, NaN nulled."""
    cols = ", ".join(f"c{i} float8" for i in range(60))
    values = ", ".join("'NaN'" if i == 59 else str(i) for i in range(60))
    source_conn.execute(f"CREATE TABLE wide ({cols}); INSERT INTO wide VALUES ({values})")
    _, result = discover_and_read("wide")
    (record,) = result.records
    assert record["data"] == {f"c{i}": (None if i == 59 else i) for i in range(60)}
    assert [c["field"] for c in record["meta"]["changes"]] == ["c59"]


def test_nan_row_of_a_table_of_more_than_100_special_columns(
    source_conn, discover_and_read
) -> None:
    """A table of 150 float columns (past PostgreSQL's 100 arguments per function) reads: the
    NaN row nulled and listed in meta.changes, the finite row as is."""
    cols = ", ".join(f"c{i} float8" for i in range(150))
    source_conn.execute(f"CREATE TABLE wide150 (id int PRIMARY KEY, {cols})")
    nan_row = ", ".join("'NaN'" if i == 120 else str(i) for i in range(150))
    plain_row = ", ".join(str(i) for i in range(150))
    source_conn.execute(f"INSERT INTO wide150 VALUES (1, {nan_row}), (2, {plain_row})")
    _, result = discover_and_read("wide150")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    records = sorted(result.records, key=lambda r: r["data"]["id"])
    plain = {f"c{i}": i for i in range(150)}
    assert [r["data"] for r in records] == [
        {"id": 1, **plain, "c120": None},
        {"id": 2, **plain},
    ]
    assert [[c["field"] for c in r.get("meta", {}).get("changes", [])] for r in records] == [
        ["c120"],
        [],
    ]


def test_error_mid_stream_fails_only_that_stream(source_conn, source_config, write_json) -> None:
    """A query error after some rows ends that stream INCOMPLETE; the next stream completes."""
    source_conn.execute(
        "CREATE TABLE base AS SELECT generate_series(1, 10000) AS id;"
        "CREATE VIEW breaks AS SELECT id, 1 / (id - 9000) AS x FROM base;"
        "CREATE TABLE after_it (id int); INSERT INTO after_it VALUES (1)"
    )
    streams = [table_stream("breaks", {"id": {}, "x": {}}), table_stream("after_it", {"id": {}})]
    result = read(write_json, source_config, streams)
    assert result.returncode != 0
    assert result.statuses("breaks")[-1] == "INCOMPLETE"
    assert result.statuses("after_it")[-1] == "COMPLETE"
    (error,) = result.errors()
    assert error["stream_descriptor"]["name"] == "breaks"
    assert "division by zero" in error["message"]
    assert result.data("after_it") == [{"id": 1}]


@pytest.fixture
def sql_ascii_db(pg_server):
    """A fresh SQL_ASCII database (legacy servers store text bytes unchecked), dropped after."""
    name = f"ascii_{uuid.uuid4().hex[:10]}"
    pg_server.create_database(name, encoding="SQL_ASCII")
    try:
        yield name
    finally:
        pg_server.drop_database(name)


def test_non_utf8_text_fails_its_stream_saying_what_to_do(
    pg_server, sql_ascii_db, write_json
) -> None:
    """A byte that is not UTF-8 in a SQL_ASCII database fails its stream with a config_error
    naming the stream, the database's encoding and the remedies."""
    with psycopg.connect(pg_server.conninfo(sql_ascii_db), autocommit=True) as conn:
        conn.execute("SET client_encoding = 'SQL_ASCII'")  # store the byte as is
        conn.execute(b"CREATE TABLE bad (id int, v text); INSERT INTO bad VALUES (1, 'caf\xfe')")
    config = pg_server.connector_config(sql_ascii_db, schemas=["public"])
    result = read(write_json, config, [table_stream("bad", {"id": {}, "v": {}})])
    (error,) = result.errors()
    assert (error["failure_type"], error["stream_descriptor"]["name"]) == ("config_error", "bad")
    assert all(
        part in error["message"]
        for part in ("public.bad", "not valid UTF-8", "SQL_ASCII", "re-encode", "json_schema")
    ), error["message"]


def test_stream_without_namespace_with_all_schemas(source_conn, source_config, write_json) -> None:
    """With schemas [] (every schema), a stream without namespace is still found."""
    source_conn.execute("CREATE SCHEMA s3; CREATE TABLE s3.u (a int); INSERT INTO s3.u VALUES (6)")
    config = {**source_config, "schemas": []}
    result = read(write_json, config, [table_stream("u", {"a": {}}, namespace=None)])
    assert result.returncode == 0, result.stdout
    assert result.data("u") == [{"a": 6}]


def test_views_matviews_and_partitioned_tables_read(source_conn, discover_and_read) -> None:
    """Views, materialized views and partitioned tables (through the parent) are read whole."""
    source_conn.execute(
        "CREATE TABLE base (id int primary key); INSERT INTO base VALUES (1), (2);"
        "CREATE VIEW v AS SELECT id * 10 AS x FROM base;"
        "CREATE MATERIALIZED VIEW mv AS SELECT id + 100 AS y FROM base;"
        "CREATE TABLE parted (k int) PARTITION BY RANGE (k);"
        "CREATE TABLE parted_lo PARTITION OF parted FOR VALUES FROM (0) TO (10);"
        "CREATE TABLE parted_hi PARTITION OF parted FOR VALUES FROM (10) TO (20);"
        "INSERT INTO parted VALUES (1), (15); ANALYZE parted_lo, parted_hi"
    )
    _, result = discover_and_read()
    assert result.returncode == 0, result.stdout[-2000:]
    assert sorted(d["x"] for d in result.data("v")) == [10, 20]
    assert sorted(d["y"] for d in result.data("mv")) == [101, 102]
    assert sorted(d["k"] for d in result.data("parted")) == [1, 15]
    (estimate,) = [
        m["trace"]["estimate"]
        for m in result.of_type("TRACE")
        if m["trace"]["type"] == "ESTIMATE" and m["trace"]["estimate"]["name"] == "parted"
    ]
    assert estimate["row_estimate"] == 2


def test_multidimensional_arrays_match_their_discovered_schema(
    source_conn, discover_and_read
) -> None:
    """A column declared with two or more dimensions (int[][]) is discovered with items that
    may be arrays too, so its nested arrays validate against the schema (before: items of the
    element type only), and so do flat ones (PostgreSQL does not enforce the dimensions)."""
    import jsonschema

    source_conn.execute(
        "CREATE TABLE md (id int PRIMARY KEY, a2 int[][], f3 float4[][][], flat text[]);"
        "INSERT INTO md VALUES (1, '{{1,2},{3,4}}', '{{{1.5}},{{2}}}', '{a,b}'),"
        " (2, NULL, NULL, NULL), (3, '{5,6}', '{1}', '{}')"
    )
    discovered, result = discover_and_read("md")
    assert result.returncode == 0, result.stdout[-2000:]
    schema = discovered.stream("md")["json_schema"]
    element = {"type": ["null", "integer"]}
    nested = {"type": ["null", "integer", "array"], "items": element}
    assert schema["properties"]["a2"]["items"] == nested
    rows = sorted(result.data("md"), key=lambda d: d["id"])
    assert rows[0]["a2"] == [[1, 2], [3, 4]] and rows[0]["f3"] == [[[1.5]], [[2.0]]]
    for row in rows:
        jsonschema.Draft7Validator(schema).validate(row)


def test_a_partition_named_in_the_catalog_is_read(source_conn, source_config, write_json):
    """A catalog naming a partition (Airbyte's connector lists partitions as streams, so
    catalogs made with it do) reads that partition's rows, though discover lists its parent."""
    source_conn.execute(
        "CREATE TABLE parted (id int, ts date, PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts);"
        "CREATE TABLE parted_2020 PARTITION OF parted FOR VALUES FROM ('2020-01-01') TO "
        "('2021-01-01'); CREATE TABLE parted_2021 PARTITION OF parted FOR VALUES FROM "
        "('2021-01-01') TO ('2022-01-01');"
        "INSERT INTO parted VALUES (1, '2020-05-01'), (2, '2021-05-01')"
    )
    stream = table_stream("parted_2020", {"id": {}, "ts": {}})
    result = read(write_json, source_config, [stream])
    assert result.returncode == 0, result.stdout[-2000:]
    assert result.data("parted_2020") == [{"id": 1, "ts": "2020-05-01"}]


def test_column_privileges_limit_what_is_read(source_conn, source_config, write_json) -> None:
    """A user with SELECT on some columns reads those; the others are left out with a warning."""
    role = f"reader_{uuid.uuid4().hex[:8]}"
    with throwaway_role(source_conn, role, "pw-123456789"):
        source_conn.execute("CREATE TABLE p (id int, secret text); INSERT INTO p VALUES (1, 's')")
        source_conn.execute(sql.SQL("GRANT SELECT (id) ON p TO {}").format(sql.Identifier(role)))
        config = {**source_config, "username": role, "password": "pw-123456789"}
        result = read(write_json, config, [table_stream("p", {"id": {}, "secret": {}})])
        assert result.returncode == 0, result.stdout
        assert result.data("p") == [{"id": 1}]
        logs = [m["log"]["message"] for m in result.of_type("LOG")]
        assert any("secret" in text for text in logs)


def test_reader_going_away_ends_quietly(source_conn, source_config, write_json) -> None:
    """`read | head`: when stdout closes mid-COPY the read ends (exit 1: its output is cut)
    without a traceback or psycopg's failed-rollback warning on stderr."""
    source_conn.execute(
        "CREATE TABLE t (id int, pad text); "
        "INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 200000) g"
    )
    args = ["read", "--config", write_json("config.json", source_config),
            "--catalog", write_json("catalog.json", configured_catalog(
                [table_stream("t", {"id": {}, "pad": {}})]))]  # fmt: skip
    proc = subprocess.Popen([SOURCE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    for _ in range(5):
        assert proc.stdout.readline()
    proc.stdout.close()  # what `head` does once it has its lines
    try:
        stderr = proc.communicate(timeout=60)[1].decode()
    finally:
        proc.kill()  # a read that did not end fails the test instead of hanging it
    assert proc.returncode == 1
    assert "Traceback" not in stderr and "error ignored" not in stderr, stderr


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_during_a_slow_stream(source_conn, source_config, write_json, signum, code) -> None:
    """A finished stream's messages are out before a slow next stream produces (stdout is
    flushed per message block); SIGTERM (or SIGHUP: its terminal closed) while the slow one
    waits for its first row ends the read at once: exit 143 (129), one TRACE ERROR, and its
    query gone from the server."""
    source_conn.execute(
        "CREATE TABLE quick (id int); INSERT INTO quick VALUES (1), (2);"
        "CREATE VIEW sleepy AS SELECT x FROM generate_series(1, 60) x "
        "WHERE pg_sleep(1) IS NOT NULL"
    )
    streams = [table_stream("quick", {"id": {}}), table_stream("sleepy", {"x": {}})]
    args = ["read", "--config", write_json("config.json", source_config),
            "--catalog", write_json("catalog.json", configured_catalog(streams))]  # fmt: skip
    # Buffered stdout, as in an image (PYTHONUNBUFFERED, if set here, would hide a missing flush).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen(
        [SOURCE, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=hangups_end_it,
        bufsize=0,  # unbuffered here: select() sees every line not read yet (a buffered reader
        # may hold the next lines already, and select then waits for more that never come)
    )
    assert proc.stdout is not None
    try:
        seen: list[str] = []
        while not any('"sleepy"' in m and '"status":"RUNNING"' in m for m in seen):
            ready, _, _ = select.select([proc.stdout], [], [], 20)
            assert ready, f"no output in 20 s after {seen[-3:]}"
            seen.append(proc.stdout.readline().decode())
        assert any('"quick"' in m and '"status":"COMPLETE"' in m for m in seen)
        started = time.monotonic()
        proc.send_signal(signum)
        assert proc.wait(timeout=30) == code
        assert time.monotonic() - started < 15
        rest = [json.loads(line) for line in proc.stdout.read().splitlines()]
        assert [m["trace"]["type"] for m in rest] == ["ERROR"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # The server ends the query when it next writes to the closed connection (within a row).
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        active = source_conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
            "AND query LIKE '%sleepy%' AND pid <> pg_backend_pid()"
        ).fetchone()[0]
        if not active:
            break
        time.sleep(0.2)
    assert active == 0


@pytest.mark.parametrize(("allowed", "expected"), [(4, 1), (0, 0)])
def test_read_takes_one_parallel_worker_at_most(
    source_conn, source_db, source_config, write_json, allowed: int, expected: int
) -> None:
    """A database whose planner would run the read's scan in parallel (free parallel setup):
    with workers allowed the read takes one beside its backend, and none when the database
    allows none. Checked mid-read: the source's stdout is left unread, so its COPY is still
    running, and the processes that have its backend as leader are counted."""
    source_conn.execute("CREATE TABLE wide AS SELECT g AS id, repeat('x', 200) AS pad "
                        "FROM generate_series(1, 100000) g")  # fmt: skip
    source_conn.execute("ANALYZE wide")
    for setting, value in (("parallel_setup_cost", "0"), ("parallel_tuple_cost", "0"),
                           ("min_parallel_table_scan_size", "0"),
                           ("max_parallel_workers_per_gather", str(allowed))):  # fmt: skip
        source_conn.execute(
            sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                sql.Identifier(source_db), sql.Identifier(setting), sql.Literal(value)
            )
        )
    discovered = run_source("discover", "--config", write_json("config.json", source_config))
    stream = discovered.stream("wide")
    catalog = write_json("catalog.json", configured_catalog([stream]))
    proc = subprocess.Popen(
        [str(REPO_ROOT / ".venv" / "bin" / "source-postgres"), "read",
         "--config", write_json("config.json", source_config), "--catalog", catalog],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert b'"RECORD"' in proc.stdout.read(1 << 16)  # then left unread: the COPY waits
        deadline = time.monotonic() + 30
        copying = None
        while copying is None and time.monotonic() < deadline:
            copying = source_conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND query LIKE 'COPY %%' "
                "AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                (source_db,),
            ).fetchone()
            time.sleep(0.05)
        assert copying is not None, "the read's COPY was not seen running"
        workers = source_conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE leader_pid = %s", (copying[0],)
        ).fetchone()
        assert workers == (expected,)
    finally:
        proc.kill()
        proc.wait()


def test_sigterm_while_nobody_reads_the_output_ends_the_read(
    source_conn, source_config, write_json
) -> None:
    """SIGTERM while the read is blocked writing to a pipe nobody reads (pgbyte stopping the
    source after the destination failed; a stalled shell pipe): exit 143 at once, quietly
    (before, its last message blocked on the full pipe, and it lived until SIGKILL)."""
    source_conn.execute("CREATE TABLE big AS SELECT g AS id, repeat('x', 200) AS pad "
                        "FROM generate_series(1, 100000) g")  # fmt: skip
    args = ["read", "--config", write_json("config.json", source_config),
            "--catalog", write_json("catalog.json", configured_catalog(
                [table_stream("big", {"id": {}, "pad": {}})]))]  # fmt: skip
    proc = subprocess.Popen([SOURCE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.read(1)  # running; from now on nobody reads: the pipe fills
        deadline = time.monotonic() + 30
        seen: set[str] = set()
        while "pipe" not in " ".join(seen) and time.monotonic() < deadline:
            seen.add(_sleeping_in(proc.pid))
            time.sleep(0.05)
        if not seen - {"", "0"}:
            pytest.skip("this kernel does not say where a process sleeps (/proc/PID/wchan)")
        assert "pipe" in " ".join(seen), f"the read never blocked on its full stdout: {seen}"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 143
        assert time.monotonic() - started < 5
        assert "Traceback" not in proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_while_a_slow_reader_reads_puts_the_error_on_its_own_line(
    source_conn, source_config, write_json
) -> None:
    """SIGTERM while the read writes to a reader slower than it (a destination busy loading):
    the TRACE ERROR arrives on a line of its own, after the record line the signal may have cut
    short (before, about every other time it was glued to that half line, and lost), and the
    read ends with 143 within a second or two."""
    source_conn.execute("CREATE TABLE big AS SELECT g AS id, repeat('x', 200) AS pad "
                        "FROM generate_series(1, 100000) g")  # fmt: skip
    args = ["read", "--config", write_json("config.json", source_config),
            "--catalog", write_json("catalog.json", configured_catalog(
                [table_stream("big", {"id": {}, "pad": {}})]))]  # fmt: skip
    for _ in range(3):  # the cut falls mid-line most times: each try checks the same thing
        proc = subprocess.Popen([SOURCE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        chunks = [proc.stdout.read1(1 << 16)]
        for _ in range(20):  # slower than the source writes: it blocks on the full pipe
            time.sleep(0.02)
            chunks.append(proc.stdout.read1(1 << 14))
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        chunks.append(proc.stdout.read())
        assert proc.wait(timeout=15) == 143
        assert time.monotonic() - started < 5
        lines = [line for line in b"".join(chunks).split(b"\n") if line.strip()]
        last = json.loads(lines[-1])
        assert last["type"] == "TRACE" and "interrupted" in last["trace"]["error"]["message"]


def _sleeping_in(pid: int) -> str:
    """Where the process sleeps in the kernel (Linux wchan: "0" while it runs)."""
    try:
        with open(f"/proc/{pid}/wchan") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def test_a_database_error_outside_a_stream_is_classified(tmp_path, monkeypatch) -> None:
    """A psycopg error that reaches the read's top (a server restarted between two statements
    no stream's handler covers) is a classified TRACE ERROR — transient, "connection lost" —
    not an "Unexpected error" system_error."""
    import io

    from source_postgres import lean

    def failing(*_args: object) -> Iterator[bytes]:
        raise psycopg.OperationalError("consuming input failed: server closed the connection")
        yield b""  # a generator, as read_messages is

    monkeypatch.setattr(lean, "read_messages", failing)
    (tmp_path / "config.json").write_text(json.dumps({"host": "localhost", "database": "x"}))
    (tmp_path / "catalog.json").write_text(json.dumps({"streams": []}))
    out = io.BytesIO()
    args = ["read", "--config", str(tmp_path / "config.json"),
            "--catalog", str(tmp_path / "catalog.json")]  # fmt: skip
    assert lean.main_read(args, out) == 1
    (line,) = out.getvalue().splitlines()
    error = json.loads(line)["trace"]["error"]
    assert error["failure_type"] == "transient_error", error
    assert error["message"].startswith("Reading from the source failed: the connection"), error
