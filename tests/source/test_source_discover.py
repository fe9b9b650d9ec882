"""`source-postgres discover` through the console script: types, keys, names, privileges."""

from __future__ import annotations

import json
import uuid

from db_roles import throwaway_role
from psycopg import sql
from source_helpers import FIXTURES, run_source

WEIRD_NAMES = [
    "with space",
    'with "quotes"',
    "UpperCase",
    "ünïcødé_表",
    "select",
    "a" * 63,
]


def discover(write_json, config: dict):
    result = run_source("discover", "--config", write_json("config.json", config))
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_all_types_map_to_airbyte_schemas(source_conn, source_config, write_json) -> None:
    """Each supported Postgres type gets the JSON schema of the mapping table."""
    source_conn.execute((FIXTURES / "all_types.sql").read_text())
    expected = json.loads((FIXTURES / "all_types.expected.json").read_text())["properties"]
    stream = discover(write_json, source_config).stream("all_types")
    assert stream["json_schema"]["properties"] == expected


def test_stream_metadata(source_conn, source_config, write_json) -> None:
    """Streams carry namespace, primary key, both sync modes and no source-defined cursor."""
    source_conn.execute("CREATE TABLE t (a int, b text, c int, PRIMARY KEY (c, a))")
    stream = discover(write_json, source_config).stream("t")
    assert stream["namespace"] == "public"
    assert stream["source_defined_primary_key"] == [["c"], ["a"]]
    assert stream["supported_sync_modes"] == ["full_refresh", "incremental"]
    assert stream["source_defined_cursor"] is False
    assert stream.get("is_resumable") is not True


def test_weird_names_are_discovered_exactly(source_conn, source_config, write_json) -> None:
    """Names with spaces, quotes, case, unicode, reserved words or 63 bytes stay exact."""
    for name in WEIRD_NAMES:
        source_conn.execute(
            sql.SQL("CREATE TABLE {} ({} int)").format(sql.Identifier(name), sql.Identifier(name))
        )
    result = discover(write_json, source_config)
    for name in WEIRD_NAMES:
        assert list(result.stream(name)["json_schema"]["properties"]) == [name]


def test_line_separators_in_names_keep_the_catalog_line_whole(
    source_conn, source_config, write_json
) -> None:
    """U+2028, U+2029 and U+0085 in names are escaped: str.splitlines() keeps the CATALOG line
    whole, and it parses to the exact names."""
    source_conn.execute('CREATE TABLE "t\u0085u" ("a\u2028b" int, "c\u2029d" int)')
    result = run_source("discover", "--config", write_json("config.json", source_config))
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if '"CATALOG"' in line]
    (stream,) = json.loads(line)["catalog"]["streams"]
    assert (stream["name"], list(stream["json_schema"]["properties"])) == (
        "t\u0085u",
        ["a\u2028b", "c\u2029d"],
    )


def test_views_matviews_and_partitioned_tables(source_conn, source_config, write_json) -> None:
    """Views, materialized views and partitioned parents are streams; partitions are not."""
    source_conn.execute(
        "CREATE TABLE base (id int primary key, v text);"
        "CREATE VIEW v AS SELECT id, v FROM base;"
        "CREATE MATERIALIZED VIEW mv AS SELECT id FROM base;"
        "CREATE TABLE parted (id int, k int) PARTITION BY RANGE (k);"
        "CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10);"
    )
    names = {s["name"] for s in discover(write_json, source_config).catalog["streams"]}
    assert names == {"base", "v", "mv", "parted"}


def test_partitions_whose_parent_is_not_listed_are_streams(
    source_conn, source_config, write_json
) -> None:
    """A partition is left out only when its parent is listed: one whose parent lies in a
    schema not configured, or one a role may read while its parent it may not, is a stream
    of its own (before: its rows could not be synced at all)."""
    role = f"parts_{uuid.uuid4().hex[:8]}"
    source_conn.execute(
        "CREATE SCHEMA s3; CREATE TABLE public.pp (id int, r int) PARTITION BY LIST (r);"
        "CREATE TABLE s3.pp_1 PARTITION OF public.pp FOR VALUES IN (1);"
        "CREATE TABLE s3.plain (a int)"
    )
    in_s3 = discover(write_json, {**source_config, "schemas": ["s3"]}).catalog["streams"]
    assert sorted(s["name"] for s in in_s3) == ["plain", "pp_1"]
    both = discover(write_json, {**source_config, "schemas": ["public", "s3"]}).catalog["streams"]
    assert sorted(s["name"] for s in both) == ["plain", "pp"]
    # Two levels, the middle one outside the configured schemas: the root covers the leaf.
    source_conn.execute(
        "CREATE SCHEMA s4; CREATE TABLE public.ml (id int, r int, q int) PARTITION BY LIST (r);"
        "CREATE TABLE s4.ml_mid PARTITION OF public.ml FOR VALUES IN (1) PARTITION BY LIST (q);"
        "CREATE TABLE s3.ml_leaf PARTITION OF s4.ml_mid FOR VALUES IN (1)"
    )
    both = discover(write_json, {**source_config, "schemas": ["public", "s3"]}).catalog["streams"]
    assert sorted(s["name"] for s in both) == ["ml", "plain", "pp"]
    in_s3 = discover(write_json, {**source_config, "schemas": ["s3"]}).catalog["streams"]
    assert sorted(s["name"] for s in in_s3) == ["ml_leaf", "plain", "pp_1"]
    with throwaway_role(source_conn, role, "pw-123456789"):
        grants = "GRANT USAGE ON SCHEMA s3 TO {r}; GRANT SELECT ON s3.pp_1 TO {r}"
        source_conn.execute(sql.SQL(grants).format(r=sql.Identifier(role)))
        config = {**source_config, "username": role, "password": "pw-123456789",
                  "schemas": ["public", "s3"]}  # fmt: skip
        streams = discover(write_json, config).catalog["streams"]
        assert [(s["namespace"], s["name"]) for s in streams] == [("s3", "pp_1")]
        checked = run_source("check", "--config", write_json("c.json", config))
        assert checked.connection_status["status"] == "SUCCEEDED", checked.stdout


