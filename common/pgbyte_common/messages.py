"""Lean Airbyte protocol output: one JSON message per line, serialized by orjson.

The hot paths (`read`, `write`) print through `MessageWriter` instead of the CDK's AirbyteMessage
objects (DESIGN.md §5). The free text of a message (a LOG line, an error's message and stack
trace, a check's verdict) passes through the secret masker; structure (names, states, numbers)
and RECORD lines are written as they are.
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import sys
import time
import traceback
from typing import Any, BinaryIO

import orjson

from pgbyte_common.errors import PgbyteError, SystemError_
from pgbyte_common.lines import escape_line_separators
from pgbyte_common.secrets import Masker


def buffer_stdout() -> None:
    """Give sys.stdout a buffered binary layer even under PYTHONUNBUFFERED (or `python -u`).

    Unbuffered, that layer is the raw file, whose write() returns after writing part of the
    bytes when a handled signal interrupts a write to a full pipe; MessageWriter, like every
    caller of a buffered stream, takes a write as whole, so the rest of a message would be lost
    without a word. A BufferedWriter writes everything or raises. Console scripts only."""
    if isinstance(sys.stdout.buffer, io.RawIOBase):
        sys.stdout.flush()
        sys.stdout = io.TextIOWrapper(
            io.BufferedWriter(sys.stdout.buffer), encoding=sys.stdout.encoding,
            errors=sys.stdout.errors,
        )  # fmt: skip


def to_devnull(*fds: int) -> None:
    """Point each descriptor at /dev/null: what is still written there (a buffer's flush at
    exit, say) goes nowhere instead of failing or blocking on a reader that is gone."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in fds:
            os.dup2(null, fd)
    finally:
        os.close(null)


def now_ms() -> int:
    return int(time.time() * 1000)


def _descriptor(name: str, namespace: str | None) -> dict[str, Any]:
    descriptor: dict[str, Any] = {"name": name}
    if namespace is not None:
        descriptor["namespace"] = namespace
    return descriptor


class MessageWriter:
    """Writes protocol messages to a binary stream (stdout by default)."""

    def __init__(self, out: BinaryIO | None = None, masker: Masker | None = None) -> None:
        self.out = out if out is not None else sys.stdout.buffer
        self.masker = masker or Masker()

    def raw(self, data: bytes) -> None:
        """Write already-serialized lines (RECORDs) unchanged."""
        self.out.write(data)

    def message(self, message: dict[str, Any]) -> None:
        """One message as is (line separators escaped: lines.py): callers mask its free text
        (see `log`, `error`)."""
        self.out.write(escape_line_separators(orjson.dumps(message)) + b"\n")

    def flush(self) -> None:
        self.out.flush()

    def reader_left(self) -> bool:
        """Whether our output is a pipe nobody reads any more (its read end closed: the
        orchestrator was killed), found without writing. False for files, terminals and
        streams without a descriptor."""
        try:
            poller = select.poll()
            poller.register(self.out.fileno(), select.POLLOUT)
            events = poller.poll(0)
        except (OSError, ValueError, io.UnsupportedOperation):
            return False
        return any(mask & select.POLLERR for _, mask in events)

    def reader_gone(self) -> None:
        """The reader of our output went away (a closed pipe): what is still buffered, and the
        interpreter's flush at exit, go to /dev/null instead of raising again."""
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            to_devnull(self.out.fileno())
            self.out.flush()

    def log(self, level: str, text: str) -> None:
        self.message({"type": "LOG", "log": {"level": level, "message": self.masker.mask(text)}})

    def connection_status(self, ok: bool, text: str | None = None) -> None:
        status: dict[str, Any] = {"status": "SUCCEEDED" if ok else "FAILED"}
        if text:
            status["message"] = self.masker.mask(text)
        self.message({"type": "CONNECTION_STATUS", "connectionStatus": status})
        self.flush()

    def stream_status(self, name: str, namespace: str | None, status: str) -> None:
        self.message({
            "type": "TRACE",
            "trace": {
                "type": "STREAM_STATUS",
                "emitted_at": now_ms(),
                "stream_status": {
                    "stream_descriptor": _descriptor(name, namespace),
                    "status": status,
                },
            },
        })  # fmt: skip

    def estimate(self, name: str, namespace: str | None, rows: int, nbytes: int) -> None:
        self.message({
            "type": "TRACE",
            "trace": {
                "type": "ESTIMATE",
                "emitted_at": now_ms(),
                "estimate": {
                    "name": name,
                    "namespace": namespace,
                    "type": "STREAM",
                    "row_estimate": max(rows, 0),
                    "byte_estimate": max(nbytes, 0),
                },
            },
        })  # fmt: skip

    def stream_state(
        self,
        name: str,
        namespace: str | None,
        state: dict[str, Any],
        *,
        record_count: int,
        stats_key: str = "sourceStats",
    ) -> None:
        self.message({
            "type": "STATE",
            "state": {
                "type": "STREAM",
                "stream": {
                    "stream_descriptor": _descriptor(name, namespace),
                    "stream_state": state,
                },
                stats_key: {"recordCount": float(record_count)},
            },
        })  # fmt: skip

    def error(
        self,
        text: str,
        *,
        failure_type: str = "system_error",
        internal: str | None = None,
        stream: tuple[str, str | None] | None = None,
        stack_trace: str | None = None,
    ) -> None:
        mask = self.masker.mask
        error: dict[str, Any] = {"message": mask(text), "failure_type": failure_type}
        if internal:
            error["internal_message"] = mask(internal)
        if stack_trace:
            error["stack_trace"] = mask(stack_trace)
        if stream:
            error["stream_descriptor"] = _descriptor(*stream)
        self.message({"type": "TRACE", "trace": {"type": "ERROR", "emitted_at": now_ms(),
                                                 "error": error}})  # fmt: skip
        self.flush()

    def stopped(self, text: str) -> None:
        """The transient TRACE ERROR of a verb a signal stopped (a reader already gone is
        nobody to tell)."""
        with contextlib.suppress(BrokenPipeError):
            self.error(text, failure_type="transient_error")

    def exception(
        self, exc: BaseException, *, stream: tuple[str, str | None] | None = None
    ) -> None:
        """One TRACE ERROR for an exception, with its failure_type, its internal message (as
        the CDK's: the error's own text) and a masked stack trace (the protocol's stack_trace:
        the platform keeps it as the failure's stacktrace)."""
        stack = "".join(traceback.format_exception(exc))  # before a wrap loses its traceback
        if not isinstance(exc, PgbyteError):
            exc = SystemError_(f"Unexpected error: {exc}", internal=repr(exc))
        self.error(
            exc.message, failure_type=exc.failure_type, internal=exc.internal or exc.message,
            stream=stream, stack_trace=stack,
        )  # fmt: skip
