"""Xmin replication through the console script: changed rows only, concurrency, wraparound.

The wraparound tests move a throwaway server's xid counter with pg_resetwal (to just before
2^32, or to the next epoch) instead of burning four billion xids; the transactions, the
wraparound itself and the rows' xmins are then real.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from pgbyte.throwaway_pg import ThrowawayServer
from source_helpers import run_source
from xmin_helpers import (
    QUIET,
    burn_xids,
    ids,
    last_state,
    move_near_wraparound,
    read,
    restart_with_resetwal,
    states,
    stream_entry,
    stream_state,
    warnings,
    xmin_config,
)


@pytest.fixture(scope="module")
def quiet_server() -> Iterator[ThrowawayServer]:
    """A server of this module's own, without autovacuum (no stray xids during reads)."""
    with ThrowawayServer(settings=QUIET) as server:
        yield server


@pytest.fixture
def db(quiet_server: ThrowawayServer) -> Iterator[tuple[ThrowawayServer, str]]:
    name = f"xmin_{uuid.uuid4().hex[:10]}"
    quiet_server.create_database(name)
    yield quiet_server, name
    quiet_server.drop_database(name)


@pytest.fixture
def conn(db) -> Iterator[psycopg.Connection]:
    server, name = db
    with psycopg.connect(server.conninfo(name), autocommit=True) as c:
        yield c


@pytest.fixture
def config(db) -> dict:
    return xmin_config(*db)


@pytest.fixture
def fresh_server() -> Iterator[ThrowawayServer]:
    """A server whose xid counter a test may move (pg_resetwal)."""
    with ThrowawayServer(settings=QUIET) as server:
        server.create_database("w")
        yield server


T = [stream_entry("t", ["id", "v"])]


def test_first_read_gets_every_row_and_airbyte_xmin_state(conn, config, tmp_path) -> None:
    """A first Xmin read emits every row and ends on Airbyte's XminStatus state."""
    conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text);"
                 "INSERT INTO t SELECT g, 'a' FROM generate_series(1, 50) g")  # fmt: skip
    run = read(tmp_path, config, T)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    assert ids(run, "t") == list(range(1, 51))
    state = stream_state(run)
    assert set(state) == {"version", "state_type", "num_wraparound", "xmin_xid_value",
                          "xmin_raw_value"}  # fmt: skip
    assert (state["version"], state["state_type"], state["num_wraparound"]) == (2, "xmin", 0)
    now = conn.execute("SELECT txid_current()").fetchone()[0]
    assert state["xmin_raw_value"] == state["xmin_xid_value"] <= now


def test_second_read_gets_only_inserted_and_updated_rows(conn, config, tmp_path) -> None:
    """insert → read → update some, insert more → read: exactly those rows, then none."""
    conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text);"
                 "INSERT INTO t SELECT g, 'a' FROM generate_series(1, 50) g")  # fmt: skip
    first = read(tmp_path / "1", config, T)
    conn.execute("UPDATE t SET v = 'b' WHERE id IN (3, 7, 40)")
    conn.execute("INSERT INTO t SELECT g, 'n' FROM generate_series(51, 53) g")
    conn.execute("DELETE FROM t WHERE id = 10")  # invisible to Xmin, by design
    second = read(tmp_path / "2", config, T, state=last_state(first))
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr
    assert ids(second, "t") == [3, 7, 40, 51, 52, 53]
    assert {r["id"]: r["v"] for r in second.data("t")}[7] == "b"
    third = read(tmp_path / "3", config, T, state=last_state(second))
    assert third.data("t") == []


def test_transaction_open_during_a_read_is_caught_by_the_next(conn, db, config, tmp_path) -> None:
    """A row written by a transaction still open at the read's snapshot is read next time."""
    conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a')")
    server, name = db
    with psycopg.connect(server.conninfo(name)) as other:  # not autocommit: stays open
        other.execute("INSERT INTO t VALUES (2, 'slow')")
        conn.execute("INSERT INTO t VALUES (3, 'fast')")  # commits before the read starts
        first = read(tmp_path / "1", config, T)
        other.commit()
    assert ids(first, "t") == [1, 3]
    second = read(tmp_path / "2", config, T, state=last_state(first))
    # Row 3 committed after the open transaction began: its xid is above the saved xmin
    # horizon, so it is read again (at-least-once); row 2 is not lost.
    assert ids(second, "t") == [2, 3]
    assert read(tmp_path / "3", config, T, state=last_state(second)).data("t") == []


