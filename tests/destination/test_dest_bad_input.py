"""Bad input never loses committed data: one TRACE ERROR naming the line, non-zero exit.

Each file under fixtures/destination/bad_input/ holds two records, a STATE, the bad line (its
number is in the file name), then more records, a STATE and COMPLETE.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from dest_helpers import FIXTURES, count, table_names

BAD = sorted((FIXTURES / "bad_input").glob("*.jsonl"))
STREAM = "append_full_refresh_demo"


def _line(path: Path) -> int:
    match = re.search(r"\.line(\d+)\.", path.name)
    assert match
    return int(match.group(1))


def _catalog(mode: str) -> Path:
    return FIXTURES / f"tutorial_catalog_{mode}.json"


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name.split(".")[0])
def test_append_keeps_what_was_committed(run_write, dest_conn, path: Path) -> None:
    """append: the rows before the last echoed STATE stay; nothing after it is loaded."""
    result = run_write(_catalog("append"), path)
    assert result.returncode != 0
    assert len(result.errors) == 1
    assert f"line {_line(path)}" in result.errors[0]["message"]
    assert len(result.states) == 1
    assert count(dest_conn, STREAM) == 2
    assert count(dest_conn, f"_airbyte_raw_{STREAM}") == 2


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name.split(".")[0])
def test_overwrite_is_not_swapped(run_write, dest_conn, tmp_path: Path, path: Path) -> None:
    """overwrite: the previous tables stay exactly as they were; no temporary is left."""
    assert (
        run_write(_catalog("overwrite"), FIXTURES / "tutorial_sync1_overwrite.jsonl").returncode
        == 0
    )
    before = dest_conn.execute("SELECT * FROM overwrite_full_refresh_demo ORDER BY id").fetchall()
    bad = path.read_bytes().replace(STREAM.encode(), b"overwrite_full_refresh_demo")
    result = run_write(_catalog("overwrite"), bad)
    assert result.returncode != 0
    assert len(result.errors) == 1
    assert f"line {_line(path)}" in result.errors[0]["message"]
    after = dest_conn.execute("SELECT * FROM overwrite_full_refresh_demo ORDER BY id").fetchall()
    assert after == before
    assert table_names(dest_conn) == [
        "_airbyte_raw_overwrite_full_refresh_demo", "overwrite_full_refresh_demo",
    ]  # fmt: skip
