"""Round trips of every PostgreSQL type and awkward table shape through the real `pgbyte sync`.

Data no other test wrote:
- per-type tables from tests/fixtures/orchestrator/roundtrip/types.yaml (edge values, NULLs) and
  the same values side by side in one wide table; the awkward shapes of setup.sql (odd
  identifiers, 63-byte names, partitions, views, no primary key, empty, 10 MB values, 200
  columns). One module fixture builds the source in a database whose DateStyle, IntervalStyle,
  TimeZone and extra_float_digits are not the defaults, captures `source-postgres read`, runs
  `pgbyte sync` and the plain shell pipe `source-postgres read | destination-postgres write`;
- streams a destination cannot take as they are (raw-name collision, 1,600 columns);
- append_dedup on keys of awkward types (dedup_keys.sql), column types changing between append
  syncs, SQL_ASCII databases, incremental cursors of awkward types (cursors.yaml), and a table
  with INHERITS children.
Each test checks one value or one shape. Known defects are xfail(strict=True) with their cause.
"""

from __future__ import annotations

import decimal
import hashlib
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from orchestrator_helpers import FIXTURES, console_script, pgbyte, write_connection
from psycopg import sql

HERE = FIXTURES / "roundtrip"
TYPES: list[dict[str, Any]] = yaml.safe_load((HERE / "types.yaml").read_text())
WIDE_COLUMNS = 200
LONG_TABLE = "tbl_63_bytes_" + "x" * 50


def parse_json(text: str) -> Any:
    """JSON with numbers as exact decimals (floats would hide lost digits)."""
    return json.loads(text, parse_float=decimal.Decimal, parse_int=decimal.Decimal)


def _cases(kind: str) -> list[Any]:
    """(type entry, row id, value entry) for every value, plus each type's NULL row; a value's
    `xfail` marks the raw/wide/typed checks (or those in its `xfail_in`) as a known defect."""
    out = []
    for entry in TYPES:
        values = [*entry["values"], {"sql": "NULL", "json": "null", "typed": None}]
        for row_id, value in enumerate(values, 1):
            marks = []
            if "xfail" in value and kind in value.get("xfail_in", ["raw", "wide", "typed"]):
                marks = [pytest.mark.xfail(strict=True, reason=value["xfail"])]
            out.append(
                pytest.param(entry, row_id, value, id=f"{entry['name']}-{row_id}", marks=marks)
            )
    return out


def expected_raw(value: dict[str, Any]) -> Any:
    return value["text"] if "text" in value else parse_json(value["json"])


def expected_typed(value: dict[str, Any]) -> Any:
    return value["typed"] if "typed" in value else value.get("text")


def _create_source(conn: psycopg.Connection) -> None:
    conn.execute((HERE / "setup.sql").read_text())
    for entry in TYPES:
        table = sql.Identifier(f"t_{entry['name']}")
        conn.execute(
            sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, v {})").format(
                table, sql.SQL(entry["type"])
            )
        )
        for row_id, value in enumerate([*entry["values"], {"sql": "NULL"}], 1):
            conn.execute(
                sql.SQL("INSERT INTO {} VALUES ({}, {})").format(
                    table, sql.Literal(row_id), sql.SQL(value["sql"])
                )
            )
    # The same values side by side: row i of all_types holds value i of every type.
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(f"c_{e['name']}"), sql.SQL(e["type"])) for e in TYPES
    )
    conn.execute(sql.SQL("CREATE TABLE all_types (id int PRIMARY KEY, {})").format(columns))
    rows = max(len(e["values"]) for e in TYPES) + 1
    for row_id in range(1, rows + 1):
        conn.execute(
            sql.SQL("INSERT INTO all_types SELECT {} AS id, {}").format(
                sql.Literal(row_id),
                sql.SQL(", ").join(
                    sql.SQL("(SELECT v FROM {} WHERE id = {})").format(
                        sql.Identifier(f"t_{e['name']}"), sql.Literal(row_id)
                    )
                    for e in TYPES
                ),
            )
        )
    wide = sql.SQL(", ").join(
        sql.SQL("{} int").format(sql.Identifier(f"c{i:03d}")) for i in range(WIDE_COLUMNS)
    )
    conn.execute(sql.SQL("CREATE TABLE wide_200 (id int PRIMARY KEY, {})").format(wide))
    conn.execute(
        sql.SQL("INSERT INTO wide_200 VALUES (1, {})").format(
            sql.SQL(", ").join(sql.Literal(i) for i in range(WIDE_COLUMNS))
        )
    )
    conn.execute("ANALYZE")


