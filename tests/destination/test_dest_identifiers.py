"""Identifier edge cases (fixture files): reserved words, case, spaces, quotes, unicode, and
names over 63 bytes, which are shortened with a stable hash so two never collide."""

from __future__ import annotations

import json

import psycopg
import pytest
from db_roles import throwaway_role
from dest_helpers import FIXTURES, catalog_for, column_types, count, record, table_names
from destination_postgres import ddl, naming
from psycopg import sql

CATALOG = FIXTURES / "identifiers_catalog.json"
RECORDS = FIXTURES / "identifiers_records.jsonl"
STREAMS = [s["stream"]["name"] for s in json.loads(CATALOG.read_text())["streams"]]


def test_every_stream_gets_its_two_tables(run_write, dest_conn) -> None:
    """Each stream has its raw and normalized table, short names kept exactly as given."""
    result = run_write(CATALOG, RECORDS)
    assert result.returncode == 0, result.errors
    expected = sorted(
        [naming.raw_table(s) for s in STREAMS] + [naming.normalized_table(s) for s in STREAMS]
    )
    assert table_names(dest_conn) == expected
    for short in ("select", "MixedCase_Stream", "with space", "quo\"te's", "ünïcödé_表"):
        assert short in expected and f"_airbyte_raw_{short}" in expected


def test_long_names_do_not_collide(run_write, dest_conn) -> None:
    """Two long stream names sharing 63 bytes land in different tables with one row each."""
    assert run_write(CATALOG, RECORDS).returncode == 0
    long_names = [s for s in STREAMS if len(s.encode()) > 63]
    tables = {naming.normalized_table(s) for s in long_names}
    assert len(tables) == 2
    for table in tables:
        assert len(table.encode()) <= 63
        assert count(dest_conn, table) == 1


def test_columns_keep_names_and_values(run_write, dest_conn) -> None:
    """Odd property names become columns (long ones shortened, distinct) holding their values."""
    assert run_write(CATALOG, RECORDS).returncode == 0
    cols = column_types(dest_conn, "select")
    for name in ("order", "Group", "two words", 'it\'s "q"', "naïve_列"):
        assert name in cols
    long_cols = [c for c in cols if c.startswith("ppp")]
    assert len(long_cols) == 2 and all(len(c.encode()) <= 63 for c in long_cols)
    row = dest_conn.execute(
        'SELECT "order", "Group", "two words", "it\'s ""q""", "naïve_列" FROM "select"'
    ).fetchone()
    assert row == (1, "g", "tw", "q", "u")


def test_shortening_is_stable() -> None:
    """The same long name always maps to the same identifier, and within 63 bytes."""
    name = "é" * 40
    assert naming.fit(name) == naming.fit(name)
    assert len(naming.fit(name).encode()) <= 63
    assert naming.fit(name) != naming.fit(name + "x")


def test_empty_and_nul_property_names_get_columns(run_write, dest_conn) -> None:
    """A property named "" gets the column "_"; one whose name holds \\u0000 loses the NUL, as
    the data's keys do; both load their values instead of failing the write."""
    line = (
        b'{"type":"RECORD","record":{"stream":"odd","emitted_at":1,'
        b'"data":{"id":1,"":"empty","a\\u0000b":"nul"}}}\n'
    )
    props = {"id": {"type": "integer"}, "": {"type": "string"}, "a\x00b": {"type": "string"}}
    result = run_write(catalog_for([("odd", props)], "append"), line)
    assert result.returncode == 0, result.errors
    assert dest_conn.execute('SELECT id, "_", ab FROM odd').fetchone() == (1, "empty", "nul")


def test_a_users_table_named_like_a_temporary_is_never_dropped(run_write, dest_conn) -> None:
    """A table of the user's named `_airbyte_tmp_<stream>` is where an overwrite would load: the
    write is refused naming it, and the table keeps its rows (before, it was dropped silently)."""
    dest_conn.execute('CREATE TABLE public."_airbyte_tmp_bar" (id int)')
    dest_conn.execute('INSERT INTO public."_airbyte_tmp_bar" VALUES (1), (2)')
    catalog = catalog_for([("bar", {"id": {"type": "integer"}})])
    result = run_write(catalog, record("bar", {"id": 7}) + b"\n")
    assert result.returncode != 0
    (error,) = result.errors
    assert error["failure_type"] == "config_error", error
    assert "public._airbyte_tmp_bar" in error["message"], error
    assert count(dest_conn, "_airbyte_tmp_bar") == 2


