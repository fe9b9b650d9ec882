"""The hot loop of `write`: input lines routed to their stream's buffers.

A canonical RECORD line is routed and cut to its data without a parse (framing.py), a block of
one stream's canonical lines in bulk; any other line is parsed once by orjson and handed on (a
STATE to commits.py, a TRACE to the writer). A bad line is an InputError naming it.
"""

from __future__ import annotations

from typing import Any

import orjson
from pgbyte_common.errors import PgbyteError
from pgbyte_common.json_lines import may_round, stdlib_loads

from destination_postgres.batches import count_changes
from destination_postgres.catalog import StreamTarget
from destination_postgres.framing import (
    NUL_ESCAPE,
    RECORD_PREFIX,
    binary_rows,
    has_lone_surrogate,
    may_hold_surrogates,
    random_uuids,
    replace_lone_surrogates,
    row_head,
    slice_record,
    timestamp_usec,
)


class InputError(PgbyteError):
    """The input stream is broken at a given line (the message names it; `lineno` when known),
    or somewhere from `lineno` to `last` (a record refused when its batch was typed). The
    writer's report adds what the failed write left committed, known only after its salvage."""

    failure_type = "system_error"

    def __init__(self, message: str, lineno: int | None = None, last: int | None = None) -> None:
        super().__init__(message)
        self.lineno = lineno
        self.last = last


