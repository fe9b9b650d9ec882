"""The read: every configured stream from one consistent snapshot, as protocol lines.

Full refresh here; incremental streams by cursor in incremental.py, by xmin in xmin_read.py
(Xmin replication: every stream's changes are judged against this one snapshot).

`read_messages` is the one source of truth for `read`: a generator of serialized protocol lines
(bytes holding one or many `\\n`-terminated JSON messages). The console script writes them to
stdout as they come; the CDK envelope (`SourcePostgres.read`) parses them into AirbyteMessages.

All streams are read in one REPEATABLE READ READ ONLY transaction, so rows committed by others
while the sync runs never appear, whichever stream they belong to. Each stream runs under a
savepoint: a stream whose table vanished or is unreadable ends INCOMPLETE with a TRACE ERROR
and the transaction (and its snapshot) goes on with the next stream.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from operator import itemgetter
from typing import Any

import psycopg
from pgbyte_common import debug
from pgbyte_common.errors import (
    ConfigError,
    LockTableFull,
    PgbyteError,
    TransientError,
    classify_error,
)
from pgbyte_common.messages import MessageWriter, now_ms
from pgbyte_common.secrets import Masker, collect_secrets
from pgbyte_common.sql_names import qualified, quoted
from psycopg import errors as pg_errors
from psycopg import generators, sql

from source_postgres.catalog import ConfiguredStream
from source_postgres.config import SourceConfig, require_supported_method
from source_postgres.discovery import XMIN_KINDS, Table, default_cursor, discover_tables
from source_postgres.incremental import read_by_cursor
from source_postgres.locks import lock_tables, lockable_relations
from source_postgres.record_sql import record_query, unescape_copy_text
from source_postgres.state import (
    Unusable,
    full_refresh_state,
    parse_input_state,
    stream_cursor_state,
)
from source_postgres.xids import Snapshot, read_snapshot
from source_postgres.xmin_read import read_by_xmin

# COPY rows (RECORD lines) joined per write: large writes, bounded memory. A chunk holds
# about CHUNK_BYTES, as many rows as the previous chunk's row size says fit (at most
# ROWS_PER_CHUNK; one row when rows are that big): 4,096 rows of 1 MB held 4 GB.
CHUNK_BYTES = 2 << 20
ROWS_PER_CHUNK = 4096
_END_OF_COPY = (-1, b"")

# Session settings: value rendering independent of the server's defaults, and no JIT.
SESSION_SETTINGS = (
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 3",
    "SET client_encoding = 'UTF8'",
)
# Reads are scans whose per-row work is output functions, which JIT does not compile; its
# compile time (up to a second per statement, and every ctid/cursor chunk is a statement) would
# be spent wherever nested array conversions inflate the planner's cost estimate. (PostgreSQL
# 11 introduced the setting.)
JIT_OFF = "SET jit = off"
# A read holds one transaction open while its output waits on the destination: a role's
# idle_in_transaction_session_timeout would end it mid-sync. And should the source die (even
# by SIGKILL), the server notices within a second and ends the query instead of computing on
# until it next writes a row (PostgreSQL 14 added the check).
NO_IDLE_TIMEOUT = "SET idle_in_transaction_session_timeout = 0"
# A read is one stream of rows: Postgres builds each RECORD line (most of the read's cost) and
# the source only moves bytes, so one parallel worker beside the leader nearly halves a large
# scan's time (measured on the benchmark's million rows: 2.2-2.3 s instead of 4.6-4.7 for the
# query alone). More workers only add queue traffic through the leader (2.5 s with two), and
# take workers from the database's own queries. The worker's queue costs CPU: with both
# servers and both connectors on one 2-core machine a sync took about 4% longer (10.4-10.8 s
# against 10.1-10.3). A lower setting of the role or database (0: no parallel query) is kept.
# (PostgreSQL 9.6 introduced the setting.)
ONE_PARALLEL_WORKER = (
    "SELECT set_config('max_parallel_workers_per_gather', "
    "LEAST(current_setting('max_parallel_workers_per_gather')::int, 1)::text, false)"
)
CONNECTION_CHECK = "SET client_connection_check_interval = '1s'"

ESTIMATE_QUERY = """
SELECT COALESCE(sum(GREATEST(c.reltuples, 0)), 0)::int8,
       COALESCE(sum(pg_catalog.pg_relation_size(c.oid)), 0)::int8,
       COALESCE(bool_or(c.reltuples < 0), false)
