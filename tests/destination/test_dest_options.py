"""Config options (drop_cascade, disable_type_dedupe, raw_data_schema, namespaces) and the
CDK-side class's in-process write."""

from __future__ import annotations

import json

import pytest
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
    message = result.errors[0]["message"]
    assert "drop_cascade" in message
    assert f"(view v depends on table {STREAM})" in message and "HINT" not in message, message
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


@pytest.mark.parametrize(
    ("extra", "tables"),
    [
        ({"basic_normalization": False}, [f"_airbyte_raw_{STREAM}"]),
        ({"basic_normalization": True}, [f"_airbyte_raw_{STREAM}", STREAM]),
        ({"basic_normalization": False, "disable_type_dedupe": False},
         [f"_airbyte_raw_{STREAM}", STREAM]),
    ],
    ids=["legacy-raw-only", "legacy-normalized", "disable_type_dedupe-wins"],
)  # fmt: skip
def test_legacy_basic_normalization(run_write, dest_conn, dest_config, extra, tables) -> None:
    """Airbyte's early configs' `basic_normalization: false` asks for raw tables only, as
    disable_type_dedupe does (which decides when both are given)."""
    result = run_write(CATALOG, SYNC1, config={**dest_config, **extra})
    assert result.returncode == 0, result.errors
    assert table_names(dest_conn) == tables


def test_raw_data_schema_and_namespace(run_write, dest_conn, dest_config) -> None:
    """Raw tables go to raw_data_schema, named after the stream's schema too; the typed table
    to the stream's namespace."""
    catalog = json.loads(CATALOG.read_text())
    catalog["streams"][0]["stream"]["namespace"] = "Sales Data"
    lines = SYNC1.read_bytes().replace(
        b'"stream":"overwrite_full_refresh_demo"',
        b'"stream":"overwrite_full_refresh_demo","namespace":"Sales Data"',
    )
    config = {**dest_config, "raw_data_schema": "airbyte_raw"}
    assert run_write(catalog, lines, config=config).returncode == 0
    assert table_names(dest_conn, "Sales Data") == [STREAM]
    assert table_names(dest_conn, "airbyte_raw") == [f"_airbyte_raw_Sales Data__{STREAM}"]
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


def _in_namespace(namespace: str, mode: str) -> tuple[dict, bytes]:
    catalog = json.loads(CATALOG.read_text())
    catalog["streams"][0]["stream"]["namespace"] = namespace
    catalog["streams"][0]["destination_sync_mode"] = mode
    lines = SYNC1.read_bytes().replace(
        b'"stream":"overwrite_full_refresh_demo"',
        f'"stream":"overwrite_full_refresh_demo","namespace":"{namespace}"'.encode(),
    )
    return catalog, lines


def test_raw_data_schema_keeps_same_named_streams_apart(run_write, dest_conn, dest_config):
    """Same-named streams of two namespaces, in one catalog or written by two connections, get
    a raw table each in raw_data_schema (before: one catalog was refused, and two connections
    shared one raw table, so an overwrite of one emptied the other's raw records and a typed
    table rebuilt from it took the other's rows)."""
    config = {**dest_config, "raw_data_schema": "airbyte_raw"}
    catalog, lines = _in_namespace("sales", "append")
    twin, twin_lines = _in_namespace("hr", "append")
    catalog["streams"] += twin["streams"]
    assert run_write(catalog, lines + twin_lines, config=config).returncode == 0
    assert table_names(dest_conn, "airbyte_raw") == [
        f"_airbyte_raw_hr__{STREAM}", f"_airbyte_raw_sales__{STREAM}"]  # fmt: skip
    other, other_lines = _in_namespace("sales", "overwrite")
    assert run_write(other, other_lines, config=config).returncode == 0  # another connection
    dest_conn.execute(f'DROP TABLE hr."{STREAM}"')  # rebuilt from its own raw records only
    again, again_lines = _in_namespace("hr", "append")
    assert run_write(again, again_lines, config=config).returncode == 0
    counts = dest_conn.execute(
        f'SELECT (SELECT count(*) FROM airbyte_raw."_airbyte_raw_hr__{STREAM}"),'
        f' (SELECT count(*) FROM hr."{STREAM}"), (SELECT count(*) FROM sales."{STREAM}")'
    ).fetchone()
    assert counts == (4, 4, 2)


