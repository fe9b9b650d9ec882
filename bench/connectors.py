"""The programs under test: how to call them, whether they work yet, and the files they read.

Config, catalog and connection files go into the run's private work directory (mode 0700, files
0600): they hold passwords. Connection files for `pgbyte` reference the passwords as ${VAR} and the
harness passes them in the environment, as a user would.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from bench.dataset import json_schema
from bench.process import run_quick
from bench.servers import Endpoint

VENV_BIN = Path(sys.executable).parent
PASSWORD_VARS = {
    "source": "PGBYTE_BENCH_SOURCE_PASSWORD",
    "destination": "PGBYTE_BENCH_DEST_PASSWORD",
}


def default_command(name: str) -> list[str]:
    return [str(VENV_BIN / name)]


@dataclass(frozen=True)
class Commands:
    """argv prefixes of the three programs (overridable, e.g. to benchmark another build)."""

    source: tuple[str, ...]
    destination: tuple[str, ...]
    pgbyte: tuple[str, ...]

    @classmethod
    def from_args(cls, source: str | None, destination: str | None, pgbyte: str | None) -> Commands:
        def pick(given: str | None, name: str) -> tuple[str, ...]:
            return tuple(shlex.split(given)) if given else tuple(default_command(name))

        return cls(
            pick(source, "source-postgres"),
            pick(destination, "destination-postgres"),
            pick(pgbyte, "pgbyte"),
        )


def write_private(path: Path, data: bytes) -> Path:
    """Write a file only the owner can read (it may hold a password)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


def write_json(path: Path, value: Any) -> Path:
    return write_private(path, orjson.dumps(value, option=orjson.OPT_INDENT_2))


def probe(command: tuple[str, ...], args: list[str], workdir: Path, expect: bytes) -> str | None:
    """None when the program answers `args` as expected, else why it is unavailable."""
    code, out, err = run_quick([*command, *args], workdir=workdir, timeout=120)
    if code == 0 and expect in out:
        return None
    return f"`{Path(command[-1]).name} {' '.join(args)}` exited {code}" + (
        f": {err}" if err else ""
    )


def discover_stream(
    commands: Commands, config: Path, workdir: Path, name: str
) -> dict[str, Any] | None:
    """The stream `public.<name>` as `source-postgres discover` describes it, or None."""
    code, out, _ = run_quick(
        [*commands.source, "discover", "--config", str(config)], workdir=workdir, timeout=300
    )
    if code != 0:
        return None
    for line in out.splitlines():
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if message.get("type") != "CATALOG":
            continue
        for stream in message["catalog"].get("streams", []):
            if stream.get("name") == name and stream.get("namespace") in (None, "public"):
                return stream
    return None


def builtin_stream(name: str, *, with_updated_at: bool = False) -> dict[str, Any]:
    """The stream as DESIGN.md §4 says discover describes it (used when discover is unavailable)."""
    return {
        "name": name,
        "namespace": "public",
        "json_schema": json_schema(with_updated_at=with_updated_at),
        "supported_sync_modes": ["full_refresh", "incremental"],
        "source_defined_primary_key": [["f0"]],
        "is_resumable": True,
    }


def configured_catalog(
    stream: dict[str, Any], *, sync_mode: str, destination_sync_mode: str, cursor: str | None = None
) -> dict[str, Any]:
    configured: dict[str, Any] = {
        "stream": stream,
        "sync_mode": sync_mode,
        "destination_sync_mode": destination_sync_mode,
        "primary_key": [["f0"]],
    }
    if cursor:
        configured["cursor_field"] = [cursor]
    return {"streams": [configured]}


def connection_file(
    path: Path,
    *,
    name: str,
    commands: Commands,
    source: Endpoint,
    dest: Endpoint,
    stream: str,
    sync_mode: str,
    destination_sync_mode: str,
    cursor: str | None = None,
    state: Path,
) -> Path:
    """A `pgbyte` connection file (issue 4's YAML) for one stream, passwords as ${VAR}."""
    source_config = source.connector_config(
        schemas=["public"], password="${" + PASSWORD_VARS["source"] + "}"
    )
    dest_config = dest.connector_config(
        schema="public", password="${" + PASSWORD_VARS["destination"] + "}"
    )
    stream_entry: dict[str, Any] = {
        "name": stream,
        "namespace": "public",
        "sync_mode": sync_mode,
        "destination_sync_mode": destination_sync_mode,
        "primary_key": [["f0"]],
    }
    if cursor:
        stream_entry["cursor_field"] = [cursor]
    connection = {
        "name": name,
        "source": {"command": list(commands.source), "config": source_config},
        "destination": {"command": list(commands.destination), "config": dest_config},
        # Mirroring the source's namespace with no prefix leaves every RECORD line unchanged, as
        # in the shell pipe it is compared with.
        "namespace": "source",
        "streams": [stream_entry],
        "state": str(state),
    }
    return write_private(path, yaml.safe_dump(connection, sort_keys=False).encode())


def password_env(source: Endpoint, dest: Endpoint) -> dict[str, str]:
    return {
        **os.environ,
        PASSWORD_VARS["source"]: source.password,
        PASSWORD_VARS["destination"]: dest.password,
    }


def last_states(dest_stdout: Path) -> list[dict[str, Any]]:
    """The last STATE per stream the destination echoed: the `--state` file of the next read."""
    states: dict[str, dict[str, Any]] = {}
    with dest_stdout.open("rb") as handle:
        for line in handle:
            if b'"STATE"' not in line:
                continue
            try:
                message = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if message.get("type") != "STATE":
                continue
            state = message["state"]
            descriptor = (state.get("stream") or {}).get("stream_descriptor") or {}
            key = f"{state.get('type')}:{descriptor.get('namespace')}.{descriptor.get('name')}"
            states[key] = state
    return list(states.values())