def test_views_are_full_refresh_only_under_xmin(conn, config, write_json) -> None:
    """discover under Xmin: tables incremental with a source-defined cursor, views full refresh."""
    conn.execute("CREATE TABLE t (id int PRIMARY KEY, updated_at timestamptz);"
                 "CREATE VIEW v AS SELECT * FROM t;"
                 "CREATE MATERIALIZED VIEW mv AS SELECT * FROM t")  # fmt: skip
    run = run_source("discover", "--config", write_json("c.json", config))
    assert run.returncode == 0, run.stdout + run.stderr
    table, view, matview = run.stream("t"), run.stream("v"), run.stream("mv")
    assert table["supported_sync_modes"] == ["full_refresh", "incremental"]
    assert table["source_defined_cursor"] is True and table["default_cursor_field"] == []
    assert view["supported_sync_modes"] == ["full_refresh"]
    assert view["source_defined_cursor"] is False
    assert matview["source_defined_cursor"] is True


def test_a_view_asked_incrementally_under_xmin_is_read_as_standard_does(
    conn, config, tmp_path
) -> None:
    """A view has no xmin. Asked for incrementally under Xmin (PyAirbyte asks so for every
    stream), it is read as Standard replication reads it: by its cursor column when it has one,
    else whole on every sync; each with a WARN, and the read does not fail."""
    conn.execute(
        "CREATE TABLE t (id int, updated_at timestamp); "
        "INSERT INTO t VALUES (1, '2024-01-01'), (2, '2024-01-02');"
        "CREATE VIEW vw AS SELECT id FROM t; CREATE VIEW vc AS SELECT * FROM t"
    )
    streams = [stream_entry("vw", ["id"]), stream_entry("vc", ["id", "updated_at"])]
    first = read(tmp_path / "1", config, streams)
    assert first.returncode == 0, first.stdout[-2000:]
    assert ids(first, "vw") == [1, 2] and ids(first, "vc") == [1, 2]
    assert any("vw" in w and "every sync reads all of its rows" in w for w in warnings(first))
    assert any("vc" in w and "no xmin column" in w for w in warnings(first))
    conn.execute("INSERT INTO t VALUES (3, '2024-01-03')")
    second = read(tmp_path / "2", config, streams, state=[m["state"] for m in
                                                           first.of_type("STATE")])  # fmt: skip
    assert second.returncode == 0, second.stdout[-2000:]
    assert ids(second, "vw") == [1, 2, 3] and ids(second, "vc") == [3]


@pytest.mark.parametrize(("mode", "expected"), [("overwrite", [1, 2, 3]), ("append", [3])])
def test_a_keyless_stream_the_client_replaces_is_read_whole_under_xmin(
    conn, config, tmp_path, mode, expected
) -> None:
    """incremental | overwrite — PyAirbyte's catalog for every stream — of a table without a
    primary key (read by xmin) and of a view with an updated_at column (by that cursor): the
    client replaces such a stream by what the read sends, so every read sends all its rows
    (it sent only the changes, and the rows before them were gone from PyAirbyte's cache and
    destination). incremental | append still reads the changes."""
    conn.execute(
        "CREATE TABLE notes (id int, b text); INSERT INTO notes VALUES (1, 'one'), (2, 'two');"
        "CREATE TABLE ev (id int PRIMARY KEY, updated_at timestamp);"
        "INSERT INTO ev VALUES (1, '2024-01-01'), (2, '2024-01-02');"
        "CREATE VIEW ev_v AS SELECT * FROM ev"
    )
    streams = [stream_entry("notes", ["id", "b"]), stream_entry("ev_v", ["id", "updated_at"])]
    for entry in streams:
        entry["destination_sync_mode"] = mode
    first = read(tmp_path / "1", config, streams)
    assert first.returncode == 0, first.stdout[-2000:]
    assert ids(first, "notes") == [1, 2] and ids(first, "ev_v") == [1, 2]
    conn.execute("INSERT INTO notes VALUES (3, 'three'); INSERT INTO ev VALUES (3, '2024-01-03')")
    second = read(tmp_path / "2", config, streams, state=states(first))
    assert second.returncode == 0, second.stdout[-2000:]
    assert ids(second, "notes") == expected and ids(second, "ev_v") == expected
    whole = [w for w in warnings(second) if "destination_sync_mode overwrite" in w]
    assert len(whole) == (2 if mode == "overwrite" else 0), warnings(second)