FROM pg_catalog.pg_class c
WHERE c.relkind IN ('r', 'm')
  AND (c.oid = %(oid)s
       OR c.oid IN (SELECT relid FROM pg_catalog.pg_partition_tree(%(oid)s::regclass)))
"""
# A table never vacuumed nor analyzed has no row count (reltuples -1, PostgreSQL 14+): up to this
# size it is counted (a fraction of a second), above it the planner estimates from its size.
EXACT_COUNT_BYTES = 64 << 20


def _row_estimate(conn: psycopg.Connection[Any], table: Table) -> tuple[int, int]:
    """(rows, bytes) for a stream's ESTIMATE: the catalog's statistics when there are some."""
    rows, nbytes, unknown = conn.execute(ESTIMATE_QUERY, {"oid": table.oid}).fetchone()
    if unknown:
        relation = sql.Identifier(table.schema, table.name)
        if nbytes <= EXACT_COUNT_BYTES:
            rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(relation)).fetchone()[0]
        else:
            plan = conn.execute(
                sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM {}").format(relation)
            ).fetchone()[0]
            rows = int(plan[0]["Plan"]["Plan Rows"])
    return rows, nbytes


@dataclass
class ReadOutcome:
    """What happened, for the exit status."""

    failed: list[tuple[str, str | None]] = field(default_factory=list)
    records: int = 0


class _Lines:
    """A MessageWriter target that hands each serialized message back to the generator."""

    def __init__(self, masker: Masker) -> None:
        self.buffer = io.BytesIO()
        self.writer = MessageWriter(self.buffer, masker)

    def take(self) -> bytes:
        data = self.buffer.getvalue()
        self.buffer.seek(0)
        self.buffer.truncate()
        return data


def read_messages(
    raw_config: Any,
    streams: list[ConfiguredStream],
    outcome: ReadOutcome,
    raw_state: Any = None,
) -> Iterator[bytes]:
    """Yield the protocol lines of a read of `streams`, resuming from `raw_state` (--state)."""
    lines = _Lines(Masker(collect_secrets(raw_config)))
    config = SourceConfig.from_config(raw_config)
    require_supported_method(config)
    saved_states = parse_input_state(raw_state)
    with config.connection.connect(autocommit=True) as conn:
        try:
            for statement in SESSION_SETTINGS:
                conn.execute(statement)
            if conn.info.server_version >= 110000:
                conn.execute(JIT_OFF)
            if conn.info.server_version >= 90600:
                conn.execute(NO_IDLE_TIMEOUT)
                conn.execute(ONE_PARALLEL_WORKER)
            if conn.info.server_version >= 140000:
                # Refused where the server's platform cannot check (Windows): then without.
                with contextlib.suppress(psycopg.errors.InvalidParameterValue):
                    conn.execute(CONNECTION_CHECK)
            lockable = lockable_relations(conn, streams, config.schemas)  # before BEGIN
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            lock_tables(conn, lockable)  # LOCK takes no snapshot: they are locked before it
            # first query: the snapshot starts here
            tables = _resolve(conn, config, streams, lines.writer.log)
            xmin = config.replication_method == "Xmin"
            snapshot = read_snapshot(conn) if xmin else None
        except psycopg.Error as exc:
            raise classify_error(exc, context="Starting the read") from None
        try:
            yield from _read_streams(conn, streams, tables, lines, outcome, saved_states, snapshot)
        except (GeneratorExit, KeyboardInterrupt):
            # Our reader stopped (stdout closed, e.g. `read | head`) or a signal ended the read,
            # maybe mid-COPY, where a rollback fails noisily: a read-only session has nothing
            # to roll back, so cancel the query (it may be computing, not writing, for long)
            # and close.
            with contextlib.suppress(Exception):
                conn.cancel_safe(timeout=2)
            conn.close()
            raise
        with contextlib.suppress(psycopg.Error):
            conn.execute("ROLLBACK")  # read only: nothing to commit


def _read_streams(
    conn: psycopg.Connection[Any],
    streams: list[ConfiguredStream],
    tables: dict[tuple[str, str | None], Table],
    lines: _Lines,
    outcome: ReadOutcome,
    saved_states: dict[Any, Any],
    snapshot: Snapshot | None,
) -> Iterator[bytes]:
    """Each configured stream in turn; a stream's failure ends only that stream, unless the
    connection is gone."""
    out = lines.writer
    for i, stream in enumerate(streams):
        table = tables.get(stream.descriptor)
        out.stream_status(stream.name, stream.namespace, "STARTED")
        yield lines.take()
        try:
            saved = saved_states.get(stream.descriptor)
            if saved is None and sum(s.name == stream.name for s in streams) == 1:
                # A state saved without a namespace (older clients, hand-written ones) is
                # this stream's when no other configured stream has its name.
                saved = saved_states.get((stream.name, None))
            yield from _read_stream(conn, stream, table, lines, outcome, saved, snapshot)
        except PgbyteError as exc:
            outcome.failed.append(stream.descriptor)
            out.exception(exc, stream=stream.descriptor)
            out.stream_status(stream.name, stream.namespace, "INCOMPLETE")
            yield lines.take()
            if conn.broken or conn.closed or isinstance(exc, LockTableFull):
                # The next streams cannot be read either: the connection is gone, or every
                # table they touch needs a lock there is no room for. Each still ends with a
                # status (INCOMPLETE), so that a client waiting for every configured stream's
                # end (CAT's status checks, a destination's overwrite) gets one.
                for rest in streams[i + 1 :]:
                    outcome.failed.append(rest.descriptor)
                    out.stream_status(rest.name, rest.namespace, "INCOMPLETE")
                yield lines.take()
                break


def _resolve(
    conn: psycopg.Connection[Any],
    config: SourceConfig,
    streams: list[ConfiguredStream],
    log: Callable[[str, str], Any],
) -> dict[tuple[str, str | None], Table]:
    """Map each configured stream to the readable relation it names (a WARN where a stream
    without namespace names relations of several schemas: which is read was said nowhere)."""
    namespaces = {s.namespace for s in streams if s.namespace is not None}
    unqualified = any(s.namespace is None for s in streams)
    if unqualified:
        namespaces.update(config.schemas)
    if unqualified and not config.schemas:
        found = discover_tables(conn, [])  # schemas [] means every schema
    elif unqualified:
        found = discover_tables(conn, sorted(namespaces)) if namespaces else []
    else:  # every stream names its schema: the catalog is asked for these relations only
        only = [(s.namespace, s.name) for s in streams if s.namespace is not None]
        found = discover_tables(conn, sorted(namespaces), only=only)
    by_key = {(t.schema, t.name): t for t in found}
    resolved: dict[tuple[str, str | None], Table] = {}
    for stream in streams:
        if stream.namespace is not None:
            table = by_key.get((stream.namespace, stream.name))
        else:
            # A stream without namespace: the first configured schema holding that name.
            order = config.schemas or tuple(sorted({t.schema for t in found}))
            holding = [s for s in order if (s, stream.name) in by_key]
            table = by_key[(holding[0], stream.name)] if holding else None
            if len(holding) > 1:
                log("WARN", f"Stream {stream.name} has no namespace and schemas "
                            f"{', '.join(holding)} each hold a relation of that name: read from "
                            f"{holding[0]}, the first of them in the config's schemas (or "
                            "by name). Give the stream its namespace to choose.")  # fmt: skip
        if table is not None:
            resolved[stream.descriptor] = table
    return resolved


def _read_stream(
    conn: psycopg.Connection[Any],
    stream: ConfiguredStream,
    table: Table | None,
    lines: _Lines,
    outcome: ReadOutcome,
    saved_state: dict[str, Any] | None = None,
    snapshot: Snapshot | None = None,
) -> Iterator[bytes]:
    """One stream: full refresh, or incremental by cursor (Standard) or by xmin (`snapshot`
    set: Xmin replication; or Standard without any cursor column, see below)."""
    out = lines.writer
    label = f"{stream.namespace}.{stream.name}" if stream.namespace else stream.name
    incremental = stream.sync_mode == "incremental"
    saved = stream_cursor_state(label, saved_state) if incremental else None
    if isinstance(saved, Unusable):
        out.log("WARN", f"Stream {label}: {saved.reason}; re-reading the whole stream.")
        saved = None
    if table is None:
        raise ConfigError(
            f"Stream {label}: no such table or view that user can SELECT (dropped, renamed, "
            "or privileges revoked since discover?). Run discover again and update the catalog."
        )
    columns = table.columns
    if stream.columns is not None:
        wanted = set(stream.columns)
        columns = tuple(c for c in table.columns if c.name in wanted)
        unknown = sorted(wanted - {c.name for c in table.columns})
        if unknown:
            out.log("WARN", f"Stream {label}: column(s) {', '.join(unknown)} no longer "
                    "exist or are not readable; they are left out.")  # fmt: skip
    if incremental and snapshot is not None and table.kind not in XMIN_KINDS:
        # Xmin replication, a view or foreign table (no xmin column) asked for incrementally:
        # PyAirbyte asks so for every stream, whatever discover offered. Failing it would end
        # the client's whole read: it is read as Standard replication reads it (below).
        out.log("WARN", f"Stream {label}: a view or foreign table has no xmin column: read as "
                "Standard replication reads it, by its cursor column if it has one.")  # fmt: skip
        snapshot = None
    if incremental and snapshot is None and not stream.cursor_field and not default_cursor(table):
        # Clients such as PyAirbyte ask for incremental on every stream, with the discovered
        # default_cursor_field (often none). Failing there helps nobody (Airbyte's connector
        # does: "No cursor field specified"): tables are read by xmin instead, which needs no
        # cursor column; views, which have no xmin, are read whole. So are tables without a
        # primary key: a client that replaces such a stream on every read (PyAirbyte's cache
        # does) would otherwise keep only the rows changed since the last sync.
        if table.kind in XMIN_KINDS and (stream.has_primary_key or table.primary_key):
            out.log(
                "WARN",
                f"Stream {label}: sync_mode incremental without a cursor_field, and the table "
                "has no obvious one (a single updated_at-like column): reading the rows "
                "inserted or updated since the last sync by their xmin, as Xmin replication "
                "does (deletes are not seen). Set a cursor_field, or use full_refresh, to "
                "choose otherwise.",
            )
            snapshot = read_snapshot(conn)
        else:
            out.log(
                "WARN",
                f"Stream {label}: sync_mode incremental without a cursor_field, and the "
                + ("view" if table.kind not in XMIN_KINDS else "table, which has no primary key,")
                + " has no obvious cursor column: every sync reads all of its rows. Set a "
                "cursor_field to read only new rows.",
            )
            incremental, saved = False, None
    if (
        incremental and stream.replaced and not stream.cursor_field
        and not (stream.has_primary_key or table.primary_key)
    ):  # fmt: skip
        # incremental | overwrite, by xmin (Xmin replication) or by the default cursor of a
        # view: PyAirbyte asks so for every stream, and replaces one with neither key nor
        # cursor by what the read sends (its cache, and a destination it writes to). The
        # changes alone would leave it only them.
        out.log(
            "WARN",
            f"Stream {label}: sync_mode incremental with destination_sync_mode overwrite, "
            "and no primary key or cursor_field to merge changes by: every sync reads all of "
            "its rows (the destination replaces the stream with them).",
        )
        incremental, saved, snapshot = False, None, None
    emitted_at = now_ms()
    query = record_query(
        schema=table.schema,
        table=table.name,
        columns=columns,
        stream=stream.name,
        namespace=stream.namespace,
        emitted_at=emitted_at,
    )
    count = 0
    conn.execute("SAVEPOINT pgbyte_stream")
    try:
        if table.kind in ("r", "m", "p"):
            out.estimate(stream.name, stream.namespace, *_row_estimate(conn, table))
        out.stream_status(stream.name, stream.namespace, "RUNNING")
        yield lines.take()
        if incremental:
            if snapshot is not None:
                count = yield from read_by_xmin(
                    conn, copy_out, stream=stream, table=table, columns=columns, saved=saved,
                    snapshot=snapshot, lines=lines, label=label, emitted_at=emitted_at,
                )  # fmt: skip
            else:
                count = yield from read_by_cursor(
                    conn, copy_out, stream=stream, table=table, columns=columns, saved=saved,
                    lines=lines, label=label, emitted_at=emitted_at,
                )  # fmt: skip
            _check_not_rewritten(conn, table, label)
            conn.execute("RELEASE SAVEPOINT pgbyte_stream")
            outcome.records += count
            out.stream_status(stream.name, stream.namespace, "COMPLETE")
            yield lines.take()
            return
        count = yield from copy_out(conn, query)
        _check_not_rewritten(conn, table, label)
        conn.execute("RELEASE SAVEPOINT pgbyte_stream")
    except psycopg.Error as exc:
        outcome.records += count
        if not conn.broken and conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            conn.execute("ROLLBACK TO SAVEPOINT pgbyte_stream")
        raise _stream_error(exc, label, conn, table) from None
    outcome.records += count
    out.stream_state(stream.name, stream.namespace, full_refresh_state(), record_count=count)
    out.stream_status(stream.name, stream.namespace, "COMPLETE")
    yield lines.take()


# A table (the stream's, or one under its partitioned table or view) whose file changed since
# the read's snapshot: pg_class as the snapshot sees it against the relation cache, which the
# lock the read now holds has brought up to date. Not materialized views: REFRESH writes its
# rows frozen, visible to every snapshot (the read sees the refreshed contents, not nothing).
REWRITTEN_QUERY = """
WITH RECURSIVE rel(oid) AS (
    SELECT %(oid)s::oid
    UNION
    SELECT x.oid FROM rel JOIN LATERAL (
        SELECT i.inhrelid AS oid FROM pg_catalog.pg_inherits i WHERE i.inhparent = rel.oid
        UNION ALL
        SELECT d.refobjid FROM pg_catalog.pg_rewrite w
        JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass
          AND d.objid = w.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass
          AND d.refobjid <> rel.oid
        WHERE w.ev_class = rel.oid
    ) x ON true
)
SELECT c.relname FROM rel JOIN pg_catalog.pg_class c ON c.oid = rel.oid
WHERE c.relkind = 'r' AND c.relfilenode <> 0
  AND pg_catalog.pg_relation_filenode(c.oid) IS DISTINCT FROM c.relfilenode
