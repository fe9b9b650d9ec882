"""The `write` message loop: stdin lines → per-stream batches → commits → echoed STATEs.

Lean on purpose (DESIGN.md §5): stdin is read in large binary chunks; a canonical RECORD line
is routed and cut to its data without a parse (framing.py), any other line is parsed once by
orjson; record data reaches Postgres as the bytes that arrived, and each batch is loaded on a
background thread while the next one is read. A STATE is
echoed after everything before it is committed (STATEs close together share one commit:
COMMIT_SECONDS); an overwrite stream's tables are swapped in
when its STREAM_STATUS COMPLETE arrives (or, for sources that send no statuses, at a clean end
of input). Bad input ends the write with one TRACE ERROR naming the line; nothing committed is
lost and no overwrite is swapped by a broken run.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson
import psycopg
from pgbyte_common.errors import PgbyteError, SystemError_, TransientError, classify_error
from pgbyte_common.interrupts import deferred
from pgbyte_common.json_lines import stdlib_loads
from pgbyte_common.messages import MessageWriter
from psycopg import sql

from destination_postgres import ddl, dedup, loader, naming, rawonly, rebuild, stages
from destination_postgres.catalog import StreamTarget
from destination_postgres.framing import (
    NUL_ESCAPE,
    RECORD_PREFIX,
    binary_rows,
    has_lone_surrogate,
    may_hold_surrogates,
    random_uuids,
    read_lines,
    replace_lone_surrogates,
    row_head,
    slice_record,
    timestamp_usec,
)

BATCH_BYTES = 16 << 20  # per stream and in total: bounds memory whatever the input size
# With a second connection two batches are in flight at once: smaller ones keep the same bound.
PARALLEL_BATCH_BYTES = 8 << 20
# A stage the first connection has read keeps a lock and its disk space until that connection
# commits (with the next STATEs); past this many, batches skip the stage until then.
MAX_STAGES_PER_COMMIT = 64
# A STATE is committed at once when it comes this long after the last commit; one sooner waits
# (pending) until then, until the buffers fill or until no more input is waiting, and is then
# committed and echoed with the rest: exactly the records before the last pending STATE are
# (_commit_pending), the later ones stay buffered. Sources that checkpoint every few records
# (many CDK sources do, per page) would otherwise cost a commit, and the drain of the load
# pipeline before it, every few records: 200,000 records with a STATE every 100 took 11.4 s to
# write, against 2.3 s with one STATE.
COMMIT_SECONDS = 1.0
# The STREAM_STATUS of a stream the source started and did not finish.
_UNFINISHED = ("STARTED", "RUNNING", "INCOMPLETE")
# What PostgreSQL raises when it refuses a batch's row as it moves it into the tables.
_TYPED_REFUSALS = (psycopg.DataError, psycopg.IntegrityError, psycopg.errors.ProgramLimitExceeded)


class InputError(PgbyteError):
    """The input stream is broken at a given line (the message names it; `lineno` when known),
    or somewhere from `lineno` to `last` (a record refused when its batch was typed)."""

    failure_type = "system_error"

    def __init__(self, message: str, lineno: int | None = None, last: int | None = None) -> None:
        super().__init__(message)
        self.lineno = lineno
        self.last = last


@dataclass
class _Batch:
    """One stream's buffered lines on their way to Postgres (what loader's COPYs read)."""

    target: StreamTarget
    count: int
    fast_rows: list[bytes]
    fast_lines: list[bytes]
    fast_linenos: list[int]
    slow_lines: list[bytes]
    slow_linenos: list[int]
    error: BaseException | None = None
    # Staged on the second connection (stages.fill): set once that connection is free.
    parsed: threading.Event | None = None
    refused: bool = False  # Postgres refused the batch's binary COPY there: go the slow way
    # meta.changes of its records (field → how many), found when its lines were parsed.
    changes: dict[str, int] = field(default_factory=dict)

    @property
    def overwrite(self) -> bool:
        return self.target.overwrite

    @property
    def load_raw(self) -> tuple[str, str]:
        return self.target.load_raw


@dataclass(frozen=True)
class _Cut:
    """A place in a stream's buffers: the lengths of fast_rows, fast_lines, slow_lines and
    nbytes (fast_linenos and slow_linenos go with their lines)."""

    rows: int
    lines: int
    slow: int
    nbytes: int

    @classmethod
    def of(cls, t: StreamTarget) -> _Cut:
        return cls(len(t.fast_rows), len(t.fast_lines), len(t.slow_lines), t.nbytes)


_START = _Cut(0, 0, 0, 0)


@dataclass
class _Buffers:
    """A stream's buffered records, set aside."""

    fast_rows: list[bytes]
    fast_lines: list[bytes]
    fast_linenos: list[int]
    slow_lines: list[bytes]
    slow_linenos: list[int]
    nbytes: int

    @classmethod
    def of(cls, t: StreamTarget) -> _Buffers:
        return cls(t.fast_rows, t.fast_lines, t.fast_linenos, t.slow_lines, t.slow_linenos,
                   t.nbytes)  # fmt: skip

    @classmethod
    def split(cls, t: StreamTarget, at: _Cut) -> _Buffers | None:
        """Detach what `t` buffered after `at`; None when nothing."""
        if t.nbytes == at.nbytes:
            return None
        rest = cls(t.fast_rows[at.rows :], t.fast_lines[at.lines :], t.fast_linenos[at.lines :],
                   t.slow_lines[at.slow :], t.slow_linenos[at.slow :],
                   t.nbytes - at.nbytes)  # fmt: skip
        del t.fast_rows[at.rows :], t.fast_lines[at.lines :], t.fast_linenos[at.lines :]
        del t.slow_lines[at.slow :], t.slow_linenos[at.slow :]
        t.nbytes = at.nbytes
        return rest

    def restore(self, t: StreamTarget, upto: _Cut | None = None) -> None:
        """Make these `t`'s buffers again (only their part before `upto`)."""
        upto = upto or _Cut(len(self.fast_rows), len(self.fast_lines), len(self.slow_lines),
                            self.nbytes)  # fmt: skip
        t.fast_rows, t.fast_lines = self.fast_rows[: upto.rows], self.fast_lines[: upto.lines]
        t.fast_linenos = self.fast_linenos[: upto.lines]
        t.slow_lines, t.slow_linenos = self.slow_lines[: upto.slow], self.slow_linenos[: upto.slow]
        t.nbytes = upto.nbytes