def test_streams_sharing_a_helper_name_are_refused(run_write, dest_conn) -> None:
    """One stream's table named like another's overwrite temporary or key index: refused at the
    start with both streams named, nothing written."""
    props = {"id": {"type": "integer"}}
    overwrite = catalog_for([("bar", props), ("_airbyte_tmp_bar", props)])
    dedup = catalog_for([("qux", props), ("_airbyte_pk_qux", props)], mode="append_dedup")
    for entry in dedup["streams"]:
        entry["primary_key"] = [["id"]]
    for catalog in (overwrite, dedup):
        result = run_write(catalog, b"")
        assert result.returncode != 0
        (error,) = result.errors
        assert error["failure_type"] == "config_error", error
        assert "would both write the name" in error["message"], error
    assert table_names(dest_conn) == []


def test_a_stream_named_like_another_streams_raw_table_is_refused(run_write, dest_conn) -> None:
    """Stream `_airbyte_raw_z` (a source replicating a database Airbyte writes to) in one
    connection, z in another: their typed and raw tables share a name. Each write is refused
    before changing anything (an overwrite swapped z's raw records away, an append added typed
    columns to them, and z's next write failed with a system_error)."""
    props = {"id": {"type": "integer"}, "v": {"type": "string"}}
    z = catalog_for([("z", props)], mode="append")
    assert run_write(z, record("z", {"id": 1, "v": "from z"}) + b"\n").returncode == 0
    for mode in ("overwrite", "append"):
        other = catalog_for([("_airbyte_raw_z", props)], mode=mode)
        result = run_write(other, record("_airbyte_raw_z", {"id": 2}) + b"\n")
        (error,) = result.errors
        assert (result.returncode, error["failure_type"]) == (1, "config_error"), error
        assert "its typed table public._airbyte_raw_z exists and is a raw table" in (
            error["message"]), error  # fmt: skip
    assert column_types(dest_conn, "_airbyte_raw_z") == {
        "_airbyte_ab_id": "uuid", "_airbyte_data": "jsonb",
        "_airbyte_emitted_at": "timestamp with time zone",
    }  # fmt: skip
    assert run_write(z, record("z", {"id": 3, "v": "z again"}) + b"\n").returncode == 0
    assert count(dest_conn, "_airbyte_raw_z") == 2
    # The other way round: the typed table of `_airbyte_raw_y` is there first, then y comes.
    named = catalog_for([("_airbyte_raw_y", props)], mode="append")
    assert run_write(named, record("_airbyte_raw_y", {"id": 1}) + b"\n").returncode == 0
    result = run_write(catalog_for([("y", props)], mode="append"), record("y", {"id": 2}) + b"\n")
    (error,) = result.errors
    assert (result.returncode, error["failure_type"]) == (1, "config_error"), error
    assert "public._airbyte_raw_y, where its raw records go, exists and is no raw table" in (
        error["message"]), error  # fmt: skip
    assert count(dest_conn, "_airbyte_raw_y") == 1


@pytest.mark.parametrize("mode", ["append", "overwrite"])
def test_a_typed_table_with_an_airbyte_data_column_is_no_raw_table(
    run_write, dest_conn, mode: str
) -> None:
    """Stream `_airbyte_raw_x` copied from Airbyte's own raw table has the properties
    _airbyte_ab_id, _airbyte_data, _airbyte_emitted_at: its typed table has an _airbyte_data
    column too. Stream x of another connection is still refused (an append wrote x's raw
    records into it, an overwrite replaced it), and the table keeps its row."""
    props = {"_airbyte_ab_id": {"type": "string"}, "_airbyte_data": {"type": "object"},
             "_airbyte_emitted_at": {"type": "string", "format": "date-time"}}  # fmt: skip
    copied = catalog_for([("_airbyte_raw_x", props)], mode="append")
    row = {"_airbyte_ab_id": "abc", "_airbyte_data": {"q": 1},
           "_airbyte_emitted_at": "2021-01-01T00:00:00Z"}  # fmt: skip
    assert run_write(copied, record("_airbyte_raw_x", row) + b"\n").returncode == 0
    x = catalog_for([("x", {"id": {"type": "integer"}})], mode=mode)
    result = run_write(x, record("x", {"id": 1}) + b"\n")
    (error,) = result.errors
    assert (result.returncode, error["failure_type"]) == (1, "config_error"), error
    assert "_airbyte_raw_x, where its raw records go, exists and is no raw table (it has " \
        "_airbyte_normalized_at" in error["message"], error  # fmt: skip
    assert dest_conn.execute(
        "SELECT _airbyte_ab_id_1, _airbyte_data FROM public._airbyte_raw_x"
    ).fetchall() == [("abc", {"q": 1})]  # fmt: skip
    assert run_write(copied, record("_airbyte_raw_x", row) + b"\n").returncode == 0


