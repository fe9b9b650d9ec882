"""Short connector calls (spec, check, discover) and the helpers for reading protocol messages.

A short call reads stdout and stderr on two threads until both end (reading one first can
deadlock when the other pipe fills), then waits for the exit code. Its messages are parsed
whole: these outputs are small. The hot path (`read` piped into `write`) lives in pgbyte.pump.
"""

from __future__ import annotations

import contextlib
import io
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgbyte_common import json_lines

from pgbyte.runner import ConnectorProcess, ConnectorRunner
from pgbyte.secrets import Masker

LogFn = Callable[[str, str], None]


class ConnectorError(RuntimeError):
    """A connector call failed; `message` is one masked paragraph a person can act on."""

    def __init__(self, message: str, *, failure_type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.failure_type = failure_type


@dataclass
class CallResult:
    """Everything one short connector call printed, parsed."""

    label: str
    verb: str
    exit_code: int
    messages: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)  # TRACE ERROR payloads
    stderr_tail: list[str] = field(default_factory=list)
    log_tail: list[str] = field(default_factory=list)  # ERROR/FATAL log lines

    def first(self, msg_type: str) -> dict[str, Any] | None:
        return next((m for m in self.messages if m.get("type") == msg_type), None)

    def failure(self, masker: Masker) -> str:
        """One paragraph: the connector's own error when it gave one, else what it printed."""
        return failure_reason(
            self.label, self.verb, self.exit_code, self.errors, self.log_tail, self.stderr_tail,
            masker,
        )  # fmt: skip


def failure_reason(
    label: str,
    verb: str,
    exit_code: int | None,
    errors: list[dict[str, Any]],
    log_tail: list[str],
    stderr_tail: list[str],
    masker: Masker,
) -> str:
    if errors:
        err = errors[0]
        kind = err.get("failure_type") or "error"
        text = f"The {label} failed ({kind}): {err.get('message') or 'no message given'}"
    elif log_tail:
        text = f"The {label} failed during {verb}: {log_tail[-1]}"
    else:
        code = "" if exit_code is None else f" with exit code {exit_code}"
        if exit_code is not None and exit_code < 0:  # subprocess: killed by that signal
            with contextlib.suppress(ValueError):
                code = f" killed by {signal.Signals(-exit_code).name}"
        text = f"The {label} {verb} ended{code}"
        if stderr_tail:
            text += ": " + " | ".join(line.strip() for line in stderr_tail[-3:] if line.strip())
    return masker.mask(" ".join(text.split()))


def buffered(stream: Any) -> Any:
    """A line reader over a pipe: readline on a raw (unbuffered) pipe reads byte by byte."""
    return io.BufferedReader(stream, 1 << 16) if isinstance(stream, io.RawIOBase) else stream


def parse_line(line: bytes) -> dict[str, Any] | None:
    """One protocol message, or None for a line that is not one (connectors may print noise)."""
    try:
        message = json_lines.loads(line)  # numbers beyond 64 bits too (a STATE's cursor)
    except (ValueError, RecursionError):
        return None
    return message if isinstance(message, dict) and "type" in message else None


def log_text(label: str, message: dict[str, Any]) -> tuple[str, str]:
    """(level, 'label LEVEL text') for a LOG message."""
    log = message.get("log") or {}
    level = str(log.get("level") or "INFO").upper()
    return level, f"[{label}] {level} {log.get('message', '')}"


def drain_stderr(
    stream: Any, label: str, masker: Masker, tail: list[str], log: LogFn | None
) -> threading.Thread:
    """Read a connector's stderr on a thread: keep a tail for error reports, log it masked."""

    def run() -> None:
        with contextlib.suppress(ValueError, OSError):
            for raw in buffered(stream):
                text = masker.mask(raw.decode("utf-8", "replace").rstrip("\n"))
                tail.append(text)
                del tail[:-20]
                if log is not None and text.strip():
                    log("INFO", f"[{label}] {text}")

    thread = threading.Thread(target=run, name=f"{label}-stderr", daemon=True)
    thread.start()
    return thread


def stop_process(
    proc: ConnectorProcess, *, grace: float = 10.0, terminated: bool = False
) -> int | None:
    """terminate → wait → kill → wait: the process is gone when this returns. `terminated`:
    the caller has sent SIGTERM already (a second one could cut short the connector's own
    clean-up, e.g. the destination dropping its overwrite temporaries)."""
    if proc.poll() is None:
        if not terminated:
            proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:  # a process that survives SIGKILL: nothing more to do
        return None


def call(
    runner: ConnectorRunner,
    verb: str,
    masker: Masker,
    *,
    config: Path | None = None,
    catalog: Path | None = None,
    stdin: bytes | None = None,
    log: LogFn | None = None,
    track: Callable[[ConnectorProcess], None] | None = None,
) -> CallResult:
    """Run spec/check/discover (or a `write` of a few messages in `stdin`) to the end and
    parse what it printed."""
    proc = runner.run(verb, config=config, catalog=catalog, stdin=stdin is not None)
    if track is not None:
        track(proc)
    result = CallResult(label=runner.label, verb=verb, exit_code=-1)
    stderr_thread = drain_stderr(proc.stderr, runner.label, masker, result.stderr_tail, log)
    try:
        if stdin is not None and proc.stdin is not None:
            # A few small messages: they fit in the pipe, so writing before reading is safe.
            with contextlib.suppress(OSError):
                proc.stdin.write(stdin)
                proc.stdin.flush()
            with contextlib.suppress(OSError):
                proc.stdin.close()
        for raw in buffered(proc.stdout):
            message = parse_line(raw)
            if message is None:
                if raw.strip():
                    result.stderr_tail.append(masker.mask(raw.decode("utf-8", "replace").strip()))
                continue
            kind = message.get("type")
            if kind == "LOG":
                level, text = log_text(runner.label, message)
                if level in ("ERROR", "FATAL"):
                    result.log_tail.append(masker.mask(str(message["log"].get("message", ""))))
                if log is not None:
                    log(level, masker.mask(text))
            elif kind == "TRACE" and (message.get("trace") or {}).get("type") == "ERROR":
                error = dict(message["trace"].get("error") or {})
                error["message"] = masker.mask(str(error.get("message") or ""))
                result.errors.append(error)
            else:
                result.messages.append(message)
        result.exit_code = proc.wait()
    finally:
        code = stop_process(proc)
        stderr_thread.join(5)
        proc.close()
        if result.exit_code == -1 and code is not None:
            result.exit_code = code
    return result