def test_a_column_privileged_user_needs_xmin_granted_from_the_first_sync(
    conn, config, tmp_path
) -> None:
    """A user with SELECT on some columns only: the first Xmin sync fails naming the GRANT to
    run (it succeeded, and every later one failed once a state was saved); with SELECT on the
    xmin column granted too, the first and later syncs work."""
    from db_roles import throwaway_role

    role = f"xcol_{uuid.uuid4().hex[:8]}"
    with throwaway_role(conn, role, "Xcol-pw-5511"):
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text, secret text)")
        conn.execute("INSERT INTO t SELECT g, 'a', 's' FROM generate_series(1, 5) g")
        conn.execute(f"GRANT SELECT (id, v) ON t TO {role}")
        user = {**config, "username": role, "password": "Xcol-pw-5511"}
        streams = [stream_entry("t", ["id", "v"])]
        refused = read(tmp_path / "1", user, streams)
        (error,) = refused.errors()
        assert refused.returncode == 1 and error["failure_type"] == "config_error", error
        assert f"GRANT SELECT (xmin) ON public.t TO {role};" in error["message"], error
        assert refused.data("t") == [] and states(refused) == []
        conn.execute(f"GRANT SELECT (xmin) ON t TO {role}")
        first = read(tmp_path / "2", user, streams)
        assert first.returncode == 0 and ids(first, "t") == [1, 2, 3, 4, 5], first.stdout
        conn.execute("UPDATE t SET v = 'b' WHERE id = 3")
        second = read(tmp_path / "3", user, streams, state=last_state(first))
        assert second.returncode == 0 and ids(second, "t") == [3], second.stdout


def test_a_foreign_partition_is_named_in_a_warning(conn, config, tmp_path) -> None:
    """A partitioned table with a foreign-table partition (rows without xmin): an Xmin read
    says on every sync that changes there are never seen (it lost them without a word)."""
    conn.execute("CREATE EXTENSION IF NOT EXISTS file_fdw")
    conn.execute("CREATE SERVER IF NOT EXISTS files FOREIGN DATA WRAPPER file_fdw")
    conn.execute("CREATE TABLE t (id int, v text) PARTITION BY RANGE (id);"
                 "CREATE TABLE t1 PARTITION OF t FOR VALUES FROM (0) TO (100);"
                 "INSERT INTO t VALUES (1, 'a')")  # fmt: skip
    conn.execute(
        "CREATE FOREIGN TABLE t2 PARTITION OF t FOR VALUES FROM (100) TO (200) SERVER files "
        "OPTIONS (program 'echo 150,remote', format 'csv')"
    )
    first = read(tmp_path / "1", config, T)
    assert first.returncode == 0 and ids(first, "t") == [1, 150], first.stdout
    (warned,) = [w for w in warnings(first) if "foreign table" in w]
    assert "t2 is a foreign table (a partition or child of it), whose rows have no xmin" in warned
    second = read(tmp_path / "2", config, T, state=last_state(first))
    assert any("t2 is a foreign table" in w for w in warnings(second))


def test_partitioned_table_reads_changes_by_xmin(conn, config, tmp_path) -> None:
    """A partitioned table (rows in partitions) syncs by xmin like a plain table."""
    conn.execute("CREATE TABLE t (id int, v text) PARTITION BY RANGE (id);"
                 "CREATE TABLE t1 PARTITION OF t FOR VALUES FROM (0) TO (100);"
                 "CREATE TABLE t2 PARTITION OF t FOR VALUES FROM (100) TO (200);"
                 "INSERT INTO t VALUES (1, 'a'), (150, 'a')")  # fmt: skip
    first = read(tmp_path / "1", config, T)
    assert ids(first, "t") == [1, 150]
    conn.execute("UPDATE t SET v = 'b' WHERE id = 150; INSERT INTO t VALUES (2, 'n')")
    second = read(tmp_path / "2", config, T, state=last_state(first))
    assert ids(second, "t") == [2, 150]