def test_a_users_relation_named_like_the_key_index_is_refused(run_write, dest_conn) -> None:
    """append_dedup's key index name taken by a table of the user's: a config_error naming it
    (was a system_error 'relation already exists' on every sync)."""
    dest_conn.execute('CREATE TABLE public."_airbyte_pk_qux" (id int)')
    catalog = catalog_for([("qux", {"id": {"type": "integer"}})], mode="append_dedup")
    catalog["streams"][0]["primary_key"] = [["id"]]
    result = run_write(catalog, record("qux", {"id": 1}) + b"\n")
    assert result.returncode != 0
    (error,) = result.errors
    assert error["failure_type"] == "config_error" and "_airbyte_pk_qux" in error["message"]


def test_an_unmarked_leftover_temporary_is_still_cleaned(run_write, dest_conn) -> None:
    """A temporary a killed write of an earlier version left (no mark, autovacuum off as every
    overwrite temporary is made) is dropped and the write goes on, not refused."""
    dest_conn.execute('CREATE TABLE public."_airbyte_tmp_bar" (id bigint) '
                      "WITH (autovacuum_enabled = off)")  # fmt: skip
    catalog = catalog_for([("bar", {"id": {"type": "integer"}})])
    result = run_write(catalog, record("bar", {"id": 7}) + b"\n")
    assert result.returncode == 0, result.errors
    assert count(dest_conn, "bar") == 1 and "_airbyte_tmp_bar" not in table_names(dest_conn)


def test_a_killed_overwrites_temporaries_go_even_when_its_stream_is_not_synced(
    run_write, dest_conn, pg_server, dest_db
) -> None:
    """Temporaries a killed overwrite left, of a stream the next write does not sync (removed
    from the connection), are dropped at that write's start; a live write's (its claim held)
    and a user's table of the same form but without pgbyte's mark are kept."""
    names = ["_airbyte_tmp_gone", "_airbyte_tmp__airbyte_raw_gone", "_airbyte_tmp_live"]
    for name in names:
        table = sql.Identifier("public", name)
        dest_conn.execute(sql.SQL("CREATE TABLE {} (id int)").format(table))
        dest_conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(
            table, sql.Literal(ddl.TEMPORARY_COMMENT)))  # fmt: skip
    dest_conn.execute('CREATE TABLE public."_airbyte_tmp_users_own" (id int)')
    with psycopg.connect(pg_server.conninfo(dest_db), autocommit=True) as live:
        live.execute(
            "SELECT pg_advisory_lock(%s, hashtext(format('%%I.%%I', 'public', %s::text)))",
            (ddl._TEMPORARIES_LOCK, "_airbyte_tmp_live"),
        )
        result = run_write(catalog_for([("other", {"id": {"type": "integer"}})]),
                           record("other", {"id": 1}) + b"\n")  # fmt: skip
        assert result.returncode == 0, result.errors
    tables = table_names(dest_conn)
    assert "_airbyte_tmp_gone" not in tables and "_airbyte_tmp__airbyte_raw_gone" not in tables
    assert "_airbyte_tmp_live" in tables and "_airbyte_tmp_users_own" in tables
    assert any("Dropped 2 temporary table(s) an interrupted overwrite left behind" in m
               for m in result.logs), result.logs  # fmt: skip


