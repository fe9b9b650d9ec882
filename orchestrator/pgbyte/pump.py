"""The hot path: source stdout → (rename streams) → destination stdin, and the echo reader.

`SourcePump` runs on its own thread. It reads the source's stdout a megabyte at a time, cuts the
block at its last newline, and hands whole lines on: runs of RECORD lines go through
`RecordRewriter.records_block` (bytes in, bytes out); the rare other lines are parsed — STATE and
TRACE STREAM_STATUS are forwarded with mapped stream names, LOG/ESTIMATE/ERROR are consumed here.
`DestinationReader` runs on another thread and turns echoed STATEs into saved state.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from pgbyte.protocol import buffered, log_text, parse_line
from pgbyte.rewrite import NL_REC, RecordRewriter, state_descriptors
from pgbyte.runner import ConnectorProcess
from pgbyte.secrets import Masker
from pgbyte.state import StateStore

CHUNK = 1 << 20
# A newline not followed by a RECORD envelope starts some other line (or ends the block).
_OTHER_LINE = re.compile(rb'\n(?!\{"type":"RECORD","record":\{)')
_RECORD_TYPE = re.compile(rb'"type"\s*:\s*"RECORD"')  # a line meant as a RECORD, however spaced


@dataclass
class StreamProgress:
    """What the source said about one stream, beside the rewriter's counts."""

    status: str = "PENDING"
    row_estimate: int | None = None
    byte_estimate: int | None = None
    committed: int = 0
    committed_by_stats: bool = False
    started_at: float | None = None
    ended_at: float | None = None


@dataclass
class SyncProgress:
    """State shared by the pump threads and the main thread (ints and lists: GIL-safe)."""

    streams: list[StreamProgress]
    source_errors: list[dict[str, Any]] = field(default_factory=list)
    dest_errors: list[dict[str, Any]] = field(default_factory=list)
    source_log_errors: list[str] = field(default_factory=list)
    dest_log_errors: list[str] = field(default_factory=list)
    states_forwarded: int = 0
    states_committed: int = 0
    dest_broken: bool = False
    pump_error: str | None = None  # an unexpected error on the pump thread


LogFn = Callable[[str, str], None]


def _as_bytes(block: bytes | bytearray, stop: int) -> bytes:
    if isinstance(block, bytes) and stop == len(block):
        return block
    return bytes(memoryview(block)[:stop])