def _shape(t: StreamTarget) -> tuple[Any, ...]:
    """What a rolled-back load may have changed in a stream's plan (widened columns, the typed
    table given up, a first dedup load turned into merges)."""
    return (t.norm_table, [(c.name, c.kind) for c in t.columns], t.dedup_plan)


class Writer:
    def __init__(
        self,
        conn: psycopg.Connection[Any],
        targets: list[StreamTarget],
        out: MessageWriter,
        *,
        drop_cascade: bool = False,
        batch_bytes: int | None = None,
        connect: Callable[[], psycopg.Connection[Any]] | None = None,
        input_waiting: Callable[[], bool] = lambda: False,
    ) -> None:
        self.conn = conn
        # Whether more input can be read at once (run: a STATE waits for it only then).
        self._input_waiting = input_waiting
        self._last_commit = time.monotonic()
        # A second connection shares the load (two cores): overwrite batches only fill
        # temporaries nobody sees before the swap, so either connection COPYs them; other
        # batches are parsed there into shared stages the first one moves into the tables.
        self._connect = connect
        self.conn2: psycopg.Connection[Any] | None = None
        self._stages: list[stages.Stage] = []  # shared stages made and not dropped yet
        self._staged = 0  # batches staged since the last commit
        self._stage_seq = 0
        self._token = stages.new_token()
        if batch_bytes is None:
            batch_bytes = PARALLEL_BATCH_BYTES if self._connect is not None else BATCH_BYTES
        self.targets = targets
        self.out = out
        self.drop_cascade = drop_cascade
        self.batch_bytes = batch_bytes
        self.by_key: dict[tuple[str, str | None], StreamTarget] = {}
        by_name: dict[str, list[StreamTarget]] = {}
        for t in targets:
            self.by_key[(t.name, t.namespace)] = t
            by_name.setdefault(t.name, []).append(t)
        # A RECORD whose namespace is missing (or differs) still finds a stream of that name
        # when there is only one.
        self.by_name = {n: ts[0] for n, ts in by_name.items() if len(ts) == 1}
        self.buffered = 0
        self.lineno = 0
        # STATE lines committed but not echoed yet: (line, the overwrite streams it waits for,
        # its stream; None for a GLOBAL/LEGACY state).
        self._held: list[tuple[bytes, list[StreamTarget], StreamTarget | None]] = []
        self._pending: list[tuple[bytes, list[StreamTarget], StreamTarget | None]] = []  # same,
        # received but not committed yet (COMMIT_SECONDS), and where each came: its input line
        # and the lengths of each stream's buffers then (see _Cut).
        # (and whether it is one of overwrite streams only: on_state).
        self._boundaries: list[tuple[int, dict[int, _Cut], bool]] = []
        self._flushed = False  # batches were handed to the loader since the last commit
        self._batch_failed = False  # a batch's load failed: nothing more may be committed
        self.statuses_seen = False
        self.fast_keys: dict[tuple[bytes, bytes | None], StreamTarget] = {}
        for t in targets:
            key = t.name.encode()
            self.fast_keys[(key, t.namespace.encode() if t.namespace else None)] = t
            if t.name in self.by_name:
                self.fast_keys.setdefault((key, None), t)
        self.fast_by_name = {n.encode(): t for n, t in self.by_name.items()}
        self._last_em = b""
        self._last_usec = 0
        self._ids = b""
        self._id_pos = 0
        # Batches being loaded: (thread, batch, connection), oldest first; at most one per
        # connection.
        self._inflight: list[tuple[threading.Thread, _Batch, psycopg.Connection[Any]]] = []
        self.source_error: str | None = None
        self.source_failure_type = "transient_error"  # of source_error, as the source said
        self._claimed: list[StreamTarget] = []  # overwrite streams whose temporaries are ours
        # Per STATE line (by id) not echoed yet: each stream it covers, with the count of that
        # stream's records before it (StreamTarget.stated then).
        self._marks: dict[int, list[tuple[StreamTarget, int]]] = {}

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        loader.setup_session(self.conn)
        self.conn.commit()
        if self._connect is not None:
            stages.claim(self.conn, self._token)
        schemas = {t.raw_schema for t in self.targets if not t.overwrite}
        if schemas:
            orphans = stages.drop_orphans(self.conn, schemas, self._token)
            if orphans:
                self.log("INFO", f"Dropped {len(orphans)} stage table(s) an interrupted write "
                                 "left behind.")  # fmt: skip
        for t in self.targets:
            for note in (t.merged_note, t.typed_note):
                if note:
                    self.log("WARN", f"Stream {t.label}: {note}.")
            self._note_legacy_raw_table(t)
            if t.overwrite:
                ddl.claim_temporaries(self.conn, t)
                self._claimed.append(t)
            added = ddl.prepare(self.conn, t)
            if added:
                self.log("INFO", f"Stream {t.label}: column(s) added or retyped: "
                                 f"{', '.join(added)}.")  # fmt: skip
            dedup.prepare(self.conn, t, self.log)
            if t.rebuild_typed:
                try:
                    rebuilt = rebuild.rebuild_typed(self.conn, t)
                except rawonly.RowsTooWide as exc:  # its records are too wide to type
                    rawonly.keep_raw_only(self.conn, t, exc.reason)
                    self._warn_refused(t)
                    continue
                self.log("INFO", f"Stream {t.label}: its typed table {t.schema}.{t.norm_table} "
                                 f"was missing; rebuilt from the {rebuilt} record(s) of its raw "
                                 "table.")  # fmt: skip
        self.conn.commit()

    def _note_legacy_raw_table(self, t: StreamTarget) -> None:
        """A raw table in raw_data_schema named as before its name held the stream's schema
        (`_airbyte_raw_<stream>`, shared by same-named streams of every schema): say that it
        is left as it is and where the stream's raw records go from now on."""
        legacy = naming.raw_table(t.name)
        if t.raw_table == legacy or ddl.relation(self.conn, t.raw_schema, legacy) is None:
            return
        if ddl.relation(self.conn, t.raw_schema, t.raw_table) is not None:
            return
        self.log("WARN", f"Stream {t.label}: its raw records go to {t.raw_schema}.{t.raw_table} "
                         "from now on (a raw table in raw_data_schema is named after the stream's "
                         "schema too, so same-named streams of two schemas no longer share one); "
                         f"those of earlier syncs stay in {t.raw_schema}.{legacy}, which pgbyte "
                         "no longer writes.")  # fmt: skip

    def run(self, batches: Iterable[list[bytes]]) -> int:
        """Process all input; returns the exit code (0 ok, 1 failed)."""
        try:
            self.start()
            for lines in batches:
                self.handle_lines(lines)
                if self._pending and not self._input_waiting():
                    self._commit_pending()  # the source paused: no reason to wait
            code = self.finish()
            if self.conn2 is not None:
                self.conn2.close()
                self.conn2 = None
            return code
        except BaseException as exc:  # every failure ends the same way
            if isinstance(exc, InputError):  # a bad line: what came before its STATEs stays
                self._salvage()
            self.abort()
            if isinstance(exc, KeyboardInterrupt):
                self.out.error(f"The write was interrupted. {self._uncommitted()}",
                               failure_type="transient_error")  # fmt: skip
                return 130
            if isinstance(exc, psycopg.Error):
                exc = classify_error(exc, context="Writing to the destination failed")
            self.out.exception(exc)
            return 1

    def abort(self) -> None:
        """Roll back what is not committed and drop the overwrite temporaries."""
        for thread, _, _ in self._inflight:
            thread.join()
        self._inflight = []
        if self.conn2 is not None:  # first: its row locks would block the DROPs below
            try:
                self.conn2.rollback()
                self.conn2.close()
            except psycopg.Error:
                pass
            self.conn2 = None
        try:
            if self.conn.closed:
                return
            self.conn.rollback()
        except psycopg.Error:
            return  # the connection is gone: the server rolled back; temporaries go next run
        left = []
        for t in self._claimed:  # never the temporaries of another write (claim_temporaries)
            if t.swapped:
                continue
            try:  # each stream's in its own transaction: one that fails keeps no other
                ddl.drop_temporaries(self.conn, t)
                self.conn.commit()
            except psycopg.Error:
                left.append(t.label)
                with contextlib.suppress(psycopg.Error):
                    self.conn.rollback()
        if left:
            with contextlib.suppress(OSError):  # stdout may be the broken pipe that ended us
                self.log("WARN", f"Could not drop the temporary tables of {', '.join(left)}; "
                                 "the next write of those streams drops them.")  # fmt: skip
        with contextlib.suppress(psycopg.Error):
            self._stages, self._staged = stages.drop(self.conn, self._stages), 0

    # -- the hot loop ------------------------------------------------------------------------
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
            problem = _state_problem(msg.get("state"))
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
        return InputError(f"Input line {self.lineno} {reason}. {self._uncommitted()}", self.lineno)

    def _uncommitted(self) -> str:
        """What a failed write leaves, for its error: overwrite streams that completed earlier
        in the write were replaced then, and stay so."""
        done = [t.label for t in self.targets if t.swapped]
        if not done:
            return f"{self._after_echo()} and no overwrite was swapped."
        return (
            f"{self._after_echo()}; the overwrite stream(s) that completed before "
            f"({', '.join(done)}) were replaced then and stay so, no other was swapped."
        )

    def _after_echo(self) -> str:
        """What is committed beyond each stream's last echoed STATE: nothing, unless a commit
        covered records of a stream no echoed STATE of it covers — a STATE held for an
        overwrite stream's swap (a GLOBAL one, or one after it), or records loaded before
        another stream's STATE or swap was committed."""
        ahead = [t.label for t in self.targets if not t.overwrite and t.committed > t.echoed]
        if not ahead:
            return "Nothing after the last echoed STATE was committed"
        return (
            f"Records of stream(s) {', '.join(ahead)} after their last echoed STATE were "
            "committed (with another stream's STATE or swap, or under a STATE that waited for an "
            "overwrite stream's swap): a new sync sends them again, and append keeps both copies"
        )

    # -- batches and commits -----------------------------------------------------------------
    def _flush_full(self, target: StreamTarget) -> None:
        """The buffers are full: flush `target` if it holds a good share of them, else all.
        More input follows, so these batches may be staged (_flush_one)."""
        if self._pending and all(bound for _, _, bound in self._boundaries):
            self._held += self._pending  # overwrite streams' only: they need no commit
            self._pending, self._boundaries = [], []
        elif self._pending:  # first the older part, which completes the pending STATEs
            self._commit_pending()
            if self.buffered < self.batch_bytes:
                return
        share = self.batch_bytes // 4
        self._flush(target if target.nbytes >= share else None, stage_from=share)

    def _flush(self, only: StreamTarget | None = None, *, stage_from: int | None = None) -> None:
        """Flush `only`, or every stream; batches of `stage_from` bytes or more may be staged."""
        for t in [only] if only is not None else self.targets:
            if t.fast_rows or t.slow_lines:
                self.buffered -= t.nbytes
                self._flush_one(t, stage_from=stage_from)
        if only is None:
            self.buffered = 0

    def _check_keys(self, t: StreamTarget) -> None:
        """WARN once per stream when its first record's data shares no key with the stream's
        properties: every typed column would be NULL (the raw table keeps the data). A client
        that renames the keys of records but not of their catalog (PyAirbyte's cache, writing a
        read result, lowercases them) sends such records, and nothing else would say so."""
        t.keys_checked = True
        line = t.fast_lines[0] if t.fast_lines else t.slow_lines[0] if t.slow_lines else None
        if line is None or not t.columns or t.norm_table is None:
            return
        try:
            data = orjson.loads(line)["record"]["data"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        if not isinstance(data, dict) or not data:
            return
        properties = [c.key for c in t.columns]
        if not set(data) & set(properties):
            self.log("WARN", f"Stream {t.label}: its first record's keys ({_some(data)}) match "
                     f"none of the stream's properties ({_some(properties)}), so its typed "
                     "columns are NULL (the raw table keeps the data). The records and the "
                     "catalog do not agree on the names: a client that renames records' keys "
                     "(PyAirbyte's cache lowercases them) must send the catalog it renamed "
                     "them for.")  # fmt: skip

    def _flush_one(self, t: StreamTarget, *, stage_from: int | None = None) -> None:
        """Hand the stream's buffered batch to a background thread and return at once, so the
        next batch is parsed while Postgres loads this one. An overwrite batch goes to whichever
        of the two connections is free (two in flight); a batch of canonical rows of another
        stream, of `stage_from` bytes or more, is staged on the second connection while the
        first moves the previous one into the tables (_start_staged); any other batch, and
        every other use of the connection, waits for all of them first (`_wait`). Batches
        flushed because the buffers are full are staged, and so are the ones a STATE flushes
        once a second connection is open (see `commit`); the end of input stages nothing (a
        small sync opens no second connection)."""
        if not t.keys_checked:
            self._check_keys(t)
        staged = (
            stage_from is not None and self._connect is not None and not t.overwrite
            and not t.slow_lines and t.nbytes >= stage_from
            and self._staged < MAX_STAGES_PER_COMMIT
        )  # fmt: skip
        job = _Batch(
            target=t, count=len(t.fast_lines) + len(t.slow_lines),
            fast_rows=t.fast_rows, fast_lines=t.fast_lines, fast_linenos=t.fast_linenos,
            slow_lines=t.slow_lines, slow_linenos=t.slow_linenos,
        )  # fmt: skip
        t.row_bytes = max(t.row_bytes, t.nbytes // max(job.count, 1))
        t.fast_rows, t.fast_lines, t.fast_linenos = [], [], []
        t.slow_lines, t.slow_linenos = [], []
        t.nbytes = 0
        self._flushed = True
        if staged and self._start_staged(job):
            return
        conn = self.conn
        if t.overwrite and self._connect is not None:
            if any(j.parsed is not None for _, j, _ in self._inflight):
                self._wait()
            if len(self._inflight) >= 2:
                self._wait_one()
            busy = [c for _, _, c in self._inflight]
            if busy and busy[0] is self.conn:
                second = self._second()
                if second is None:
                    self._wait()
                else:
                    conn = second
        else:
            self._wait()
        thread = threading.Thread(target=self._load, args=(job, conn), daemon=True)
        thread.start()  # before it is listed: abort() joins what is listed
        self._inflight.append((thread, job, conn))

    def _start_staged(self, job: _Batch) -> bool:
        """Batch k is COPYed into its own stage on the second connection while batch k-1 is
        moved into the tables on the first; k's move waits for k-1's (input order). False
        (nothing started) when there is no second connection."""
        if any(j.parsed is None for _, j, _ in self._inflight):
            self._wait()
        while len(self._inflight) >= 2:
            self._wait_one()
        prev = self._inflight[-1] if self._inflight else None
        if prev is not None:
            assert prev[1].parsed is not None
            prev[1].parsed.wait()  # the second connection is free again
        conn2 = self._second()
        if conn2 is None:
            return False
        self._stage_seq += 1
        stage = (job.target.raw_schema, stages.name(self._token, self._stage_seq))
        self._stages.append(stage)
        self._staged += 1
        job.parsed = threading.Event()
        thread = threading.Thread(
            target=self._load_staged, args=(job, conn2, stage, prev), daemon=True
        )
        thread.start()  # before it is listed: abort() joins what is listed
        self._inflight.append((thread, job, self.conn))
        return True

    def _load_staged(
        self,
        job: _Batch,
        conn2: psycopg.Connection[Any],
        stage_name: stages.Stage,
        prev: tuple[threading.Thread, _Batch, psycopg.Connection[Any]] | None,
    ) -> None:
        """Background: stage the batch on the second connection, then (after the previous
        batch) move it into the tables on the first. A stage COPY that Postgres refuses leaves
        the batch to the first connection's usual way (which names a bad line)."""
        assert job.parsed is not None
        try:
            stage: sql.Composable | None = stages.fill(conn2, job, stage_name)
            # In the stage now; the lines were kept only to redo a refused batch: free them
            # while the batch waits for its move (a staged batch's bytes held 40 MB more).
            job.fast_rows = job.fast_lines = []
        except loader.FastPathRefused:
            stage, job.refused = None, True
        except BaseException as exc:  # handed to the main thread by _wait
            job.error = exc
            return
        finally:
            job.parsed.set()
        if prev is not None:
            prev[0].join()
            if prev[1].error is not None:  # the main thread raises that one; the write ends
                job.error = RuntimeError("not loaded: an earlier batch failed")
                return
        if stage is None:
            self._load(job, self.conn)
            return
        try:
            self._finish_batch(self.conn, job, self._typed_step(job), stage)
        except BaseException as exc:  # handed to the main thread by _wait
            job.error = exc

    def _second(self) -> psycopg.Connection[Any] | None:
        """The second connection, opened on first use; None when the server refuses one (a
        role's or the server's connection limit, a full pool): one connection does it all."""
        if self.conn2 is None and self._connect is not None:
            conn2 = None
            try:
                conn2 = self._connect()
                loader.setup_session(conn2)
                conn2.commit()
                self.conn2 = conn2
            except (psycopg.OperationalError, PgbyteError) as exc:  # connect() describes it
                if conn2 is not None:
                    conn2.close()
                self._connect = None
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1].rstrip(".")
                self.log("WARN", f"A second connection could not be opened ({reason}); "
                                 "loading on one connection.")  # fmt: skip
        return self.conn2

    def _wait_one(self) -> None:
        """Wait for the oldest batch in flight; re-raise its failure here, in the main thread."""
        thread, job, _ = self._inflight.pop(0)
        thread.join()
        if job.error is not None:
            self._batch_failed = True
            raise job.error
        self._warn_refused(job.target)
        job.target.received += job.count
        for name, n in job.changes.items():
            job.target.source_changes[name] = job.target.source_changes.get(name, 0) + n

    def _wait(self) -> None:
        """Wait for every batch in flight, then make the second connection's rows visible to
        the first (commit: they only fill overwrite temporaries)."""
        while self._inflight:
            self._wait_one()
        if self.conn2 is not None:
            self.conn2.commit()

    def _load(self, job: _Batch, conn: psycopg.Connection[Any]) -> None:
        """Background: load one batch (COPY, then for append the raw and typed INSERTs)."""
        try:
            typed = self._typed_step(job)
            if job.fast_rows:
                try:
                    if job.refused:  # already refused on the second connection
                        raise loader.FastPathRefused
                    loader.copy_fast(conn, job)
                except loader.FastPathRefused:
                    # Check each line (naming the first bad one) and load them the slow way.
                    for line, n in zip(job.fast_lines, job.fast_linenos, strict=True):
                        count_changes(job.changes, self._validate(line, n, job.target))
                    job.slow_lines = job.fast_lines + job.slow_lines
                    job.slow_linenos = job.fast_linenos + job.slow_linenos
            if job.slow_lines:
                try:
                    loader.copy_slow(conn, job)
                except loader.BatchError as err:
                    where = f"Input line {err.lineno}" if err.lineno else "A line"
                    raise InputError(
                        f"{where} was refused by PostgreSQL: {err.reason}. {self._uncommitted()}",
                        err.lineno,
                    ) from None
            self._finish_batch(conn, job, typed, loader.DATA_STAGE)
        except BaseException as exc:  # handed to the main thread by _wait
            job.error = exc

    def _finish_batch(
        self,
        conn: psycopg.Connection[Any],
        job: _Batch,
        typed: loader.TypedStep | None,
        stage: sql.Composable,
    ) -> None:
        """Move a loaded batch into its tables. A row PostgreSQL refuses there (a value the
        column a user retyped cannot take, a key too long for the key index, a constraint of
        the user's) is an InputError naming the batch's first input line, so that the STATEs
        before the batch are still committed when they can be (_commit_before)."""
        try:
            loader.finish_batch(conn, job.target, typed, stage)
        except _TYPED_REFUSALS as exc:
            lines = job.fast_linenos + job.slow_linenos
            first, last = min(lines), max(lines)
            hint = ""
            plan = job.target.dedup_plan
            if isinstance(exc, psycopg.errors.ProgramLimitExceeded) and plan is not None and (
                    f'"{plan.index}"' in str(exc)):  # fmt: skip
                hint = (
                    " (a primary key value too long for the unique index append_dedup keeps on "
                    "the key: PostgreSQL indexes values up to about 2,700 bytes; sync the stream "
                    "with append, or choose a shorter key)"
                )
            raise InputError(
                f"A record of stream {job.target.label} on input lines {first}-{last} was "
                f"refused by PostgreSQL when typed: {loader.first_line(exc)}{hint}. "
                f"{self._uncommitted()}",
                first,
                last,
            ) from None

    @staticmethod
    def _typed_step(job: _Batch) -> loader.TypedStep | None:
        """None (append: loader.normalize) or append_dedup's merge."""
        if not job.target.dedup:
            return None
        # Full ties are broken by input order: where the stage differs from it.
        order = dedup.stage_order(job.fast_linenos, job.slow_linenos)
        return partial(dedup.merge, order=order)

    def _validate(self, line: bytes, lineno: int, target: StreamTarget) -> dict[str, Any]:
        """The slow path's checks for a line the fast path took (read-only: thread-safe);
        returns its record."""

        def bad(reason: str) -> InputError:
            return InputError(f"Input line {lineno} {reason}. {self._uncommitted()}", lineno)

        try:
            msg = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                raise bad(f"is not valid UTF-8 (byte {err.start + 1})") from None
            try:
                msg = stdlib_loads(line)
            except RecursionError:
                # PostgreSQL refused it first (stack depth limit exceeded): valid JSON, but
                # deeper than jsonb or any parser here takes.
                raise bad(f"is a RECORD of stream {target.label} whose data is nested too "
                          "deeply for PostgreSQL's jsonb (its max_stack_depth) and to parse "
                          f"({exc}): flatten it at the source") from None  # fmt: skip
            except ValueError:
                raise bad(f"is not valid JSON ({exc})") from None
        rec = msg.get("record") if isinstance(msg, dict) else None
        if not isinstance(rec, dict) or not isinstance(rec.get("data"), dict):
            raise bad(f"is a RECORD of stream {target.label} whose data is not a JSON object")
        return rec

    def _complete(self, t: StreamTarget) -> None:
        """overwrite: normalize the loaded temporary raw table, then swap both tables in."""
        self._wait()
        try:
            if self.conn2 is not None:
                # The second connection only sees committed rows: commit the first one's
                # batches too (the swap below stays one transaction; on_trace/finish commit
                # here anyway).
                self._commit_all()
                loader.normalize_split(self.conn, self.conn2, t)
            else:
                loader.normalize(self.conn, t, ddl.ident(*t.load_raw))
        except rawonly.RowsTooWide as exc:  # rolled back: the raw table alone is swapped in
            rawonly.keep_raw_only(self.conn, t, exc.reason)
            self._warn_refused(t)
        t.cascaded = ddl.swap(self.conn, t, cascade=self.drop_cascade)
        t.swapped = True
        # A RECORD of it after this is a protocol error: the fast path no longer routes it,
        # so the slow one sees it and says so (costs the hot path nothing).
        self.fast_keys = {k: v for k, v in self.fast_keys.items() if v is not t}
        self.fast_by_name = {k: v for k, v in self.fast_by_name.items() if v is not t}

    def _warn_refused(self, t: StreamTarget) -> None:
        """The WARN of a stream whose typed rows were refused as too big (rawonly.py), once,
        from the main thread (a batch's thread sets it)."""
        if t.refused_warn is not None:
            self.log("WARN", f"Stream {t.label}: {t.refused_warn}.")
            t.refused_warn = None

    def _load_all(self) -> None:
        """Load everything received, ready to commit (at a STATE). Once a big sync has opened
        the second connection, the STATE's partial batches are staged there too: parsed while
        the first connection still moves the batch before them, not after it on the first
        connection (a first incremental sync of 1,000,000 rows measured 14.5-14.8 s, was
        14.6-15.2 s)."""
        self._flush(stage_from=self.batch_bytes // 16 if self.conn2 is not None else None)
        self._wait()

    def _commit_all(self) -> None:
        """Commit the first connection once no batch is in flight (everything received is
        in), then drop the shared stages it read."""
        self.conn.commit()
        for t in self.targets:
            t.committed = t.received
        # Every caller loaded all input received first, or committed the pending STATEs just
        # before (a COMPLETE): the pending STATEs are committed.
        self._held += self._pending
        self._pending, self._boundaries, self._flushed = [], [], False
        self._last_commit = time.monotonic()
        self._stages, self._staged = stages.drop(self.conn, self._stages), 0

    def on_state(self, msg: dict[str, Any]) -> None:
        """Commit at once when records were loaded since the last commit (a batch filled up)
        or a while has passed; else the STATE is pending (see COMMIT_SECONDS).

        A STATE of overwrite streams only, still loading, needs no commit of its own: the
        commit of their swap covers its records, and it is echoed after that one. It waits
        for no commit when a batch was loaded since the last (a commit would only stop the
        load: both connections wait for it), and is pending otherwise, so that a pause of the
        source still commits it (the loaded temporaries), as any other."""
        entry, swap_bound = self._pend(msg)
        if swap_bound and self._flushed and not self._pending:
            self._held.append(entry)
            return
        self._pending.append(entry)
        cuts = {id(t): _Cut.of(t) for t in self.targets if t.nbytes}
        self._boundaries.append((self.lineno, cuts, swap_bound))
        if swap_bound:
            return
        if self._flushed or time.monotonic() - self._last_commit >= COMMIT_SECONDS:
            self._commit_pending()

    def _commit_pending(self) -> None:
        """Load the records received before the last pending STATE, commit, echo the STATEs
        that may be echoed; the records after it stay buffered for the next batch.

        No batch was loaded since the last commit (on_state commits at once otherwise), so
        everything uncommitted is in the buffers: should a record among them be refused, the
        write rolls back and commits what came before the last STATE ahead of it
        (_commit_before), as it would have with a commit at every STATE."""
        replayable = not self._flushed
        last = self._boundaries[-1][1]
        later = [(t, _Buffers.split(t, last.get(id(t), _START))) for t in self.targets]
        loading = [(t, _Buffers.of(t)) for t in self.targets if t.nbytes]
        received = {id(t): t.received for t in self.targets}
        shape = [_shape(t) for t in self.targets]
        self.buffered = sum(t.nbytes for t in self.targets)
        try:
            self._load_all()
        except InputError as exc:
            if replayable:
                self._commit_before(exc, loading, received, shape)
            raise
        with deferred():  # the commit and the echo of its STATEs: both or neither
            self._commit_all()
            self._echo_ready()
        for t, rest in later:
            if rest is not None:
                rest.restore(t)
        self.buffered = sum(t.nbytes for t in self.targets)

    def _commit_before(
        self,
        refused: InputError,
        loading: list[tuple[StreamTarget, _Buffers]],
        received: dict[int, int],
        shape: list[tuple[Any, ...]],
    ) -> None:
        """A record of a pending commit was refused: roll back, then load and commit the
        records before the last pending STATE ahead of it, and echo the STATEs up to it. A
        record refused as its batch was typed lies somewhere on the batch's lines: the latest
        STATE ahead of the batch's last line whose records load is the one committed, found by
        bisection (a source checkpointing every 100 records leaves a thousand STATEs in a
        batch). Nothing is committed should that not be possible exactly (the refused record's
        line unknown, the streams' tables changed by the rolled-back work)."""
        self._roll_back_loads()
        if refused.lineno is None:
            return
        boundaries, pending = self._boundaries, self._pending

        def attempt(keep: int, commit: bool) -> bool | None:
            """Load what precedes the keep-th pending STATE (and commit it): True when it
            loads, False when a record of it is refused too, None to give up."""
            if [_shape(t) for t in self.targets] != shape:
                return None
            cuts = boundaries[keep - 1][1]
            for t, buffers in loading:
                buffers.restore(t, cuts.get(id(t), _START))
            for t in self.targets:
                t.received = received[id(t)]
            self.buffered = sum(t.nbytes for t in self.targets)
            self._pending, self._boundaries = pending[:keep], boundaries[:keep]
            try:
                self._load_all()
                if commit:
                    with deferred():
                        self._commit_all()
                        self._echo_ready()
                else:
                    self._roll_back_loads()
            except InputError:
                self._roll_back_loads()
                return False
            except Exception:  # the refused record's error is the one reported; abort() cleans
                return None
            return True

        low = max(sum(1 for line, _, _ in boundaries if line < refused.lineno), 1)
        high = sum(1 for line, _, _ in boundaries if line < (refused.last or refused.lineno))
        if high < low:
            return
        first = attempt(high, commit=True)  # the refused line known: its STATE, at once
        if first is not False:
            return
        best, high = 0, high - 1
        while low <= high:
            middle = (low + high) // 2
            result = attempt(middle, commit=False)
            if result is None:
                return
            if result:
                best, low = middle, middle + 1
            else:
                high = middle - 1
        if best:
            attempt(best, commit=True)

    def _roll_back_loads(self) -> None:
        """Wait for the batches in flight, then roll both connections back."""
        for thread, _, _ in self._inflight:
            thread.join()
        self._inflight = []
        self.conn.rollback()
        if self.conn2 is not None:
            self.conn2.rollback()

    def _salvage(self) -> None:
        """The write is failing on a bad line or a failed source: commit the pending STATEs
        first, as they would have been had they come a second later. Not after a batch's
        load failed (its records may be among theirs), nor in a failed transaction."""
        ok = psycopg.pq.TransactionStatus.INTRANS, psycopg.pq.TransactionStatus.IDLE
        if not self._pending or self._batch_failed or self.conn.info.transaction_status not in ok:
            return
        try:
            self._commit_pending()
        except Exception:  # the failure reported is the first one; abort() rolls back
            return

    def _pend(
        self, msg: dict[str, Any]
    ) -> tuple[tuple[bytes, list[StreamTarget], StreamTarget | None], bool]:
        """Count the STATE's records; it waits for a commit (and, for its overwrite streams,
        their swap) before it is echoed. Returns it as held, and whether it covers only
        overwrite streams not swapped yet. The state's shape was checked (_state_problem)."""
        state = msg["state"]
        own = None
        if state.get("type") == "STREAM":
            desc = state["stream"]["stream_descriptor"]
            own = self.by_key.get((desc["name"], desc.get("namespace") or None))
            own = own or self.by_name.get(desc["name"])
            covers = [own] if own is not None else []
            if own is not None:
                own.state_named = True
        else:
            covers = list(self.targets)
        count = sum(t.since_state for t in covers)
        for t in covers:
            t.stated += t.since_state
            t.since_state = 0
        state["destinationStats"] = {"recordCount": float(count)}
        # An overwrite stream's records are committed into its temporaries, but they are the
        # stream's tables only once swapped in: its states wait for the swap, and so does a
        # later state of the same stream, or a GLOBAL state after it (per-stream order kept;
        # another stream's states go on). A failed swap echoes none of them, so no client
        # counts or saves them.
        waiting = [t for t in covers if t.overwrite and not t.swapped]
        entry = (orjson.dumps(msg) + b"\n", waiting, own)
        self._marks[id(entry[0])] = [(t, t.stated) for t in covers]  # for _echo_ready
        return entry, bool(covers) and len(waiting) == len(covers)

    def _log_swaps(self) -> None:
        """After the commit of a swap: say which tables were replaced (the tutorial's dbt log
        shows its `alter table ... rename`; this is that moment)."""
        for t in self.targets:
            if t.swapped and not t.swap_logged:
                t.swap_logged = True
                tables = [f"{t.raw_schema}.{t.raw_table}"]
                if t.norm_table is not None:
                    tables.append(f"{t.schema}.{t.norm_table}")
                replaced = " and ".join(tables)
                self.log("INFO", f"Stream {t.label}: replaced {replaced} (the loaded tables "
                                 "renamed into place in one transaction).")  # fmt: skip
                if t.cascaded:
                    self.log("WARN", f"Stream {t.label}: drop_cascade dropped, with the "
                                     f"replaced tables: {', '.join(t.cascaded)}.")  # fmt: skip

    def _echo_ready(self) -> None:
        """Echo the held states whose overwrite streams are swapped in, in input order, each
        after every earlier held state of its stream (and every earlier held one at all, for
        a GLOBAL/LEGACY state or one of a stream not in the catalog)."""
        kept: list[tuple[bytes, list[StreamTarget], StreamTarget | None]] = []
        echoed = False
        for entry in self._held:
            line, waiting, own = entry
            blocked = any(
                own is None or other is None or other is own for _, _, other in kept
            ) or not all(t.swapped for t in waiting)
            if blocked:
                kept.append(entry)
            else:
                self.out.raw(line)
                echoed = True
                for t, stated in self._marks.pop(id(line), ()):
                    t.echoed = max(t.echoed, stated)
        self._held = kept
        if echoed:
            self.out.flush()

    def on_trace(self, msg: dict[str, Any]) -> None:
        trace = msg.get("trace")
        if not isinstance(trace, dict):
            return
        if trace.get("type") == "ERROR":
            error = trace.get("error") or {}
            if self.source_error is None:  # the first one: what went wrong to begin with
                self.source_error = str(error.get("message") or "the source reported an error")
                kind = error.get("failure_type")
                # Kept as the source said: a config_error relabelled transient would be retried.
                if kind in ("config_error", "system_error", "transient_error"):
                    self.source_failure_type = kind
            return
        if trace.get("type") != "STREAM_STATUS":
            return
        status = trace.get("stream_status") or {}
        desc = status.get("stream_descriptor") or {}
        target = self.by_key.get((desc.get("name"), desc.get("namespace") or None))
        target = target or self.by_name.get(desc.get("name"))
        if target is None:
            return
        self.statuses_seen = True
        target.status = status.get("status")
        if target.status == "COMPLETE" and target.overwrite and not target.swapped:
            if self._pending:  # committed before any later record is loaded (a bad one fails)
                self._commit_pending()
            # Only this stream's records: the others' since their last STATE stay buffered,
            # out of the swap's commit (committed later with a STATE that covers them).
            self._flush(target)
            self._complete(target)
            with deferred():  # the swap's commit and its held STATEs' echo: both or neither
                self._commit_all()
                self._log_swaps()
                self._echo_ready()

    def _never_sent(self, t: StreamTarget) -> bool:
        """Whether the source sent nothing of stream `t` (no status, record or STATE of its
        own) while it sent statuses for others and reported no error: it skipped the stream,
        as Airbyte's source-postgres skips a configured table that no longer exists — or it
        stopped, killed, between two streams, which only its exit code tells. Either way
        nothing of it is here to load, nor to overwrite its tables with."""
        return (
            self.statuses_seen
            and self.source_error is None
            and t.status is None
            and not (t.received or t.since_state or t.stated or t.state_named)
        )

    def finish(self) -> int:
        """End of input: swap what is complete, keep what is not, report."""
        skipped = {id(t) for t in self.targets if self._never_sent(t)}
        incomplete = [
            t for t in self.targets
            if t.overwrite and not t.swapped and id(t) not in skipped
            and (self.source_error is not None or (self.statuses_seen and t.status != "COMPLETE"))
        ]  # fmt: skip
        if self.lineno == 0:
            # Not one line: the source died before its first message (`read ... | write` goes
            # on after a source that failed at once). Swapping would empty the tables.
            incomplete = [t for t in self.targets if t.overwrite and not t.swapped]
        # Another stream the source STARTED and never ended: it stopped (killed, crashed), so
        # its records after its last STATE are not committed either: the next sync resumes
        # from that STATE and sends them again (append would hold them twice).
        cut = [
            t for t in self.targets
            if not t.overwrite and self.source_error is None and t.status in _UNFINISHED
            and t.since_state
        ]  # fmt: skip
        if self.source_error is not None or incomplete or cut:
            # The write fails: a stream not reached is one more whose tables are kept.
            incomplete += [t for t in self.targets
                           if id(t) in skipped and t.overwrite and not t.swapped]  # fmt: skip
            self._salvage()
            self.abort()
            self.report()
            names = ", ".join(t.label for t in incomplete + cut)
            if self.source_error is not None:
                reason = f"The source failed ({self.source_error})"
            elif self.lineno == 0:
                reason = (
                    "The input held no message at all (did the source fail before its first "
                    "line? or is stdin not attached: `docker run` needs -i to pass a pipe on), "
                    f"so overwrite stream(s) {names} were not swapped"
                )
            elif all(t.status == "INCOMPLETE" for t in incomplete + cut):
                reason = f"The source reported stream(s) {names} INCOMPLETE"
            else:
                reason = "The input ended before the COMPLETE status of stream(s) " + names
            overwrites = ", ".join(t.label for t in incomplete)
            kept = (f"; the previous tables of {overwrites} are kept unchanged" if incomplete
                    else "")  # fmt: skip
            failure_type = "transient_error"
            if self.source_error is not None:
                failure_type = self.source_failure_type
            self.out.error(
                f"{reason}{kept}. {self._after_echo()}.",
                failure_type=failure_type,
            )
            return 1
        if self._pending:  # committed before any later record is loaded (a bad one fails)
            self._commit_pending()
        self._flush()
        self._wait()
        for t in self.targets:
            if t.overwrite and not t.swapped and id(t) not in skipped:
                # Each swap its own transaction, as at a COMPLETE status: one that fails later
                # does not undo this one (which `swapped` would then wrongly claim).
                self._complete(t)
                with deferred():
                    self._commit_all()
                    self._log_swaps()
                    self._echo_ready()
        with deferred():
            self._commit_all()
            self._echo_ready()
        self.report(skipped)
        return 0

    def report(self, skipped: AbstractSet[int] = frozenset()) -> None:
        """A LOG line per stream: what was committed and what was not; `skipped`: the ids of
        the streams the source sent nothing of, in a write that succeeds (finish)."""
        for t in self.targets:
            if id(t) in skipped:
                kept = "its tables are left as they were" if t.overwrite else "nothing to load"
                self.log("WARN", f"Stream {t.label}: the source sent nothing of it (no status, "
                         "record or state) while it sent the other streams: it skipped the "
                         "stream (its table may no longer exist at the source), or stopped "
                         f"before it (its exit code tells); {kept}.")  # fmt: skip
                continue
            parts = [f"Stream {t.label}: {t.committed} record(s) committed"]
            if t.overwrite and not t.swapped:  # loaded into temporaries, dropped
                # What arrived, loaded into its temporaries or still buffered: none of it is
                # the stream's now.
                arrived = t.stated + t.since_state
                parts = [f"Stream {t.label}: {arrived} record(s) received, not swapped in "
                         "(its previous tables are kept)"]  # fmt: skip
            if t.nul_stripped:
                parts.append(f"{t.nul_stripped} NUL character(s) (\\u0000) removed")
            if t.surrogates_replaced:
                parts.append(
                    f"{t.surrogates_replaced} lone UTF-16 surrogate escape(s) (half of a pair, "
                    "which PostgreSQL cannot store) replaced by U+FFFD"
                )
            typed = t.norm_table or t.refused_table  # the second: kept, with rows of before
            if t.uncastable:
                detail = ", ".join(f"{c}: {n}" for c, n in sorted(t.uncastable.items()))
                parts.append(
                    f"{sum(t.uncastable.values())} value(s) could not be cast to their "
                    f"column type and are NULL in {typed} (the raw table keeps them) "
                    f"[{detail}]"
                )
            if t.source_changes:
                detail = ", ".join(f"{c}: {n}" for c, n in sorted(t.source_changes.items()))
                parts.append(
                    f"{sum(t.source_changes.values())} value(s) the source could not send as "
                    f"they were, per its RECORDs' meta.changes (nulled, truncated...) [{detail}]"
                )
            if t.skipped_keys:
                parts.append(
                    f"{t.skipped_keys} record(s) with a NULL or uncastable primary key are in "
                    f"the raw table only (no row in {typed})"
                )
            flagged = (
                t.nul_stripped or t.surrogates_replaced or t.uncastable or t.skipped_keys
                or t.source_changes
            )  # fmt: skip
            level = "WARN" if flagged else "INFO"
            self.log(level, "; ".join(parts) + ".")

    def log(self, level: str, text: str) -> None:
        self.out.log(level, text)
        self.out.flush()


def _state_problem(state: Any) -> str | None:
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


def _some(names: Any, shown: int = 5) -> str:
    """Up to `shown` names, then how many more."""
    names = list(names)
    more = f", and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def count_changes(counts: dict[str, int], rec: dict[str, Any]) -> None:
    """Add a record's meta.changes (what its source changed or left out: a NaN sent as null,
    a value too big) to `counts`, by field."""
    meta = rec.get("meta")
    changes = meta.get("changes") if type(meta) is dict else None
    if type(changes) is not list:
        return
    for change in changes:
        name = change.get("field") if type(change) is dict else None
        key = name if isinstance(name, str) else "?"
        counts[key] = counts.get(key, 0) + 1


__all__ = ["InputError", "SystemError_", "TransientError", "Writer", "read_lines"]
