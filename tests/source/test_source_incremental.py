"""Incremental reads by cursor through the console script: boundaries, NULLs, state shapes."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from typing import Any

import pytest
from db_roles import throwaway_role
from psycopg import sql
from source_helpers import REPO_ROOT, Run

SOURCE = str(REPO_ROOT / ".venv" / "bin" / "source-postgres")


def incremental_catalog(table: str, cursor: str, columns: list[str], namespace="public") -> dict:
    """A configured catalog reading `table` incrementally by `cursor`."""
    return {
        "streams": [
            {
                "stream": {
                    "name": table,
                    "namespace": namespace,
                    "json_schema": {"type": "object", "properties": {c: {} for c in columns}},
                    "supported_sync_modes": ["full_refresh", "incremental"],
                },
                "sync_mode": "incremental",
                "cursor_field": [cursor],
                "destination_sync_mode": "append",
            }
        ]
    }


@pytest.fixture
def read_inc(source_config, write_json):
    """Run `read` of one incremental stream, with an optional state and chunk size."""
    calls = {"n": 0}

    def go(table: str, cursor: str, columns: list[str], state: Any = None, chunk: int = 0) -> Run:
        calls["n"] += 1
        args = [SOURCE, "read", "--config", write_json("config.json", source_config)]
        cat = incremental_catalog(table, cursor, columns)
        args += ["--catalog", write_json("catalog.json", cat)]
        if state is not None:
            args += ["--state", write_json(f"state{calls['n']}.json", state)]
        env = dict(os.environ)
        if chunk:
            env["PGBYTE_CURSOR_CHUNK_ROWS"] = str(chunk)
        proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
        return Run(proc.returncode, proc.stdout, proc.stderr)

    return go


def states(run: Run) -> list[dict]:
    return [m["state"] for m in run.of_type("STATE")]


def final_state(run: Run) -> list[dict]:
    """What the platform passes to the next read: the last STATE message per stream."""
    return [states(run)[-1]]


def logs(run: Run, level: str) -> list[str]:
    return [m["log"]["message"] for m in run.of_type("LOG") if m["log"]["level"] == level]


def below_all(table: str, cursor: str, value: str = "-1") -> list[dict]:
    """A saved cursor_based state below every row: the read goes by cursor chunks at once (a
    first load, with no state, reads ctid chunks)."""
    return [{"type": "STREAM", "stream": {
        "stream_descriptor": {"name": table, "namespace": "public"},
        "stream_state": {"version": 2, "state_type": "cursor_based", "stream_name": table,
                         "stream_namespace": "public", "cursor_field": [cursor],
                         "cursor": value, "cursor_record_count": 0}}}]  # fmt: skip


def test_second_read_gets_exactly_changed_and_new_rows(source_conn, read_inc) -> None:
    """insert → read → update some + insert more → read with the final state: just those rows."""
    source_conn.execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text, updated int);"
        "CREATE INDEX ON t (updated);"
        "INSERT INTO t SELECT g, 'a' || g, g FROM generate_series(1, 50) g"
    )
    first = read_inc("t", "updated", ["id", "v", "updated"])
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr
    assert sorted(r["id"] for r in first.data("t")) == list(range(1, 51))
    source_conn.execute(
        "UPDATE t SET v = 'b', updated = 100 + id WHERE id IN (3, 7, 40);"
        "INSERT INTO t SELECT g, 'n', 200 + g FROM generate_series(51, 55) g"
    )
    second = read_inc("t", "updated", ["id", "v", "updated"], state=final_state(first))
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr
    assert [r["id"] for r in second.data("t")] == [3, 7, 40, 51, 52, 53, 54, 55]
    third = read_inc("t", "updated", ["id", "v", "updated"], state=final_state(second))
    assert third.data("t") == []


def test_state_has_airbyte_cursor_shape_and_record_counts(source_conn, read_inc) -> None:
    """Every STATE is Airbyte's cursor_based shape (and pgbyte's cursor_type and the table's
    oid); recordCounts add up to the records."""
    source_conn.execute(
        "CREATE TABLE s (id int, c int); CREATE INDEX ON s (c);"
        " INSERT INTO s SELECT g, g % 7 FROM generate_series(1, 70) g"
    )
    run = read_inc("s", "c", ["id", "c"], state=below_all("s", "c"), chunk=10)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    got = states(run)
    assert len(got) > 1
    assert got[-1]["stream"]["stream_state"] == {
        "version": 2,
        "state_type": "cursor_based",
        "stream_name": "s",
        "stream_namespace": "public",
        "cursor_field": ["c"],
        "cursor": "6",
        "cursor_record_count": 10,
        "cursor_type": "integer",
        "pgbyte_relation_oid": source_conn.execute("SELECT 's'::regclass::oid::int8").fetchone()[0],
    }
    assert sum(s["sourceStats"]["recordCount"] for s in got) == len(run.records) == 70


def test_ties_across_chunk_boundary_none_lost_none_repeated(source_conn, read_inc) -> None:
    """Many rows sharing a cursor value across a tiny chunk size: all read once, then none."""
    source_conn.execute(
        "CREATE TABLE ties (id int, c int); CREATE INDEX ON ties (c);"
        "INSERT INTO ties SELECT g, CASE WHEN g BETWEEN 5 AND 30 THEN 5 ELSE g END"
        " FROM generate_series(1, 40) g"
    )
    first = read_inc("ties", "c", ["id", "c"], state=below_all("ties", "c"), chunk=3)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr
    assert sorted(r["id"] for r in first.data("ties")) == list(range(1, 41))
    cursors = [s["stream"]["stream_state"]["cursor"] for s in states(first)]
    assert len(cursors) == len(set(cursors))  # a checkpoint never splits a cursor value
    again = read_inc("ties", "c", ["id", "c"], state=final_state(first), chunk=3)
    assert again.data("ties") == []


def test_interrupted_read_resumes_from_a_mid_stream_state(source_conn, read_inc) -> None:
    """Resuming from any intermediate state yields exactly the rows after it."""
    source_conn.execute(
        "CREATE TABLE m (id int, c int); CREATE INDEX ON m (c);"
        " INSERT INTO m SELECT g, g / 4 FROM generate_series(1, 60) g"
    )
    full = read_inc("m", "c", ["id", "c"], state=below_all("m", "c"), chunk=5)
    middle = states(full)[2]
    emitted = int(sum(s["sourceStats"]["recordCount"] for s in states(full)[:3]))
    resumed = read_inc("m", "c", ["id", "c"], state=[middle], chunk=5)
    ids = [r["id"] for r in full.data("m")]
    assert sorted(r["id"] for r in resumed.data("m")) == sorted(ids[emitted:])
    assert 0 < emitted < len(ids) == 60


def test_null_cursors_counted_in_a_warning(source_conn, read_inc) -> None:
    """Rows with a NULL cursor are copied by the first load (its ctid chunks read every row,
    as Airbyte's do) but not by later syncs; their count is in a LOG WARN each time."""
    source_conn.execute(
        "CREATE TABLE n (id int, c int); INSERT INTO n VALUES (1, 1), (2, NULL), (3, NULL), (4, 2)"
    )
    first = read_inc("n", "c", ["id", "c"])
    assert first.returncode == 0
    assert sorted(r["id"] for r in first.data("n")) == [1, 2, 3, 4]
    assert any("2 row(s) have a NULL cursor (c); the first load copies them" in m
               for m in logs(first, "WARN"))  # fmt: skip
    source_conn.execute("INSERT INTO n VALUES (5, NULL), (6, 3)")
    later = read_inc("n", "c", ["id", "c"], state=final_state(first))
    assert [r["id"] for r in later.data("n")] == [6]
    assert any("3 row(s) have a NULL cursor (c) and are not synced incrementally" in m
               for m in logs(later, "WARN"))  # fmt: skip


@pytest.mark.parametrize(
    "make",
    [
        "CREATE VIEW nv AS SELECT * FROM nv_base",
        "CREATE MATERIALIZED VIEW nv AS SELECT * FROM nv_base",
        "CREATE TABLE nv (id int, c int) PARTITION BY RANGE (id); "
        "CREATE TABLE nv_p PARTITION OF nv DEFAULT; INSERT INTO nv SELECT * FROM nv_base",
        "CREATE TABLE nv (id int, c int); CREATE TABLE nv_child () INHERITS (nv); "
        "INSERT INTO nv_child SELECT * FROM nv_base",
    ],
    ids=["view", "materialized-view", "partitioned", "inheritance-parent"],
)
def test_a_first_load_by_cursor_copies_null_cursors(source_conn, read_inc, make) -> None:
    """Relations read by cursor from the start (no ctid chunks) copy their NULL-cursor rows in
    the first load too, as a plain table's does (they were lost for good), and count them in a
    STATE's sourceStats; later syncs read by cursor only."""
    source_conn.execute(
        "CREATE TABLE nv_base (id int, c int); "
        "INSERT INTO nv_base VALUES (1, 1), (2, NULL), (3, NULL), (4, 2)"
    )
    source_conn.execute(make)
    first = read_inc("nv", "c", ["id", "c"], chunk=1)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr
    assert sorted(r["id"] for r in first.data("nv")) == [1, 2, 3, 4]
    assert sum(s["sourceStats"]["recordCount"] for s in states(first)) == 4
    assert any("2 row(s) have a NULL cursor (c); the first load copies them" in m
               for m in logs(first, "WARN"))  # fmt: skip
    source_conn.execute("INSERT INTO nv_base VALUES (5, NULL), (6, 3)")
    if "MATERIALIZED" in make:
        source_conn.execute("REFRESH MATERIALIZED VIEW nv")
    elif "VIEW" not in make:
        source_conn.execute("INSERT INTO nv VALUES (5, NULL), (6, 3)")
    later = read_inc("nv", "c", ["id", "c"], state=final_state(first))
    assert [r["id"] for r in later.data("nv")] == [6]


@pytest.mark.parametrize("where", ["", " WHERE false"], ids=["all-null", "empty"])
def test_a_cursor_without_values_copies_every_row_until_it_has_one(
    source_conn, read_inc, where
) -> None:
    """A table whose cursor column is NULL in every row (an updated_at just added) is copied
    whole by its first load (it copied nothing, and every later sync nothing); its state notes
    no value, so the next sync copies the rows again, until one has a value."""
    source_conn.execute(
        f"CREATE TABLE nn (id int PRIMARY KEY, c timestamptz); "
        f"INSERT INTO nn SELECT g, NULL FROM generate_series(1, 5) g{where}"
    )
    first = read_inc("nn", "c", ["id", "c"])
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr
    expected = [] if where else [1, 2, 3, 4, 5]
    assert sorted(r["id"] for r in first.data("nn")) == expected
    (state,) = final_state(first)
    assert state["stream"]["stream_state"]["cursor"] is None
    assert sum(s["sourceStats"]["recordCount"] for s in states(first)) == len(expected)
    if not where:
        assert any("no row has a cursor value yet" in m for m in logs(first, "WARN"))
    source_conn.execute("INSERT INTO nn VALUES (6, NULL), (7, '2024-01-01T00:00:00Z')")
    second = read_inc("nn", "c", ["id", "c"], state=final_state(first))
    assert sorted(r["id"] for r in second.data("nn")) == [*expected, 6, 7]
    third = read_inc("nn", "c", ["id", "c"], state=final_state(second))
    assert [r["id"] for r in third.data("nn")] == []


@pytest.mark.parametrize(
    ("coltype", "values", "later"),
    [
        ("timestamptz", ["2024-01-01 10:00:00.123456+00", "2024-01-02 00:00:00+05"],
         "2024-01-02 00:00:01+05"),
        ("timestamp", ["2024-01-01 10:00:00.5", "2024-01-01 10:00:00.75"], "2024-01-01 10:00:01"),
        ("date", ["2023-12-31", "2024-02-29"], "2024-03-01"),
        ("text", ["apple", "banana"], "cherry"),
        ("numeric", ["1.5", "10.25"], "10.250001"),
        ("uuid", ["00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-00000000000a"],
         "10000000-0000-0000-0000-000000000000"),
    ],
)  # fmt: skip
def test_typed_cursors_resume_by_type_order(source_conn, read_inc, coltype, values, later) -> None:
    """The saved cursor text compares as the column's type (not as text) on resume."""
    source_conn.execute(f"CREATE TABLE ty (id int, c {coltype})")
    for i, value in enumerate(values):
        source_conn.execute("INSERT INTO ty VALUES (%s, %s)", (i, value))
    first = read_inc("ty", "c", ["id", "c"])
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr
    assert [r["id"] for r in first.data("ty")] == [0, 1]
    source_conn.execute("INSERT INTO ty VALUES (9, %s)", (later,))
    second = read_inc("ty", "c", ["id", "c"], state=final_state(first))
    assert [r["id"] for r in second.data("ty")] == [9]


def test_changed_cursor_field_rereads_with_warning(source_conn, read_inc) -> None:
    """A state saved for another cursor field re-reads the whole stream with a LOG WARN."""
    source_conn.execute(
        "CREATE TABLE cf (id int, a int, b int);"
        " INSERT INTO cf SELECT g, g, g FROM generate_series(1, 5) g"
    )
    first = read_inc("cf", "a", ["id", "a", "b"])
    second = read_inc("cf", "b", ["id", "a", "b"], state=final_state(first))
    assert second.returncode == 0
    assert [r["id"] for r in second.data("cf")] == [1, 2, 3, 4, 5]
    assert any("differs from the configured" in m for m in logs(second, "WARN"))


def test_missing_cursor_column_is_config_error(source_conn, read_inc) -> None:
    """A cursor column that no longer exists ends the stream INCOMPLETE with a config_error."""
    source_conn.execute("CREATE TABLE gone (id int); INSERT INTO gone VALUES (1)")
    run = read_inc("gone", "updated_at", ["id"])
    assert run.returncode == 1
    assert run.statuses("gone")[-1] == "INCOMPLETE"
    (error,) = run.errors()
    assert error["failure_type"] == "config_error" and "updated_at" in error["message"]


def test_unknown_state_format_is_config_error(source_conn, read_inc) -> None:
    """A state of unknown shape is refused with a config_error, never silently ignored."""
    source_conn.execute("CREATE TABLE u (id int); INSERT INTO u VALUES (1)")
    run = read_inc("u", "id", ["id"], state=[{"type": "WHATEVER", "x": 1}])
    assert run.returncode == 1
    assert run.records == []
    (error,) = run.errors()
    assert error["failure_type"] == "config_error" and "unknown format" in error["message"]


def test_legacy_airbyte_state_resumes(source_conn, read_inc) -> None:
    """Airbyte's legacy {"cdc": false, "streams": [...]} state resumes from its cursor."""
    source_conn.execute("CREATE TABLE lg (id int); INSERT INTO lg SELECT generate_series(1, 6)")
    legacy = {"cdc": False, "streams": [{"stream_name": "lg", "stream_namespace": "public",
              "cursor_field": ["id"], "cursor": "4", "cursor_record_count": 1}]}  # fmt: skip
    run = read_inc("lg", "id", ["id"], state=legacy)
    assert [r["id"] for r in run.data("lg")] == [5, 6]


def test_rows_joining_saved_cursor_value_are_reread(source_conn, read_inc) -> None:
    """Rows inserted later with the saved cursor value are not lost (cursor_record_count)."""
    source_conn.execute("CREATE TABLE j (id int, c int); INSERT INTO j VALUES (1, 1), (2, 2)")
    first = read_inc("j", "c", ["id", "c"])
    source_conn.execute("INSERT INTO j VALUES (3, 2)")
    second = read_inc("j", "c", ["id", "c"], state=final_state(first))
    assert sorted(r["id"] for r in second.data("j")) == [2, 3]


def test_in_process_read_accepts_state(source_config, source_conn) -> None:
    """SourcePostgres.read resumes from CDK state models as the console script does."""
    from airbyte_cdk.models import (
        AirbyteStateMessageSerializer,
        ConfiguredAirbyteCatalogSerializer,
        Type,
    )
    from source_postgres.source import SourcePostgres

    source_conn.execute("CREATE TABLE ip (id int); INSERT INTO ip SELECT generate_series(1, 4)")
    catalog = ConfiguredAirbyteCatalogSerializer.load(incremental_catalog("ip", "id", ["id"]))
    state = [AirbyteStateMessageSerializer.load({
        "type": "STREAM",
        "stream": {"stream_descriptor": {"name": "ip", "namespace": "public"},
                   "stream_state": {"state_type": "cursor_based", "cursor_field": ["id"],
                                    "cursor": "2", "cursor_record_count": 1}},
    })]  # fmt: skip
    import logging

    messages = list(SourcePostgres().read(logging.getLogger("t"), source_config, catalog, state))
    assert [m.record.data["id"] for m in messages if m.type == Type.RECORD] == [3, 4]


UNINDEXED = (
    "CREATE TABLE big (id int, c int, pad text);"
    " INSERT INTO big SELECT g, g % 50, repeat('x', 200) FROM generate_series(1, 600) g;"
    " ANALYZE big"
)


@pytest.mark.parametrize("indexed", [False, True], ids=["unindexed", "indexed"])
def test_first_load_reads_ctid_chunks_then_cursor(source_conn, read_inc, indexed) -> None:
    """A first load checkpoints ctid ranges, ending on a cursor state: a sequential read,
    whether or not an index could order the table by the cursor."""
    source_conn.execute(UNINDEXED)
    if indexed:
        source_conn.execute("CREATE INDEX ON big (c)")
    run = read_inc("big", "c", ["id", "c"], chunk=60)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    assert sorted(r["id"] for r in run.data("big")) == list(range(1, 601))
    kinds = [s["stream"]["stream_state"]["state_type"] for s in states(run)]
    assert kinds[:-1] == ["ctid"] * (len(kinds) - 1) and len(kinds) > 2
    assert kinds[-1] == "cursor_based"
    assert states(run)[-1]["stream"]["stream_state"]["cursor"] == "49"
    assert sum(s["sourceStats"]["recordCount"] for s in states(run)) == 600


def test_interrupted_ctid_load_resumes_then_continues_by_cursor(source_conn, read_inc) -> None:
    """Resuming from a ctid state reads the remaining blocks, then rows above the noted max."""
    source_conn.execute(UNINDEXED)
    full = read_inc("big", "c", ["id", "c"], chunk=60)
    middle = states(full)[1]
    assert middle["stream"]["stream_state"]["state_type"] == "ctid"
    done = int(sum(s["sourceStats"]["recordCount"] for s in states(full)[:2]))
    source_conn.execute("INSERT INTO big VALUES (1000, 77, 'new')")
    resumed = read_inc("big", "c", ["id", "c"], state=[middle], chunk=60)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr
    ids = [r["id"] for r in full.data("big")]
    assert [r["id"] for r in resumed.data("big")] == [*ids[done:], 1000]


def test_an_interrupted_load_without_cursor_values_resumes_at_its_block(
    source_conn, read_inc
) -> None:
    """A first load that noted no cursor maximum (every row NULL) resumes from its saved block
    (it started over at block 0, so a table interrupted each time never got past its first
    blocks), then reads the rows that got a value since, by cursor."""
    source_conn.execute(UNINDEXED.replace("g % 50", "NULL"))
    full = read_inc("big", "c", ["id", "c"], chunk=60)
    middle = states(full)[1]
    assert middle["stream"]["stream_state"]["state_type"] == "ctid"
    assert middle["stream"]["stream_state"]["incremental_state"]["cursor"] is None
    done = int(sum(s["sourceStats"]["recordCount"] for s in states(full)[:2]))
    source_conn.execute("INSERT INTO big VALUES (1000, 77, 'new')")
    resumed = read_inc("big", "c", ["id", "c"], state=[middle], chunk=60)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr
    ids = [r["id"] for r in full.data("big")]
    assert 0 < done < len(ids) == 600
    assert [r["id"] for r in resumed.data("big")] == [*ids[done:], 1000]
    assert not any("no row has a cursor value yet" in m for m in logs(resumed, "WARN"))
    assert final_state(resumed)[0]["stream"]["stream_state"]["cursor"] == "77"


def test_a_resumed_first_load_finds_a_row_moved_into_blocks_it_had_read(
    source_conn, read_inc
) -> None:
    """Between an interrupted first load and its resume, an UPDATE that leaves the cursor as it
    was moves a row from a block not yet read into one already read (freed by a DELETE and a
    VACUUM). The resumed load reads the rows written since the load began in the blocks it had
    read (the ctid state notes the load's snapshot xmin), so the row is not lost."""
    source_conn.execute(
        "CREATE TABLE mv (id int PRIMARY KEY, c int, v int, pad text);"
        "INSERT INTO mv SELECT g, g, 0, repeat('p', 200) FROM generate_series(1, 3000) g"
    )
    full = read_inc("mv", "c", ["id", "c", "v"], chunk=200)
    first = states(full)[0]["stream"]["stream_state"]
    assert first["state_type"] == "ctid" and isinstance(first["pgbyte_load_xmin"], int), first
    source_conn.execute("DELETE FROM mv WHERE id <= 30")
    source_conn.execute("VACUUM mv")
    source_conn.execute("UPDATE mv SET v = 1 WHERE id = 2000")
    moved = source_conn.execute("SELECT (ctid::text::point)[0] FROM mv WHERE id = 2000").fetchone()
    assert moved[0] < int(first["ctid"].strip("()").split(",")[0])  # into a block already read
    resumed = read_inc("mv", "c", ["id", "c", "v"], state=[states(full)[0]], chunk=200)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr
    rows = {r["id"]: r["v"] for r in resumed.data("mv")}
    assert rows.get(2000) == 1
    # Every record emitted, the catch-up's too, is counted in the STATEs' sourceStats.
    counted = sum(m["sourceStats"]["recordCount"] for m in states(resumed))
    assert counted == len(resumed.data("mv"))
    done = int(states(full)[0]["sourceStats"]["recordCount"])
    assert len(rows) < 3000 - done + 10  # the blocks read before were not all read again


def test_a_resumed_first_load_says_it_copies_null_cursors(source_conn, read_inc) -> None:
    """A resumed first load copies the NULL-cursor rows in the blocks it has left: its WARN
    says the first load copies them, not that they are not synced."""
    source_conn.execute(UNINDEXED + "; UPDATE big SET c = NULL WHERE id % 50 = 0")
    full = read_inc("big", "c", ["id", "c"], chunk=60)
    resumed = read_inc("big", "c", ["id", "c"], state=[states(full)[1]], chunk=60)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr
    (warn,) = [m for m in logs(resumed, "WARN") if "NULL cursor" in m]
    assert "the first load copies them (a resumed one" in warn, warn
    assert any(r["c"] is None for r in resumed.data("big"))


def test_rewritten_table_restarts_ctid_load_with_warning(source_conn, read_inc) -> None:
    """A ctid state of a table rewritten since (new filenode) restarts the load, with a WARN."""
    source_conn.execute(UNINDEXED)
    full = read_inc("big", "c", ["id", "c"], chunk=60)
    source_conn.execute("VACUUM FULL big")
    resumed = read_inc("big", "c", ["id", "c"], state=[states(full)[1]], chunk=60)
    assert sorted(r["id"] for r in resumed.data("big")) == list(range(1, 601))
    assert any("rewritten" in m for m in logs(resumed, "WARN"))


def test_chunk_size_adapts_towards_the_checkpoint_interval() -> None:
    """Without a fixed size, slow chunks shrink and fast ones grow (≤4x), within bounds."""
    from source_postgres import incremental as inc

    target = inc.CHECKPOINT_SECONDS
    assert inc.next_chunk_rows(100_000, target * 2) == 50_000
    assert inc.next_chunk_rows(100_000, target / 100) == 400_000
    assert inc.next_chunk_rows(100_000, 0.0) == 400_000
    assert inc.next_chunk_rows(20_000, target * 100) == inc.MIN_CHUNK_ROWS
    assert inc.next_chunk_rows(1_900_000, target / 2) == inc.MAX_CHUNK_ROWS


@pytest.mark.parametrize(
    "coltype,top",
    [("timestamp", "infinity"), ("numeric", "NaN"), ("real", "Infinity"), ("numeric", "Infinity")],
)
def test_a_cursor_stuck_at_infinity_is_warned(source_conn, read_inc, coltype, top) -> None:
    """A cursor that reaches infinity or NaN (nothing sorts above it) is said in a WARN, on the
    sync that saves it and on every later one, rather than silently reading nothing."""
    low = "2024-01-01" if coltype == "timestamp" else "1"
    source_conn.execute(f"CREATE TABLE s (id int, c {coltype})")
    source_conn.execute("INSERT INTO s VALUES (1, %s), (2, %s)", (low, top))
    first = read_inc("s", "c", ["id", "c"])
    later = read_inc("s", "c", ["id", "c"], state=final_state(first))
    for run in (first, later):
        assert any(f"the cursor reached '{top}'" in m for m in logs(run, "WARN")), run.stdout
    assert later.data("s") == []


@pytest.mark.parametrize(
    ("before", "after", "zone", "first", "later"),
    [
        ("timestamp", "timestamptz", "Asia/Tokyo", "'2024-01-05 00:00'", "'2024-01-05 05:00+09'"),
        ("timestamptz", "timestamp", "America/New_York", "'2024-01-05 00:00+00'",
         "'2024-01-04 22:00'"),
    ],
)  # fmt: skip
def test_a_cursor_retyped_between_zoned_and_unzoned_is_re_read(
    source_conn, read_inc, before, after, zone, first, later
) -> None:
    """A session outside UTC ALTERs the cursor column between timestamp and timestamptz after
    a sync: the saved text still casts, but compared in UTC it would skip a newer row (the
    ALTER converts in the server's zone). The stream is re-read, with a WARN."""
    source_conn.execute(f"SET timezone = '{zone}'")  # the zone the ALTER converts in
    source_conn.execute(f"CREATE TABLE tz (id int PRIMARY KEY, at {before})")
    source_conn.execute(f"INSERT INTO tz VALUES (1, {first})")
    run = read_inc("tz", "at", ["id", "at"])
    assert [r["id"] for r in run.data("tz")] == [1]
    source_conn.execute(f"ALTER TABLE tz ALTER COLUMN at TYPE {after}")
    source_conn.execute(f"INSERT INTO tz VALUES (2, {later})")  # after row 1, in that zone
    second = read_inc("tz", "at", ["id", "at"], state=final_state(run))
    assert second.returncode == 0, second.stderr
    assert sorted(r["id"] for r in second.data("tz")) == [1, 2]
    assert any("time zone" in m and "re-reading" in m for m in logs(second, "WARN"))


@pytest.mark.parametrize("name", ["m", "top", "s", "r"])
def test_a_column_named_like_the_first_loads_aliases_changes_nothing(
    source_conn, read_inc, name
) -> None:
    """A table with a column named like an alias of the first load's queries: the saved state
    still counts the rows at the top cursor value, so a row inserted later with that value is
    read by the next sync (an unqualified alias once resolved to the user's column: count 0,
    the row lost)."""
    source_conn.execute(f'CREATE TABLE al (id int PRIMARY KEY, "{name}" int, at int)')
    source_conn.execute("INSERT INTO al VALUES (1, 0, 5), (2, 0, 3)")
    first = read_inc("al", "at", ["id", name, "at"])
    assert sorted(r["id"] for r in first.data("al")) == [1, 2]
    source_conn.execute("INSERT INTO al VALUES (3, 0, 5)")
    second = read_inc("al", "at", ["id", name, "at"], state=final_state(first))
    assert 3 in [r["id"] for r in second.data("al")]


def test_column_privileges_only_read_incrementally(source_conn, source_config, write_json) -> None:
    """A role with SELECT on some columns only (no table-level SELECT) cannot read ctid: the
    first incremental load reads by the cursor instead of by ctid ranges, and the next sync
    resumes (before, the read failed with "permission denied")."""
    role = f"cols_{uuid.uuid4().hex[:8]}"
    with throwaway_role(source_conn, role, "pw-123456789"):
        source_conn.execute("CREATE TABLE cp (id int PRIMARY KEY, hidden text, at int)")
        source_conn.execute("INSERT INTO cp SELECT g, 'h', g FROM generate_series(1, 5) g")
        source_conn.execute(f"GRANT SELECT (id, at) ON cp TO {role}")
        config = {**source_config, "username": role, "password": "pw-123456789"}
        cat = write_json("catalog.json", incremental_catalog("cp", "at", ["id", "at"]))

        def read(state: Any = None) -> Run:
            args = [SOURCE, "read", "--config", write_json("config.json", config), "--catalog", cat]
            if state is not None:
                args += ["--state", write_json("state.json", state)]
            proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
            return Run(proc.returncode, proc.stdout, proc.stderr)

        first = read()
        assert first.returncode == 0, first.stdout
        assert sorted(r["id"] for r in first.data("cp")) == [1, 2, 3, 4, 5]
        source_conn.execute("INSERT INTO cp VALUES (6, 'h', 6)")
        second = read(final_state(first))
        assert second.returncode == 0, second.stdout
        assert [r["id"] for r in second.data("cp")] == [6]


def test_the_index_advice_is_sql_to_paste(source_conn, read_inc) -> None:
    """An unindexed cursor's WARN (a partitioned table: no ctid first load) suggests a CREATE
    INDEX whose names are quoted where they must be, so it runs as printed."""
    source_conn.execute(
        'CREATE TABLE "Mixed Case" (id int, "Updated At" int) PARTITION BY RANGE (id); '
        'CREATE TABLE "Mixed Case_1" PARTITION OF "Mixed Case" FOR VALUES FROM (0) TO (100)'
    )
    source_conn.execute('INSERT INTO "Mixed Case" VALUES (1, 1)')
    run = read_inc("Mixed Case", "Updated At", ["id", "Updated At"])
    (advice,) = [m for m in logs(run, "WARN") if "CREATE INDEX" in m]
    statement = advice[advice.index("CREATE INDEX") : advice.index(" makes")]
    assert statement == 'CREATE INDEX ON public."Mixed Case" ("Updated At")'
    source_conn.execute(statement)  # it runs


def test_a_date_cursor_retyped_to_timestamp_resumes(source_conn, read_inc) -> None:
    """A date cursor ALTERed to timestamp: the saved date (`2024-01-05`, no offset) still means
    the same instant, so the read resumes after it — no re-read, no WARN (a date's day `-05`
    is no time zone offset)."""
    source_conn.execute("CREATE TABLE dt (id int PRIMARY KEY, at date)")
    source_conn.execute("INSERT INTO dt VALUES (1, '2024-01-05')")
    run = read_inc("dt", "at", ["id", "at"])
    source_conn.execute("ALTER TABLE dt ALTER COLUMN at TYPE timestamp")
    source_conn.execute("INSERT INTO dt VALUES (2, '2024-01-05 10:00')")
    second = read_inc("dt", "at", ["id", "at"], state=final_state(run))
    assert [r["id"] for r in second.data("dt")] == [2]
    assert not any("time zone" in m for m in logs(second, "WARN"))


@pytest.mark.parametrize(
    ("coltype", "values", "saved"),
    [
        ("timestamptz", ["2026-11-26 21:26:10Z", "2026-11-26 21:26:11.078541Z",
                         "2026-11-26 21:26:12Z"], "2026-11-26T21:26:11.078541Z"),
        ("timetz", ["13:00:00Z", "13:00:04Z", "13:00:05Z"], "13:00:04z"),
    ],
)  # fmt: skip
def test_a_z_suffixed_airbyte_cursor_resumes_after_it(
    source_conn, read_inc, coltype, values, saved
) -> None:
    """A zoned cursor saved as Airbyte's source-postgres writes it (UTC as a trailing `Z`)
    resumes after that value: no re-read, no time zone WARN."""
    source_conn.execute(f"CREATE TABLE za (id int PRIMARY KEY, at {coltype})")
    for i, value in enumerate(values, start=1):
        source_conn.execute("INSERT INTO za VALUES (%s, %s)", (i, value))
    state = below_all("za", "at", saved)
    state[0]["stream"]["stream_state"]["cursor_record_count"] = 1  # row 2 holds that value
    run = read_inc("za", "at", ["id", "at"], state=state)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    assert [r["id"] for r in run.data("za")] == [3]
    assert logs(run, "WARN") == []


@pytest.mark.parametrize(
    ("coltype", "values"),
    [
        ("timestamp", ["2023-01-01 13:00:00", "2023-01-02 08:30:00.25"]),
        ("timestamptz", ["2023-01-01 13:00:00+00", "2023-01-02 08:30:00.25+05:30"]),
        ("time", ["08:00:00", "13:00:00.5"]),
        ("timetz", ["08:00:00+00", "13:00:00.5-03"]),
    ],
)  # fmt: skip
def test_time_like_cursors_are_saved_as_the_records_render_them(
    source_conn, read_inc, coltype, values
) -> None:
    """A timestamp/time cursor is saved in the ISO form its records carry (and Airbyte's
    source-postgres saves and parses), in the first load's noted cursor and in the cursor
    phase's states; a read resumed from either form emits only the newer row."""
    source_conn.execute(f"CREATE TABLE tsc (id int PRIMARY KEY, at {coltype})")
    for i, value in enumerate(values, start=1):
        source_conn.execute("INSERT INTO tsc VALUES (%s, %s)", (i, value))
    first = read_inc("tsc", "at", ["id", "at"])
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr
    newest = max(first.data("tsc"), key=lambda r: r["id"])["at"]
    noted = [s["stream"]["stream_state"] for s in states(first)]
    cursors = [s.get("cursor") or s["incremental_state"]["cursor"] for s in noted]
    assert set(cursors) == {newest}, (cursors, newest)
    saved = below_all("tsc", "at", values[0])  # Postgres's own text, as pgbyte saved before
    saved[0]["stream"]["stream_state"]["cursor_record_count"] = 1
    by_cursor = read_inc("tsc", "at", ["id", "at"], state=saved)
    assert [r["id"] for r in by_cursor.data("tsc")] == [2]
    assert states(by_cursor)[-1]["stream"]["stream_state"]["cursor"] == newest
    assert logs(by_cursor, "WARN") == []
    source_conn.execute("UPDATE tsc SET at = at + interval '1 second' WHERE id = 2")
    again = read_inc("tsc", "at", ["id", "at"], state=final_state(first))
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr
    assert [r["id"] for r in again.data("tsc")] == [2]
    assert logs(again, "WARN") == []


def test_a_cursor_holding_line_separators_keeps_state_lines_whole(source_conn, read_inc) -> None:
    """A text cursor value holding U+2028, U+2029 and U+0085 is escaped in the STATE line, so
    str.splitlines() keeps it whole and it parses to the exact value."""
    value = "b\u2028\u2029\u0085"
    source_conn.execute("CREATE TABLE ls (id int PRIMARY KEY, c text)")
    source_conn.execute("INSERT INTO ls VALUES (1, 'a'), (2, %s)", (value,))
    run = read_inc("ls", "c", ["id", "c"], state=below_all("ls", "c", ""))
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines() if '"STATE"' in line]
    cursors = [line["state"]["stream"]["stream_state"]["cursor"] for line in lines]
    assert cursors == [value]


