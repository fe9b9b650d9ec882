"""Standard replication's source-default cursor: one obvious updated-at column, or none."""

from __future__ import annotations

import pytest
from source_helpers import run_source
from xmin_helpers import ids, read, stream_entry, stream_state


@pytest.mark.parametrize(
    ("ddl", "expected"),
    [
        ("id int, updated_at timestamptz", ["updated_at"]),
        ("id int, _updated_at timestamp, created_at timestamp", ["_updated_at"]),
        ('id int, "lastModified" bigint', ["lastModified"]),
        ("id int, updated_at timestamptz, modified_at timestamptz", []),  # ambiguous
        ("id int, updated_at text", []),  # not a time or counter type
        ("id int, created_at timestamptz", []),  # does not move on UPDATE
    ],
)
def test_discover_default_cursor_field(source_conn, source_config, write_json, ddl, expected):
    """discover sets default_cursor_field only for a single updated-at-like column."""
    source_conn.execute(f"CREATE TABLE t ({ddl})")
    run = run_source("discover", "--config", write_json("c.json", source_config))
    stream = run.stream("t")
    assert stream["default_cursor_field"] == expected
    assert stream["source_defined_cursor"] is False


def test_incremental_without_cursor_field_uses_the_default(source_conn, source_config, tmp_path):
    """An incremental stream with no cursor_field reads by the table's updated_at, saying so."""
    source_conn.execute("CREATE TABLE t (id int, updated_at int);"
                        "INSERT INTO t SELECT g, g FROM generate_series(1, 4) g")  # fmt: skip
    entry = stream_entry("t", ["id", "updated_at"])
    first = read(tmp_path / "1", source_config, [entry])
    assert first.returncode == 0, first.stdout[-2000:]
    assert stream_state(first)["cursor_field"] == ["updated_at"]
    infos = [m["log"]["message"] for m in first.of_type("LOG") if m["log"]["level"] == "INFO"]
    assert any("'updated_at'" in m for m in infos)
    source_conn.execute("UPDATE t SET updated_at = 10 WHERE id = 2")
    second = read(
        tmp_path / "2", source_config, [entry], state=[first.of_type("STATE")[-1]["state"]]
    )
    assert ids(second, "t") == [2]


def test_view_without_cursor_is_read_whole_each_time(source_conn, source_config, tmp_path):
    """An incremental view with no cursor (and no xmin) is read whole, with a LOG WARN."""
    source_conn.execute("CREATE TABLE b (id int, a text); INSERT INTO b VALUES (1, 'x'), (2, 'y');"
                        "CREATE VIEW t AS SELECT * FROM b")  # fmt: skip
    entry = stream_entry("t", ["id", "a"])
    first = read(tmp_path / "1", source_config, [entry])
    assert first.returncode == 0 and ids(first, "t") == [1, 2]
    assert stream_state(first) == {"__ab_no_cursor_state_message": True}
    second = read(
        tmp_path / "2", source_config, [entry], state=[first.of_type("STATE")[-1]["state"]]
    )
    assert ids(second, "t") == [1, 2]
    assert any("reads all of its rows" in m["log"]["message"] for m in second.of_type("LOG"))