def test_another_roles_leftover_temporary_is_left_to_it(run_write, dest_conn, dest_config) -> None:
    """A marked temporary the writing role may not drop (another role's) is left alone: the
    write goes on (it failed on "must be owner")."""
    dest_conn.execute("CREATE SCHEMA shared")
    table = sql.Identifier("shared", "_airbyte_tmp_theirs")
    dest_conn.execute(sql.SQL("CREATE TABLE {} (id int)").format(table))
    dest_conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(
        table, sql.Literal(ddl.TEMPORARY_COMMENT)))  # fmt: skip
    with throwaway_role(dest_conn, "writer_b", "writer-Passw0rd-2"):
        dest_conn.execute("GRANT ALL ON SCHEMA shared TO writer_b")
        config = {**dest_config, "username": "writer_b", "password": "writer-Passw0rd-2",
                  "schema": "shared"}  # fmt: skip
        catalog = catalog_for([("mine", {"id": {"type": "integer"}})])
        result = run_write(catalog, record("mine", {"id": 1}) + b"\n", config)
        assert result.returncode == 0, result.errors
        assert "_airbyte_tmp_theirs" in table_names(dest_conn, "shared")
        assert count(dest_conn, "mine", "shared") == 1
        dest_conn.execute("DROP SCHEMA shared CASCADE")


def test_long_namespaces_do_not_collide(run_write, dest_conn) -> None:
    """Two namespaces sharing their first 63 bytes: two schemas (shortened with a hash, as
    table names are), each stream's rows in its own tables. PostgreSQL's truncation put both
    in one schema: the second stream failed, or a later sync replaced the first's table."""
    spaces = ["s" * 70 + "_a1", "s" * 70 + "_b2"]
    props = {"id": {"type": "integer"}, "src": {"type": "string"}}
    entries = [catalog_for([("t", props)], namespace=ns)["streams"][0] for ns in spaces]
    lines = []
    for ns in spaces:
        message = json.loads(record("t", {"id": 1, "src": ns}))
        message["record"]["namespace"] = ns
        lines.append(json.dumps(message).encode())
    result = run_write({"streams": entries}, b"\n".join(lines) + b"\n")
    assert result.returncode == 0, result.errors
    for ns in spaces:
        schema = naming.schema(ns)
        assert len(schema.encode()) <= 63
        row = dest_conn.execute(f'SELECT src FROM "{schema}"."t"').fetchall()
        assert row == [(ns,)]


def test_long_config_schemas_are_shortened_like_namespaces(dest_config) -> None:
    """`schema` and `raw_data_schema` over 63 bytes get the same hashed name a namespace would,
    never PostgreSQL's cut (two long names sharing 63 bytes stay apart)."""
    from destination_postgres.config import DestinationConfig

    a, b = "s" * 70 + "_a", "s" * 70 + "_b"
    one = DestinationConfig.from_dict({**dest_config, "schema": a, "raw_data_schema": b})
    assert (one.schema, one.raw_data_schema) == (naming.schema(a), naming.schema(b))
    assert one.schema != one.raw_data_schema
    assert max(len(one.schema.encode()), len(one.raw_data_schema.encode())) <= 63
    short = DestinationConfig.from_dict({**dest_config, "schema": "public"})
    assert (short.schema, short.raw_data_schema) == ("public", None)


def test_raw_data_schema_names_are_distinct_and_plain_where_unambiguous() -> None:
    """In raw_data_schema the join `<schema>__<stream>` stays as it was for names that bring
    no underscores to it; pairs that would join alike get names of their own."""
    plain = naming.raw_table("full_refresh_demo", "public")
    assert plain == "_airbyte_raw_public__full_refresh_demo"
    pairs = [("sales__eu", "x"), ("sales", "eu__x"), ("sales_", "_eu_x"), ("sales_", "eu__x"),
             ("sales", "_eu__x"), ("sales___eu", "x"), ("sales", "eu_x"),
             ("sales_eu", "x")]  # fmt: skip
    names = {naming.raw_table(stream, schema) for schema, stream in pairs}
    assert len(names) == len(pairs), names
    assert naming.ambiguous_raw_table("x", "sales__eu") == "_airbyte_raw_sales__eu__x"
    assert naming.ambiguous_raw_table("full_refresh_demo", "public") is None