def test_interrupted_first_load_resumes_from_ctid_then_reads_changes(conn, config, tmp_path):
    """Resuming a first load from a ctid state: the remaining blocks, then rows changed since."""
    conn.execute("CREATE TABLE t (id int, v text, pad text);"
                 "INSERT INTO t SELECT g, 'a', repeat('x', 200) FROM generate_series(1, 600) g;"
                 "ANALYZE t")  # fmt: skip
    full = read(tmp_path / "1", config, T, chunk=60)
    assert full.returncode == 0, full.stdout[-2000:] + full.stderr
    kinds = [s["stream"]["stream_state"]["state_type"] for s in states(full)]
    assert kinds[-1] == "xmin" and set(kinds[:-1]) == {"ctid"} and len(kinds) > 2
    middle = states(full)[1]
    assert middle["stream"]["stream_state"]["incremental_state"]["state_type"] == "xmin"
    done = int(sum(s["sourceStats"]["recordCount"] for s in states(full)[:2]))
    order = [r["id"] for r in full.data("t")]
    already, remaining = order[:done], order[done:]
    conn.execute("UPDATE t SET v = 'b' WHERE id = %s", (already[0],))
    conn.execute("INSERT INTO t VALUES (1000, 'n', '')")
    resumed = read(tmp_path / "2", config, T, state=[middle], chunk=60)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr
    got = [r["id"] for r in resumed.data("t")]
    assert sorted(got) == sorted([*remaining, already[0], 1000])  # each exactly once
    assert stream_state(resumed)["state_type"] == "xmin"


def test_configured_cursor_field_is_ignored_under_xmin(conn, config, tmp_path) -> None:
    """A cursor_field in the catalog does not change an Xmin read (the cursor is xmin)."""
    conn.execute("CREATE TABLE t (id int, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    entry = {**stream_entry("t", ["id", "v"]), "cursor_field": ["v"]}
    first = read(tmp_path / "1", config, [entry])
    conn.execute("UPDATE t SET v = 'a' WHERE id = 2")  # the "cursor" goes backwards
    second = read(tmp_path / "2", config, [entry], state=last_state(first))
    assert ids(first, "t") == [1, 2] and ids(second, "t") == [2]


def test_standard_incremental_without_cursor_reads_changes_by_xmin(db, conn, tmp_path) -> None:
    """Standard, incremental, no cursor column anywhere (PyAirbyte's default): changes by xmin."""
    config = db[0].connector_config(db[1], schemas=["public"])  # Standard replication
    conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text);"
                 "INSERT INTO t SELECT g, 'a' FROM generate_series(1, 10) g")  # fmt: skip
    first = read(tmp_path / "1", config, T)
    assert ids(first, "t") == list(range(1, 11))
    conn.execute("UPDATE t SET v = 'b' WHERE id = 4; INSERT INTO t VALUES (11, 'n')")
    second = read(tmp_path / "2", config, T, state=last_state(first))
    assert ids(second, "t") == [4, 11]
    assert stream_state(second)["state_type"] == "xmin"


def test_changed_rows_span_a_real_xid_wraparound(fresh_server, tmp_path) -> None:
    """Rows written after the 32-bit xid counter wraps (epoch 0 → 1) since the last sync are read,
    unchanged rows are not (the wrapped `xmin >= s OR xmin < n` predicate)."""
    move_near_wraparound(fresh_server, left=200)
    config = xmin_config(fresh_server, "w")
    with psycopg.connect(fresh_server.conninfo("w"), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text);"
                     "INSERT INTO t SELECT g, 'a' FROM generate_series(1, 20) g")  # fmt: skip
        first = read(tmp_path / "1", config, T)
        assert ids(first, "t") == list(range(1, 21))
        assert stream_state(first)["num_wraparound"] == 0
        conn.execute("UPDATE t SET v = 'b' WHERE id = 5")  # still epoch 0
        burn_xids(conn, 250)  # the counter wraps
        assert conn.execute("SELECT txid_current() >> 32").fetchone()[0] == 1
        conn.execute("UPDATE t SET v = 'c' WHERE id = 9; INSERT INTO t VALUES (21, 'n')")
        low = conn.execute("SELECT max(xmin::text::int8) FROM t WHERE id IN (9, 21)").fetchone()
        saved = stream_state(first)["xmin_xid_value"]
    assert low[0] < saved  # the new rows' 32-bit xmins are below the saved one
    second = read(tmp_path / "2", config, T, state=last_state(first))
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr
    assert ids(second, "t") == [5, 9, 21]
    assert warnings(second) == []
    assert stream_state(second)["num_wraparound"] == 1
    third = read(tmp_path / "3", config, T, state=last_state(second))
    assert third.data("t") == []