@pytest.fixture(scope="module")
def roundtrip(pg_server, tmp_path_factory):
    """Build the source, capture `source-postgres read`, run `pgbyte sync` once."""
    src_db, dst_db = f"rt_src_{uuid.uuid4().hex[:8]}", f"rt_dst_{uuid.uuid4().hex[:8]}"
    pg_server.create_database(src_db)
    pg_server.create_database(dst_db)
    workdir = tmp_path_factory.mktemp("roundtrip")
    with psycopg.connect(pg_server.conninfo(src_db), autocommit=True) as src:
        # Settings a user's database may carry: the connectors must not depend on defaults.
        for setting in (
            "DateStyle = 'SQL, DMY'", "IntervalStyle = 'sql_standard'",
            "TimeZone = 'Asia/Kolkata'", "extra_float_digits = 0",
        ):  # fmt: skip
            src.execute(f"ALTER DATABASE {src_db} SET {setting}")
    with psycopg.connect(pg_server.conninfo(dst_db), autocommit=True) as dst:
        for setting in ("DateStyle = 'German, DMY'", "TimeZone = 'America/St_Johns'"):
            dst.execute(f"ALTER DATABASE {dst_db} SET {setting}")
    with psycopg.connect(pg_server.conninfo(src_db), autocommit=True) as src:
        _create_source(src)
    source = pg_server.connector_config(src_db, schemas=["public", "Mixed Schema"])
    dest = pg_server.connector_config(dst_db, schema="public")
    conn_file = write_connection(workdir, source, dest, name="roundtrip")
    result: dict[str, Any] = {"workdir": workdir}

    # What the source prints, read directly (for meta.changes, which no destination table keeps).
    catalog = _catalog(conn_file, pg_server.password)
    result["catalog"] = catalog
    result["source_records"], result["source_run"] = _source_read(
        workdir, source, catalog, pg_server.password
    )
    result["sync"] = pgbyte("sync", str(conn_file), password=pg_server.password, timeout=600)
    pipe_db = f"rt_pipe_{uuid.uuid4().hex[:8]}"
    pg_server.create_database(pipe_db)
    result["pipe"] = _pipe(workdir, pg_server, pipe_db)
    pipe = psycopg.connect(pg_server.conninfo(pipe_db), autocommit=True)
    result["pipe_dst"] = pipe
    dst = psycopg.connect(pg_server.conninfo(dst_db), autocommit=True)
    for conn in (dst, pipe):
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("SET DateStyle = 'ISO, YMD'")
        conn.execute("SET IntervalStyle = 'postgres'")
    result["dst"] = dst
    try:
        yield result
    finally:
        dst.close()
        pipe.close()
        pg_server.drop_database(pipe_db)
        pg_server.drop_database(src_db)
        pg_server.drop_database(dst_db)


def _catalog(conn_file: Path, password: str) -> dict[str, Any]:
    run = pgbyte("discover", str(conn_file), "--json", password=password)
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(run.stdout)


def _source_read(
    workdir: Path, source: dict[str, Any], catalog: dict[str, Any], password: str
) -> tuple[dict[tuple[str, Any], dict[str, Any]], subprocess.CompletedProcess[bytes]]:
    config = workdir / "source.json"
    config.write_text(json.dumps({**source, "password": password}))
    configured = workdir / "catalog.json"
    streams = [
        {"stream": s, "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"}
        for s in catalog["streams"]
    ]
    configured.write_text(json.dumps({"streams": streams}))
    run = subprocess.run(
        [console_script("source-postgres"), "read", "--config", str(config), "--catalog",
         str(configured)],
        capture_output=True, timeout=600, check=False,
    )  # fmt: skip
    records: dict[tuple[str, Any], dict[str, Any]] = {}
    for line in run.stdout.split(b"\n"):
        if not line.startswith(b'{"type":"RECORD"'):
            continue
        record = parse_json(line)["record"]
        records.setdefault((record.get("namespace"), record["stream"]), []).append(record)
        if record["stream"].startswith(("t_", "all_")):
            records[(record["stream"], record["data"]["id"])] = record
    return records, run


