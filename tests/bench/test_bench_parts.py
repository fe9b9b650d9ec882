"""In-process checks of the harness's parts: the deterministic load, the generated messages,
reuse and safety of the table, and how failures of child processes are reported."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import psycopg
import pytest

from bench.dataset import COLUMNS, load_firenibble
from bench.messages import count_messages, generate_in_sql
from bench.process import MASK, run_pipeline
from bench.servers import Endpoint

ROWS = 500


@pytest.fixture
def endpoint(pg_server, make_database):
    """Factory: an Endpoint on a fresh database of the test server."""

    def make() -> Endpoint:
        return Endpoint(
            role="source", host=pg_server.host, port=pg_server.port, user=pg_server.user,
            password=pg_server.password, dbname=make_database("bench"),
        )  # fmt: skip

    return make


def table_digest(endpoint: Endpoint) -> str:
    with endpoint.connect() as conn:
        row = conn.execute(
            "SELECT md5(string_agg(t::text, '|' ORDER BY f0)) FROM firenibble t"
        ).fetchone()
    return row[0]


def test_load_is_deterministic(endpoint):
    """Two loads of the same N, in two databases, hold identical rows."""
    first, second = endpoint(), endpoint()
    load_firenibble(first, ROWS, reuse=False)
    load_firenibble(second, ROWS, reuse=False)
    assert table_digest(first) == table_digest(second)


def test_load_values_follow_the_design(endpoint):
    """Varchars hold 32 characters and dates fall in 2000-2021."""
    target = endpoint()
    load_firenibble(target, ROWS, reuse=False)
    with target.connect() as conn:
        row = conn.execute(
            "SELECT min(length(f8)), max(length(f15)), min(f10), max(f12), count(*) FROM firenibble"
        ).fetchone()
    assert row[0] == row[1] == 32
    assert str(row[2]) >= "2000-01-01" and str(row[3]) <= "2021-12-31"
    assert row[4] == ROWS


def test_reuse_keeps_a_matching_table(endpoint):
    """--reuse keeps a table the harness loaded with the same N instead of reloading it."""
    target = endpoint()
    load_firenibble(target, ROWS, reuse=False)
    again = load_firenibble(target, ROWS, reuse=True)
    assert again.reused and again.rows == ROWS


def test_reuse_reloads_when_n_differs(endpoint):
    """--reuse reloads when the table holds another N."""
    target = endpoint()
    load_firenibble(target, ROWS, reuse=False)
    again = load_firenibble(target, ROWS * 2, reuse=True)
    assert not again.reused
    with target.connect() as conn:
        assert conn.execute("SELECT count(*) FROM firenibble").fetchone()[0] == ROWS * 2


def test_refuses_to_drop_a_foreign_table(endpoint):
    """A firenibble table the harness did not create is never dropped."""
    target = endpoint()
    with target.connect() as conn:
        conn.execute("CREATE TABLE firenibble (precious int)")
    with pytest.raises(RuntimeError, match="not created by the benchmark"):
        load_firenibble(target, ROWS, reuse=False)
    with target.connect() as conn:
        assert conn.execute("SELECT to_regclass('firenibble')").fetchone()[0] is not None


def test_generated_messages_match_the_rows(endpoint, tmp_path):
    """Messages generated in SQL are valid JSON lines with one RECORD per row, equal to it."""
    target = endpoint()
    load_firenibble(target, ROWS, reuse=False)
    path = tmp_path / "messages.jsonl"
    assert generate_in_sql(target, "firenibble", path) == ROWS
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    records = [m["record"] for m in lines if m["type"] == "RECORD"]
    assert len(records) == ROWS
    with target.connect() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        first = cur.execute("SELECT * FROM firenibble ORDER BY f0 LIMIT 1").fetchone()
    assert list(records[0]["data"]) == COLUMNS
    assert records[0]["data"]["f1"] == first["f1"] and records[0]["data"]["f4"] == first["f4"]
    assert records[0]["data"]["f10"] == first["f10"].isoformat()


def test_counted_messages_include_source_stats(endpoint, tmp_path):
    """count_messages counts RECORDs and sums sourceStats.recordCount of the STATEs."""
    target = endpoint()
    load_firenibble(target, ROWS, reuse=False)
    path = tmp_path / "messages.jsonl"
    generate_in_sql(target, "firenibble", path)
    counted = count_messages(path)
    assert (counted.records, counted.states, counted.source_record_count) == (ROWS, 1, ROWS)


def test_failed_child_is_reported_with_its_stderr(tmp_path):
    """A child that exits non-zero makes the outcome fail, naming it and its last stderr line."""
    outcome = run_pipeline(
        [["sh", "-c", "echo out; exit 0"], ["sh", "-c", "cat >/dev/null; echo boom >&2; exit 3"]],
        workdir=tmp_path,
    )
    assert not outcome.ok
    assert outcome.failure(["first", "second"]) == "second exited 3: boom"


def test_pipeline_output_reaches_the_file(tmp_path):
    """The last command's stdout lands in the given file, through the pipe."""
    out = tmp_path / "out.txt"
    outcome = run_pipeline(
        [["sh", "-c", "printf 'a\\nb\\n'"], ["wc", "-l"]], workdir=tmp_path, stdout=out
    )
    assert outcome.ok and out.read_text().strip() == "2"


def test_secrets_are_masked_in_stderr(tmp_path):
    """A known password printed by a child never reaches the report."""
    MASK.add("hunter2-secret")
    outcome = run_pipeline(
        [["sh", "-c", "echo 'password hunter2-secret' >&2; exit 1"]], workdir=tmp_path
    )
    assert "hunter2-secret" not in outcome.failure(["child"])
    assert "****" in outcome.failure(["child"])


def test_timeout_ends_the_child(tmp_path: Path):
    """A child running past the timeout is killed and the outcome says it timed out."""
    outcome = run_pipeline([["sleep", "30"]], workdir=tmp_path, timeout=0.5)
    assert outcome.timed_out and outcome.seconds < 10


def test_missing_program_in_a_pipeline_raises_and_ends_the_others(tmp_path):
    """A pipeline whose second program does not exist raises OSError, the first one ended."""
    with pytest.raises(OSError):
        run_pipeline([["sleep", "31"], [str(tmp_path / "no-such-program")]], workdir=tmp_path)
    children = Path(f"/proc/self/task/{os.getpid()}/children").read_text().split()
    running = [
        pid for pid in children
        if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep\x0031")
        and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    ]  # fmt: skip
    assert running == []
