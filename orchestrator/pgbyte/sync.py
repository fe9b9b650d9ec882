"""Sync Now: discover, build catalogs, run `read` piped into `write`, keep the committed state.

Order of events: both specs and the source's discover run in parallel; configs are validated
against the specs; the configured catalogs are built (destination names mapped); `read` and
`write` start together; the pump thread forwards the source's output while another thread reads
the destination's echoes (never waiting on one side before reading the other).

Ending:
- the source ends cleanly → the destination's stdin is closed and it finishes;
- the source fails (non-zero exit, TRACE ERROR) → streams it left unfinished are marked
  INCOMPLETE for the destination (which then keeps its previous overwrite tables), its stdin is
  closed, and what it commits still counts;
- the destination fails → the source is stopped;
- Ctrl-C / SIGTERM → both are stopped (terminate, wait, kill).
In every case only states the destination echoed are saved, and one history line is appended.

A mistake in the connection file found only once the streams are discovered (pgbyte.catalog:
an unknown, ambiguous or twice-listed stream, an unsupported mode, no cursor or primary key) is
not a sync: it raises ConnectionFileError before `read` and `write` start, and appends nothing.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from pgbyte.catalog import Route, StreamMap, build_catalogs, namespace_notes
from pgbyte.protocol import ConnectorError, drain_stderr, failure_reason, stop_process
from pgbyte.pump import DestinationReader, SourcePump, StreamProgress, SyncProgress
from pgbyte.report import Reporter
from pgbyte.rewrite import RecordRewriter
from pgbyte.runner import ConnectorProcess, RunnerError
from pgbyte.session import Cancelled, Session
from pgbyte.state import (
    StateBusyError,
    StateFileError,
    StateStore,
    append_history,
    read_history,
    reset_command,
    state_lock,
    stream_label,
)
from pgbyte.state_view import state_views

SOURCE_EXIT_GRACE = 60.0  # after its stdout closed, the source should exit promptly
DEST_FAILURE_GRACE = 300.0  # after a source failure, time the destination gets to commit


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SyncRun:
    """One sync of one connection; `run()` returns the summary (also appended to history)."""

    def __init__(self, session: Session, reporter: Reporter) -> None:
        self.session = session
        self.conn = session.conn
        self.reporter = reporter
        self.started_at = _now()
        self.t0 = time.monotonic()
        self.smap: StreamMap | None = None
        self.rewriter: RecordRewriter | None = None
        self.progress: SyncProgress | None = None
        self.store: StateStore | None = None
        self.reader: DestinationReader | None = None  # the running pipe's (_pipe)
        self._dest_output: tuple[threading.Thread, ...] = ()  # its stdout and stderr readers
        self.status = "failed"
        self.reason: str | None = None
        self.prepare_seconds: float | None = None  # spec + discover + catalogs, before any data

    # -- entry ---------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        try:
            # One sync per connection at a time: two would each save their own view of the
            # state, and the last writer would silently undo the other's progress.
            with state_lock(self.conn.state_path, "sync"):
                self.store = StateStore(self.conn.state_path, self.conn.path)
                self._run()
        except Cancelled as exc:
            self.status, self.reason = "cancelled", _cancel_reason(exc.signum)
        except (ConnectorError, RunnerError, StateFileError, StateBusyError) as exc:
            self.status = "failed"
            self.reason = self.session.masker.mask(str(exc))
        # A ConnectionFileError (the file asks for a stream or mode the discovered catalog
        # cannot give) is not caught: it is raised before any `read` or `write` starts, so no
        # sync ran; like every other connection-file error it exits 2 and is not written to
        # the history, which lists syncs.
        summary = self.summary()
        with contextlib.suppress(OSError):
            append_history(self.conn.history_path, summary)
        return summary

    def _run(self) -> None:
        session = self.session
        self.reporter.info(f"sync {self.conn.name}: discovering streams")
        discovered, dest_spec = session.discover()
        sync_id = len(read_history(self.conn.history_path)) + 1
        source_catalog, dest_catalog, self.smap = build_catalogs(
            self.conn, discovered, dest_spec, sync_id=sync_id
        )
        for note in namespace_notes(self.conn, dest_catalog):
            self.reporter.log("WARN", f"pgbyte: WARN sync {self.conn.name}: {note}")
        self.rewriter = RecordRewriter(self.smap)
        self.progress = SyncProgress(streams=[StreamProgress() for _ in self.smap.routes])
        source_config, dest_config = session.configs()
        states = self.store.states()
        state_path = session.private_file("state.json", states) if states else None
        source_catalog_path = session.private_file("source-catalog.json", source_catalog)
        dest_catalog_path = session.private_file("destination-catalog.json", dest_catalog)
        names = ", ".join(f"{r.label} → {r.dest_label}" for r in self.smap.routes)
        self.reporter.info(f"sync {self.conn.name}: {names}")
        self._say_where_streams_start(states, source_catalog)
        self.prepare_seconds = round(time.monotonic() - self.t0, 3)
        if session.cancel.is_set():  # stopped since the discover: no connector started yet
            raise Cancelled(session.cancel_signal)
        dest = session.destination.run("write", config=dest_config, catalog=dest_catalog_path,
                                       stdin=True)  # fmt: skip
        session.track(dest)
        source = session.source.run(
            "read", config=source_config, catalog=source_catalog_path, state=state_path
        )
        session.track(source)
        self._pipe(source, dest)

    def _say_where_streams_start(
        self, states: list[dict[str, Any]], source_catalog: dict[str, Any]
    ) -> None:
        """One line per incremental stream: resuming from which saved position, or from scratch."""
        views = {view.label: view for view in state_views(states, [])}
        cursors = {_entry_label(e): tuple(e.get("cursor_field") or ()) for e in
                   source_catalog["streams"]}  # fmt: skip
        names = [route.name for route in self.smap.routes]
        unique = {name for name in names if names.count(name) == 1}
        written = _last_destinations(read_history(self.conn.history_path))
        replication = self.conn.source.config.get("replication_method")
        xmin = isinstance(replication, dict) and replication.get("method") == "Xmin"
        for route in self.smap.routes:
            if route.sync_mode != "incremental":
                continue
            view = views.get(route.label)
            if view is None and route.name in unique:
                # A state saved without a namespace: the source resumes it for the one stream
                # of its name (source-postgres reader), so say so here too.
                view = views.get(route.name)
            configured = cursors.get(route.label)
            if view is None:
                where = "has no saved state: reading it from the start"
            elif view.kind == "xmin" and not xmin:
                # (the other way round may be right: under Xmin a view reads by its cursor)
                where = ("has a saved Xmin state, and the source is configured for Standard "
                         "replication: the source reads it again from the start")  # fmt: skip
            elif view.cursor_field and configured and view.cursor_field != configured:
                where = (f"has a saved state for cursor {'.'.join(view.cursor_field)}, not the "
                         f"configured {'.'.join(configured)}: the source reads it again from the "
                         "start")  # fmt: skip
            else:
                # (`state show`'s words, said of the sync now running)
                detail = view.detail.replace("the next sync", "this sync")
                where = f"resumes from its saved state: {detail}"
            self.reporter.info(f"sync {self.conn.name}: {route.label} {where}")
            if view is not None:
                self._warn_if_moved(route, written.get((route.name, route.namespace)))
        if self.conn.streams is None:  # every discovered stream: one gone from it says nothing
            synced = {route.label for route in self.smap.routes} | unique  # | saved unqualified
            for label in sorted(set(views) - synced):
                self.reporter.log(
                    "WARN",
                    f"pgbyte: WARN sync {self.conn.name}: {label} has a saved state but the "
                    "source no longer offers it (its table dropped or renamed?), so it is not "
                    "synced; its destination tables stay as they are "
                    f"(`{self._reset_command(label)}` forgets its state)",
                )

    def _warn_if_moved(self, route: Route, before: _Written | None) -> None:
        """A stream resuming from a state whose last sync wrote other destination tables (the
        prefix changed, or a copied connection file kept its `name:`, and so the state, while
        writing elsewhere): the new tables get only what changed since, and nothing says so
        otherwise."""
        place = destination_place(self.conn.destination.config)
        now = (route.dest_name, route.dest_namespace)
        if before is None or (before.table == now and before.place in (None, place)):
            return
        old = f"{before.table[1]}.{before.table[0]}" if before.table[1] else before.table[0]
        if before.place not in (None, place):
            old, new = f"{old} in {_place_text(before.place)}", f"{route.dest_label} in "
            new += _place_text(place)
        else:
            new = route.dest_label
        self.reporter.log(
            "WARN",
            f"pgbyte: WARN sync {self.conn.name}: {route.label} resumes from the state its last "
            f"sync saved while writing {old}, but now writes {new}: that table gets only the "
            "records changed since. Connection files that share a `name:` share its state; "
            f"give this one its own name, or `{self._reset_command(route.label)}` to read the "
            "stream again from the start",
        )

    def _reset_command(self, label: str) -> str:
        """The `pgbyte state reset` that forgets one stream's state, ready to paste."""
        return reset_command(self.conn.path, "--stream", label)

    # -- the pipe --------------------------------------------------------------------------------
    def _pipe(self, source: ConnectorProcess, dest: ConnectorProcess) -> None:
        session, progress, log = self.session, self.progress, self.reporter.log
        pump = SourcePump(source, dest, self.rewriter, progress, session.masker, log)
        reader = DestinationReader(dest, self.rewriter, progress, self.store, session.masker, log)
        self.reader = reader
        source_tail: list[str] = []
        dest_tail: list[str] = []
        threads = [
            threading.Thread(target=pump.run, name="pump", daemon=True),
            threading.Thread(target=reader.run, name="echo", daemon=True),
            drain_stderr(source.stderr, "source", session.masker, source_tail, log),
            drain_stderr(dest.stderr, "destination", session.masker, dest_tail, log),
        ]
        threads[0].start()
        threads[1].start()
        self._dest_output = (threads[1], threads[3])
        self.reporter.start(self._rows)
        try:
            self._supervise(source, dest, pump, threads[0], source_tail, dest_tail)
        finally:
            with contextlib.suppress(OSError):  # a terminal gone (SIGHUP) must not skip the save
                self.reporter.stop()
            stop_process(source, grace=5)
            stop_process(dest, grace=10)
            for thread in threads:
                thread.join(10)
            reader.save()
            source.close()
            dest.close()
            if reader.save_error is not None:
                self.reporter.log("ERROR", f"pgbyte: could not save the state: {reader.save_error}")
                # The destination committed what the unsaved states cover: a sync reported as
                # succeeded would resume from the older state and send those records again.
                if self.status == "succeeded":
                    self.status = "failed"
                    self.reason = (
                        f"could not save the state ({reader.save_error}): the destination "
                        "committed the records, but the next sync resumes from the last state "
                        "saved and sends those after it again (append keeps both copies); free "
                        "the space or fix the state file's directory, then sync again"
                    )

    def _supervise(
        self,
        source: ConnectorProcess,
        dest: ConnectorProcess,
        pump: SourcePump,
        pump_thread: threading.Thread,
        source_tail: list[str],
        dest_tail: list[str],
    ) -> None:
        progress = self.progress
        while pump_thread.is_alive():
            self._check_cancel(source, dest)
            if progress.dest_broken or dest.poll() is not None:
                break
            self._tick()
            pump_thread.join(0.2)
        # A cancel comes first: the connectors it stopped end as failures would (a source
        # terminated while starting: "killed by SIGTERM").
        self._check_cancel(source, dest)
        if progress.pump_error is not None:
            stop_process(source, grace=5)
            stop_process(dest, grace=10)
            self.reason = f"pgbyte failed while forwarding records: {progress.pump_error}"
            return
        if progress.dest_broken or (pump_thread.is_alive() and dest.poll() is not None):
            # The destination is gone before the source finished: stop the source.
            stop_process(source, grace=5)
            dest_rc = self._wait(dest, 30.0, source, dest)
            self.reason = self._dest_reason(dest_rc, dest_tail)
            return
        source_rc = self._wait(source, SOURCE_EXIT_GRACE, source, dest)
        source_failed = source_rc != 0 or bool(progress.source_errors)
        if pump.partial_tail and not source_failed:
            pump.forward_tail()
            source_failed = bool(progress.source_errors)
        if source_failed:
            self._mark_incomplete(pump)
            self._forward_source_failure(pump, source_rc)
        pump.close_destination_input()
        grace = DEST_FAILURE_GRACE if source_failed else None
        dest_rc = self._wait(dest, grace, source, dest)
        dest_failed = dest_rc != 0 or bool(progress.dest_errors)
        if source_failed or dest_failed:  # failures of connectors a cancel stopped are its own
            self._check_cancel(source, dest)
        if source_failed:
            code = None if source_rc == 0 else source_rc
            self.reason = failure_reason(
                "source", "read", code, progress.source_errors, progress.source_log_errors,
                source_tail, self.session.masker,
            )  # fmt: skip
        elif dest_failed:
            self.reason = self._dest_reason(dest_rc, dest_tail)
        else:
            self.status = "succeeded"

    def _tick(self) -> None:
        """Every 0.2 s while waiting: the live progress, and the echoed states saved."""
        self.reporter.tick()
        if self.reader is not None:
            self.reader.save_due()

    def _dest_reason(self, dest_rc: int | None, dest_tail: list[str]) -> str:
        # The destination has exited; its last lines (the TRACE ERROR saying why) may still be
        # in the pipes its reader threads drain.
        for thread in self._dest_output:
            thread.join(5)
        progress = self.progress
        return failure_reason(
            "destination", "write", dest_rc, progress.dest_errors, progress.dest_log_errors,
            dest_tail, self.session.masker,
        )  # fmt: skip

    def _check_cancel(self, source: ConnectorProcess, dest: ConnectorProcess) -> None:
        if self.session.cancel.is_set():
            for proc in (source, dest):
                proc.terminate()
            stop_process(source, grace=5, terminated=True)
            stop_process(dest, grace=10, terminated=True)
            raise Cancelled(self.session.cancel_signal)

    def _wait(
        self,
        proc: ConnectorProcess,
        timeout: float | None,
        source: ConnectorProcess,
        dest: ConnectorProcess,
    ) -> int | None:
        """Wait for one process while staying responsive to Ctrl-C; stop it after `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while proc.poll() is None:
            self._check_cancel(source, dest)
            if deadline is not None and time.monotonic() > deadline:
                return stop_process(proc, grace=5)
            self._tick()
            with contextlib.suppress(Exception):
                proc.wait(0.2)
        return proc.poll()

    def _mark_incomplete(self, pump: SourcePump) -> None:
        """Tell the destination which streams did not finish, so it keeps their old tables."""
        for index, route in enumerate(self.smap.routes):
            stream = self.progress.streams[index]
            if stream.status in ("COMPLETE", "INCOMPLETE"):
                continue
            descriptor = {"name": route.dest_name}
            if route.dest_namespace is not None:
                descriptor["namespace"] = route.dest_namespace
            message = {
                "type": "TRACE",
                "trace": {
                    "type": "STREAM_STATUS",
                    "emitted_at": int(time.time() * 1000),
                    "stream_status": {"stream_descriptor": descriptor, "status": "INCOMPLETE"},
                },
            }
            stream.status = "INCOMPLETE"
            pump.write(orjson.dumps(message) + b"\n")

    def _forward_source_failure(self, pump: SourcePump, source_rc: int | None) -> None:
        """Hand the destination the source's failure as a TRACE ERROR, as a shell pipe would:
        it then commits nothing after the last echoed STATE (append records past it would
        otherwise be committed at the end of input, and loaded again by the next sync)."""
        errors = self.progress.source_errors
        error = dict(errors[-1]) if errors else {
            "message": f"the source exited with code {source_rc}",
            "failure_type": "system_error",
        }  # fmt: skip
        message = {
            "type": "TRACE",
            "trace": {"type": "ERROR", "emitted_at": int(time.time() * 1000), "error": error},
        }
        pump.write(orjson.dumps(message) + b"\n")

    # -- reporting -------------------------------------------------------------------------------
    def _rows(self) -> list[dict[str, Any]]:
        rows = []
        for index, route in enumerate(self.smap.routes):
            stream = self.progress.streams[index]
            rows.append({
                "label": f"{route.label} → {route.dest_label}",
                "status": stream.status,
                "records": self.rewriter.records[index],
                "bytes": self.rewriter.bytes[index],
                "estimate": stream.row_estimate,
                "started_at": stream.started_at,
                "ended_at": stream.ended_at,
            })  # fmt: skip
        return rows

    def _stream_status(self, status: str) -> str:
        """A stream's status in the summary: one still going when the sync ended did not end
        (cancelled with the sync, or incomplete with a failed one)."""
        if self.status != "succeeded" and status in ("STARTED", "RUNNING"):
            return "cancelled" if self.status == "cancelled" else "incomplete"
        return status.lower()

    def summary(self) -> dict[str, Any]:
        streams = []
        if self.smap is not None:
            for index, route in enumerate(self.smap.routes):
                stream = self.progress.streams[index]
                emitted = self.rewriter.records[index]
                committed = stream.committed
                if self.status == "succeeded" and not stream.committed_by_stats:
                    # No echoed state counted this stream's records; a destination that exits 0
                    # after the end of its input has committed all of it.
                    committed = emitted
                if (
                    route.destination_sync_mode == "overwrite" and self.status != "succeeded"
                    and stream.status != "COMPLETE"
                ):  # fmt: skip
                    # Its echoed states covered rows in the destination's temporaries, which a
                    # failed or cancelled sync drops: the previous tables stay, nothing changed.
                    committed = 0
                seconds = None
                if stream.started_at is not None:
                    seconds = round((stream.ended_at or time.monotonic()) - stream.started_at, 3)
                streams.append({
                    "stream": route.name,
                    "namespace": route.namespace,
                    "destination_stream": route.dest_name,
                    "destination_namespace": route.dest_namespace,
                    "sync_mode": route.sync_mode,
                    "destination_sync_mode": route.destination_sync_mode,
                    "status": self._stream_status(stream.status),
                    "records_emitted": emitted,
                    "records_committed": committed,
                    "bytes": self.rewriter.bytes[index],
                    "duration_seconds": seconds,
                })  # fmt: skip
        return {
            "connection": self.conn.name,
            "status": self.status,
            "reason": self.reason,
            "started_at": self.started_at,
            "ended_at": _now(),
            "duration_seconds": round(time.monotonic() - self.t0, 3),
            "prepare_seconds": self.prepare_seconds,
            "streams": streams,
            "total": {
                "records_emitted": sum(s["records_emitted"] for s in streams),
                "records_committed": sum(s["records_committed"] for s in streams),
                "bytes": sum(s["bytes"] for s in streams),
            },
            "states_committed": self.progress.states_committed if self.progress else 0,
            "state_file": str(self.conn.state_path),
            "destination": destination_place(self.conn.destination.config),
        }


@dataclass(frozen=True)
class _Written:
    """Where a sync wrote a stream: its table (name, namespace), and the destination's place
    (destination_place; None in entries of before it was kept)."""

    table: tuple[str, str | None]
    place: dict[str, Any] | None


def _last_destinations(history: list[dict[str, Any]]) -> dict[tuple[Any, Any], _Written]:
    """Per source stream: where its newest sync that saved some of its state wrote it (the
    stream completed, or committed records)."""
    written: dict[tuple[Any, Any], _Written] = {}
    for entry in history:  # oldest first
        place = entry.get("destination")
        for stream in entry.get("streams") or []:
            if stream.get("status") != "complete" and not stream.get("records_committed"):
                continue
            table = (stream.get("destination_stream"), stream.get("destination_namespace"))
            written[(stream.get("stream"), stream.get("namespace"))] = _Written(
                table,
                place if isinstance(place, dict) else None,  # type: ignore[arg-type]
            )
    return written


def destination_place(config: dict[str, Any]) -> dict[str, Any]:
    """The destination database a config writes to (no secret in it): for the history."""
    return {key: config.get(key) for key in ("host", "port", "database")}


def _place_text(place: dict[str, Any]) -> str:
    return f"database {place.get('database')} on {place.get('host')}:{place.get('port')}"


def _entry_label(entry: dict[str, Any]) -> str:
    """A configured catalog entry's stream as the state and the log name it."""
    return stream_label(entry["stream"]["name"], entry["stream"].get("namespace"))


def _cancel_reason(signum: int) -> str:
    name = {1: "SIGHUP (the terminal closed)", 2: "SIGINT (Ctrl-C)", 15: "SIGTERM"}.get(
        signum, f"signal {signum}"
    )
    return (
        f"The sync was cancelled by {name}; both connectors were stopped and the state was "
        "saved up to the last state the destination committed."
    )


def sync(session: Session, reporter: Reporter) -> dict[str, Any]:
    return SyncRun(session, reporter).run()
