"""Config options (drop_cascade, disable_type_dedupe, raw_data_schema, namespaces) and the
CDK-side class's in-process write."""

from __future__ import annotations

import json

from airbyte_cdk.models import AirbyteMessageSerializer, ConfiguredAirbyteCatalogSerializer
from dest_helpers import FIXTURES, table_names

CATALOG = FIXTURES / "tutorial_catalog_overwrite.json"
SYNC1 = FIXTURES / "tutorial_sync1_overwrite.jsonl"
SYNC2 = FIXTURES / "tutorial_sync2_overwrite.jsonl"
STREAM = "overwrite_full_refresh_demo"


def test_dependent_view_blocks_swap_without_drop_cascade(run_write, dest_conn) -> None:
    """A view on the table: the overwrite fails with advice and the old table stays."""
    run_write(CATALOG, SYNC1)
    dest_conn.execute(f"CREATE VIEW v AS SELECT * FROM {STREAM}")
    result = run_write(CATALOG, SYNC2)
    assert result.returncode != 0
    assert "drop_cascade" in result.errors[0]["message"]
    assert dest_conn.execute("SELECT count(*) FROM v").fetchone()[0] == 2
    # Its STATE waited for the swap, which failed: none echoed, so no client counts the
    # records as committed or saves the state.
    assert result.states == []


def test_drop_cascade_replaces_table_and_drops_view(run_write, dest_conn, dest_config) -> None:
    """drop_cascade: true swaps the new table in, dropping the dependent views, and a WARN
    names each one dropped (the user's objects do not vanish without a word)."""
    run_write(CATALOG, SYNC1)
    dest_conn.execute(f"CREATE VIEW v AS SELECT * FROM {STREAM}")
    dest_conn.execute(f"CREATE VIEW w1 AS SELECT * FROM _airbyte_raw_{STREAM}")
    dest_conn.execute(f"CREATE VIEW w2 AS SELECT * FROM _airbyte_raw_{STREAM}")
    result = run_write(CATALOG, SYNC2, config={**dest_config, "drop_cascade": True})
    assert result.returncode == 0, result.errors
    assert dest_conn.execute(f"SELECT count(*) FROM {STREAM}").fetchone()[0] == 3
    views = "SELECT count(*) FROM pg_views WHERE viewname IN ('v', 'w1', 'w2')"
    assert dest_conn.execute(views).fetchone()[0] == 0
    (dropped,) = [m for m in result.logs if "drop_cascade dropped" in m]
    assert all(f"view {v}" in dropped for v in ("v", "w1", "w2")), dropped


def test_disable_type_dedupe_writes_raw_only(run_write, dest_conn, dest_config) -> None:
    """disable_type_dedupe: true creates only the raw table."""
    result = run_write(CATALOG, SYNC1, config={**dest_config, "disable_type_dedupe": True})
    assert result.returncode == 0
    assert table_names(dest_conn) == [f"_airbyte_raw_{STREAM}"]


def test_raw_data_schema_and_namespace(run_write, dest_conn, dest_config) -> None:
    """Raw tables go to raw_data_schema; the typed table to the stream's namespace."""
    catalog = json.loads(CATALOG.read_text())
    catalog["streams"][0]["stream"]["namespace"] = "Sales Data"
    lines = SYNC1.read_bytes().replace(
        b'"stream":"overwrite_full_refresh_demo"',
        b'"stream":"overwrite_full_refresh_demo","namespace":"Sales Data"',
    )
    config = {**dest_config, "raw_data_schema": "airbyte_raw"}
    assert run_write(catalog, lines, config=config).returncode == 0
    assert table_names(dest_conn, "Sales Data") == [STREAM]
    assert table_names(dest_conn, "airbyte_raw") == [f"_airbyte_raw_{STREAM}"]
    assert table_names(dest_conn, "public") == []


def test_cdk_class_write_in_process(dest_config, dest_conn) -> None:
    """DestinationPostgres.write (the CDK interface) loads the rows and yields the STATE."""
    from destination_postgres import DestinationPostgres

    catalog = ConfiguredAirbyteCatalogSerializer.load(json.loads(CATALOG.read_text()))
    messages = [
        AirbyteMessageSerializer.load(json.loads(x)) for x in SYNC2.read_text().splitlines()
    ]
    out = list(DestinationPostgres().write(dest_config, catalog, iter(messages)))
    states = [m for m in out if m.state is not None]
    assert len(states) == 1
    assert dest_conn.execute(f"SELECT count(*) FROM {STREAM}").fetchone()[0] == 3


def test_disable_type_dedupe_needs_no_primary_key(run_write, dest_conn, dest_config) -> None:
    """append_dedup without a primary key loads under disable_type_dedupe (raw tables only:
    nothing is deduplicated, so nothing needs a key)."""
    catalog = json.loads(CATALOG.read_text())
    catalog["streams"][0]["destination_sync_mode"] = "append_dedup"
    catalog["streams"][0].pop("primary_key", None)
    catalog["streams"][0]["stream"].pop("source_defined_primary_key", None)
    config = {**dest_config, "disable_type_dedupe": True}
    result = run_write(catalog, SYNC1, config=config)
    assert result.returncode == 0, result.errors
    assert dest_conn.execute(f"SELECT count(*) FROM _airbyte_raw_{STREAM}").fetchone()[0] == 2
    refused = run_write(catalog, SYNC1)  # typed tables: the key is needed, and said so
    assert refused.returncode == 1 and "primary key" in refused.errors[0]["message"]


def test_raw_data_schema_collision_names_the_option(run_write, dest_config) -> None:
    """Same-named streams of two namespaces share raw_data_schema's raw table name: the error
    says so (different namespaces cannot help there)."""
    catalog = json.loads(CATALOG.read_text())
    twin = json.loads(json.dumps(catalog["streams"][0]))
    catalog["streams"][0]["stream"]["namespace"] = "sales"
    twin["stream"]["namespace"] = "hr"
    catalog["streams"].append(twin)
    result = run_write(catalog, b"", config={**dest_config, "raw_data_schema": "airbyte_raw"})
    assert result.returncode == 1
    assert "raw_data_schema 'airbyte_raw'" in result.errors[0]["message"]
