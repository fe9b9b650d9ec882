"""Every shape of RECORD line loads the same: the fast path (canonical lines sliced to their
data), the slow path (anything else, parsed), and fast batches Postgres refuses (redone)."""

from __future__ import annotations

import json
from decimal import Decimal

from dest_helpers import FIXTURES, catalog_for

PROPS = {"id": {"type": "integer"}, "v": {"type": "number"}, "s": {"type": "string"}}


def test_all_line_shapes_load_identically(run_write, dest_conn) -> None:
    """CDK order, source order, namespaces, spaces, reordered keys, meta, tabs: all 9 load."""
    result = run_write(catalog_for([("fmt", PROPS)], "overwrite"), FIXTURES / "formats.jsonl")
    assert result.returncode == 0, result.errors
    rows = dest_conn.execute("SELECT id, v FROM fmt ORDER BY id").fetchall()
    exact = Decimal("1.10000000000000000001")
    assert rows == [(i, None if i == 7 else exact) for i in range(1, 10)]


def test_raw_data_is_the_data_object(run_write, dest_conn) -> None:
    """The raw table holds exactly each record's data (no envelope, no meta), digits intact."""
    assert (
        run_write(catalog_for([("fmt", PROPS)], "append"), FIXTURES / "formats.jsonl").returncode
        == 0
    )
    raw = dest_conn.execute(
        "SELECT _airbyte_data::text FROM _airbyte_raw_fmt ORDER BY (_airbyte_data->>'id')::int"
    ).fetchall()
    assert raw[0][0] == '{"s": "cdk order", "v": 1.10000000000000000001, "id": 1}'
    assert raw[7][0].endswith('"id": 8}') and "tab\\tin\\tstring and \\\\ backslash" in raw[7][0]
    assert all(set(json.loads(r[0])) == {"id", "v", "s"} for r in raw)
