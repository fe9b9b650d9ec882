"""`pgbyte check | discover | state | history` with the real connectors, and `make demo`."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest
from orchestrator_helpers import REPO_ROOT, pgbyte, sync_json, write_connection


def test_check_succeeds_for_good_configs(
    tmp_path, pg_server, source_conn, source_config, dest_config
) -> None:
    """`pgbyte check` reports both connectors succeeded and exits 0."""
    source_conn.execute("CREATE TABLE t(id integer PRIMARY KEY)")
    conn = write_connection(tmp_path, source_config, dest_config)
    run = pgbyte("check", str(conn), "--json", password=pg_server.password)
    assert (run.returncode, [c["ok"] for c in orjson.loads(run.stdout)]) == (0, [True, True])


def test_check_fails_for_a_wrong_database(tmp_path, pg_server, source_config, dest_config):
    """`pgbyte check` exits 1 when a connector cannot connect, naming which one."""
    conn = write_connection(tmp_path, {**source_config, "database": "nope_db"}, dest_config)
    run = pgbyte("check", str(conn), password=pg_server.password)
    assert run.returncode == 1 and "source: FAILED" in run.stdout


def test_discover_lists_streams_with_keys_and_columns(
    tmp_path, pg_server, source_conn, source_config, dest_config
) -> None:
    """`pgbyte discover` prints each stream with its primary key and column count."""
    source_conn.execute("CREATE TABLE full_refresh_demo(id integer PRIMARY KEY, name text)")
    conn = write_connection(tmp_path, source_config, dest_config)
    run = pgbyte("discover", str(conn), password=pg_server.password)
    line = next(x for x in run.stdout.splitlines() if "public.full_refresh_demo" in x)
    assert line.split()[-2:] == ["id", "2"]


def test_state_reset_forgets_the_state(tmp_path, pg_server, source_conn, source_config,
                                       dest_config) -> None:  # fmt: skip
    """`state show --json` prints the saved state; `state reset` removes it."""
    source_conn.execute("CREATE TABLE t(id integer PRIMARY KEY)")
    conn = write_connection(tmp_path, source_config, dest_config)
    sync_json(conn, pg_server.password)
    shown = orjson.loads(pgbyte("state", "show", str(conn), "--json", password="").stdout)
    pgbyte("state", "reset", str(conn), password="")
    after = orjson.loads(pgbyte("state", "show", str(conn), "--json", password="").stdout)
    assert (len(shown) >= 1, after) == (True, [])


@pytest.mark.slow
def test_make_demo_replays_the_tutorial() -> None:
    """`python -m pgbyte.demo` (what `make demo` runs) succeeds and shows the tutorial's results."""
    run = subprocess.run(
        [sys.executable, "-m", "pgbyte.demo"], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for needle in (
        "_airbyte_raw_append_full_refresh_demo", "overwrite_full_refresh_demo",
        "(4 rows)", "3 records emitted", "overwrite_full_refresh_demo: 3 rows",
        "append_full_refresh_demo: 5 rows",
    ):  # fmt: skip
        assert needle in run.stdout
