"""The saved state of a connection and its sync history.

The state file holds exactly what a source accepts as `--state`: a JSON array of Airbyte state
messages' `state` objects (STREAM per stream, or one GLOBAL, or one LEGACY), always in source
stream names, with the stats stripped. It only ever holds states the destination echoed back,
i.e. states whose records are committed. Writes are atomic: a temp file beside it, fsync,
rename, fsync of the directory — a crash leaves either the old file or the new one.

The history file beside it gets one JSON line per sync.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import orjson

_STATS = ("sourceStats", "destinationStats")


class StateFileError(ValueError):
    """The state file exists but cannot be used; the message says how to recover."""


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace `path` with `data` atomically (temp + fsync + rename + directory fsync)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _key(state: dict[str, Any]) -> tuple[str, str | None, str | None]:
    kind = str(state.get("type") or "LEGACY")
    if kind == "STREAM":
        descriptor = (state.get("stream") or {}).get("stream_descriptor") or {}
        return kind, descriptor.get("name"), descriptor.get("namespace")
    return kind, None, None


class StateStore:
    """The latest committed state per stream, merged from echoed STATE messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str | None, str | None], dict[str, Any]] = {}
        self.dirty = False
        for state in self.load():
            self._states[_key(state)] = state

    def load(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        try:
            data = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise StateFileError(
                f"state file {self.path} is unreadable ({exc}); fix it or run "
                "`pgbyte state reset` to start over"
            ) from None
        if isinstance(data, dict):  # a single (legacy) state object
            data = [data if "type" in data else {"type": "LEGACY", "data": data}]
        if not isinstance(data, list) or not all(isinstance(s, dict) for s in data):
            raise StateFileError(
                f"state file {self.path} is not a list of Airbyte states; `pgbyte state reset`"
            )
        return data

    def merge(self, state: dict[str, Any]) -> None:
        """Take one echoed (and already source-named) state; stats are not part of state."""
        clean = {k: v for k, v in state.items() if k not in _STATS}
        with self._lock:
            if clean.get("type") in ("GLOBAL", "LEGACY"):
                # A global or legacy state covers every stream: it replaces what came before.
                self._states.clear()
            else:
                self._states.pop(("LEGACY", None, None), None)
            self._states[_key(clean)] = clean
            self.dirty = True

    def states(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._states.values())

    def save(self) -> bool:
        """Write the file if anything changed; True when it wrote."""
        with self._lock:
            if not self.dirty:
                return False
            payload = orjson.dumps(list(self._states.values()), option=orjson.OPT_INDENT_2)
            atomic_write(self.path, payload + b"\n")
            self.dirty = False
            return True

    def reset(self) -> bool:
        """Forget the state (the next sync starts from scratch); True when a file was removed."""
        with self._lock:
            self._states.clear()
            self.dirty = False
            try:
                self.path.unlink()
            except FileNotFoundError:
                return False
            return True


def append_history(path: Path, entry: dict[str, Any]) -> None:
    """Append one sync's JSON line (O_APPEND: concurrent syncs never interleave a line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, orjson.dumps(entry) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def read_history(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    entries = []
    for line in path.read_bytes().splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):
            entries.append(orjson.loads(line))
    return entries
