"""The read's up-front table locks on a server whose lock table is small: running out of lock
space while locking ahead must not fail a read that would have read its streams before."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from pgbyte.throwaway_pg import ThrowawayServer
from source_helpers import configured_catalog, run_source

TABLES = 1500  # far more locks than max_locks_per_transaction times max_connections (10 x 20)


@pytest.fixture(scope="module")
def small_lock_table() -> Iterator[ThrowawayServer]:
    settings = {"max_locks_per_transaction": "10", "max_connections": "20"}
    with ThrowawayServer(settings=settings) as server:
        yield server


def test_out_of_lock_space_ahead_the_read_goes_on_as_without(small_lock_table, tmp_path) -> None:
    """Locking 1,500 tables ahead fills the server's lock table ("out of shared memory"): the
    read gives up locking ahead (nothing stays locked from the attempt) and reads its streams
    as it did before, taking each one's lock as it goes — the first streams are read and
    complete, instead of the whole read failing before its first record."""
    db = f"locks_{uuid.uuid4().hex[:8]}"
    small_lock_table.create_database(db)
    with psycopg.connect(small_lock_table.conninfo(db), autocommit=True) as conn:
        for first in range(1, TABLES + 1, 100):  # a transaction each: their locks fit
            conn.execute(
                f"DO $$ BEGIN FOR i IN {first}..{first + 99} LOOP EXECUTE format("
                "'CREATE TABLE t%s (id int); INSERT INTO t%s VALUES (%s)', i, i, i); END LOOP; "
                "END $$"
            )
    streams = [{"name": f"t{i}", "namespace": "public", "supported_sync_modes": ["full_refresh"],
                "json_schema": {"type": "object", "properties": {"id": {}}}}
               for i in range(1, TABLES + 1)]  # fmt: skip
    config = tmp_path / "config.json"
    config.write_text(json.dumps(small_lock_table.connector_config(db, schemas=["public"])))
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(configured_catalog(streams)))
    run = run_source("read", "--config", str(config), "--catalog", str(catalog))
    complete = {m["trace"]["stream_status"]["stream_descriptor"]["name"]
                for m in run.of_type("TRACE") if m["trace"]["type"] == "STREAM_STATUS"
                and m["trace"]["stream_status"]["status"] == "COMPLETE"}  # fmt: skip
    assert {"t1", "t2", "t100"} <= complete, run.stdout[-2000:]
    assert "Starting the read" not in run.stdout
    # Further on, the locks the read holds fill the lock table: one config_error that says
    # so and what to raise, and the read stops there (every later stream would fail alike).
    (error,) = [m["trace"]["error"] for m in run.of_type("TRACE") if m["trace"]["type"] == "ERROR"]
    assert error["failure_type"] == "config_error", error
    assert "raise max_locks_per_transaction" in error["message"], error
    assert len(complete) < TABLES
    # Every configured stream still ends with a status: the ones after the failure INCOMPLETE.
    last = {m["trace"]["stream_status"]["stream_descriptor"]["name"]:
            m["trace"]["stream_status"]["status"]
            for m in run.of_type("TRACE") if m["trace"]["type"] == "STREAM_STATUS"}  # fmt: skip
    assert len(last) == TABLES and last[f"t{TABLES}"] == "INCOMPLETE"
    assert set(last.values()) == {"COMPLETE", "INCOMPLETE"}
    assert run.returncode == 1
