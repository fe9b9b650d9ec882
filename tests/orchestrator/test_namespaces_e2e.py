"""Prefix and each namespace option, end to end with the real connectors."""

from __future__ import annotations

import pytest
from orchestrator_helpers import sync_json, write_connection


@pytest.mark.parametrize(
    "namespace,schema",
    [("source", "sales"), ("destination", "landing"), ("raw_${SOURCE_NAMESPACE}", "raw_sales")],
)
def test_namespace_option_picks_the_destination_schema(
    namespace, schema, tmp_path, pg_server, source_conn, source_config, dest_config, dest_conn
) -> None:
    """The prefixed table lands in the schema the namespace option names."""
    source_conn.execute("CREATE SCHEMA sales")
    source_conn.execute("CREATE TABLE sales.orders(id integer PRIMARY KEY, note text)")
    source_conn.execute("INSERT INTO sales.orders VALUES (1, 'a'), (2, 'b')")
    conn = write_connection(
        tmp_path, {**source_config, "schemas": ["sales"]}, {**dest_config, "schema": "landing"},
        prefix="p_", namespace=namespace,
    )  # fmt: skip
    run, _ = sync_json(conn, pg_server.password)
    assert run.returncode == 0, run.stderr
    tables = dest_conn.execute(
        "SELECT schemaname || '.' || tablename FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
    ).fetchall()
    assert [t[0] for t in tables] == [f"{schema}._airbyte_raw_p_orders", f"{schema}.p_orders"]


def test_summary_names_both_sides(tmp_path, pg_server, source_conn, source_config, dest_config):
    """The JSON summary gives the source and destination names of each stream and its counts."""
    source_conn.execute("CREATE TABLE users(id integer PRIMARY KEY)")
    source_conn.execute("INSERT INTO users SELECT generate_series(1, 7)")
    conn = write_connection(tmp_path, source_config, dest_config, prefix="x_",
                            namespace="raw_${SOURCE_NAMESPACE}")  # fmt: skip
    _, summary = sync_json(conn, pg_server.password)
    stream = summary["streams"][0]
    keys = ("stream", "namespace", "destination_stream", "destination_namespace",
            "records_emitted", "records_committed")  # fmt: skip
    assert [stream[k] for k in keys] == ["users", "public", "x_users", "raw_public", 7, 7]


def test_value_larger_than_a_block_arrives_whole(
    tmp_path, pg_server, source_conn, source_config, dest_config, dest_conn
) -> None:
    """A 3 MB value (a RECORD line spanning several 1 MiB reads) is renamed and loaded intact."""
    source_conn.execute("CREATE TABLE wide(id integer PRIMARY KEY, body text)")
    source_conn.execute("INSERT INTO wide VALUES (1, repeat('ab', 1500000)), (2, 'small')")
    conn = write_connection(tmp_path, source_config, dest_config, prefix="p_")
    run, _ = sync_json(conn, pg_server.password)
    assert run.returncode == 0, run.stderr
    rows = dest_conn.execute("SELECT id, length(body) FROM public.p_wide ORDER BY id").fetchall()
    assert rows == [(1, 3_000_000), (2, 5)]