class SourcePump:
    """Forwards the source's output to the destination (one thread)."""

    def __init__(
        self,
        source: ConnectorProcess,
        dest: ConnectorProcess,
        rewriter: RecordRewriter,
        progress: SyncProgress,
        masker: Masker,
        log: LogFn,
    ) -> None:
        self.source, self.dest = source, dest
        self.rewriter, self.progress = rewriter, progress
        self.masker, self.log = masker, log
        self.partial_tail = b""  # an unterminated last line, seen at EOF
        self._out_fd = dest.stdin.fileno() if dest.stdin is not None else -1
        self._lock = threading.Lock()  # the main thread may also write (INCOMPLETE statuses)

    def run(self) -> None:
        fd = self.source.stdout.fileno()
        # `\n`, the start of an unfinished line, then what the next read brings: one buffer for
        # the whole sync. A fresh megabyte per read and a join to put the unfinished line in
        # front cost a third of pgbyte's CPU time (measured on 537 MB of messages).
        buf = bytearray(b"\n") + bytearray(2 * CHUNK)
        filled = 1  # buf[:filled]: `\n` + the unfinished line
        try:
            while True:
                if len(buf) < filled + CHUNK:  # a line longer than the buffer: grown in
                    # place by half (not copied into a new one twice its size: a 100 MB line
                    # held three buffers at once)
                    buf += bytes(max(len(buf) // 2, filled + CHUNK - len(buf)))
                read = os.readv(fd, [memoryview(buf)[filled : filled + CHUNK]])
                if not read:
                    break
                top = filled + read
                end = buf.rfind(b"\n", filled, top)
                if end < 0:
                    filled = top  # no line ends yet: keep collecting
                    continue
                out = self.process(buf, end + 1)
                if self.rewriter.bad_lines:
                    self._bad_lines()
                if out and not self.write(out):
                    return
                del out  # may be a view of buf, which changes next
                rest = top - end - 1
                buf[1 : 1 + rest] = buf[end + 1 : top]
                filled = 1 + rest
                if len(buf) > 8 * CHUNK and filled <= CHUNK:  # the long line is gone
                    buf = buf[: 2 * CHUNK + 1]
        except OSError:
            return  # the source's pipe broke: its exit code tells the story
        except Exception as exc:  # a bug of ours must fail the sync, not hang it
            self.progress.pump_error = f"{type(exc).__name__}: {exc}"
            return
        self.partial_tail = bytes(buf[1:filled])

    def forward_tail(self) -> None:
        """The source ended on a line without a newline: forward it like any other (a broken
        RECORD there is a source error too, not a line dropped)."""
        if self.partial_tail:
            out = self.process(b"\n" + self.partial_tail + b"\n")
            self.partial_tail = b""
            if self.rewriter.bad_lines:
                self._bad_lines()
            if out:
                self.write(out)

    def _bad_lines(self) -> None:
        for line in self.rewriter.bad_lines:
            text = self.masker.mask(line.decode("utf-8", "replace"))
            message = f"The source printed a RECORD line that is not valid JSON: {text[:200]}"
            self.progress.source_errors.append({"message": message, "failure_type": "system_error"})
            self.log("ERROR", f"pgbyte: {message}")
        self.rewriter.bad_lines.clear()

    def write(self, data: bytes | memoryview) -> bool:
        """Write everything to the destination; False once its stdin is gone."""
        if self.progress.dest_broken:
            return False
        view = memoryview(data)
        with self._lock:
            try:
                while view:
                    written = os.write(self._out_fd, view)
                    view = view[written:]
            except (BrokenPipeError, OSError):
                self.progress.dest_broken = True
                return False
        return True

    def process(self, block: bytes | bytearray, stop: int | None = None) -> bytes | memoryview:
        """`\\n` + whole lines (block[:stop]) in, the lines to forward out: a view of `block`
        when nothing in them changes."""
        stop = len(block) if stop is None else stop
        records = block.count(NL_REC, 0, stop)
        if records == block.count(b"\n", 0, stop) - 1:
            # Every line is a RECORD (the usual block): two memchr-speed counts decide it,
            # cheaper than the regex scan below.
            if self.rewriter.identity:
                return self.rewriter.records_block(memoryview(block)[:stop], records)
            return self.rewriter.records_block(_as_bytes(block, stop), records)
        block = _as_bytes(block, stop)  # some other line in it (rare): work on a copy
        last = len(block) - 1
        first = _OTHER_LINE.search(block)  # always matches: at least the final newline
        if first is None or first.start() == last:
            return self.rewriter.records_block(block, records)
        pieces: list[bytes | memoryview] = []
        pos = 0
        for match in _OTHER_LINE.finditer(block, first.start()):
            start = match.start()
            if start == last:
                break
            if start > pos:
                seg = block[pos : start + 1]
                pieces.append(self.rewriter.records_block(seg, seg.count(NL_REC)))
            end = block.index(b"\n", start + 1)
            forward = self.other_line(block[start + 1 : end])
            if forward is not None:
                pieces.append(forward)
            pos = end
        if pos < last:
            seg = block[pos:]
            pieces.append(self.rewriter.records_block(seg, seg.count(NL_REC)))
        return b"".join(pieces)

    def other_line(self, line: bytes) -> bytes | None:
        """A non-RECORD (or oddly shaped) line: map and forward it, or consume it."""
        message = parse_line(line)
        if message is None:
            if _RECORD_TYPE.search(line):
                # A RECORD whose JSON is broken (not in the compact form the fast path checks):
                # dropped quietly, the saved state would go past a record never loaded.
                self.rewriter.bad_lines.append(line[:300])
            elif line.strip():
                text = self.masker.mask(line.decode("utf-8", "replace").strip()[:2000])
                self.log("INFO", f"[source] {text}")
            return None
        kind = message.get("type")
        if kind == "RECORD":
            return self.rewriter.record_line(message, len(line) + 1)
        if kind == "STATE":
            state = message.get("state") or {}
            for descriptor in state_descriptors(state):
                self.rewriter.descriptor_to_dest(descriptor)
            self.progress.states_forwarded += 1
            return orjson.dumps(message) + b"\n"
        if kind == "LOG":
            level, text = log_text("source", message)
            if level in ("ERROR", "FATAL"):
                self.progress.source_log_errors.append(
                    self.masker.mask(str(message["log"].get("message", "")))
                )
            self.log(level, self.masker.mask(text))
            return None
        if kind == "TRACE":
            return self.trace(message)
        return None  # CONTROL, SPEC, …: nothing the destination needs

    def trace(self, message: dict[str, Any]) -> bytes | None:
        trace = message.get("trace") or {}
        kind = trace.get("type")
        if kind == "ERROR":
            error = dict(trace.get("error") or {})
            error["message"] = self.masker.mask(str(error.get("message") or ""))
            error.pop("internal_message", None)
            error.pop("stack_trace", None)
            self.progress.source_errors.append(error)
            self.log("ERROR", f"[source] ERROR {error['message']}")
            return None
        if kind == "ESTIMATE":
            estimate = trace.get("estimate") or {}
            index = self.rewriter.route_index(estimate)
            if index is not None:
                stream = self.progress.streams[index]
                stream.row_estimate = estimate.get("row_estimate")
                stream.byte_estimate = estimate.get("byte_estimate")
            return None
        if kind == "STREAM_STATUS":
            status = trace.get("stream_status") or {}
            descriptor = status.get("stream_descriptor") or {}
            index = self.rewriter.route_index(descriptor)
            if index is not None:
                self._status(index, str(status.get("status")))
            self.rewriter.descriptor_to_dest(descriptor)
            return orjson.dumps(message) + b"\n"
        return None

    def _status(self, index: int, status: str) -> None:
        stream = self.progress.streams[index]
        if status in ("STARTED", "RUNNING") and stream.started_at is None:
            stream.started_at = time.monotonic()
        if status in ("COMPLETE", "INCOMPLETE"):
            stream.ended_at = time.monotonic()
        stream.status = status

    def close_destination_input(self) -> None:
        with self._lock, contextlib.suppress(OSError):
            if self.dest.stdin is not None:
                self.dest.stdin.close()


class DestinationReader:
    """Reads the destination's stdout (one thread): echoed states are saved, logs printed."""

    def __init__(
        self,
        dest: ConnectorProcess,
        rewriter: RecordRewriter,
        progress: SyncProgress,
        store: StateStore,
        masker: Masker,
        log: LogFn,
        *,
        save_every: float = 1.0,
    ) -> None:
        self.dest, self.rewriter, self.progress = dest, rewriter, progress
        self.store, self.masker, self.log = store, masker, log
        self.save_every = save_every
        self._last_save = 0.0
        self.save_error: Exception | None = None

    def run(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            for line in buffered(self.dest.stdout):
                message = parse_line(line)
                if message is None:
                    if line.strip():
                        text = self.masker.mask(line.decode("utf-8", "replace").strip()[:2000])
                        self.log("INFO", f"[destination] {text}")
                    continue
                kind = message.get("type")
                if kind == "STATE":
                    self.echo(message.get("state") or {})
                elif kind == "LOG":
                    level, text = log_text("destination", message)
                    if level in ("ERROR", "FATAL"):
                        self.progress.dest_log_errors.append(
                            self.masker.mask(str(message["log"].get("message", "")))
                        )
                    self.log(level, self.masker.mask(text))
                elif kind == "TRACE" and (message.get("trace") or {}).get("type") == "ERROR":
                    error = dict(message["trace"].get("error") or {})
                    error["message"] = self.masker.mask(str(error.get("message") or ""))
                    self.progress.dest_errors.append(error)
                    self.log("ERROR", f"[destination] ERROR {error['message']}")

    def echo(self, state: dict[str, Any]) -> None:
        """A committed state: count its records, map it back to source names, keep it."""
        descriptors = state_descriptors(state)
        stats = state.get("destinationStats") or state.get("sourceStats") or {}
        count = stats.get("recordCount")
        if state.get("type") == "STREAM" and descriptors and count is not None:
            index = self.rewriter.route_index(descriptors[0], dest=True)
            if index is not None:
                stream = self.progress.streams[index]
                stream.committed += int(count)
                stream.committed_by_stats = True
        for descriptor in descriptors:
            self.rewriter.descriptor_to_source(descriptor)
        self.store.merge(state)
        self.progress.states_committed += 1
        self.save_due()

    def save_due(self) -> None:
        """Save the echoed states if it has been save_every since the last save (from the echo
        thread at each echo, and from the main thread while it waits: the last echoes before
        a source goes quiet are saved then, not only at the next echo or the end)."""
        now = time.monotonic()
        if self.store.dirty and now - self._last_save >= self.save_every:
            self._last_save = now
            self.save()

    def save(self) -> None:
        try:
            self.store.save()
        except OSError as exc:  # reported by the sync; the next save may still succeed
            self.save_error = exc
        else:
            self.save_error = None  # every state echoed so far is saved now
