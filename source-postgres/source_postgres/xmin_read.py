"""Xmin replication: the rows changed since the last sync, found by their xmin system column.

Every row version carries `xmin`, the 32-bit id of the transaction that wrote it (an INSERT or
an UPDATE; a DELETE leaves nothing to read, so deletes cannot be seen). Postgres also counts
xids in 64 bits (txid_current(): the epoch — the number of 32-bit wraparounds — in the high 32
bits), and a row's 32-bit xmin is always within 2^31 of the current counter unless the row was
frozen long ago. So:

- The state saved at the end of a sync is the read's snapshot xmin S (64-bit): every xid below
  it had finished when the snapshot was taken, so every row version the snapshot could not see
  (transactions in progress then, or begun later) was written by an xid >= S. Airbyte's
  XminStatus shape: num_wraparound = S >> 32, xmin_xid_value = S mod 2^32.
- The next sync, whose snapshot has xmax N (the first unassigned xid), reads the row versions
  written by xids in [S, N) — the only ones it can see that the last sync may not have. In 32
  bits that is the circular interval [S mod 2^32, N mod 2^32): `x >= s AND x < n`, or after a
  wraparound between the syncs (s > n) `x >= s OR x < n` (Airbyte's single-wraparound
  predicate), both written as `((x - s) & (2^32 - 1)) < N - S`. Rows committed between S and
  the last snapshot are read twice: at-least-once.
- N - S >= 2^32 (a whole wraparound since the last sync): a 32-bit xmin cannot tell old rows
  from new ones, so the stream is read again from scratch with a LOG WARN (Airbyte does that
  from two wraparounds on). S > N (the state came from another server, or the database was
  restored from a dump): the same.

A first sync, or one whose state no longer fits, reads a plain table in ctid chunks with
checkpoints (ctid_load.py) whose state nests the xmin noted at the start; a resumed first load
reads its remaining blocks' rows written before that xmin, then the rows changed since by xmin.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import psycopg
from pgbyte_common.errors import ConfigError
from pgbyte_common.sql_names import qualified, quoted
from psycopg import sql

from source_postgres.catalog import ConfiguredStream
from source_postgres.ctid_load import ctid_load, filenode
from source_postgres.discovery import XMIN_KINDS, Column, Table
from source_postgres.incremental import chunk_rows, next_chunk_rows
from source_postgres.record_sql import stream_records
from source_postgres.state import (
    CtidState,
    CursorState,
    XminState,
    describe,
    xmin_state,
)
from source_postgres.xids import XID_SPACE, XMIN_EXPR, Snapshot, written_between


def read_by_xmin(
    conn: psycopg.Connection[Any],
    copy_out: Any,
    *,
    stream: ConfiguredStream,
    table: Table,
    columns: tuple[Column, ...],
    saved: CursorState | CtidState | XminState | None,
    snapshot: Snapshot,
    lines: Any,
    label: str,
    emitted_at: int,
) -> Generator[bytes, None, int]:
    """Yield the RECORD and STATE lines of one Xmin stream; return the record count."""
    out = lines.writer
    assert table.kind in XMIN_KINDS  # the reader reads the others by cursor, or whole
    _require_xmin_privilege(conn, table, label)
    inner = saved.incremental if isinstance(saved, CtidState) else saved
    if saved is not None and isinstance(inner, CursorState):
        # Switching from Standard to Xmin: a cursor value says nothing about xids. Reading
        # everything again is safe (at-least-once; dedup destinations keep one row per key).
        out.log(
            "WARN",
            f"Stream {label}: the saved state is {describe(saved)} but the stream is now read "
            "by xmin (Xmin replication, or incremental without a cursor column); re-reading "
            "the whole stream.",
        )
        saved = inner = None
    resume = saved if isinstance(saved, CtidState) else None
    since = inner.raw if isinstance(inner, XminState) else None
    if resume is not None and (
        not table.ctid_chunkable or filenode(conn, table) != resume.filenode
    ):
        out.log(
            "WARN",
            f"Stream {label}: the table was rewritten (or is no longer a plain table, or the "
            "user lost table-level SELECT on it) since the interrupted first load, so its saved "
            "row positions mean nothing; restarting it.",
        )
        resume = since = None
    if since is not None and since > snapshot.xmax:
        out.log(
            "WARN",
            f"Stream {label}: the saved xmin {since} is ahead of this server's transaction "
            f"counter ({snapshot.xmax}): the state comes from another server or the database "
            "was restored; re-reading the whole stream.",
        )
        resume = since = None
    if since is not None and snapshot.xmax - since >= XID_SPACE:
        out.log(
            "WARN",
            f"Stream {label}: {snapshot.xmax - since} transactions (more than a whole 32-bit "
            "xid wraparound) since the saved xmin, so row xmins cannot tell old rows from "
            "changed ones; re-reading the whole stream.",
        )
        resume = since = None
    _warn_of_foreign_parts(conn, table, label, out)
    if since is not None:
        _warn_of_unwritten_defaults(conn, table, since, snapshot.xmax, label, out)
    yield lines.take()

    final = xmin_state(snapshot.xmin)
    if since is None:
        if not table.ctid_chunkable:  # partitioned, materialized, with INHERITS children (no
            # single ctid space to chunk), or readable by some columns only (no ctid)
            return (yield from _read_where(conn, copy_out, stream, table, columns, None,
                                           final, lines, emitted_at))  # fmt: skip
        # Everything this snapshot sees, in resumable chunks; the next sync starts at its xmin.
        limit, adaptive = chunk_rows()
        return (yield from ctid_load(
            conn, copy_out, stream=stream, table=table, columns=columns, start_block=0,
            bound=None, inner=final, rows_per_chunk=limit, lines=lines, emitted_at=emitted_at,
            resize=next_chunk_rows if adaptive else None,
        ))  # fmt: skip
    changed = written_between(XMIN_EXPR, since, snapshot.xmax)
    total = 0
    if resume is not None:
        # The rest of the interrupted first load: rows written before its noted xmin. Those
        # written since (wherever they are now) are read by xmin right after.
        limit, adaptive = chunk_rows()
        total = yield from ctid_load(
            conn, copy_out, stream=stream, table=table, columns=columns,
            start_block=resume.block, bound=sql.SQL("NOT {}").format(changed),
            inner=xmin_state(since), rows_per_chunk=limit, lines=lines,
            emitted_at=emitted_at, resize=next_chunk_rows if adaptive else None,
        )  # fmt: skip
    total += yield from _read_where(
        conn, copy_out, stream, table, columns, changed, final, lines, emitted_at
    )
    return total


FOREIGN_PARTS = """
WITH RECURSIVE part(oid) AS (
    SELECT inhrelid FROM pg_catalog.pg_inherits WHERE inhparent = %(oid)s
    UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN part p ON i.inhparent = p.oid
)
SELECT c.oid::regclass::text FROM part JOIN pg_catalog.pg_class c ON c.oid = part.oid
WHERE c.relkind = 'f' ORDER BY 1
"""


def _warn_of_foreign_parts(
    conn: psycopg.Connection[Any], table: Table, label: str, out: Any
) -> None:
    """Foreign tables among a table's partitions or INHERITS children: their rows have no
    xmin (0), so an Xmin read never sees them change. Said on every sync."""
    if table.kind != "p" and not table.has_children:
        return
    parts = [row[0] for row in conn.execute(FOREIGN_PARTS, {"oid": table.oid}).fetchall()]
    if parts:
        what = "is a foreign table" if len(parts) == 1 else "are foreign tables"
        out.log(
            "WARN",
            f"Stream {label}: {', '.join(parts)} {what} (a partition or child of it), whose "
            "rows have no xmin: an Xmin read copies them "
            "on the first sync only and never sees them change. Read this stream by a "
            "cursor_field (Standard replication) or with full refresh.",
        )


# The columns of a table (or of its partitions and children, which hold its rows) whose value
# in the rows older than the column PostgreSQL keeps aside instead of writing it (atthasmissing:
# ADD COLUMN ... DEFAULT) and whose catalog row some transaction in the window wrote: an ADD
# COLUMN then, or a later change of its definition (a rename, SET NOT NULL, a column GRANT).
# Every column, selected or not: one selected later lacks the value in those rows all the same.
UNWRITTEN_DEFAULTS = """
WITH RECURSIVE part(oid) AS (
    SELECT %(oid)s::oid
    UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN part p ON i.inhparent = p.oid
)
SELECT DISTINCT a.attname FROM part JOIN pg_catalog.pg_attribute a ON a.attrelid = part.oid
WHERE a.attnum > 0 AND NOT a.attisdropped AND a.atthasmissing AND {written}
ORDER BY 1
"""


def _warn_of_unwritten_defaults(
    conn: psycopg.Connection[Any], table: Table, since: int, until: int, label: str, out: Any
) -> None:
    """A column added since the last sync with a default (ADD COLUMN ... DEFAULT) gives the
    rows already there its value without writing them: their xmin is unchanged, so this read
    does not send them again and downstream they lack it. Said by the first sync after (the
    window then moves past the ALTER). `since`..`until` spans less than 2^32 (read_by_xmin
    re-reads otherwise)."""
    query = sql.SQL(UNWRITTEN_DEFAULTS).format(
        written=written_between(sql.SQL("a.xmin::text::int8"), since, until)
    )
    names = [row[0] for row in conn.execute(query, {"oid": table.oid}).fetchall()]
    if names:
        listed = ", ".join(repr(n) for n in names)
        out.log(
            "WARN",
            f"Stream {label}: column(s) {listed} changed since the last sync and hold a "
            "default PostgreSQL gives the rows older than the column without writing them. If "
            "a column was added since (ALTER TABLE ... ADD COLUMN ... DEFAULT, not a rename or "
            "other change), those rows kept their xmin, so no sync sends them again and "
            "downstream they lack its value (it is synced only once selected). To backfill, "
            "reset this stream's state (pgbyte state reset CONN --stream S) or sync it once "
            "with full refresh.",
        )


def _require_xmin_privilege(conn: psycopg.Connection[Any], table: Table, label: str) -> None:
    """A role that may read only some columns reads no xmin unless granted that column too.
    The first sync (a whole read, no xmin needed) succeeded and every later one failed; now
    the first says so."""
    if table.table_select:
        return
    row = conn.execute(
        "SELECT pg_catalog.has_column_privilege(%s, 'xmin', 'SELECT')", (table.oid,)
    ).fetchone()
    if row and row[0]:
        return
    user, name = quoted(conn.info.user), qualified(table.schema, table.name)
    raise ConfigError(
        f"Stream {label}: user {conn.info.user!r} may read only some columns of it, and an "
        "Xmin read (Xmin replication, or incremental without a cursor column) needs its xmin "
        f"system column: GRANT SELECT (xmin) ON {name} TO {user}; (or GRANT SELECT ON {name} "
        f"TO {user};), or read it by a cursor_field (Standard replication)."
    )


def _read_where(
    conn: psycopg.Connection[Any],
    copy_out: Any,
    stream: ConfiguredStream,
    table: Table,
    columns: tuple[Column, ...],
    where: sql.Composable | None,
    final: dict[str, Any],
    lines: Any,
    emitted_at: int,
) -> Generator[bytes, None, int]:
    """One COPY of the rows matching `where` (all when None), then the stream's xmin STATE.

    Not chunked: rows have no order by xid to resume from, and one sequential scan is what a
    change lookup costs anyway (Airbyte also checkpoints xmin reads only at the end).
    """
    count = yield from stream_records(
        conn, copy_out, table=table, columns=columns, stream=stream, emitted_at=emitted_at,
        where=where,
    )  # fmt: skip
    lines.writer.stream_state(stream.name, stream.namespace, final, record_count=count)
    yield lines.take()
    return count