class Intake:
    """The Writer's input side (a mixin: the state it reads and writes is the Writer's)."""

    def handle_lines(self, lines: list[bytes]) -> None:
        if lines and self._uniform_block(lines):
            return
        # Other messages among the records (a source that checkpoints every page sends a STATE
        # every few records): each run of records between them may still go in bulk.
        others = [i for i, line in enumerate(lines) if not line.startswith(RECORD_PREFIX)]
        if not others or len(others) * 8 > len(lines):
            self._each_line(lines)
            return
        start = 0
        for i in [*others, len(lines)]:
            run = lines[start:i]
            if run and not self._uniform_block(run):
                self._each_line(run)
            self._each_line(lines[i : i + 1])
            start = i + 1

    def _each_line(self, lines: list[bytes]) -> None:
        """The line-by-line way: the fast path per RECORD line, the slow one for the rest."""
        fast = self.fast_keys
        for line in lines:
            self.lineno += 1
            nul = lone = 0
            if b"\\" in line:
                if b"\\u0000" in line:
                    line, nul = NUL_ESCAPE.subn(rb"\1", line)
                if may_hold_surrogates(line):
                    line, lone = replace_lone_surrogates(line)
            # Fast path: a canonical RECORD line is routed and sliced without parsing it; its
            # data is validated by Postgres (a refused batch is redone on the slow path).
            sliced = slice_record(line)
            if sliced is not None:
                name, ns, ds, de, em = sliced
                target = fast.get((name, ns))
                if target is None and ns is not None:
                    # Same rule as the slow path: a unique stream name wins over the namespace.
                    target = self.fast_by_name.get(name)
                if target is not None:
                    # One binary-COPY row (framing.BINARY_COLUMNS): its head, then the data.
                    rows = target.fast_rows
                    rows.append(row_head(self._take_uuids(1), self._usec(em), de - ds))
                    rows.append(line[ds:de])
                    # The bookkeeping the slow path does too (_slow), inline: no call per record.
                    target.fast_lines.append(line)
                    target.fast_linenos.append(self.lineno)
                    target.since_state += 1
                    target.nul_stripped += nul
                    target.surrogates_replaced += lone
                    size = len(line)
                    target.nbytes += size
                    self.buffered += size
                    if self.buffered >= self.batch_bytes:
                        self._flush_full(target)
                    continue
            self._slow(line, nul, lone)
            fast = self.fast_keys  # a COMPLETE may have unrouted its stream (_complete)

    def _uniform_block(self, lines: list[bytes]) -> bool:
        """The usual block: canonical RECORD lines of one stream. When every line is the first
        line's envelope around its data (same stream, same emitted_at), one split of the
        joined block yields the data pieces and their COPY rows are built in bulk
        (framing.binary_rows); when only the emitted_at varies, each line costs one find and a
        few slices. Either way the bookkeeping is done once per block. False (nothing done) for
        any other block: the line-by-line loop takes it."""
        first = lines[0]
        sliced = slice_record(first)
        if sliced is None:
            return False
        name, ns, ds, de, em = sliced
        target = self.fast_keys.get((name, ns))
        if target is None:
            return False
        n = len(lines)
        block = b"\n".join(lines)
        # Escapes are rare: one memchr for a backslash spares the two substring searches
        # (about 1.3 s of CPU per million benchmark lines).
        if b"\\" in block and (
            b"\\u0000" in block or (may_hold_surrogates(block) and has_lone_surrogate(block))
        ):
            return False  # the line loop strips NULs, replaces lone surrogates and counts them
        head, tail = first[:ds], first[de:]
        # A newline can only be a line break (JSON text has none inside): n-1 separators,
        # each a whole envelope between two data objects, prove every line has this shape.
        sep = tail + b"\n" + head
        if block.count(sep + b"{") == n - 1 and lines[-1].endswith(tail):
            datas = block.split(sep)  # cut the envelope off the first and last (no copy of all)
            datas[0] = datas[0][ds:]
            datas[-1] = datas[-1][: len(datas[-1]) - len(tail)]
            target.fast_rows += binary_rows(datas, self._usec(em), self._take_uuids(n))
        else:
            rows = self._varying_timestamps(lines, block, ds)
            if rows is None:
                return False
            target.fast_rows += rows
        target.fast_lines += lines
        target.fast_linenos += range(self.lineno + 1, self.lineno + n + 1)
        self.lineno += n
        target.since_state += n
        size = len(block) + 1 - n  # the lines' bytes, as the line loop counts them
        target.nbytes += size
        self.buffered += size
        if self.buffered >= self.batch_bytes:
            self._flush_full(target)
        return True

    def _usec(self, em: bytes) -> int:
        """emitted_at digits as a binary timestamptz, converted once per distinct value."""
        if em != self._last_em:
            self._last_em, self._last_usec = em, timestamp_usec(int(em))
        return self._last_usec

    def _take_uuids(self, n: int) -> bytes:
        """The next n random UUIDs (16 bytes each) of the buffer, refilled as needed."""
        p = self._id_pos
        if p + 16 * n > len(self._ids):
            self._ids, p = random_uuids(max(n, 1 << 15)), 0
        self._id_pos = p + 16 * n
        return self._ids[p : p + 16 * n]

    def _varying_timestamps(self, lines: list[bytes], block: bytes, ds: int) -> list[bytes] | None:
        """COPY rows of a block (`lines` joined) of one stream's canonical lines whose
        emitted_at varies; None when the lines are not all of that shape (a few counts over the
        block prove it)."""
        first = lines[0]
        # The prefix ends where lines start to differ: em_first (our source's order) after
        # `"emitted_at":` (then N,"data":{...}}}), else after `"data":` ({...},"emitted_at":N}}).
        k = first.find(b'"emitted_at":')
        em_first = 0 < k < ds
        plen = k + 13 if em_first else ds
        prefix = first[:plen]
        n = len(lines)
        tail = b"}}}\n" if em_first else b"}}\n"
        if (
            block.count(b"\n" + prefix + (b"" if em_first else b"{")) != n - 1
            or block.count(tail) != n - 1
            or not first.endswith(tail[:-1])
            or not lines[-1].endswith(tail[:-1])
        ):
            return None
        rows: list[bytes] = []
        add = rows.extend
        ids, pos = self._ids, self._id_pos
        last_em, usec = self._last_em, self._last_usec
        for line in lines:
            if em_first:
                e = line.find(b',"data":{', plen)
                em = line[plen:e]
                ds, de = e + 8, len(line) - 2
            else:
                de = line.rfind(b',"emitted_at":')
                em = line[de + 14 : -2]
                ds = plen
            if em != last_em:  # a new timestamp: check it (an equal one was checked before)
                if not em.isdigit() or de <= ds:
                    return None
                last_em, usec = em, timestamp_usec(int(em))
            if pos >= len(ids):
                ids, pos = random_uuids(), 0
            add((row_head(ids[pos : pos + 16], usec, de - ds), line[ds:de]))
            pos += 16
        self._ids, self._id_pos = ids, pos
        self._last_em, self._last_usec = last_em, usec
        return rows

    def _slow(self, line: bytes, nul: int = 0, lone: int = 0) -> None:
        """Any line: parsed by orjson (or the stdlib for what orjson refuses), then handled."""
        try:
            msg = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            msg = self._slow_parse(line, exc)
            if msg is None:
                return
        if type(msg) is not dict:
            raise self._bad("is not a JSON object")
        kind = msg.get("type")
        if kind == "RECORD":
            rec = msg.get("record")
            if type(rec) is not dict:
                raise self._bad('is a RECORD without a "record" object')
            target = self.by_key.get((rec.get("stream"), rec.get("namespace")))
            if target is None:
                target = self._resolve(rec)
            if target.swapped:  # only the slow path sees it: _complete unrouted the fast one
                raise self._bad(
                    f"is a RECORD of stream {target.label} after its STREAM_STATUS COMPLETE, "
                    "when its tables had already been replaced"
                )
            if type(rec.get("data")) is not dict:
                raise self._bad(
                    f"is a RECORD of stream {target.label} whose data is not a JSON object"
                )
            count_changes(target.source_changes, rec)
            target.slow_lines.append(line)
            target.slow_linenos.append(self.lineno)
            target.since_state += 1
            target.nul_stripped += nul
            target.surrogates_replaced += lone
            size = len(line)
            target.nbytes += size
            self.buffered += size
            if self.buffered >= self.batch_bytes:
                self._flush_full(target)
        elif kind == "STATE":
            if may_round(line):  # echoed: its numbers exactly as they came (json_lines.py)
                try:
                    msg = stdlib_loads(line)
                except RecursionError:  # (orjson took it: nested 1,000-1,024 deep)
                    raise self._bad("is JSON nested too deeply to parse") from None
            problem = state_problem(msg.get("state"))
            if problem:  # echoed, a client would save it as the connection's state
                raise self._bad(f"is a STATE message {problem}")
            self.on_state(msg)
        elif kind == "TRACE":
            self.on_trace(msg)
        # LOG, CONTROL and other types carry nothing for a destination.

    def _slow_parse(self, line: bytes, exc: orjson.JSONDecodeError) -> Any:
        if not line.strip():
            return None
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as err:
            raise self._bad(f"is not valid UTF-8 (byte {err.start + 1})") from None
        try:
            return stdlib_loads(line)
        except RecursionError:
            raise self._bad(f"is JSON nested too deeply to parse ({exc})") from None
        except ValueError:
            raise self._bad(f"is not valid JSON ({exc})") from None

    def _resolve(self, rec: dict[str, Any]) -> StreamTarget:
        name = rec.get("stream")
        target = self.by_name.get(name) if isinstance(name, str) else None
        if target is None:
            ns = rec.get("namespace")
            where = f"{ns}.{name}" if ns else str(name)
            known = ", ".join(sorted(t.label for t in self.targets)) or "none"
            raise self._bad(
                f"is a RECORD for stream {where!r}, which is not in the configured catalog "
                f"(streams: {known})"
            )
        return target

    def _bad(self, reason: str) -> InputError:
        return InputError(f"Input line {self.lineno} {reason}.", self.lineno)


def state_problem(state: Any) -> str | None:
    """What makes a STATE message's `state` no state a source could resume from (None: fine).
    A STREAM state must name its stream; a GLOBAL one carry `global`; other types (LEGACY,
    or none: Airbyte's legacy `data`) are passed on as they are."""
    if not isinstance(state, dict):
        return "without a state object"
    kind = state.get("type")
    if kind == "STREAM":
        stream = state.get("stream")
        desc = stream.get("stream_descriptor") if isinstance(stream, dict) else None
        if not isinstance(desc, dict) or not isinstance(desc.get("name"), str):
            return "of type STREAM without stream.stream_descriptor.name"
    elif kind == "GLOBAL" and not isinstance(state.get("global"), dict):
        return "of type GLOBAL without a global object"
    return None
