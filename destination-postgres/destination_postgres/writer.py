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
import sys
import threading
import time
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from typing import Any

import psycopg
from pgbyte_common.errors import SystemError_, TransientError, classify_error
from pgbyte_common.interrupts import deferred
from pgbyte_common.messages import MessageWriter

from destination_postgres import ddl, dedup, loader, naming, rawonly, rebuild, refill, stages
from destination_postgres.batches import Batch
from destination_postgres.catalog import StreamTarget
from destination_postgres.commits import Commits
from destination_postgres.framing import read_lines
from destination_postgres.intake import InputError, Intake
from destination_postgres.loading import Loading

BATCH_BYTES = 16 << 20  # per stream and in total: bounds memory whatever the input size
# With a second connection two batches are in flight at once: smaller ones keep the same bound.
PARALLEL_BATCH_BYTES = 8 << 20
# The STREAM_STATUS of a stream the source started and did not finish.
_UNFINISHED = ("STARTED", "RUNNING", "INCOMPLETE")


class Writer(Intake, Loading, Commits):
    """One `write`: its streams' buffers, batches in flight, pending and held STATEs.

    Its input side is intake.py, its loading side loading.py, its STATE handling commits.py;
    here: setup, the run, the end of input (finish) and the failure path (abort)."""

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
        # The same, received but not committed yet (COMMIT_SECONDS); and where each came: its
        # input line (which places it in each stream's buffers: Cut.at), and whether it covers
        # overwrite streams only (on_state).
        self._pending: list[tuple[bytes, list[StreamTarget], StreamTarget | None]] = []
        self._boundaries: list[tuple[int, bool]] = []
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
        self._inflight: list[tuple[threading.Thread, Batch, psycopg.Connection[Any]]] = []
        self.source_error: str | None = None
        self.source_failure_type = "transient_error"  # of source_error, as the source said
        self._claimed: list[StreamTarget] = []  # overwrite streams whose temporaries are ours
        # Streams whose batches loaded since the last commit (by id; their `committed` moves
        # on at the commit), and streams swapped in whose swap is not logged yet: a commit
        # looks at these, not at every stream.
        self._loaded: dict[int, StreamTarget] = {}
        self._unlogged_swaps: list[StreamTarget] = []
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
        left = ddl.drop_orphan_temporaries(
            self.conn, {t.raw_schema for t in self.targets} | {t.schema for t in self.targets}
        )
        if left:
            self.log("INFO", f"Dropped {len(left)} temporary table(s) an interrupted overwrite "
                             f"left behind: {', '.join(left)}.")  # fmt: skip
        # Each stream's tables made ready in a transaction of its own: one over every stream
        # held a lock per table until its end, which 2,000 streams' tables overflowed on a
        # server with the default max_locks_per_transaction.
        for t in self.targets:
            self._prepare(t)
            self.conn.commit()
        self.conn.commit()

    def _prepare(self, t: StreamTarget) -> None:
        """Make a stream's tables ready: notes, temporaries, columns, dedup's index and stage."""
        ddl.lock_for_prepare(self.conn, t)
        for note in (t.merged_note, t.typed_note):
            if note:
                self.log("WARN", f"Stream {t.label}: {note}.")
        self._note_legacy_raw_table(t)
        if t.overwrite:
            ddl.claim_temporaries(self.conn, t)
            self._claimed.append(t)
        added = ddl.prepare(self.conn, t)
        self._warn_refused(t)  # kept raw only: its typed table cannot take the new columns
        if t.behind_warn:
            self.log("WARN", f"Stream {t.label}: {t.behind_warn}.")
        if added:
            self.log("INFO", f"Stream {t.label}: column(s) added or retyped: "
                             f"{', '.join(added)}.")  # fmt: skip
        problem = refill.refill(self.conn, t)
        if problem:
            self.log("WARN", f"Stream {t.label}: {problem}.")
        dedup.prepare(self.conn, t, self.log)
        if t.rebuild_typed:
            try:
                rebuilt = rebuild.rebuild_typed(self.conn, t)
            except rawonly.RowsTooWide as exc:  # its records are too wide to type
                rawonly.keep_raw_only(self.conn, t, exc.reason)
                self._warn_refused(t)
                return
            self.log("INFO", f"Stream {t.label}: its typed table {t.schema}.{t.norm_table} "
                             f"was missing; rebuilt from the {rebuilt} record(s) of its raw "
                             "table.")  # fmt: skip

    def _note_legacy_raw_table(self, t: StreamTarget) -> None:
        """A raw table in raw_data_schema named as in an earlier version: before its name held
        the stream's schema (`_airbyte_raw_<stream>`, shared by same-named streams of every
        schema), or before a pair of names with underscores of their own at the join got a
        hash (naming._joined): say that it is left as it is and where the stream's raw
        records go from now on."""
        if t.raw_table == naming.raw_table(t.name):  # no raw_data_schema: named as ever
            return
        if ddl.relation(self.conn, t.raw_schema, t.raw_table) is not None:
            return
        legacies = [
            (naming.raw_table(t.name), "is named after the stream's schema too, so same-named "
                                       "streams of two schemas no longer share one"),
            (naming.ambiguous_raw_table(t.name, t.schema), "of a schema and stream whose "
             "underscores meet at the join ends with a hash of the pair, so that no other "
             "pair's name can be the same"),
        ]  # fmt: skip
        for legacy, why in legacies:
            if legacy is None or legacy == t.raw_table:
                continue
            if ddl.relation(self.conn, t.raw_schema, legacy) is None:
                continue
            self.log("WARN", f"Stream {t.label}: its raw records go to {t.raw_schema}."
                             f"{t.raw_table} from now on (a raw table in raw_data_schema {why}); "
                             f"those of earlier syncs stay in {t.raw_schema}.{legacy}, which "
                             "pgbyte no longer writes.")  # fmt: skip

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
            code = 130 if isinstance(exc, KeyboardInterrupt) else 1
            try:
                self._report(exc)
            except BrokenPipeError:  # the reader left while the failure was being reported
                self._reader_gone()
            return code

    def _report(self, exc: BaseException) -> None:
        """The TRACE ERROR of a failed write (on stderr when stdout's reader is gone)."""
        if isinstance(exc, KeyboardInterrupt):
            self.out.error(f"The write was interrupted. {self._uncommitted()}",
                           failure_type="transient_error")  # fmt: skip
        elif isinstance(exc, BrokenPipeError):  # stdout closed: nobody is left to tell there
            self._reader_gone()
        else:
            if isinstance(exc, InputError):  # what is committed now, after any salvage
                exc.message = f"{exc.message} {self._uncommitted()}"
                exc.args = (exc.message,)  # the stack trace's last line says it too
            elif isinstance(exc, psycopg.Error):
                exc = classify_error(exc, context="Writing to the destination failed")
            self.out.exception(exc)

    def _reader_gone(self) -> None:
        self.out.reader_gone()
        print("destination-postgres: stopped: the reader of its output (its STATE messages) "
              "went away. What was committed stays; a STATE it did not get is lost with it, "
              "and its records may be sent again.", file=sys.stderr)  # fmt: skip

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

    # -- messages the loop hands back, and the end -----------------------------------------
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
            if t.hard_deletes:
                parts.append(
                    f"{t.hard_deletes} record(s) had _ab_cdc_deleted_at set: each deleted its "
                    f"primary key's row from {typed} unless a newer one was there "
                    "(cdc_deletion_mode Hard delete; Soft delete keeps the rows)"
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


__all__ = ["InputError", "SystemError_", "TransientError", "Writer", "read_lines"]
