"""Two writes at once into tables neither has made yet: both succeed, nothing is lost.

Through the console script, as two syncs of two connections sharing a destination run."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import threading
import time
import uuid

import psycopg
import pytest
from dest_helpers import SCRIPT, catalog_for, count, record, state

PROPS = {"id": {"type": "integer"}, "name": {"type": "string"}}


def _messages(first: int, rows: int) -> bytes:
    lines = []
    for stream in ("a", "b"):
        lines += [record(stream, {"id": i, "name": f"n{i}"}) for i in range(first, first + rows)]
        lines.append(state(stream, {"upto": first + rows}))
    return b"\n".join(lines) + b"\n"


@pytest.mark.parametrize("mode", ["append", "append_dedup"])
def test_two_first_writes_into_a_new_schema_both_succeed(
    mode, tmp_path, dest_config, dest_conn
) -> None:
    """Each round: a fresh schema, two writes started together. They ran CREATE SCHEMA / TABLE
    IF NOT EXISTS at once, and one failed ('duplicate key value violates unique constraint
    "pg_type_typname_nsp_index"', a system_error) most times."""
    for round_no in range(6):
        schema = f"race_{uuid.uuid4().hex[:8]}"
        catalog = catalog_for([("a", PROPS), ("b", PROPS)], mode)
        for entry in catalog["streams"]:
            entry["primary_key"] = [["id"]]
        paths = {
            "config": tmp_path / "config.json",
            "catalog": tmp_path / f"catalog{round_no}.json",
        }
        paths["config"].write_text(json.dumps({**dest_config, "schema": schema}))
        paths["catalog"].write_text(json.dumps(catalog))
        procs = []
        for n in range(2):
            proc = subprocess.Popen(
                [SCRIPT, "write", "--config", str(paths["config"]), "--catalog",
                 str(paths["catalog"])],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            procs.append((proc, _messages(n * 50, 100)))
        outputs = [proc.communicate(data, timeout=120) for proc, data in procs]
        codes = [proc.returncode for proc, _ in procs]
        assert codes == [0, 0], [out.decode()[-1500:] for out, _ in outputs]
        expected = 150 if mode == "append_dedup" else 200
        for table in ("a", "b"):
            assert count(dest_conn, table, schema) == expected
            assert count(dest_conn, f"_airbyte_raw_{table}", schema) == 200


def _overwrite_users(tmp_path, dest_config, rows: int, env: dict[str, str] | None = None):
    """Start an overwrite write of `users` with `rows` records (its input closed)."""
    (tmp_path / "ow-config.json").write_text(json.dumps(dest_config))
    (tmp_path / "ow-catalog.json").write_text(json.dumps(catalog_for([("users", PROPS)],
                                                                     "overwrite")))  # fmt: skip
    proc = subprocess.Popen(
        [SCRIPT, "write", "--config", str(tmp_path / "ow-config.json"), "--catalog",
         str(tmp_path / "ow-catalog.json")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    lines = [record("users", {"id": i, "name": f"n{i}"}) for i in range(rows)]
    proc.stdin.write(b"\n".join([*lines, state("users", {"upto": rows})]) + b"\n")
    proc.stdin.close()
    return proc


def _wait_for_line(proc: subprocess.Popen, needle: bytes, timeout: float = 60) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if needle in line:
                return line
            if not line:
                break
    pytest.fail(f"no line with {needle!r}; exit {proc.poll()}, stderr {proc.stderr.read()!r}")


def test_an_overwrite_waits_for_a_reader_without_blocking_the_others(
    tmp_path, dest_config, dest_conn, pg_server, dest_db
) -> None:
    """A reader's transaction left open on the table: the swap steps aside between short waits
    (its DROP queued behind that reader blocked every later reader of the table for as long
    as it lasted) with a WARN naming the session, another reader gets its answer meanwhile,
    and the swap happens as soon as the transaction ends."""
    first = _overwrite_users(tmp_path, dest_config, 2)
    assert first.wait(timeout=120) == 0, first.stderr.read()
    with psycopg.connect(pg_server.conninfo(dest_db)) as reader:
        assert reader.execute("SELECT count(*) FROM users").fetchone() == (2,)  # and stays open
        write = _overwrite_users(tmp_path, dest_config, 3)
        try:
            warn = _wait_for_line(write, b"waiting to swap in its new tables")
            assert f"session {reader.info.backend_pid} (idle in transaction".encode() in warn
            # the one table the reader locks, not the raw table beside it
            assert re.search(rb"\) holds a lock on public\.users; retrying", warn), warn
            with psycopg.connect(pg_server.conninfo(dest_db), autocommit=True) as other:
                other.execute("SET statement_timeout = '5s'")
                assert other.execute("SELECT count(*) FROM users").fetchone() == (2,)
            reader.commit()
            assert write.wait(timeout=60) == 0, write.stderr.read()
        finally:
            if write.poll() is None:
                write.kill()
                write.wait()
    assert count(dest_conn, "users") == 3


def test_an_overwrite_gives_up_on_a_reader_that_never_ends(
    tmp_path, dest_config, dest_conn, pg_server, dest_db
) -> None:
    """PGBYTE_SWAP_TIMEOUT seconds of a reader's open transaction: the write fails with a
    transient_error naming the session, and the previous tables are unchanged."""
    first = _overwrite_users(tmp_path, dest_config, 2)
    assert first.wait(timeout=120) == 0, first.stderr.read()
    with psycopg.connect(pg_server.conninfo(dest_db)) as reader:
        reader.execute("SELECT count(*) FROM users")
        pid = reader.info.backend_pid
        write = _overwrite_users(tmp_path, dest_config, 3, {"PGBYTE_SWAP_TIMEOUT": "1"})
        killer = threading.Timer(120, write.kill)  # a swap that waits for good fails, not hangs
        killer.start()
        out = write.stdout.read()  # to its end: the write's exit
        write.wait(timeout=60)
        killer.cancel()
        reader.rollback()
    assert write.returncode != 0
    errors = [m["trace"]["error"] for m in map(json.loads, out.splitlines())
              if m.get("type") == "TRACE" and m["trace"].get("type") == "ERROR"]  # fmt: skip
    assert len(errors) == 1 and errors[0]["failure_type"] == "transient_error", errors
    message = errors[0]["message"]
    assert f"session {pid} (idle in transaction" in message, message
    assert "previous tables are unchanged" in message and "PGBYTE_SWAP_TIMEOUT" in message
    assert count(dest_conn, "users") == 2 and count(dest_conn, "_airbyte_raw_users") == 2


def test_an_overwrite_waiting_to_swap_stops_when_its_reader_leaves(
    tmp_path, dest_config, dest_conn, pg_server, dest_db
) -> None:
    """The orchestrator is killed while the write waits to swap (a reader's transaction in the
    way): the write no longer waits out PGBYTE_SWAP_TIMEOUT to swap in rows a newer sync may
    have replaced by then (and blocking it meanwhile); it rolls back within a few seconds,
    dropping its temporaries, and the previous tables stay."""
    first = _overwrite_users(tmp_path, dest_config, 2)
    assert first.wait(timeout=120) == 0, first.stderr.read()
    with psycopg.connect(pg_server.conninfo(dest_db)) as reader:
        reader.execute("SELECT count(*) FROM users")
        write = _overwrite_users(tmp_path, dest_config, 3)
        try:
            _wait_for_line(write, b"waiting to swap in its new tables")
            write.stdout.close()  # the orchestrator is gone
            assert write.wait(timeout=30) == 1
        finally:
            if write.poll() is None:
                write.kill()
                write.wait()
        reader.rollback()
    assert b"the reader of its output" in write.stderr.read()
    assert count(dest_conn, "users") == 2 and count(dest_conn, "_airbyte_raw_users") == 2
    left = dest_conn.execute(
        "SELECT count(*) FROM pg_class WHERE relname LIKE '%%airbyte_tmp%%'"
    ).fetchone()[0]
    assert left == 0
