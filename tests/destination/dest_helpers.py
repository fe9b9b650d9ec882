"""Helpers for the destination tests: run the real console script, inspect tables."""

from __future__ import annotations

import json
import select
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "destination"
SCRIPT = str(REPO_ROOT / ".venv" / "bin" / "destination-postgres")


@dataclass
class WriteResult:
    returncode: int
    messages: list[dict[str, Any]]
    stderr: str
    stdout: bytes = b""  # as printed (the messages' numbers and escapes as they were)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]

    @property
    def states(self) -> list[dict[str, Any]]:
        return self.of_type("STATE")

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [m["trace"]["error"] for m in self.of_type("TRACE") if m["trace"]["type"] == "ERROR"]

    @property
    def logs(self) -> list[str]:
        return [m["log"]["message"] for m in self.of_type("LOG")]


def catalog_for(
    streams: list[tuple[str, dict[str, Any]]], mode: str = "overwrite", namespace: str | None = None
) -> dict[str, Any]:
    """A configured catalog with one entry per (name, properties)."""
    entries = []
    for name, props in streams:
        stream: dict[str, Any] = {
            "name": name,
            "json_schema": {"type": "object", "properties": props},
            "supported_sync_modes": ["full_refresh", "incremental"],
        }
        if namespace:
            stream["namespace"] = namespace
        entries.append({"stream": stream, "sync_mode": "full_refresh",
                        "destination_sync_mode": mode})  # fmt: skip
    return {"streams": entries}


def record(stream: str, data: Any, emitted_at: int = 1732550000000) -> bytes:
    return json.dumps(
        {"type": "RECORD", "record": {"stream": stream, "data": data, "emitted_at": emitted_at}}
    ).encode()


def state(stream: str, value: Any) -> bytes:
    return json.dumps({
        "type": "STATE",
        "state": {"type": "STREAM", "stream": {"stream_descriptor": {"name": stream},
                                               "stream_state": value}},
    }).encode()  # fmt: skip


def status(stream: str, value: str) -> bytes:
    return json.dumps({
        "type": "TRACE",
        "trace": {"type": "STREAM_STATUS", "emitted_at": 1,
                  "stream_status": {"stream_descriptor": {"name": stream}, "status": value}},
    }).encode()  # fmt: skip


def table_names(conn, schema: str = "public") -> list[str]:
    rows = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (schema,)
    ).fetchall()
    return [r[0] for r in rows]


def column_types(conn, table: str, schema: str = "public") -> dict[str, str]:
    rows = conn.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
           JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
           ORDER BY a.attnum""",
        (schema, table),
    ).fetchall()
    return dict(rows)


def count(conn, table: str, schema: str = "public") -> int:
    from psycopg import sql

    return conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
    ).fetchone()[0]


class LiveWrite:
    """A running `write`, fed piece by piece: what a test sees between two STATEs."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    def send_until_state(self, data: bytes) -> dict[str, Any]:
        """Write `data` (ending with a STATE) and return the STATE the destination echoes."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()
        while True:
            # A destination that stops answering fails the test rather than hanging it.
            ready, _, _ = select.select([self.proc.stdout], [], [], 60)
            assert ready, "no message from the destination in 60 s"
            msg = json.loads(self.proc.stdout.readline())
            if msg["type"] == "STATE":
                return msg

    def send_until(self, data: bytes, loaded: Callable[[], bool]) -> None:
        """Write `data` (ending with a STATE) and wait until `loaded()` holds: an overwrite
        stream's states are echoed only once it is swapped in, so a test that looks mid-load
        asks the database instead."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()
        deadline = time.monotonic() + 60
        while not loaded():
            assert self.proc.poll() is None, "the destination ended"
            assert time.monotonic() < deadline, "not loaded in 60 s"
            time.sleep(0.05)

    def finish(self, data: bytes = b"") -> int:
        """Write the last `data`, close the input, return the exit code."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.close()
        return self.proc.wait(timeout=60)


@contextmanager
def live_write(
    tmp_path: Path, config: dict[str, Any], catalog: dict[str, Any] | Path
) -> Iterator[LiveWrite]:
    """Start the console script's `write`; it is killed if the test leaves it running."""
    config_path = tmp_path / "live-config.json"
    config_path.write_text(json.dumps(config))
    if not isinstance(catalog, Path):
        catalog_path = tmp_path / "live-catalog.json"
        catalog_path.write_text(json.dumps(catalog))
        catalog = catalog_path
    proc = subprocess.Popen(
        [SCRIPT, "write", "--config", str(config_path), "--catalog", str(catalog)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        bufsize=0,  # unbuffered: select() in send_until_state sees every unread line
    )  # fmt: skip
    try:
        yield LiveWrite(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
