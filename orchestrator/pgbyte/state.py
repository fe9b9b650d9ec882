"""The saved state of a connection and its sync history.

The state file holds exactly what a source accepts as `--state`: a JSON array of Airbyte state
messages' `state` objects (STREAM per stream, or one GLOBAL, or one LEGACY), always in source
stream names, with the stats stripped. It only ever holds states the destination echoed back,
i.e. states whose records are committed. Writes are atomic: a temp file beside it, fsync,
rename, fsync of the directory — a crash leaves either the old file or the new one.

The history file beside it gets one JSON line per sync. A lock file beside it (`flock`) keeps two
syncs — or a sync and a `state reset` — of one connection from overwriting each other's state.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from pgbyte_common import json_lines

_STATS = ("sourceStats", "destinationStats")


class StateFileError(ValueError):
    """The state file exists but cannot be used; the message says how to recover."""


class StateBusyError(RuntimeError):
    """Another pgbyte process holds the connection's state (a sync is running)."""


@contextlib.contextmanager
def state_lock(path: Path, what: str) -> Iterator[None]:
    """Hold `<state>.lock` exclusively for the block, or raise StateBusyError at once.

    flock is released by the kernel when the holder dies (even by SIGKILL), so a killed sync
    never leaves a stale lock; the descriptor is not inherited by the connectors (O_CLOEXEC)."""
    lock = path.with_name(path.name + ".lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        reason = (
            "a part of its folder path is a file"
            if isinstance(exc, FileExistsError | NotADirectoryError)
            else exc.strerror
        )
        raise StateFileError(
            f"cannot {what}: the state file {path} cannot be made ({reason}): fix the "
            "connection file's state: path"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateBusyError(
                f"cannot {what}: another pgbyte process (a sync of this connection) holds its "
                f"state ({lock}); wait for it to end"
            ) from None
        yield
    finally:
        os.close(fd)


def stream_label(name: str | None, namespace: str | None) -> str:
    return f"{namespace}.{name}" if namespace else str(name)


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


def reset_command(connection: Path | str, *options: str) -> str:
    """A `pgbyte state reset` command line to paste (shell-quoted)."""
    return shlex.join(["pgbyte", "state", "reset", str(connection), *options])


class StateStore:
    """The latest committed state per stream, merged from echoed STATE messages."""

    def __init__(self, path: Path, connection: Path | None = None) -> None:
        self.path = path
        # The connection file, for the reset command an error suggests.
        self._reset_command = reset_command(connection or "CONN")
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str | None, str | None], dict[str, Any]] = {}
        self.dirty = False
        for state in self.load():
            self._states[_key(state)] = state

    def load(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        try:
            data = json_lines.loads(self.path.read_bytes())  # a cursor past 64 bits exactly
        except (OSError, ValueError, RecursionError) as exc:
            raise StateFileError(
                f"state file {self.path} is unreadable ({exc}); fix it or run "
                f"`{self._reset_command}` to start over"
            ) from None
        if isinstance(data, dict):  # a single (legacy) state object
            data = [data if "type" in data else {"type": "LEGACY", "data": data}]
        if not isinstance(data, list) or not all(isinstance(s, dict) for s in data):
            raise StateFileError(
                f"state file {self.path} is not a list of Airbyte states; fix it or run "
                f"`{self._reset_command}` to start over"
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
                self._drop_from_global(_key(clean))
            self._states[_key(clean)] = clean
            self.dirty = True

    def _drop_from_global(self, key: tuple[str, str | None, str | None]) -> None:
        """A STREAM state replaces that stream's entry in a GLOBAL state (one kept from before,
        say Airbyte's CDC read): one position per stream, whatever the order sources read."""
        glob = self._states.get(("GLOBAL", None, None))
        body = glob.get("global") if glob else None
        if not isinstance(body, dict) or not isinstance(body.get("stream_states"), list):
            return
        kept = [
            s for s in body["stream_states"]
            if not isinstance(s, dict) or _key({"type": "STREAM", "stream": s}) != key
        ]  # fmt: skip
        if len(kept) != len(body["stream_states"]):
            self._states[("GLOBAL", None, None)] = {
                **glob,
                "global": {**body, "stream_states": kept},
            }

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

    def stream_keys(self) -> list[tuple[str | None, str | None]]:
        """(name, namespace) of every stream the saved state covers, in file order."""
        keys: list[tuple[str | None, str | None]] = []
        for state in self.states():
            for descriptor, _ in stream_entries(state):
                keys.append((descriptor.get("name"), descriptor.get("namespace")))
        return keys

    def forget(self, streams: set[tuple[str | None, str | None]]) -> list[str]:
        """Drop the state of these (name, namespace) streams and rewrite the file atomically.

        STREAM states are removed; a GLOBAL state loses those entries of its stream_states (its
        shared state stays for the other streams); a legacy state loses those entries of its
        `streams` list. Returns the labels of the streams forgotten."""
        forgotten: list[str] = []
        with self._lock:
            kept: dict[tuple[str, str | None, str | None], dict[str, Any]] = {}
            for key, state in self._states.items():
                entries = stream_entries(state)
                drop = [
                    d for d, _ in entries if (d.get("name"), d.get("namespace")) in streams
                ]  # fmt: skip
                forgotten += [stream_label(d.get("name"), d.get("namespace")) for d in drop]
                if not drop:
                    kept[key] = state
                elif state.get("type") != "STREAM":
                    rest = [e for d, e in entries if d not in drop]
                    kept[key] = _with_entries(state, rest)
            self._states = kept
            if kept:
                payload = orjson.dumps(list(kept.values()), option=orjson.OPT_INDENT_2)
                atomic_write(self.path, payload + b"\n")
            else:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            self.dirty = False
        return forgotten

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


def stream_entries(state: dict[str, Any]) -> list[tuple[dict[str, Any], Any]]:
    """(descriptor, entry) per stream inside one saved state, whatever its type.

    Legacy entries (Airbyte source-postgres's `{"streams": [{"stream_name": …}]}`) get a
    descriptor built from their stream_name/stream_namespace."""
    kind = state.get("type") or "LEGACY"
    if kind == "STREAM":
        stream = state.get("stream") or {}
        descriptor = stream.get("stream_descriptor")
        return [(descriptor, stream)] if isinstance(descriptor, dict) else []
    if kind == "GLOBAL":
        return [
            (s["stream_descriptor"], s)
            for s in (state.get("global") or {}).get("stream_states") or []
            if isinstance(s, dict) and isinstance(s.get("stream_descriptor"), dict)
        ]
    data = state.get("data")
    streams = data.get("streams") if isinstance(data, dict) else None
    return [
        ({"name": s.get("stream_name"), "namespace": s.get("stream_namespace")}, s)
        for s in streams or []
        if isinstance(s, dict) and isinstance(s.get("stream_name"), str)
    ]


def _with_entries(state: dict[str, Any], entries: list[Any]) -> dict[str, Any]:
    """A GLOBAL or legacy state with only `entries` left as its per-stream part."""
    if state.get("type") == "GLOBAL":
        return {**state, "global": {**state["global"], "stream_states": entries}}
    return {**state, "data": {**state["data"], "streams": entries}}


def append_history(path: Path, entry: dict[str, Any]) -> None:
    """Append one sync's JSON line (O_APPEND: concurrent syncs never interleave a line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        line = orjson.dumps(entry) + b"\n"
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # an earlier append was cut short: this one starts a new line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_history(path: Path) -> list[dict[str, Any]]:
    """The syncs' entries, oldest first; a line that is not one (cut short, edited) is skipped."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_bytes().splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):
            entry = orjson.loads(line)
            if _history_entry(entry):
                entries.append(entry)
    return entries


def _history_entry(entry: Any) -> bool:
    """Whether a parsed history line has the shape and field types the commands read (those
    append_history writes)."""
    if not isinstance(entry, dict):
        return False
    total, streams = entry.get("total", {}), entry.get("streams", [])
    return (
        all(isinstance(entry.get(key), str | None) for key in ("status", "started_at", "reason"))
        and isinstance(entry.get("duration_seconds", 0), int | float)
        and isinstance(total, dict)
        and all(isinstance(value, int | float) for value in total.values())
        and isinstance(streams, list)
        and all(_history_stream(stream) for stream in streams)
    )


def _history_stream(stream: Any) -> bool:
    names = ("stream", "namespace", "destination_stream", "destination_namespace", "status")
    counts = ("records_emitted", "records_committed", "bytes")
    return (
        isinstance(stream, dict)
        and all(isinstance(stream.get(key), str | None) for key in names)
        and all(isinstance(stream.get(key, 0), int | float) for key in counts)
    )