LIMIT 1
"""


def _check_not_rewritten(conn: psycopg.Connection[Any], table: Table, label: str) -> None:
    """A TransientError when the stream's storage was truncated or rewritten after the read's
    snapshot began (before the read could lock it: someone held a lock then, or it cannot be
    locked ahead, see locks.py): TRUNCATE and rewriting ALTERs are not MVCC-safe, and the
    stream would sync as empty — wrong, not merely old. VACUUM FULL and CLUSTER, which keep
    the rows visible, are told apart by nothing here: such a stream fails too, and the next
    sync reads it."""
    row = conn.execute(REWRITTEN_QUERY, {"oid": table.oid}).fetchone()
    if row is not None:
        raise TransientError(
            f"Stream {label}: {row[0]} was truncated or rewritten (TRUNCATE, ALTER TABLE ... "
            "TYPE, VACUUM FULL...) after this read's snapshot began, "
            "so its rows are invisible to the read; the stream is not synced this time — sync "
            "again."
        )


def copy_out(conn: psycopg.Connection[Any], query: sql.Composable) -> Generator[bytes, None, int]:
    """Run `COPY ... TO STDOUT` and yield its output in chunks of about CHUNK_BYTES; returns
    how many rows (lines) it held.

    libpq hands COPY data over one row at a time; psycopg's Copy.read() costs about 3.5 µs of
    Python per row, more than Postgres spends building it. Here the per-row loop runs in C
    (iter(callable, sentinel) → islice → map → bytes.join), so Python works per chunk only.
    Each chunk but the last holds the rows asked for, so only the last is counted (counting
    them all would cost a pass over the data); a chunk is held until the next one shows
    whether it was the last.
    """
    debug.statement(conn, query)
    pgconn = conn.pgconn
    pgconn.send_query(query.as_bytes(conn))
    # Waited for in Python, not in libpq: a slow first row (a slow view, a lock) must not keep
    # a SIGTERM from being handled. The rows then come from libpq's blocking call, in C.
    conn.wait(generators.send(pgconn))  # the whole query out (the connection is non-blocking)
    result = conn.wait(generators.fetch(pgconn))
    if result is None or result.status != psycopg.pq.ExecStatus.COPY_OUT:
        _drain(conn)
        raise _result_error(conn, result)
    rows = iter(partial(pgconn.get_copy_data, 0), _END_OF_COPY)
    count, held, held_rows = 0, b"", 0
    asked = 1  # the first chunk is one row: its size sets the next one's
    while True:
        chunk = b"".join(map(itemgetter(1), islice(rows, asked)))
        if not chunk:
            break
        if held:
            count += held_rows  # a chunk followed it: it held every row asked for
            yield held
        held, held_rows = unescape_copy_text(chunk), asked
        asked = max(1, min(ROWS_PER_CHUNK, CHUNK_BYTES * asked // len(chunk)))
    if held:
        count += held.count(b"\n")  # the last may hold fewer rows than asked for
        yield held
    error = None
    while (result := pgconn.get_result()) is not None:
        if result.status == psycopg.pq.ExecStatus.FATAL_ERROR and error is None:
            error = _result_error(conn, result)
    if error is not None:
        raise error
    return count


def _drain(conn: psycopg.Connection[Any]) -> None:
    while conn.pgconn.get_result() is not None:
        pass


def _result_error(conn: psycopg.Connection[Any], result: Any) -> psycopg.Error:
    if result is None:
        return psycopg.OperationalError("the server sent no result for COPY")
    return pg_errors.error_from_result(result, encoding=conn.info.encoding)


def _stream_error(
    exc: psycopg.Error, label: str, conn: psycopg.Connection[Any], table: Table
) -> PgbyteError:
    if isinstance(exc, pg_errors.UndefinedTable | pg_errors.UndefinedColumn):
        return ConfigError(
            f"Stream {label}: the table or one of its columns no longer exists "
            f"({str(exc).strip().splitlines()[0]}). Run discover again and update the catalog."
        )
    if isinstance(exc, pg_errors.ObjectNotInPrerequisiteState) and table.kind == "m":
        # "materialized view ... has not been populated" (made WITH NO DATA)
        return ConfigError(
            f"Stream {label}: {str(exc).strip().splitlines()[0]}. Fill it with REFRESH "
            f"MATERIALIZED VIEW {qualified(table.schema, table.name)}; or remove the stream "
            "from the catalog."
        )
    # No ordering of the cursor's type (json, point; a composite with a point in it: "could
    # not identify a comparison function"), or no comparison with a saved value of it.
    if isinstance(exc, pg_errors.UndefinedFunction) and any(
        says in str(exc)
        for says in ("ordering operator", "operator does not exist", "comparison function")
    ):
        return ConfigError(
            f"Stream {label}: the cursor column's type cannot be ordered "
            f"({str(exc).strip().splitlines()[0]}). Choose a cursor_field of an orderable type "
            "(numbers, timestamps, dates, text, uuid...)."
        )
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        user = conn.info.user
        return ConfigError(
            f"Stream {label}: user {user!r} may not read it ({str(exc).strip().splitlines()[0]})."
            f" GRANT SELECT ON {qualified(table.schema, table.name)} TO {quoted(user)}; or "
            "remove the stream from the catalog."
        )
    if isinstance(exc, pg_errors.CharacterNotInRepertoire | pg_errors.UntranslatableCharacter):
        return _encoding_error(exc, label, conn)
    if conn.broken:
        return TransientError(f"Stream {label}: the connection to the server was lost ({exc}).")
    return classify_error(exc, context=f"Reading stream {label}")


def _encoding_error(exc: psycopg.Error, label: str, conn: psycopg.Connection[Any]) -> ConfigError:
    """Text the server cannot hand over as UTF-8: its data, not a bug, so the user's to fix.

    Setting client_encoding (jdbc_url_params) cannot help: the read always asks for UTF-8
    (SESSION_SETTINGS), since it passes the server's bytes through as the JSON it writes.
    """
    encoding = conn.info.parameter_status("server_encoding") or "unknown"
    unchecked = ", which stores text bytes unchecked" if encoding == "SQL_ASCII" else ""
    return ConfigError(
        f"Stream {label}: a text value is not valid UTF-8 or has no UTF-8 form "
        f"({str(exc).strip().splitlines()[0]}). The database's encoding is {encoding}"
        f"{unchecked}; the source reads all text as UTF-8, the encoding of its JSON output. "
        "Find and re-encode those values as UTF-8 in the database (such bytes are often "
        "Latin-1 or Windows-1252 text), or leave the column out (remove it from the stream's "
        "json_schema properties in the catalog) or the stream."
    )


__all__ = ["ReadOutcome", "read_messages", "sql"]