def _scans(conn, table: str) -> tuple[int, int]:
    """(sequential scans, index scans) of `table` the statistics hold."""
    row = conn.execute(
        "SELECT seq_scan, idx_scan FROM pg_stat_user_tables WHERE relname = %s", (table,)
    ).fetchone()
    return int(row[0]), int(row[1] or 0)


def test_first_load_chunks_read_only_their_own_blocks(source_conn, read_inc) -> None:
    """Each ctid chunk reads its block range (a TID Range Scan), even where the planner finds
    a parallel scan of the whole table cheaper (made free here): once that happened to every
    chunk spanning a good share of the table, so a load read the table once per chunk."""
    db = sql.Identifier(source_conn.info.dbname)
    # Parallelism made free and each row's expressions dear: a scan of the whole table in
    # parallel then beats a chunk's TID Range Scan by far.
    settings = {"parallel_setup_cost": 0, "parallel_tuple_cost": 0,
                "min_parallel_table_scan_size": 0, "cpu_operator_cost": 1}  # fmt: skip
    for name, value in settings.items():
        source_conn.execute(
            sql.SQL("ALTER DATABASE {} SET {} = {}").format(db, sql.SQL(name), value)
        )
    extra = ", ".join(f"g * {i} AS n{i}" for i in range(40))
    source_conn.execute(
        f"CREATE TABLE wide AS SELECT g AS id, g % 50 AS c, {extra} "
        "FROM generate_series(1, 30000) g"
    )
    source_conn.execute("CREATE INDEX ON wide (c)")
    source_conn.execute("ANALYZE wide")
    # Control: the planner here does prefer a parallel scan of the whole table for a chunk's
    # blocks (1/6 of them) whose rows become JSON, when one worker is allowed (the source's own
    # cap); else this test could not fail.
    for name, value in {**settings, "max_parallel_workers_per_gather": 1}.items():
        source_conn.execute(sql.SQL("SET {} = {}").format(sql.SQL(name), value))
    blocks = source_conn.execute("SELECT pg_relation_size('wide') / 8192").fetchone()[0]
    line = " || ".join(f"',\"n{i}\":' || coalesce(r.n{i}::text, 'null')" for i in range(40))
    plan = source_conn.execute(
        f"EXPLAIN (FORMAT JSON) SELECT {line} FROM wide r "
        f"WHERE r.ctid >= '(0,0)'::tid AND r.ctid < '({blocks // 6},0)'::tid"
    ).fetchone()[0]
    gather = plan[0]["Plan"]
    assert gather["Node Type"] == "Gather"
    assert gather["Plans"][0]["Node Type"] == "Seq Scan" and gather["Plans"][0]["Parallel Aware"]
    before = _scans(source_conn, "wide")
    run = read_inc("wide", "c", ["id", "c"] + [f"n{i}" for i in range(40)], chunk=5000)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    assert sorted(r["id"] for r in run.data("wide")) == list(range(1, 30001))
    chunks = sum(s["stream"]["stream_state"]["state_type"] == "ctid" for s in states(run))
    assert chunks >= 4
    for _ in range(100):  # the source's backend reports its counts as it exits
        after = _scans(source_conn, "wide")
        if after[1] > before[1]:  # its index lookups (the cursor's maximum) are in
            break
        time.sleep(0.1)
    assert after[1] > before[1], "the read's statistics never arrived"
    scans = after[0] - before[0]
    assert scans <= 2, f"{scans} sequential scans of the table for {chunks} chunks"
