"""Helpers for Xmin tests: a quiet server of their own, one moved near or past an xid wraparound,
and `read` of incremental streams with Airbyte's Xmin config through the console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
from pgbyte.throwaway_pg import SERVER_SETTINGS, ThrowawayServer, find_bin_dir
from source_helpers import REPO_ROOT, Run

SOURCE = str(REPO_ROOT / ".venv" / "bin" / "source-postgres")
# Without autovacuum no other transaction (an ANALYZE takes an xid) holds the xmin horizon
# back while a test reads, so "exactly these rows" assertions are deterministic.
QUIET = {"autovacuum": "off"}


def xmin_config(server: ThrowawayServer, db: str) -> dict[str, Any]:
    return server.connector_config(db, schemas=["public"], replication_method={"method": "Xmin"})


def stream_entry(table: str, columns: list[str], sync_mode: str = "incremental") -> dict:
    """A configured stream as a platform sends it for Xmin: no cursor_field (source-defined)."""
    return {
        "stream": {
            "name": table,
            "namespace": "public",
            "json_schema": {"type": "object", "properties": {c: {} for c in columns}},
            "supported_sync_modes": ["full_refresh", "incremental"],
            "source_defined_cursor": True,
        },
        "sync_mode": sync_mode,
        "destination_sync_mode": "append",
    }


def read(tmp: Path, config: dict, streams: list[dict], state: Any = None, chunk: int = 0) -> Run:
    """`source-postgres read` with `streams`, an optional state and ctid chunk size."""
    tmp.mkdir(parents=True, exist_ok=True)
    files = {"config": config, "catalog": {"streams": streams}, "state": state}
    args = [SOURCE, "read"]
    for name, obj in files.items():
        if obj is None:
            continue
        path = tmp / f"{name}.json"
        path.write_text(json.dumps(obj))
        args += [f"--{name}", str(path)]
    env = {**os.environ, "PGBYTE_CURSOR_CHUNK_ROWS": str(chunk)} if chunk else None
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def states(run: Run) -> list[dict]:
    return [m["state"] for m in run.of_type("STATE")]


def last_state(run: Run) -> list[dict]:
    """What the platform passes to the next read: the last STATE message."""
    return [states(run)[-1]]


def stream_state(run: Run) -> dict:
    return states(run)[-1]["stream"]["stream_state"]


def warnings(run: Run) -> list[str]:
    return [m["log"]["message"] for m in run.of_type("LOG") if m["log"]["level"] == "WARN"]


def ids(run: Run, table: str) -> list[int]:
    return sorted(r["id"] for r in run.data(table))


def _pg(server: ThrowawayServer, *args: str) -> None:
    proc = subprocess.run([*server._as_postgres, *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr + proc.stdout


def restart_with_resetwal(server: ThrowawayServer, *resetwal_args: str, clog_for: int = 0) -> None:
    """Stop the server cleanly, run pg_resetwal with `resetwal_args`, start it again.

    `clog_for`: an xid whose commit-log segment must exist before pg_resetwal -x moves the
    counter there (a zero-filled segment, as pg_resetwal's documentation says to create).
    """
    assert server.root is not None
    bin_dir, data = find_bin_dir(), server.root / "data"
    _pg(server, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    if clog_for:
        segment = data / "pg_xact" / f"{clog_for // (8192 * 4 * 32):04X}"
        if not segment.exists():
            segment.write_bytes(b"\0" * 8192 * 32)
            if server._as_postgres:
                shutil.chown(segment, "postgres", "postgres")
    _pg(server, str(bin_dir / "pg_resetwal"), *resetwal_args, "-D", str(data))
    options = {**SERVER_SETTINGS, **server.settings, "port": str(server.port)}
    options["unix_socket_directories"] = str(server.root)
    opts = " ".join(f"-c {k}={v}" for k, v in options.items())
    log = str(server.root / "server.log")
    _pg(server, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", log, "-o", opts, "-w", "start")


def move_near_wraparound(server: ThrowawayServer, left: int) -> None:
    """Set the xid counter `left` xids before the first 32-bit wraparound (epoch 0 → 1).

    Every existing row is frozen first: pg_resetwal moves the counter without aging rows, and
    unfrozen rows from the old counter would look like the future.
    """
    with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datallowconn")]
    for name in names:
        with psycopg.connect(server.conninfo(name), autocommit=True) as conn:
            conn.execute("VACUUM FREEZE")
    target = (1 << 32) - left
    restart_with_resetwal(server, "-x", str(target), clog_for=target)


def burn_xids(conn: psycopg.Connection, count: int) -> None:
    """Assign `count` transaction ids (autocommit: one transaction each)."""
    for _ in range(count):
        conn.execute("SELECT txid_current()")
