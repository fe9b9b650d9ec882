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


@pytest.mark.parametrize("mode", ["append", "append_dedup", "overwrite"])
def test_typed_table_catches_up_after_disable_type_dedupe(run_write, dest_conn, dest_config, mode):
    """Records written while disable_type_dedupe was on reached the raw table only; turned off
    again, the typed table stayed behind for good (only a missing one was rebuilt). The raw
    table is now marked, and the next typed write types the raw records its typed table
    lacks: append holds each record once, append_dedup the latest per key. An overwrite
    replaces both tables anyway."""
    from dest_helpers import catalog_for, record

    props = {"id": {"type": "integer"}, "v": {"type": "string"}}
    catalog = catalog_for([("toggle", props)], mode)
    if mode == "append_dedup":
        catalog["streams"][0]["primary_key"] = [["id"]]
    raw_only = {**dest_config, "disable_type_dedupe": True}
    writes = [  # (config, records) in order
        (dest_config, [{"id": 1, "v": "a"}]),
        (raw_only, [{"id": 2, "v": "b"}, {"id": 1, "v": "a2"}]),
        (dest_config, [{"id": 3, "v": "c"}]),
    ]
    for config, data in writes:
        result = run_write(catalog, b"\n".join(record("toggle", d) for d in data), config=config)
        assert result.returncode == 0, result.errors
    rows = dest_conn.execute("SELECT id, v FROM toggle ORDER BY id, v").fetchall()
    expected = {
        "append": [(1, "a"), (1, "a2"), (2, "b"), (3, "c")],
        "append_dedup": [(1, "a2"), (2, "b"), (3, "c")],
        "overwrite": [(3, "c")],
    }[mode]
    assert rows == expected
    raw = dest_conn.execute("SELECT count(*) FROM _airbyte_raw_toggle").fetchone()[0]
    assert raw == {"append": 4, "append_dedup": 4, "overwrite": 1}[mode]
    comment = "SELECT obj_description('_airbyte_raw_toggle'::regclass, 'pg_class')"
    assert dest_conn.execute(comment).fetchone() == (None,)  # caught up: the mark is gone
    if mode != "overwrite":
        assert any("lacked 2 record(s)" in m for m in result.logs), result.logs


def test_a_catch_up_deletes_no_typed_row(run_write, dest_conn, dest_config) -> None:
    """The catch-up types only raw records the typed table lacks; it deletes nothing: typed
    rows whose raw records are gone (a raw table emptied or renamed) stay, and a user's table
    referencing the typed one ON DELETE CASCADE keeps its rows."""
    from dest_helpers import catalog_for, record

    catalog = catalog_for([("kept", {"id": {"type": "integer"}})], "append_dedup")
    catalog["streams"][0]["primary_key"] = [["id"]]
    assert run_write(catalog, record("kept", {"id": 1})).returncode == 0
    dest_conn.execute("CREATE TABLE orders (kid bigint REFERENCES kept (id) ON DELETE CASCADE)")
    dest_conn.execute("ALTER TABLE kept ADD PRIMARY KEY (id)")
    dest_conn.execute("INSERT INTO orders VALUES (1)")
    dest_conn.execute("TRUNCATE _airbyte_raw_kept")
    raw_only = {**dest_config, "disable_type_dedupe": True}
    assert run_write(catalog, record("kept", {"id": 2}), config=raw_only).returncode == 0
    assert run_write(catalog, record("kept", {"id": 3})).returncode == 0
    assert dest_conn.execute("SELECT array_agg(id ORDER BY id) FROM kept").fetchone() == (
        [1, 2, 3],
    )
    assert dest_conn.execute("SELECT count(*) FROM orders").fetchone() == (1,)


def test_a_raw_only_write_by_a_role_that_does_not_own_the_raw_table(
    run_write, dest_conn, dest_config
) -> None:
    """Marking the raw table (a COMMENT) needs its owner; a role that may only INSERT wrote
    raw-only before the mark existed, and still does, with a WARN saying what to do."""
    from db_roles import throwaway_role
    from dest_helpers import catalog_for, record

    catalog = catalog_for([("owned", {"id": {"type": "integer"}})], "append")
    assert run_write(catalog, record("owned", {"id": 1})).returncode == 0
    with throwaway_role(dest_conn, "pgbyte_writer", "writer-pw-12345"):
        dest_conn.execute("GRANT USAGE, CREATE ON SCHEMA public TO pgbyte_writer")
        dest_conn.execute("GRANT SELECT, INSERT ON owned, _airbyte_raw_owned TO pgbyte_writer")
        config = {**dest_config, "username": "pgbyte_writer", "password": "writer-pw-12345",
                  "disable_type_dedupe": True}  # fmt: skip
        result = run_write(catalog, record("owned", {"id": 2}), config=config)
        assert result.returncode == 0, result.errors
        assert any("could not be marked" in m for m in result.logs), result.logs
    assert dest_conn.execute("SELECT count(*) FROM _airbyte_raw_owned").fetchone() == (2,)
