"""Round trips of every PostgreSQL type and awkward table shape through the real `pgbyte sync`.

Data no other test wrote:
- per-type tables from tests/fixtures/orchestrator/roundtrip/types.yaml (edge values, NULLs) and
  the same values side by side in one wide table; the awkward shapes of setup.sql (odd
  identifiers, 63-byte names, partitions, views, no primary key, empty, 10 MB values, 200
  columns). One module fixture builds the source in a database whose DateStyle, IntervalStyle,
  TimeZone and extra_float_digits are not the defaults, captures `source-postgres read`, runs
  `pgbyte sync` and the plain shell pipe `source-postgres read | destination-postgres write`.
Each test checks one value or one shape. Known defects are xfail(strict=True) with their cause.
Syncs of other shapes (collisions, 1,600 columns, dedup keys, type changes, SQL_ASCII, cursors,
INHERITS) are in test_roundtrip_shapes_e2e.py.
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
