"""Regression tests for source defects the roundtrip module found: tables with INHERITS
children read by ctid, inet host addresses, timetz offsets with seconds, composite arrays,
multi-dimensional arrays of converted elements.

Each reads through the real console script (discover's mapping, then read).
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from xmin_helpers import ids, read, stream_entry

CHILD_ROWS = 2000


@pytest.fixture
def inherited(source_conn: psycopg.Connection) -> psycopg.Connection:
    """A parent of 10 rows whose INHERITS child holds rows 11..2010 in many more blocks."""
    source_conn.execute("CREATE TABLE parent (id int, ts timestamptz, pad text)")
    source_conn.execute("INSERT INTO parent SELECT g, now(), 'p' FROM generate_series(1, 10) g")
    source_conn.execute("CREATE TABLE child (extra int) INHERITS (parent)")
    source_conn.execute(
        "INSERT INTO child SELECT g, now(), repeat('x', 200), 1 "
        "FROM generate_series(11, 10 + %s) g",
        (CHILD_ROWS,),
    )
    source_conn.execute("ANALYZE")
    return source_conn


def test_inherits_parent_xmin_first_load_reads_child_rows(
    inherited, source_config: dict, tmp_path: Path
) -> None:
    """The first Xmin load of a table with INHERITS children reads its children's rows too."""
    config = {**source_config, "replication_method": {"method": "Xmin"}}
    run = read(tmp_path, config, [stream_entry("parent", ["id", "ts", "pad"])], chunk=50)
    assert run.returncode == 0, run.stdout + run.stderr
    assert ids(run, "parent") == list(range(1, 11 + CHILD_ROWS))


def test_inherits_parent_unindexed_cursor_first_load_reads_child_rows(
    inherited, source_config: dict, tmp_path: Path
) -> None:
    """The first load by an unindexed cursor of a table with INHERITS children reads them all."""
    entry = stream_entry("parent", ["id", "ts", "pad"])
    entry["stream"]["source_defined_cursor"] = False
    entry["cursor_field"] = ["ts"]
    run = read(tmp_path, source_config, [entry], chunk=50)
    assert run.returncode == 0, run.stdout + run.stderr
    assert ids(run, "parent") == list(range(1, 11 + CHILD_ROWS))


def test_inet_host_addresses_print_without_mask(source_conn, discover_and_read) -> None:
    """inet values print as inet's output does: hosts without /32 or /128, networks with it."""
    source_conn.execute("CREATE TABLE nets (id int, v inet, a inet[])")
    source_conn.execute(
        "INSERT INTO nets VALUES (1, '::1', '{10.0.0.1,::1,10.0.0.0/8,NULL}'), "
        "(2, '10.0.0.1', NULL), (3, '192.168.0.1/24', '{}')"
    )
    _, run = discover_and_read("nets")
    assert run.returncode == 0, run.stdout + run.stderr
    rows = sorted(run.data("nets"), key=lambda r: r["id"])
    assert [(r["v"], r["a"]) for r in rows] == [
        ("::1", ["10.0.0.1", "::1", "10.0.0.0/8", None]),
        ("10.0.0.1", None),
        ("192.168.0.1/24", []),
    ]


def test_timetz_offsets_keep_their_seconds(source_conn, discover_and_read) -> None:
    """timetz offsets with seconds print them (+01:02:03); whole-minute offsets stay +HH:MM."""
    source_conn.execute("CREATE TABLE times (id int, v timetz, a timetz[])")
    source_conn.execute(
        "INSERT INTO times VALUES (1, '10:00:00+01:02:03', '{10:00:00-01:02:03}'), "
        "(2, '10:00:00+05:30', '{10:00:00+00}')"
    )
    _, run = discover_and_read("times")
    assert run.returncode == 0, run.stdout + run.stderr
    rows = sorted(run.data("times"), key=lambda r: r["id"])
    assert [(r["v"], r["a"]) for r in rows] == [
        ("10:00:00+01:02:03", ["10:00:00-01:02:03"]),
        ("10:00:00+05:30", ["10:00:00Z"]),
    ]


def test_composite_arrays_keep_every_field(source_conn, discover_and_read) -> None:
    """Arrays of composites (also through domains) hold each element's full text form."""
    source_conn.execute("CREATE TYPE pair AS (a int, b text)")
    source_conn.execute("CREATE DOMAIN dpair AS pair")
    source_conn.execute("CREATE DOMAIN pairlist AS pair[]")
    source_conn.execute("CREATE TABLE pairs (id int, a pair[], d dpair[], l pairlist)")
    source_conn.execute(
        "INSERT INTO pairs VALUES (1, ARRAY[ROW(1, 'a b')::pair, NULL, ROW(NULL, 'q\"u')::pair], "
        "ARRAY[ROW(2, 'c')::dpair], ARRAY[ROW(3, 'd')::pair])"
    )
    _, run = discover_and_read("pairs")
    assert run.returncode == 0, run.stdout + run.stderr
    (row,) = run.data("pairs")
    assert (row["a"], row["d"], row["l"]) == (
        ['(1,"a b")', None, '(,"q""u")'],
        ["(2,c)"],
        ["(3,d)"],
    )


