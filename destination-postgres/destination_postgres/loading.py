"""Batches of a write loaded into Postgres: on background threads, on one or two connections.

A full buffer or a STATE flushes the streams' batches; each is COPYed while the next is read.
Overwrite batches go to whichever connection is free (they only fill temporaries until the
swap); other batches of canonical rows are staged on the second connection while the first
moves the one before into the tables (stages.py). Failures are handed to the main thread. At
an overwrite stream's end its typed table is built from the loaded raw one and both are swapped
in (_complete).
"""

from __future__ import annotations

import itertools
import threading
from functools import partial
from typing import Any

import orjson
import psycopg
from pgbyte_common.errors import PgbyteError
from pgbyte_common.json_lines import stdlib_loads
from psycopg import sql

from destination_postgres import ddl, dedup, loader, lock_wait, rawonly, stages
from destination_postgres.batches import Batch, count_changes
from destination_postgres.catalog import StreamTarget
from destination_postgres.intake import InputError

# _check_keys parses one record of a stream's first batch: one of at most this size, among its
# first lines.
KEYS_LINE_BYTES = 1 << 20
KEYS_PROBES = 100

# A stage the first connection has read keeps a lock and its disk space until that connection
# commits (with the next STATEs); past this many, batches skip the stage until then.
MAX_STAGES_PER_COMMIT = 64
# What PostgreSQL raises when it refuses a batch's row as it moves it into the tables: the
# values, the table's constraints, and the user's triggers (RAISE, ASSERT) and generated
# columns. (A trigger's RAISE was a system_error naming no stream, the STATEs before the batch
# not committed.)
_TYPED_REFUSALS = (
    psycopg.DataError,
    psycopg.IntegrityError,
    psycopg.errors.ProgramLimitExceeded,
    psycopg.errors.RaiseException,
    psycopg.errors.AssertFailure,
    psycopg.errors.GeneratedAlways,
)


class Loading:
    """The Writer's loading side (a mixin: the state it reads and writes is the Writer's)."""

    def _flush_full(self, target: StreamTarget) -> None:
        """The buffers are full: flush `target` if it holds a good share of them, else all.
        More input follows, so these batches may be staged (_flush_one)."""
        if self._pending and all(bound for _, bound in self._boundaries):
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
        if not t.columns or t.norm_table is None:
            t.keys_checked = True
            return
        # A record small enough to parse whole: one of many MB (a big JSON object) would take
        # ten times its size as Python objects. None among the batch's first: a later batch.
        candidates = itertools.islice(itertools.chain(t.fast_lines, t.slow_lines), KEYS_PROBES)
        line = next((line for line in candidates if len(line) <= KEYS_LINE_BYTES), None)
        if line is None:
            return
        t.keys_checked = True
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
        job = Batch(
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

    def _start_staged(self, job: Batch) -> bool:
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
        job: Batch,
        conn2: psycopg.Connection[Any],
        stage_name: stages.Stage,
        prev: tuple[threading.Thread, Batch, psycopg.Connection[Any]] | None,
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
        self._loaded[id(job.target)] = job.target
        for name, n in job.changes.items():
            job.target.source_changes[name] = job.target.source_changes.get(name, 0) + n

    def _wait(self) -> None:
        """Wait for every batch in flight, then make the second connection's rows visible to
        the first (commit: they only fill overwrite temporaries)."""
        while self._inflight:
            self._wait_one()
        if self.conn2 is not None:
            self.conn2.commit()

    def _load(self, job: Batch, conn: psycopg.Connection[Any]) -> None:
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
                        f"{where} was refused by PostgreSQL: {err.reason}.",
                        err.lineno,
                    ) from None
            self._finish_batch(conn, job, typed, loader.DATA_STAGE)
        except BaseException as exc:  # handed to the main thread by _wait
            job.error = exc

    def _finish_batch(
        self,
        conn: psycopg.Connection[Any],
        job: Batch,
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
            if isinstance(exc, psycopg.errors.GeneratedAlways):
                hint = (
                    " (a GENERATED ALWAYS column of the destination table, an expression's or "
                    "an identity's: pgbyte writes a column per property; drop the expression, "
                    "make the identity GENERATED BY DEFAULT, or drop the column)"
                )
            raise InputError(
                f"A record of stream {job.target.label} on input lines {first}-{last} was "
                f"refused by PostgreSQL when typed: {loader.first_line(exc)}{hint}.",
                first,
                last,
            ) from None

    @staticmethod
    def _typed_step(job: Batch) -> loader.TypedStep | None:
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
            return InputError(f"Input line {lineno} {reason}.", lineno)

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
        t.cascaded = lock_wait.retrying(
            self.conn, lambda: ddl.swap(self.conn, t, cascade=self.drop_cascade),
            ddl.final_tables(t), self.log, t.label, self.out.reader_left,
        )  # fmt: skip
        t.swapped = True
        self._unlogged_swaps.append(t)
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


def _some(names: Any, shown: int = 5) -> str:
    """Up to `shown` names, then how many more."""
    names = list(names)
    more = f", and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