def _pipe(workdir: Path, pg_server, dst_db: str) -> subprocess.CompletedProcess[bytes]:
    """`source-postgres read | destination-postgres write` in a shell, as a user pipes them."""
    dest = workdir / "dest.json"
    dest.write_text(json.dumps(pg_server.connector_config(dst_db, schema="public")))
    script = (
        f"set -o pipefail; {console_script('source-postgres')} read --config source.json "
        f"--catalog catalog.json | {console_script('destination-postgres')} write "
        "--config dest.json --catalog catalog.json"
    )
    return subprocess.run(
        ["bash", "-c", script], cwd=workdir, capture_output=True, timeout=600, check=False
    )


def raw_value(roundtrip, table: str, row_id: int, column: str = "v") -> Any:
    row = (
        roundtrip["dst"]
        .execute(
            sql.SQL(
                "SELECT (_airbyte_data -> {})::text FROM {} WHERE _airbyte_data ->> 'id' = {}"
            ).format(
                sql.Literal(column),
                sql.Identifier(f"_airbyte_raw_{table}"),
                sql.Literal(str(row_id)),
            )
        )
        .fetchone()
    )
    assert row is not None, f"no raw row {row_id} in {table}"
    return parse_json(row[0])


def typed_value(roundtrip, table: str, row_id: int, column: str = "v") -> tuple[str, Any]:
    """(format_type of the column, its value as text — or parsed for numbers and jsonb)."""
    dst = roundtrip["dst"]
    pg_type = dst.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attname = %s",
        (sql.Identifier(table).as_string(dst), column),
    ).fetchone()
    assert pg_type is not None, f"no column {column} in {table}"
    row = dst.execute(
        sql.SQL("SELECT {}::text FROM {} WHERE id = {}").format(
            sql.Identifier(column), sql.Identifier(table), sql.Literal(row_id)
        )
    ).fetchone()
    assert row is not None, f"no typed row {row_id} in {table}"
    return pg_type[0], row[0]


def comparable(pg_type: str, text: str | None) -> Any:
    if text is None:
        return None
    if pg_type in ("bigint", "numeric"):
        return decimal.Decimal(text)
    if pg_type == "jsonb":
        return parse_json(text)
    return text


# --- the sync itself -------------------------------------------------------------------------


def test_sync_succeeds(roundtrip) -> None:
    """`pgbyte sync` of every type and shape exits 0."""
    run = roundtrip["sync"]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def test_source_read_succeeds(roundtrip) -> None:
    """`source-postgres read` of every stream exits 0 and prints no TRACE ERROR."""
    run = roundtrip["source_run"]
    assert run.returncode == 0 and b'"ERROR"' not in run.stdout, run.stderr[-3000:]


def _sort_key(data: Any) -> str:
    return json.dumps(data, sort_keys=True, default=float)


def test_raw_tables_hold_exactly_the_source_records(roundtrip) -> None:
    """For every stream, the raw table's `_airbyte_data` rows equal the RECORDs the source
    printed (all values, all keys, all rows)."""
    dst = roundtrip["dst"]
    mismatched, compared = [], 0
    for key, records in roundtrip["source_records"].items():
        if not isinstance(records, list):
            continue
        namespace, stream = key
        raw = sql.Identifier(namespace or "public", f"_airbyte_raw_{stream}")
        if len(f"_airbyte_raw_{stream}".encode()) > 63:
            continue  # shortened: checked by the 63-byte tests
        got = [
            parse_json(r[0])
            for r in dst.execute(sql.SQL("SELECT _airbyte_data::text FROM {}").format(raw))
        ]
        want = [r["data"] for r in records]
        compared += 1
        if sorted(got, key=_sort_key) != sorted(want, key=_sort_key):
            mismatched.append(stream)
    assert (mismatched, compared > len(TYPES)) == ([], True)


def test_shell_pipe_succeeds(roundtrip) -> None:
    """`source-postgres read | destination-postgres write` of every stream exits 0."""
    run = roundtrip["pipe"]
    assert run.returncode == 0, run.stderr[-3000:]


def test_shell_pipe_types_like_pgbyte(roundtrip) -> None:
    """The shell pipe and `pgbyte sync` leave the same typed values in every per-type table."""
    differ = []
    for entry in TYPES:
        query = sql.SQL("SELECT id, v::text FROM public.{} ORDER BY id").format(
            sql.Identifier(f"t_{entry['name']}")
        )
        ours = roundtrip["dst"].execute(query).fetchall()
        theirs = roundtrip["pipe_dst"].execute(query).fetchall()
        if ours != theirs:
            differ.append(entry["name"])
    assert differ == []