def test_multidimensional_converted_arrays_keep_their_shape(source_conn, discover_and_read) -> None:
    """2-D and 3-D arrays of converted elements (here timestamps) keep rows, columns and NULLs
    in place, whatever the lower bounds; a 4-D one comes out flat."""
    source_conn.execute("CREATE TABLE grids (id int, v timestamp[])")
    source_conn.execute(
        "INSERT INTO grids SELECT 1, array(SELECT array(SELECT CASE WHEN (i + j) % 5 = 0 THEN NULL "
        "ELSE timestamp '2024-01-01' + (i * 100 + j) * interval '1 second' END "
        "FROM generate_series(1, 40) j) FROM generate_series(1, 30) i)"
    )
    source_conn.execute(
        "INSERT INTO grids VALUES (2, '[0:1][5:7][1:2]={{{2024-01-01,NULL},{2024-01-02,2024-01-03},"
        "{NULL,NULL}},{{2024-01-04,2024-01-05},{2024-01-06,2024-01-07},{2024-01-08,NULL}}}'), "
        "(3, '{{{{2024-01-01}},{{2024-01-02}}}}')"
    )
    _, run = discover_and_read("grids")
    assert run.returncode == 0, run.stdout + run.stderr
    got = {r["id"]: r["v"] for r in run.data("grids")}

    def ts(day: int | None = None, second: int = 0) -> str:
        return f"2024-01-{day or 1:02d}T00:{second // 60:02d}:{second % 60:02d}.000000"

    grid = [[None if (i + j) % 5 == 0 else ts(second=i * 100 + j) for j in range(1, 41)]
            for i in range(1, 31)]  # fmt: skip
    cube = [
        [[ts(1), None], [ts(2), ts(3)], [None, None]],
        [[ts(4), ts(5)], [ts(6), ts(7)], [ts(8), None]],
    ]
    assert got == {1: grid, 2: cube, 3: [ts(1), ts(2)]}


def test_user_types_named_like_builtins_are_their_own(source_conn, discover_and_read) -> None:
    """An enum named "numeric" in another schema is an enum (a string), not PostgreSQL's
    numeric: discover said number and the read failed on a numeric-only expression."""
    source_conn.execute("CREATE TYPE public.\"numeric\" AS ENUM ('low', 'high')")
    source_conn.execute('CREATE TABLE en (id int, lvl public."numeric", lvls public."numeric"[])')
    source_conn.execute("INSERT INTO en VALUES (1, 'high', '{low,high}')")
    discovered, read = discover_and_read("en")
    props = discovered.stream("en")["json_schema"]["properties"]
    assert "string" in props["lvl"]["type"], props["lvl"]
    assert read.returncode == 0, read.stdout
    assert read.data("en") == [{"id": 1, "lvl": "high", "lvls": ["low", "high"]}]


def test_in_process_read_keeps_integers_beyond_64_bits(source_conn, source_config) -> None:
    """The CDK class's read (in-process, as the CDK's launch() and standard tests run it) and
    the CDK's printing of its messages keep a numeric(40,0) value's every digit, as the console
    script does (orjson had made it a float)."""
    import logging

    from airbyte_cdk.entrypoint import AirbyteEntrypoint
    from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer, Type
    from source_postgres.source import SourcePostgres

    big = -1234567890123456789012345678901234567890
    source_conn.execute("CREATE TABLE wide (id int PRIMARY KEY, n numeric(40,0))")
    source_conn.execute("INSERT INTO wide VALUES (1, %s)", (big,))
    entry = stream_entry("wide", ["id", "n"], sync_mode="full_refresh")
    catalog = ConfiguredAirbyteCatalogSerializer.load({"streams": [entry]})
    messages = list(SourcePostgres().read(logging.getLogger("t"), source_config, catalog))
    (record,) = [m for m in messages if m.type == Type.RECORD]
    assert record.record.data["n"] == big and isinstance(record.record.data["n"], int)
    assert f'"n": {big}' in AirbyteEntrypoint.airbyte_message_to_string(record)


def test_in_process_read_refuses_a_fraction_beyond_a_double(source_conn, source_config) -> None:
    """A numeric with a fraction and over 308 digits cannot be the CDK's float: the in-process
    read fails naming the console script, instead of printing null (float infinity)."""
    import logging

    from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer
    from airbyte_cdk.utils.traced_exception import AirbyteTracedException
    from source_postgres.source import SourcePostgres

    source_conn.execute("CREATE TABLE huge (id int PRIMARY KEY, n numeric)")
    source_conn.execute("INSERT INTO huge VALUES (1, ('9' || repeat('0', 400) || '.5')::numeric)")
    entry = stream_entry("huge", ["id", "n"], sync_mode="full_refresh")
    catalog = ConfiguredAirbyteCatalogSerializer.load({"streams": [entry]})
    with pytest.raises(AirbyteTracedException, match="source-postgres read"):
        list(SourcePostgres().read(logging.getLogger("t"), source_config, catalog))
