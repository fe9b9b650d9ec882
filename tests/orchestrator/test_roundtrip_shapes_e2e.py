"""Syncs of shapes beyond single values, through the real `pgbyte sync`, on data no other
test wrote:
- streams a destination cannot take as they are (raw-name collision, 1,600 columns);
- append_dedup on keys of awkward types (dedup_keys.sql), column types changing between append
  syncs, SQL_ASCII databases, incremental cursors of awkward types (cursors.yaml), and a table
  with INHERITS children.
Each fixture builds its own source and destination databases; each test checks one shape.
The per-type value round trips are in test_roundtrip_types_e2e.py.
"""

from __future__ import annotations

import decimal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from orchestrator_helpers import FIXTURES, pgbyte, throwaway_databases, write_connection
from psycopg import sql

HERE = FIXTURES / "roundtrip"


# --- shapes a destination cannot take as they are --------------------------------------------


def _sync_source(pg_server, workdir: Path, setup: str) -> tuple[subprocess.CompletedProcess, list]:
    """Sync a fresh source built by `setup` into a fresh destination: (the run, its tables)."""
    with throwaway_databases(pg_server, "rt_src", "rt_dst") as (src_db, dst_db):
        with psycopg.connect(pg_server.conninfo(src_db), autocommit=True) as src:
            src.execute(setup)
        conn_file = write_connection(
            workdir,
            pg_server.connector_config(src_db, schemas=["public"]),
            pg_server.connector_config(dst_db, schema="public"),
            name="refused",
        )
        run = pgbyte("sync", str(conn_file), password=pg_server.password, timeout=300)
        with psycopg.connect(pg_server.conninfo(dst_db), autocommit=True) as dst:
            tables = dst.execute(
                "SELECT tablename, (xpath('/row/n/text()', query_to_xml("
                "format('SELECT count(*) AS n FROM public.%I', tablename), false, true, '')))[1]"
                "::text::int FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            ).fetchall()
        return run, tables


@pytest.fixture(scope="module")
def raw_name_collision(pg_server, tmp_path_factory):
    """A source holding both `orders` and `_airbyte_raw_orders` (e.g. an old destination)."""
    return _sync_source(
        pg_server,
        tmp_path_factory.mktemp("collision"),
        "CREATE TABLE orders (id int PRIMARY KEY, v text); INSERT INTO orders VALUES (1, 'o');"
        "CREATE TABLE _airbyte_raw_orders (id int PRIMARY KEY, v text);"
        "INSERT INTO _airbyte_raw_orders VALUES (1, 'r');",
    )


def test_raw_name_collision_is_refused_clearly(raw_name_collision) -> None:
    """Streams whose tables would collide fail the sync with a message naming both."""
    run, _ = raw_name_collision
    text = run.stdout + run.stderr
    assert (
        run.returncode == 1 and "'public.orders'" in text and "'public._airbyte_raw_orders'" in text
    )


def test_raw_name_collision_writes_nothing(raw_name_collision) -> None:
    """A refused collision leaves the destination without any table."""
    assert raw_name_collision[1] == []


@pytest.fixture(scope="module")
def too_wide(pg_server, tmp_path_factory):
    """A source table of 1,600 columns (Postgres's maximum) next to an ordinary one."""
    columns = ", ".join(f"c{i} int" for i in range(1599))
    return _sync_source(
        pg_server,
        tmp_path_factory.mktemp("too_wide"),
        f"CREATE TABLE wide_1600 (id int PRIMARY KEY, {columns});"
        "INSERT INTO wide_1600 (id, c0) VALUES (1, 0);"
        "CREATE TABLE plain (id int PRIMARY KEY); INSERT INTO plain VALUES (1);",
    )


def test_1600_columns_named_or_kept_raw(too_wide) -> None:
    """A stream too wide for a typed table is either kept in its raw table (the sync goes on)
    or refused with an error naming it."""
    run, tables = too_wide
    kept = run.returncode == 0 and ("_airbyte_raw_wide_1600", 1) in tables
    reason = [line for line in run.stdout.splitlines() if line.startswith("Reason:")]
    assert kept or "wide_1600" in " ".join(reason), run.stdout + run.stderr


# --- append_dedup on keys of awkward types ---------------------------------------------------

DEDUP_TABLES = {
    "pk_text": 7, "pk_bpchar": 2, "pk_numeric": 4, "pk_bigint": 3, "pk_uuid": 2,
    "pk_timestamptz": 5, "pk_date": 3, "pk_time": 3, "pk_bytea": 3, "pk_array": 3,
    "pk_composite": 3, "pk_jsonb": 3, "pk_enum_like": 2, "pk_weird_name": 2,
    "long_" + "q" * 57 + "a": 1, "long_" + "q" * 57 + "b": 2,
}  # fmt: skip


@pytest.fixture(scope="module")
def dedup(pg_server, tmp_path_factory):
    """Sync the awkward-key tables twice in append_dedup, the rows updated in between."""
    workdir = tmp_path_factory.mktemp("dedup")
    with throwaway_databases(pg_server, "rt_src", "rt_dst") as (src_db, dst_db):
        with psycopg.connect(pg_server.conninfo(src_db), autocommit=True) as src:
            src.execute((HERE / "dedup_keys.sql").read_text())
            conn_file = write_connection(
                workdir,
                pg_server.connector_config(src_db, schemas=["public"]),
                pg_server.connector_config(dst_db, schema="public"),
                name="dedup",
                destination_sync_mode="append_dedup",
            )
            runs = [pgbyte("sync", str(conn_file), password=pg_server.password)]
            for table in [*DEDUP_TABLES, "pk_float"]:
                src.execute(sql.SQL("UPDATE {} SET v = 'new'").format(sql.Identifier(table)))
            runs.append(pgbyte("sync", str(conn_file), password=pg_server.password))
        with psycopg.connect(pg_server.conninfo(dst_db), autocommit=True) as dst:
            typed = {
                table: dst.execute(
                    sql.SQL("SELECT v, count(*) FROM public.{} GROUP BY v ORDER BY v").format(
                        sql.Identifier(table)
                    )
                ).fetchall()
                for table in [*DEDUP_TABLES, "pk_float"]
            }
        return runs, typed


def test_dedup_syncs_succeed(dedup) -> None:
    """Both append_dedup syncs of the awkward-key tables exit 0."""
    runs, _ = dedup
    assert [r.returncode for r in runs] == [0, 0], runs[-1].stdout + runs[-1].stderr


@pytest.mark.parametrize(("table", "keys"), DEDUP_TABLES.items(), ids=list(DEDUP_TABLES))
def test_dedup_keeps_one_latest_row_per_key(dedup, table, keys) -> None:
    """After two syncs the typed table holds each source key once, with its updated value."""
    assert dedup[1][table] == [("new", keys)]


def test_dedup_nan_key_stays_raw_only(dedup) -> None:
    """A NaN key (nulled by the source) has no typed row; the other keys do, updated."""
    assert dedup[1]["pk_float"] == [("new", 2)]


# --- column types that change between two append syncs ---------------------------------------


@pytest.fixture(scope="module")
def evolved(pg_server, tmp_path_factory):
    """Two append syncs of one table whose column types change in between."""
    workdir = tmp_path_factory.mktemp("evolve")
    with throwaway_databases(pg_server, "rt_src", "rt_dst") as (src_db, dst_db):
        with psycopg.connect(pg_server.conninfo(src_db), autocommit=True) as src:
            src.execute(
                "CREATE TABLE t (id int PRIMARY KEY, n int, s int, d date);"
                "INSERT INTO t VALUES (1, 1, 1, '2021-01-01')"
            )
            conn_file = write_connection(
                workdir,
                pg_server.connector_config(src_db, schemas=["public"]),
                pg_server.connector_config(dst_db, schema="public"),
                name="evolve",
                destination_sync_mode="append",
            )
            runs = [pgbyte("sync", str(conn_file), password=pg_server.password)]
            src.execute(
                "ALTER TABLE t ALTER n TYPE numeric, ALTER s TYPE text, ALTER d TYPE timestamptz;"
                "DELETE FROM t; INSERT INTO t VALUES (2, 1.5, 'abc', '2021-01-01 12:34:56+00')"
            )
            runs.append(pgbyte("sync", str(conn_file), password=pg_server.password))
        with psycopg.connect(pg_server.conninfo(dst_db), autocommit=True) as dst:
            dst.execute("SET TimeZone = 'UTC'")
            rows = dst.execute("SELECT id, n::text, s::text, d::text FROM t ORDER BY id").fetchall()
        return runs, dict((r[0], r[1:]) for r in rows)


def test_evolved_syncs_succeed(evolved) -> None:
    """Both append syncs across the type changes exit 0."""
    assert [r.returncode for r in evolved[0]] == [0, 0], evolved[0][-1].stderr


def test_evolved_first_row_kept(evolved) -> None:
    """The row of the first sync keeps its values after the second, in the wider types
    (a date becomes midnight UTC of that day)."""
    assert evolved[1][1] == ("1", "1", "2021-01-01 00:00:00+00")


def test_integer_to_number_keeps_value(evolved) -> None:
    """A column that became numeric keeps the fractional value of the new row."""
    assert decimal.Decimal(evolved[1][2][0] or "NaN") == decimal.Decimal("1.5")


def test_integer_to_string_keeps_value(evolved) -> None:
    """A column that became text keeps the new row's text."""
    assert evolved[1][2][1] == "abc"


def test_date_to_timestamptz_keeps_time(evolved) -> None:
    """A column that became timestamptz keeps the new row's time of day."""
    assert evolved[1][2][2] == "2021-01-01 12:34:56+00"


# --- SQL_ASCII databases (legacy servers store bytes unchecked) -------------------------------


@pytest.fixture(scope="module")
def sql_ascii(pg_server, tmp_path_factory):
    """A SQL_ASCII source holding valid UTF-8 (table good) and a Latin-1 byte (table bad),
    synced with a plain config and with jdbc_url_params client_encoding=UTF8; and a UTF-8
    source synced into a SQL_ASCII destination. Returns {case: (run, {table: rows})}."""
    tag = uuid.uuid4().hex[:8]
    src_db, ascii_dst, plain_src = f"rt_ascii_{tag}", f"rt_ascii_dst_{tag}", f"rt_utf8_{tag}"
    dsts = {case: f"rt_dst_{case}_{tag}" for case in ("plain", "utf8_param")}
    pg_server.create_database(src_db, encoding="SQL_ASCII")
    pg_server.create_database(ascii_dst, encoding="SQL_ASCII")
    for db in [plain_src, *dsts.values()]:
        pg_server.create_database(db)
    workdir = tmp_path_factory.mktemp("sql_ascii")
    out = {}
    try:
        with psycopg.connect(pg_server.conninfo(src_db), autocommit=True) as src:
            src.execute("SET client_encoding = 'SQL_ASCII'")
            src.execute(
                b"CREATE TABLE good (id int PRIMARY KEY, v text);"
                b"INSERT INTO good VALUES (1, 'caf\xc3\xa9');"
                b"CREATE TABLE bad (id int PRIMARY KEY, v text);"
                b"INSERT INTO bad VALUES (1, 'caf\xe9');"
            )
        with psycopg.connect(pg_server.conninfo(plain_src), autocommit=True) as src:
            src.execute("CREATE TABLE good (id int PRIMARY KEY, v text);")
            src.execute("INSERT INTO good VALUES (1, 'café')")
        syncs = {
            "plain": (pg_server.connector_config(src_db, schemas=["public"]), dsts["plain"]),
            "utf8_param": (
                pg_server.connector_config(
                    src_db, schemas=["public"], jdbc_url_params="client_encoding=UTF8"
                ),
                dsts["utf8_param"],
            ),
            "ascii_dest": (pg_server.connector_config(plain_src, schemas=["public"]), ascii_dst),
        }
        for case, (source, dst_db) in syncs.items():
            conn_file = write_connection(
                workdir, source, pg_server.connector_config(dst_db, schema="public"), name=case
            )
            run = pgbyte("sync", str(conn_file), password=pg_server.password)
            with psycopg.connect(pg_server.conninfo(dst_db), autocommit=True) as dst:
                dst.execute("SET client_encoding = 'UTF8'")
                tables = {
                    t: dst.execute(
                        sql.SQL("SELECT id, v FROM public.{} ORDER BY id").format(sql.Identifier(t))
                    ).fetchall()
                    for (t,) in dst.execute(
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                    ).fetchall()
                    if not t.startswith("_airbyte_raw_")
                }
            out[case] = (run, tables)
        return out
    finally:
        for db in [src_db, ascii_dst, plain_src, *dsts.values()]:
            pg_server.drop_database(db)


def test_sql_ascii_source_syncs_valid_text(sql_ascii) -> None:
    """A SQL_ASCII source with a plain config syncs its valid UTF-8 table."""
    run, tables = sql_ascii["plain"]
    assert tables.get("good") == [(1, "café")], run.stdout + run.stderr


def test_sql_ascii_source_with_utf8_param_syncs_valid_text(sql_ascii) -> None:
    """With client_encoding=UTF8 in jdbc_url_params, the valid UTF-8 table is synced."""
    run, tables = sql_ascii["utf8_param"]
    assert tables.get("good") == [(1, "café")], run.stdout + run.stderr


def test_sql_ascii_invalid_bytes_fail_their_stream_clearly(sql_ascii) -> None:
    """A Latin-1 byte in a SQL_ASCII source fails that stream only, with an error naming it."""
    run, tables = sql_ascii["utf8_param"]
    reason = [line for line in run.stdout.splitlines() if line.startswith("Reason:")]
    assert (run.returncode, "bad" in tables, "public.bad" in " ".join(reason)) == (1, False, True)


def test_sql_ascii_destination_receives_text(sql_ascii) -> None:
    """A UTF-8 source synced into a SQL_ASCII destination database lands its rows."""
    run, tables = sql_ascii["ascii_dest"]
    assert tables.get("good") == [(1, "café")], run.stdout + run.stderr


# --- incremental cursors of awkward types ----------------------------------------------------

CURSORS: dict[str, dict[str, Any]] = yaml.safe_load((HERE / "cursors.yaml").read_text())
CURSOR = 'Cur "sor"'


@pytest.fixture(scope="module")
def incremental(pg_server, tmp_path_factory):
    """Two incremental append syncs per cursor type (source with non-default TimeZone and
    DateStyle), rows added in between. Returns (runs, {name: sorted raw ids})."""
    workdir = tmp_path_factory.mktemp("incremental")
    column = sql.Identifier(CURSOR)
    with throwaway_databases(pg_server, "rt_src", "rt_dst") as (src_db, dst_db):
        with psycopg.connect(pg_server.conninfo(src_db), autocommit=True) as src:
            for setting in ("TimeZone = 'Asia/Kolkata'", "DateStyle = 'SQL, DMY'"):
                src.execute(f"ALTER DATABASE {src_db} SET {setting}")
        with psycopg.connect(pg_server.conninfo(src_db), autocommit=True) as src:
            src.execute("CREATE EXTENSION citext; CREATE TYPE mood AS ENUM ('sad', 'happy')")

            def insert(name: str, values: list[str]) -> None:
                for value in values:
                    src.execute(
                        sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                            sql.Identifier(f"inc_{name}"), column, sql.SQL(value)
                        )
                    )

            for name, case in CURSORS.items():
                src.execute(
                    sql.SQL("CREATE TABLE {} (id serial PRIMARY KEY, {} {})").format(
                        sql.Identifier(f"inc_{name}"), column, sql.SQL(case["type"])
                    )
                )
                insert(name, case["first"])
            streams = [
                {"name": f"inc_{name}", "sync_mode": "incremental",
                 "destination_sync_mode": "append", "cursor_field": [CURSOR]}
                for name in CURSORS
            ]  # fmt: skip
            conn_file = write_connection(
                workdir,
                pg_server.connector_config(src_db, schemas=["public"]),
                pg_server.connector_config(dst_db, schema="public"),
                name="incremental",
                streams=streams,
            )
            runs = [pgbyte("sync", str(conn_file), password=pg_server.password)]
            for name, case in CURSORS.items():
                insert(name, case["later"])
            runs.append(pgbyte("sync", str(conn_file), password=pg_server.password))
        with psycopg.connect(pg_server.conninfo(dst_db), autocommit=True) as dst:
            ids = {
                name: [
                    r[0]
                    for r in dst.execute(
                        sql.SQL("SELECT (_airbyte_data ->> 'id')::int FROM {} ORDER BY 1").format(
                            sql.Identifier(f"_airbyte_raw_inc_{name}")
                        )
                    )
                ]
                for name in CURSORS
            }
        return runs, ids