# --- one value per test ----------------------------------------------------------------------


@pytest.mark.parametrize(("entry", "row_id", "value"), _cases("raw"))
def test_raw_value(roundtrip, entry, row_id, value) -> None:
    """`_airbyte_data.v` in the raw table holds the value as Airbyte's JSON carries it."""
    assert raw_value(roundtrip, f"t_{entry['name']}", row_id) == expected_raw(value)


@pytest.mark.parametrize(("entry", "row_id", "value"), _cases("wide"))
def test_raw_value_in_wide_table(roundtrip, entry, row_id, value) -> None:
    """The same value in a column of the all-types table arrives the same."""
    got = raw_value(roundtrip, "all_types", row_id, f"c_{entry['name']}")
    assert got == expected_raw(value)


@pytest.mark.parametrize(("entry", "row_id", "value"), _cases("typed"))
def test_typed_value(roundtrip, entry, row_id, value) -> None:
    """The typed column has the expected Postgres type and holds the value."""
    pg_type, text = typed_value(roundtrip, f"t_{entry['name']}", row_id)
    assert (pg_type, comparable(pg_type, text)) == (
        entry["column"],
        comparable(entry["column"], expected_typed(value)),
    )


@pytest.mark.parametrize(("entry", "row_id", "value"), _cases("changes"))
def test_source_reports_nulled_values(roundtrip, entry, row_id, value) -> None:
    """Exactly the NaN/±Infinity values are nulled with a meta.changes entry by the source."""
    record = roundtrip["source_records"][(f"t_{entry['name']}", row_id)]
    assert isinstance(record, dict)
    changes = record.get("meta", {}).get("changes", [])
    expected = (
        [{"field": "v", "change": "NULLED", "reason": "SOURCE_SERIALIZATION_ERROR"}]
        if value.get("change")
        else []
    )
    assert changes == expected


@pytest.mark.parametrize("entry", TYPES, ids=[e["name"] for e in TYPES])
def test_discovered_schema(roundtrip, entry) -> None:
    """discover gives the column the JSON schema Airbyte's source-postgres gives it."""
    stream = next(s for s in roundtrip["catalog"]["streams"] if s["name"] == f"t_{entry['name']}")
    schema = dict(stream["json_schema"]["properties"]["v"])
    types = schema.pop("type")
    expected = dict(entry["schema"])
    assert (types, schema) == (["null", expected.pop("type")], expected)


# --- awkward shapes --------------------------------------------------------------------------


def rows(roundtrip, query: sql.Composable | str, params: tuple = ()) -> list[tuple]:
    return roundtrip["dst"].execute(query, params).fetchall()


def table_rows(roundtrip, table: str, columns: list[str], schema: str = "public") -> list[tuple]:
    return rows(
        roundtrip,
        sql.SQL("SELECT {} FROM {}.{} ORDER BY 1").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in columns),
            sql.Identifier(schema),
            sql.Identifier(table),
        ),
    )


def columns_of(roundtrip, table: str, schema: str = "public") -> list[str]:
    return [
        r[0]
        for r in rows(
            roundtrip,
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (schema, table),
        )
    ]


def dest_tables(roundtrip, like: str) -> list[tuple[str, str]]:
    return rows(
        roundtrip,
        "SELECT schemaname, tablename FROM pg_tables WHERE tablename LIKE %s ORDER BY 1, 2",
        (like,),
    )


def test_weird_identifiers_keep_their_names(roundtrip) -> None:
    """Columns named with spaces, quotes, upper case, reserved words and unicode arrive as is."""
    table = 'Weird "Names" Table'
    names = ["ID", "select", "Upper Case", "with space", 'quote"d', "ünïcödé", "dot.col", "a-b"]
    assert table_rows(roundtrip, table, [*names, "user"]) == [
        (1, "s", "U", "w", "q", "ü", "d", "ab", "u")
    ]


def test_weird_identifiers_raw_keys(roundtrip) -> None:
    """The raw table keeps the original column names as JSON keys."""
    data = rows(roundtrip, sql.SQL("SELECT _airbyte_data FROM public.{}").format(
        sql.Identifier('_airbyte_raw_Weird "Names" Table')))  # fmt: skip
    assert data == [
        ({"ID": 1, "select": "s", "Upper Case": "U", "with space": "w", 'quote"d': "q",
          "ünïcödé": "ü", "dot.col": "d", "a-b": "ab", "user": "u"},)
    ]  # fmt: skip


