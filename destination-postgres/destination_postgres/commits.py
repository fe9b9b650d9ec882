"""STATEs of a write: committed after every record before them, then echoed in input order.

STATEs close together share one commit (COMMIT_SECONDS); an overwrite stream's STATEs are echoed
once its tables are swapped in. A record refused in a pending commit still lets the STATEs
before it commit (`_commit_before`); a failed write's error says what it left committed
(`_uncommitted`).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import psycopg
from pgbyte_common.interrupts import deferred
from pgbyte_common.lines import escape_line_separators

from destination_postgres import stages
from destination_postgres.batches import Buffers, Cut, plan_shape
from destination_postgres.catalog import StreamTarget
from destination_postgres.intake import InputError

# A STATE is committed at once when it comes this long after the last commit; one sooner waits
# (pending) until then, until the buffers fill or until no more input is waiting, and is then
# committed and echoed with the rest: exactly the records before the last pending STATE are
# (_commit_pending), the later ones stay buffered. Sources that checkpoint every few records
# (many CDK sources do, per page) would otherwise cost a commit, and the drain of the load
# pipeline before it, every few records: 200,000 records with a STATE every 100 took 11.4 s to
# write, against 2.3 s with one STATE.
COMMIT_SECONDS = 1.0


class Commits:
    """The Writer's STATE handling (a mixin: the state it reads and writes is the Writer's)."""

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
        self._boundaries.append((self.lineno, swap_bound))
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
        last = self._boundaries[-1][0]
        # Only the streams holding records: the others' buffers, counts and plans this commit
        # does not touch (a write of 2,000 overwrite streams committed each one's swap).
        later = [(t, Buffers.split(t, Cut.at(t, last))) for t in self.targets if t.nbytes]
        loading = [(t, Buffers.of(t)) for t in self.targets if t.nbytes]
        received = {id(t): t.received for t, _ in loading}
        shape = [plan_shape(t) for t, _ in loading]
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
        loading: list[tuple[StreamTarget, Buffers]],
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
            if [plan_shape(t) for t, _ in loading] != shape:
                return None
            lineno = boundaries[keep - 1][0]
            for t, buffers in loading:
                buffers.restore(t, Cut.at(buffers, lineno))
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

        low = max(sum(1 for line, _ in boundaries if line < refused.lineno), 1)
        high = sum(1 for line, _ in boundaries if line < (refused.last or refused.lineno))
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
        overwrite streams not swapped yet. The state's shape was checked (state_problem)."""
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
        # counts or saves them. A GLOBAL or LEGACY state before any record of an overwrite
        # stream says nothing of it: it waits for no swap of that stream (held, it was lost
        # with the sync, and an append stream it covers got its records again next time).
        waiting = [t for t in covers if t.overwrite and not t.swapped
                   and (own is not None or t.stated > 0)]  # fmt: skip
        # U+2028/U+2029 escaped, as in every line the connectors print (lines.py)
        entry = (escape_line_separators(orjson.dumps(msg)) + b"\n", waiting, own)
        self._marks[id(entry[0])] = [(t, t.stated) for t in covers]  # for _echo_ready
        return entry, bool(covers) and len(waiting) == len(covers)

    def _log_swaps(self) -> None:
        """After the commit of a swap: say which tables were replaced (the tutorial's dbt log
        shows its `alter table ... rename`; this is that moment)."""
        for t in self._unlogged_swaps:
            if not t.swap_logged:
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
        self._unlogged_swaps.clear()

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

    def _commit_all(self) -> None:
        """Commit the first connection once no batch is in flight (everything received is
        in), then drop the shared stages it read."""
        self.conn.commit()
        for t in self._loaded.values():  # the streams whose records came in since the last
            t.committed = t.received
        self._loaded.clear()
        # Every caller loaded all input received first, or committed the pending STATEs just
        # before (a COMPLETE): the pending STATEs are committed.
        self._held += self._pending
        self._pending, self._boundaries, self._flushed = [], [], False
        self._last_commit = time.monotonic()
        self._stages, self._staged = stages.drop(self.conn, self._stages), 0

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
