"""The tutorial's two syncs per mode, through the real console script, with hand-written files."""

from __future__ import annotations

import pytest
from dest_helpers import FIXTURES, column_types, count, table_names

RAW_COLUMNS = {
    "_airbyte_ab_id": "uuid",
    "_airbyte_data": "jsonb",
    "_airbyte_emitted_at": "timestamp with time zone",
}


def _sync(run_write, mode: str, n: int):
    return run_write(
        FIXTURES / f"tutorial_catalog_{mode}.json", FIXTURES / f"tutorial_sync{n}_{mode}.jsonl"
    )


@pytest.mark.parametrize(("mode", "after_second"), [("overwrite", 3), ("append", 5)])
def test_two_syncs_row_counts(run_write, dest_conn, mode: str, after_second: int) -> None:
    """2 rows then 3 rows: overwrite ends with 3 in both tables, append with 5."""
    assert _sync(run_write, mode, 1).returncode == 0
    stream = f"{mode}_full_refresh_demo"
    assert count(dest_conn, stream) == 2
    assert count(dest_conn, f"_airbyte_raw_{stream}") == 2
    result = _sync(run_write, mode, 2)
    assert result.returncode == 0, result.messages
    assert count(dest_conn, stream) == after_second
    assert count(dest_conn, f"_airbyte_raw_{stream}") == after_second
    # The tutorial points at its log's `alter table ... rename`: ours says the swap happened.
    swapped = [line for line in result.logs if "replaced public._airbyte_raw_" in line]
    assert len(swapped) == (1 if mode == "overwrite" else 0), result.logs


@pytest.mark.parametrize("mode", ["overwrite", "append"])
def test_exact_tables_after_two_syncs(run_write, dest_conn, mode: str) -> None:
    """Exactly the raw and the normalized table exist (no temporaries left behind)."""
    _sync(run_write, mode, 1)
    _sync(run_write, mode, 2)
    stream = f"{mode}_full_refresh_demo"
    assert table_names(dest_conn) == [f"_airbyte_raw_{stream}", stream]


def test_exact_column_sets(run_write, dest_conn) -> None:
    """Raw: ab_id/data/emitted_at; normalized: typed properties + the four _airbyte columns."""
    _sync(run_write, "overwrite", 1)
    stream = "overwrite_full_refresh_demo"
    assert column_types(dest_conn, f"_airbyte_raw_{stream}") == RAW_COLUMNS
    assert column_types(dest_conn, stream) == {
        "id": "bigint",
        "name": "text",
        "_airbyte_ab_id": "uuid",
        "_airbyte_emitted_at": "timestamp with time zone",
        "_airbyte_normalized_at": "timestamp with time zone",
        f"_airbyte_{stream}_hashid": "text",
    }


def test_rows_match_the_tutorial(run_write, dest_conn) -> None:
    """The normalized rows are the source rows; raw and normalized share _airbyte_ab_id."""
    _sync(run_write, "append", 1)
    _sync(run_write, "append", 2)
    rows = dest_conn.execute(
        "SELECT n.id, n.name, r._airbyte_data FROM append_full_refresh_demo n "
        "JOIN _airbyte_raw_append_full_refresh_demo r USING (_airbyte_ab_id) ORDER BY 1, 2"
    ).fetchall()
    assert [(i, n) for i, n, _ in rows] == [
        (1, "Mary X"), (1, "Mary X"), (2, "John D"), (2, "John D"), (3, "Jane Y"),
    ]  # fmt: skip
    assert rows[-1][2] == {"id": 3, "name": "Jane Y"}


def test_state_echoed_with_destination_stats(run_write) -> None:
    """The source's STATE comes back with destinationStats.recordCount of the records before it."""
    result = _sync(run_write, "overwrite", 2)
    assert len(result.states) == 1
    assert result.states[0]["state"]["destinationStats"] == {"recordCount": 3.0}
    assert result.states[0]["state"]["sourceStats"] == {"recordCount": 3.0}