def test_63_byte_table_name_gets_both_tables(roundtrip) -> None:
    """A 63-byte stream name gets a typed table of that name and a shortened raw table."""
    raw = dest_tables(roundtrip, "\\_airbyte\\_raw\\_tbl\\_63%")
    typed = dest_tables(roundtrip, LONG_TABLE)
    assert (len(raw), typed) == (1, [("public", LONG_TABLE)])
    assert len(raw[0][1].encode()) <= 63
    assert table_rows(roundtrip, LONG_TABLE, ["id", "v"]) == [(1, "long")]


def test_63_byte_multibyte_names(roundtrip) -> None:
    """Names of 2-byte characters at the 63-byte limit load (shortened on a character boundary)."""
    table, column = "ü" * 31 + "x", "é" * 31 + "y"
    assert table_rows(roundtrip, table, ["id", column]) == [(1, "accents")]
    raw = dest_tables(roundtrip, "\\_airbyte\\_raw\\_ü%")
    assert len(raw) == 1 and len(raw[0][1].encode()) <= 63


def test_long_column_names(roundtrip) -> None:
    """Two 63-byte column names sharing a long prefix stay two columns with their values."""
    a = "col_63_bytes_" + "y" * 48 + "_a"
    b = a[:-1] + "b"
    assert table_rows(roundtrip, "long_columns", ["id", a, b]) == [(1, 10, 20)]


def test_generated_and_identity_columns(roundtrip) -> None:
    """Generated (stored) and identity columns arrive with their values."""
    assert table_rows(roundtrip, "generated_cols", ["id", "a", "doubled"]) == [
        (1, 21, 42), (2, None, None)
    ]  # fmt: skip


def test_partitioned_table_is_one_stream(roundtrip) -> None:
    """A partitioned table arrives as one table with the rows of every partition, and no
    partition arrives on its own."""
    got = table_rows(roundtrip, "measurements", ["id", "region", "v"])
    assert got == [
        (1, "eu", decimal.Decimal("1.5")),
        (2, "us", decimal.Decimal("2.5")),
        (3, "eu", None),
    ]
    assert dest_tables(roundtrip, "%measurements\\_eu") == []


def test_view_rows(roundtrip) -> None:
    """A view is synced like a table."""
    assert table_rows(roundtrip, "measurements_view", ["id", "twice"]) == [
        (1, decimal.Decimal("3.0")), (2, decimal.Decimal("5.0")), (3, None)
    ]  # fmt: skip


def test_materialized_view_rows(roundtrip) -> None:
    """A materialized view is synced like a table."""
    assert table_rows(roundtrip, "measurements_matview", ["region", "n"]) == [("eu", 2), ("us", 1)]


def test_table_without_primary_key_keeps_duplicates(roundtrip) -> None:
    """A table without primary key arrives with its duplicate rows and its all-NULL row."""
    assert table_rows(roundtrip, "no_pk", ["a", "b"]) == [(1, "dup"), (1, "dup"), (None, None)]


def test_empty_table_gets_empty_tables(roundtrip) -> None:
    """An empty source table gets both destination tables, empty, with its columns."""
    assert table_rows(roundtrip, "empty_table", ["id", "v"]) == []
    assert table_rows(roundtrip, "_airbyte_raw_empty_table", ["_airbyte_data"]) == []


def test_big_text_value_is_exact(roundtrip) -> None:
    """A 10 MB text and a 1 MB bytea arrive byte for byte (typed text; base64 in raw)."""
    got = rows(roundtrip, "SELECT md5(t), length(t), decode(b, 'base64') FROM big_values")
    expected_text = '0123456789abcdef "quoted" \\ back \t tab \n line ü 😀 ' * 209716
    assert got == [
        (
            hashlib.md5(expected_text.encode()).hexdigest(),
            len(expected_text),
            bytes.fromhex("00ff10203040" * 174763),
        )
    ]


def test_wide_table(roundtrip) -> None:
    """A 200-column table arrives with every column and value."""
    names = [f"c{i:03d}" for i in range(WIDE_COLUMNS)]
    assert table_rows(roundtrip, "wide_200", ["id", *names]) == [(1, *range(WIDE_COLUMNS))]


def test_same_table_name_in_two_schemas(roundtrip) -> None:
    """Tables of one name in two source schemas land in two destination schemas."""
    got = [table_rows(roundtrip, "same_name", ["v"], schema=s) for s in ("public", "Mixed Schema")]
    assert got == [[("public",)], [("mixed",)]]