def test_raw_data_schema_table_of_earlier_syncs_is_named(run_write, dest_conn, dest_config):
    """A raw table an earlier version made in raw_data_schema under the stream's name alone is
    left as it is, with a WARN saying where the raw records go now."""
    config = {**dest_config, "raw_data_schema": "airbyte_raw"}
    dest_conn.execute("CREATE SCHEMA airbyte_raw")
    dest_conn.execute(f'CREATE TABLE airbyte_raw."_airbyte_raw_{STREAM}" (_airbyte_ab_id uuid,'
                      " _airbyte_data jsonb, _airbyte_emitted_at timestamptz)")  # fmt: skip
    catalog, lines = _in_namespace("sales", "append")
    result = run_write(catalog, lines, config=config)
    assert result.returncode == 0, result.errors
    assert any(f"stay in airbyte_raw._airbyte_raw_{STREAM}" in m for m in result.logs), result.logs


def test_raw_data_schema_pairs_joining_alike_stay_apart(run_write, dest_conn, dest_config):
    """`sales__eu` + stream `x` and `sales` + stream `eu__x` both joined to `sales__eu__x`:
    written by two connections they shared one raw table, and an overwrite of one emptied the
    other's raw records. Such pairs now end with a hash of the pair."""
    config = {**dest_config, "raw_data_schema": "airbyte_raw"}
    first, first_lines = _in_namespace("sales__eu", "append")
    assert run_write(first, first_lines, config=config).returncode == 0
    second, second_lines = _in_namespace("sales", "overwrite")
    second["streams"][0]["stream"]["name"] = f"eu__{STREAM}"
    second_lines = second_lines.replace(f'"{STREAM}"'.encode(), f'"eu__{STREAM}"'.encode())
    assert run_write(second, second_lines, config=config).returncode == 0
    raw = table_names(dest_conn, "airbyte_raw")
    assert len(raw) == 2 and all(name.startswith("_airbyte_raw_sales__eu__") for name in raw)
    for name in raw:
        count = dest_conn.execute(f'SELECT count(*) FROM airbyte_raw."{name}"').fetchone()
        assert count == (2,), name


def test_raw_data_schema_ambiguous_name_of_earlier_syncs_is_named(
    run_write, dest_conn, dest_config
) -> None:
    """A raw table an earlier version named by the plain join for a pair that now carries a
    hash is left as it is, with a WARN saying where the raw records go now."""
    config = {**dest_config, "raw_data_schema": "airbyte_raw"}
    dest_conn.execute("CREATE SCHEMA airbyte_raw")
    dest_conn.execute(
        f'CREATE TABLE airbyte_raw."_airbyte_raw_sales__eu__{STREAM}" (_airbyte_ab_id uuid, '
        "_airbyte_data jsonb, _airbyte_emitted_at timestamptz)"
    )
    catalog, lines = _in_namespace("sales__eu", "append")
    result = run_write(catalog, lines, config=config)
    assert result.returncode == 0, result.errors
    assert any(f"stay in airbyte_raw._airbyte_raw_sales__eu__{STREAM}" in m for m in result.logs)


@pytest.mark.parametrize("mode", ["append", "append_dedup"])
def test_a_raw_only_write_beside_a_typed_table_says_how_to_catch_up(
    run_write, dest_conn, dest_config, mode
) -> None:
    """Records written while disable_type_dedupe is on reach the raw table only; the typed
    table an earlier sync made stays behind, silently before. The write now says so and what to
    do: dropping the typed table has the next sync rebuild it from every raw record (append:
    each once; append_dedup: the latest per key)."""
    from dest_helpers import catalog_for, record

    props = {"id": {"type": "integer"}, "v": {"type": "string"}}
    catalog = catalog_for([("toggle", props)], mode)
    if mode == "append_dedup":
        catalog["streams"][0]["primary_key"] = [["id"]]
    first = run_write(catalog, record("toggle", {"id": 1, "v": "a"}))
    assert first.returncode == 0, first.errors
    raw_only = {**dest_config, "disable_type_dedupe": True}
    data = b"\n".join(record("toggle", d) for d in ({"id": 2, "v": "b"}, {"id": 1, "v": "a2"}))
    second = run_write(catalog, data, config=raw_only)
    assert second.returncode == 0, second.errors
    (warn,) = [m for m in second.logs if "gets none of this write's records" in m]
    assert "drop public.toggle" in warn, warn
    dest_conn.execute("DROP TABLE toggle")
    third = run_write(catalog, record("toggle", {"id": 3, "v": "c"}))
    assert third.returncode == 0, third.errors
    rows = dest_conn.execute("SELECT id, v FROM toggle ORDER BY id, v").fetchall()
    assert (
        rows
        == {
            "append": [(1, "a"), (1, "a2"), (2, "b"), (3, "c")],
            "append_dedup": [(1, "a2"), (2, "b"), (3, "c")],
        }[mode]
    )