def test_properties_named_like_system_or_merge_columns_get_suffixes(run_write, dest_conn) -> None:
    """Every PostgreSQL table has the system columns xmin, xmax, ctid…: a property of that name
    (a GIS extent's xmin/xmax) gets `_1` as a meta column's namesake does, in every mode. A
    property called `_pgbyte_rn` keeps its name: append_dedup's merge numbers its stage rows
    under a name no column has."""
    from test_dest_dedup import dedup_catalog, rec

    props = {n: {"type": "integer"} for n in ("id", "xmin", "xmax", "ctid", "tableoid", "cmin")}
    data = {"id": 1, "xmin": 10, "xmax": 20, "ctid": 30, "tableoid": 40, "cmin": 50}
    for mode in ("overwrite", "append"):
        result = run_write(catalog_for([(f"gis_{mode}", props)], mode), record(f"gis_{mode}", data))
        assert result.returncode == 0, result.errors
        row = dest_conn.execute(
            f"SELECT id, xmin_1, xmax_1, ctid_1, tableoid_1, cmin_1 FROM gis_{mode}"
        ).fetchone()
        assert row == (1, 10, 20, 30, 40, 50)
    props = {
        "id": {"type": "integer"},
        "_pgbyte_rn": {"type": "string"},
        "xmin": {"type": "integer"},
    }
    catalog = dedup_catalog("rn", props, [["id"]])
    first = run_write(catalog, rec("rn", {"id": 1, "_pgbyte_rn": "a", "xmin": 1}))
    assert first.returncode == 0, first.errors
    # A slow (spaced) line before a compact one: the merge numbers the stage rows (its `order`).
    second = run_write(catalog, b"\n".join([
        rec("rn", {"id": 2, "_pgbyte_rn": "b", "xmin": 2}),
        rec("rn", {"id": 1, "_pgbyte_rn": "c", "xmin": 3}, compact=True),
    ]))  # fmt: skip
    assert second.returncode == 0, second.errors
    rows = dest_conn.execute('SELECT id, "_pgbyte_rn", xmin_1 FROM rn ORDER BY id').fetchall()
    assert rows == [(1, "c", 3), (2, "b", 2)]


@pytest.mark.parametrize(
    ("renamed", "namesake", "column"),
    [("xmin", "xmin_1", "xmin_2"), ("", "_", "__1"),
     ("_airbyte_ab_id", "_airbyte_ab_id_1", "_airbyte_ab_id_2")],
)  # fmt: skip
def test_a_renamed_property_keeps_its_column_whatever_the_property_order(
    run_write, dest_conn, renamed: str, namesake: str, column: str
) -> None:
    """A property that cannot have its own name (a system or meta column's namesake, or "")
    beside a property already called what its column would be: a later sync listing the two
    in the other order writes each into the same column as before, not into the other's."""
    table = f"ord_{len(renamed)}"
    for n, names in enumerate([(renamed, namesake), (namesake, renamed)]):
        props = {name: {"type": "string"} for name in names}
        data = {renamed: f"renamed {n}", namesake: f"namesake {n}"}
        result = run_write(catalog_for([(table, props)], "append"), record(table, data))
        assert result.returncode == 0, result.errors
    rows = dest_conn.execute(
        sql.SQL("SELECT {}, {} FROM {} ORDER BY 1").format(
            sql.Identifier(namesake), sql.Identifier(column), sql.Identifier(table)
        )
    ).fetchall()
    assert rows == [("namesake 0", "renamed 0"), ("namesake 1", "renamed 1")]
    columns = {r[0] for r in dest_conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,)
    )}  # fmt: skip
    meta = {"_airbyte_ab_id", "_airbyte_emitted_at", "_airbyte_normalized_at",
            f"_airbyte_{table}_hashid"}  # fmt: skip
    assert columns - meta == {namesake, column}


@pytest.mark.parametrize("mode", ["overwrite", "append", "append_dedup"])
def test_a_view_named_like_the_stream_is_a_config_error(run_write, dest_conn, mode) -> None:
    """A view where the stream's typed table goes: a config_error naming it, before anything
    changes (it was a system_error: '"vx" is not a table', or for append a missing column),
    and the view stays."""
    dest_conn.execute("CREATE VIEW vx AS SELECT 1 AS id")
    catalog = catalog_for([("vx", {"id": {"type": "integer"}})], mode=mode)
    catalog["streams"][0]["primary_key"] = [["id"]]
    result = run_write(catalog, record("vx", {"id": 7}) + b"\n")
    (error,) = result.errors
    assert (result.returncode, error["failure_type"]) == (1, "config_error"), error
    assert "public.vx, a table of this stream, exists and is a view" in error["message"], error
    assert dest_conn.execute("SELECT id FROM vx").fetchall() == [(1,)]
    assert "_airbyte_raw_vx" not in table_names(dest_conn)