def test_table_names_differing_by_case(roundtrip) -> None:
    """ "Users" and users stay two tables."""
    got = [table_rows(roundtrip, t, ["v"]) for t in ("Users", "users")]
    assert got == [[("upper",)], [("lower",)]]


def test_columns_named_like_metadata(roundtrip) -> None:
    """Source columns named like _airbyte_* metadata keep their values beside the real metadata."""
    columns = columns_of(roundtrip, "meta_names")
    data = [c for c in columns if c.startswith("_airbyte_") and c.endswith("_1")]
    values = table_rows(roundtrip, "meta_names", data)
    assert values == [("not a uuid", "not a time", "n", "h")]


def test_dropped_and_added_columns(roundtrip) -> None:
    """A dropped column is not synced; a column added with a default has it for old rows."""
    got = table_rows(roundtrip, "altered", ["id", "a", "c", "added"])
    assert (got, "gone" in columns_of(roundtrip, "altered")) == ([(1, 1, 3, 7)], False)


def test_no_cast_warnings(roundtrip) -> None:
    """No value of the source failed its typed cast (pgbyte reports none)."""
    run = roundtrip["sync"]
    assert "cast" not in (run.stdout + run.stderr).lower(), run.stderr[-3000:]


# --- shapes a destination cannot take as they are --------------------------------------------


def _sync_source(pg_server, workdir: Path, setup: str) -> tuple[subprocess.CompletedProcess, list]:
    """Sync a fresh source built by `setup` into a fresh destination: (the run, its tables)."""
    src_db, dst_db = f"rt_src_{uuid.uuid4().hex[:8]}", f"rt_dst_{uuid.uuid4().hex[:8]}"
    pg_server.create_database(src_db)
    pg_server.create_database(dst_db)
    try:
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
    finally:
        pg_server.drop_database(src_db)
        pg_server.drop_database(dst_db)


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
    src_db, dst_db = f"rt_src_{uuid.uuid4().hex[:8]}", f"rt_dst_{uuid.uuid4().hex[:8]}"
    pg_server.create_database(src_db)
    pg_server.create_database(dst_db)
    workdir = tmp_path_factory.mktemp("dedup")
    try:
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
    finally:
        pg_server.drop_database(src_db)
        pg_server.drop_database(dst_db)


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
    src_db, dst_db = f"rt_src_{uuid.uuid4().hex[:8]}", f"rt_dst_{uuid.uuid4().hex[:8]}"
    pg_server.create_database(src_db)
    pg_server.create_database(dst_db)
    workdir = tmp_path_factory.mktemp("evolve")
    try:
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
    finally:
        pg_server.drop_database(src_db)
        pg_server.drop_database(dst_db)


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


def _ascii_database(pg_server, name: str) -> None:
    with psycopg.connect(pg_server.conninfo("postgres"), autocommit=True) as admin:
        admin.execute(
            sql.SQL(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING 'SQL_ASCII' "
                "LC_COLLATE 'C' LC_CTYPE 'C'"
            ).format(sql.Identifier(name))
        )


@pytest.fixture(scope="module")
def sql_ascii(pg_server, tmp_path_factory):
    """A SQL_ASCII source holding valid UTF-8 (table good) and a Latin-1 byte (table bad),
    synced with a plain config and with jdbc_url_params client_encoding=UTF8; and a UTF-8
    source synced into a SQL_ASCII destination. Returns {case: (run, {table: rows})}."""
    tag = uuid.uuid4().hex[:8]
    src_db, ascii_dst, plain_src = f"rt_ascii_{tag}", f"rt_ascii_dst_{tag}", f"rt_utf8_{tag}"
    dsts = {case: f"rt_dst_{case}_{tag}" for case in ("plain", "utf8_param")}
    _ascii_database(pg_server, src_db)
    _ascii_database(pg_server, ascii_dst)
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
    src_db, dst_db = f"rt_src_{uuid.uuid4().hex[:8]}", f"rt_dst_{uuid.uuid4().hex[:8]}"
    pg_server.create_database(src_db)
    pg_server.create_database(dst_db)
    workdir = tmp_path_factory.mktemp("incremental")
    column = sql.Identifier(CURSOR)
    try:
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
    finally:
        pg_server.drop_database(src_db)
        pg_server.drop_database(dst_db)


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