def test_whole_wraparound_since_last_sync_rereads_with_warning(fresh_server, tmp_path) -> None:
    """A state more than 2^32 xids old (epoch moved on by pg_resetwal -e) re-reads with a WARN."""
    config = xmin_config(fresh_server, "w")
    with psycopg.connect(fresh_server.conninfo("w"), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    first = read(tmp_path / "1", config, T)
    restart_with_resetwal(fresh_server, "-e", "1")
    second = read(tmp_path / "2", config, T, state=last_state(first))
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr
    assert ids(second, "t") == [1, 2]
    assert any("wraparound" in w for w in warnings(second))
    assert stream_state(second)["num_wraparound"] == 1


def test_predicate_selects_the_circular_xid_interval(conn) -> None:
    """written_between, run by the server over fabricated 32-bit xids, picks [since, until)."""
    from psycopg import sql
    from source_postgres.xids import written_between

    values = [3, 5, 799, 800, 1000, 3_000_000_000, 4_294_966_999, 4_294_967_000, 4_294_967_295]

    def pick(since: int, until: int) -> list[int]:
        predicate = written_between(sql.SQL("v.x"), since, until)
        query = sql.SQL("SELECT x FROM unnest({}::int8[]) AS v(x) WHERE {} ORDER BY x")
        return [r[0] for r in conn.execute(query.format(sql.Literal(values), predicate))]

    # Same epoch: [5, 1000).
    assert pick(5, 1000) == [5, 799, 800]
    # Saved just before the wrap (epoch 0), read in epoch 1 with xmax 800.
    assert pick(4_294_967_000, (1 << 32) + 800) == [3, 5, 799, 4_294_967_000, 4_294_967_295]
    # Both in epoch 1.
    assert pick((1 << 32) + 5, (1 << 32) + 800) == [5, 799]
    assert pick(7, 7) == []
    with pytest.raises(ValueError):
        written_between(sql.SQL("v.x"), 5, (1 << 32) + 5)


def test_check_accepts_xmin(conn, config, write_json) -> None:
    """check with replication_method Xmin succeeds (it is no longer 'not supported')."""
    conn.execute("CREATE TABLE t (id int)")
    run = run_source("check", "--config", write_json("c.json", config))
    assert run.connection_status["status"] == "SUCCEEDED", run.connection_status


def test_in_process_read_under_xmin_resumes_from_state(conn, config) -> None:
    """SourcePostgres.read (the CDK envelope) reads by xmin and resumes from an xmin state."""
    import logging

    from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer, Type
    from source_postgres.source import SourcePostgres

    conn.execute("CREATE TABLE t (id int, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    catalog = ConfiguredAirbyteCatalogSerializer.load({"streams": T})
    source, logger = SourcePostgres(), logging.getLogger("t")
    first = list(source.read(logger, config, catalog, None))
    state = [m.state for m in first if m.type == Type.STATE][-1]
    conn.execute("UPDATE t SET v = 'c' WHERE id = 2")
    second = list(source.read(logger, config, catalog, [state]))
    assert [m.record.data["id"] for m in second if m.type == Type.RECORD] == [2]


def test_a_column_added_with_a_default_since_the_last_sync_is_warned_of_once(
    conn, config, tmp_path
) -> None:
    """ALTER TABLE ... ADD COLUMN ... DEFAULT gives the existing rows the value without writing
    them (their xmin stays): the next sync cannot send them again, and WARNs naming the column
    and how to backfill; a column added without a default (NULL in the old rows, right
    downstream) is not named, nor is the column on the sync after."""
    conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text);"
                 "INSERT INTO t SELECT g, 'a' FROM generate_series(1, 5) g")  # fmt: skip
    first = read(tmp_path / "1", config, T)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr
    conn.execute("ALTER TABLE t ADD COLUMN b int NOT NULL DEFAULT 42, ADD COLUMN c int")
    streams = [stream_entry("t", ["id", "v", "b", "c"])]
    second = read(tmp_path / "2", config, streams, last_state(first))
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr
    assert ids(second, "t") == []
    (warning,) = [w for w in warnings(second) if "ADD COLUMN" in w]
    assert "column(s) 'b' changed since" in warning and "'c'" not in warning, warning
    assert "pgbyte state reset" in warning and "full refresh" in warning
    third = read(tmp_path / "3", config, streams, last_state(second))
    assert third.returncode == 0 and warnings(third) == [], warnings(third)