def test_only_configured_schemas(source_conn, source_config, write_json) -> None:
    """Streams come from the configured schemas only, with namespace = schema."""
    source_conn.execute("CREATE SCHEMA one; CREATE SCHEMA two; CREATE TABLE one.a (id int);")
    source_conn.execute("CREATE TABLE two.b (id int); CREATE TABLE public.c (id int)")
    streams = discover(write_json, {**source_config, "schemas": ["one", "two"]}).catalog["streams"]
    assert sorted((s["namespace"], s["name"]) for s in streams) == [("one", "a"), ("two", "b")]


def test_empty_schema_list_means_all_user_schemas(source_conn, source_config, write_json) -> None:
    """schemas: [] discovers every non-system schema."""
    source_conn.execute("CREATE SCHEMA one; CREATE TABLE one.a (id int); CREATE TABLE c (id int)")
    streams = discover(write_json, {**source_config, "schemas": []}).catalog["streams"]
    assert sorted((s["namespace"], s["name"]) for s in streams) == [("one", "a"), ("public", "c")]


def test_privileges_limit_tables_and_columns(source_conn, source_config, write_json) -> None:
    """Only tables and columns the user can SELECT are discovered."""
    role = f"reader_{uuid.uuid4().hex[:8]}"
    with throwaway_role(source_conn, role, "pw-123456789"):
        source_conn.execute("CREATE TABLE open (id int, v text); CREATE TABLE closed (id int)")
        source_conn.execute("CREATE TABLE partial (id int primary key, secret text)")
        source_conn.execute(sql.SQL("GRANT SELECT ON open TO {}").format(sql.Identifier(role)))
        source_conn.execute(
            sql.SQL("GRANT SELECT (secret) ON partial TO {}").format(sql.Identifier(role))
        )
        config = {**source_config, "username": role, "password": "pw-123456789"}
        result = discover(write_json, config)
        assert {s["name"] for s in result.catalog["streams"]} == {"open", "partial"}
        partial = result.stream("partial")
        assert list(partial["json_schema"]["properties"]) == ["secret"]
        assert partial["source_defined_primary_key"] == []


def test_thousand_tables_in_one_discover(source_conn, source_config, write_json) -> None:
    """A database with 1,000 tables is discovered whole (one catalog query, not one per table)."""
    source_conn.execute(
        "DO $$ BEGIN FOR i IN 1..1000 LOOP "
        "EXECUTE format('CREATE TABLE t_%s (id int primary key, v text, ts timestamptz)', i); "
        "END LOOP; END $$"
    )
    streams = discover(write_json, source_config).catalog["streams"]
    assert len(streams) == 1000
    assert all(s["source_defined_primary_key"] == [["id"]] for s in streams)


def test_a_configured_schema_that_does_not_exist_is_warned_about(
    source_conn, source_config, write_json
) -> None:
    """discover with a misspelled schema beside a real one lists the real one's tables and says
    in a WARN which schema does not exist (it printed an empty catalog, silently)."""
    source_conn.execute("CREATE TABLE t (id int)")
    result = discover(write_json, {**source_config, "schemas": ["public", "Public"]})
    names = [s["name"] for s in result.messages[-1]["catalog"]["streams"]]
    assert names == ["t"]
    warns = [m["log"]["message"] for m in result.of_type("LOG") if m["log"]["level"] == "WARN"]
    assert len(warns) == 1 and "Schema(s) 'Public' do not exist" in warns[0], warns
    assert not [m for m in discover(write_json, source_config).of_type("LOG")]