def test_incremental_syncs_succeed(incremental) -> None:
    """Both incremental syncs over every cursor type exit 0."""
    runs, _ = incremental
    assert [r.returncode for r in runs] == [0, 0], runs[-1].stdout + runs[-1].stderr


@pytest.mark.parametrize("name", list(CURSORS))
def test_incremental_cursor_reads_each_row_once(incremental, name) -> None:
    """Over two syncs every row arrives exactly once, whatever the cursor's type."""
    case = CURSORS[name]
    assert incremental[1][name] == list(range(1, len(case["first"]) + len(case["later"]) + 1))


# --- a table with inheritance children (not declarative partitions) --------------------------

INHERIT_ROWS = 2000


@pytest.fixture(scope="module")
def inherited(pg_server, tmp_path_factory):
    """A parent of 10 rows with a child table of the rest, synced by full refresh, by Xmin and
    by an unindexed cursor (first loads). Returns {case: (run, raw row count)}."""
    src_db = f"rt_src_{uuid.uuid4().hex[:8]}"
    pg_server.create_database(src_db)
    workdir = tmp_path_factory.mktemp("inherited")
    out = {}
    try:
        with psycopg.connect(pg_server.conninfo(src_db), autocommit=True) as src:
            src.execute("CREATE TABLE parent (id int, ts timestamptz, pad text)")
            src.execute("INSERT INTO parent SELECT g, now(), 'p' FROM generate_series(1, 10) g")
            src.execute("CREATE TABLE child (extra int) INHERITS (parent)")
            src.execute(
                "INSERT INTO child SELECT g, now(), repeat('x', 200), 1 "
                "FROM generate_series(11, %s) g",
                (INHERIT_ROWS,),
            )
            src.execute("ANALYZE")
        cases = {
            "full_refresh": ({"method": "Standard"}, {"sync_mode": "full_refresh"}),
            "xmin": ({"method": "Xmin"}, {"sync_mode": "incremental"}),
            "cursor": (
                {"method": "Standard"}, {"sync_mode": "incremental", "cursor_field": ["ts"]}
            ),
        }  # fmt: skip
        for case, (method, stream) in cases.items():
            dst_db = f"rt_dst_{case}_{uuid.uuid4().hex[:8]}"
            pg_server.create_database(dst_db)
            try:
                conn_file = write_connection(
                    workdir,
                    pg_server.connector_config(
                        src_db, schemas=["public"], replication_method=method
                    ),
                    pg_server.connector_config(dst_db, schema="public"),
                    name=case,
                    streams=[{"name": "parent", "destination_sync_mode": "append", **stream}],
                )
                run = pgbyte("sync", str(conn_file), password=pg_server.password)
                with psycopg.connect(pg_server.conninfo(dst_db), autocommit=True) as dst:
                    count = dst.execute("SELECT count(*) FROM _airbyte_raw_parent").fetchone()[0]
                out[case] = (run, count)
            finally:
                pg_server.drop_database(dst_db)
        return out
    finally:
        pg_server.drop_database(src_db)


def test_inherited_full_refresh_reads_children(inherited) -> None:
    """A full refresh of a parent table reads its children's rows too (as SELECT does)."""
    run, count = inherited["full_refresh"]
    assert (run.returncode, count) == (0, INHERIT_ROWS), run.stdout + run.stderr


def test_inherited_xmin_first_load_reads_children(inherited) -> None:
    """The first Xmin sync of a parent table reads every row a full refresh reads."""
    run, count = inherited["xmin"]
    assert (run.returncode, count) == (0, INHERIT_ROWS), run.stdout + run.stderr


def test_inherited_cursor_first_load_reads_children(inherited) -> None:
    """The first sync by an unindexed cursor of a parent table reads every row."""
    run, count = inherited["cursor"]
    assert (run.returncode, count) == (0, INHERIT_ROWS), run.stdout + run.stderr
