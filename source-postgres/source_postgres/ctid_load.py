"""The first load of an incremental stream whose cursor has no index: ctid chunks, resumable.

Ordering an unindexed cursor sorts the whole remaining table for every chunk (Airbyte users see
first syncs time out on exactly this). Instead the table is read in block ranges,

    COPY (... WHERE r.ctid >= '(a,0)' AND r.ctid < '(b,0)' AND r.c <= $max ...) TO STDOUT

each a TID range scan touching only its blocks, with a ctid STATE after each range. $max is the
cursor's maximum when the load started (kept in the state): rows above it are left to the cursor
phase that follows, so a resumed load does not read them twice. Xmin streams load the same way,
the bound being "written before the xmin noted at the start" (xmin_read.py). The state also
keeps the table's filenode: a table rewritten since (VACUUM FULL, CLUSTER, ALTER TABLE ...
TYPE) has new ctids, and its load restarts from block 0 with a LOG WARN.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from source_postgres.catalog import ConfiguredStream
from source_postgres.discovery import Column, Table
from source_postgres.record_sql import stream_records
from source_postgres.state import ctid_state

SIZE_QUERY = """
SELECT pg_catalog.pg_relation_filenode(c.oid)::int8,
       (pg_catalog.pg_relation_size(c.oid) / current_setting('block_size')::int8)::int8,
       GREATEST(c.reltuples, 0)::float8, GREATEST(c.relpages, 0)::int8
FROM pg_catalog.pg_class c WHERE c.oid = %(oid)s
"""


def filenode(conn: psycopg.Connection[Any], table: Table) -> int:
    row = conn.execute(SIZE_QUERY, {"oid": table.oid}).fetchone()
    return int(row[0]) if row else 0


def ctid_load(
    conn: psycopg.Connection[Any],
    copy_out: Any,
    *,
    stream: ConfiguredStream,
    table: Table,
    columns: tuple[Column, ...],
    start_block: int,
    bound: sql.Composable | None,
    inner: dict[str, Any],
    rows_per_chunk: int,
    lines: Any,
    emitted_at: int,
    resize: Callable[[int, float], int] | None = None,
    load_xmin: int | None = None,
    carried: int = 0,
) -> Generator[bytes, None, int]:
    """Yield the RECORDs and ctid STATEs of blocks from `start_block` on; return the count.

    `bound` (over the alias `r`) leaves rows to the phase that follows: cursor <= the maximum
    noted at the start (Standard), or rows written before the noted xmin (Xmin). `inner` is
    the state that phase resumes from: nested in every ctid STATE, and the last STATE alone.
    `load_xmin`, when given, is noted in every ctid STATE (state.LOAD_XMIN_KEY). `carried`:
    records emitted just before (a resumed load's catch-up), counted in the first STATE.
    """
    with _serial_plans(conn):
        out = lines.writer
        node, blocks, tuples, pages = conn.execute(SIZE_QUERY, {"oid": table.oid}).fetchone()
        per_block = tuples / pages if pages and tuples else 50.0
        step = max(int(rows_per_chunk / max(per_block, 1.0)), 1)
        total = 0
        block = start_block
        while block < blocks:
            started = time.monotonic()
            upper = min(block + step, blocks)
            where = sql.SQL("r.ctid >= {}::tid AND r.ctid < {}::tid").format(
                sql.Literal(f"({block},0)"), sql.Literal(f"({upper},0)")
            )
            if bound is not None:
                where = sql.SQL("{} AND ({})").format(where, bound)
            count = yield from stream_records(
                conn, copy_out, table=table, columns=columns, stream=stream, emitted_at=emitted_at,
                where=where,
            )  # fmt: skip
            total += count
            count, carried = count + carried, 0  # this STATE's sourceStats.recordCount
            block = upper
            if resize is not None:  # rows per chunk adapted to the time it took, as blocks
                rows = max(int(step * per_block), 1)
                step = max(int(step * resize(rows, time.monotonic() - started) / rows), 1)
            if block < blocks:
                state = ctid_state(block, node, inner, load_xmin)
                out.stream_state(stream.name, stream.namespace, state, record_count=count)
            else:
                # Every block read: the cursor phase resumes above the maximum noted at the start.
                out.stream_state(stream.name, stream.namespace, inner, record_count=count)
            yield lines.take()
        if start_block >= blocks:  # nothing left to read (the table shrank): say where we are
            out.stream_state(stream.name, stream.namespace, inner, record_count=carried)
            yield lines.take()
        return total


@contextlib.contextmanager
def _serial_plans(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """No parallel plan for the chunks' queries, and the setting as it was after them.

    A chunk must read only its blocks (a TID Range Scan, PostgreSQL 14+). Allowed a parallel
    worker, the planner prefers a Parallel Seq Scan of the whole table with the ctid range as a
    filter once a chunk spans a good share of it (building each record line is costly and a
    worker halves that), and every such chunk then reads the entire table. The benchmark's
    first incremental read of a million rows, in three chunks, took 7.2-7.6 CPU-s of the server (a
    worker's 2.4-2.6 among them) and 4.6-6.0 s; with TID Range Scans 5.6-6.1 CPU-s and 5.8-6.4 s.
    (PostgreSQL 15 has no parallel TID Range Scan.) Older servers scan the table per chunk
    either way, and keep their setting.
    """
    if conn.info.server_version < 140000:
        yield
        return
    row = conn.execute("SELECT current_setting('max_parallel_workers_per_gather')").fetchone()
    conn.execute("SELECT set_config('max_parallel_workers_per_gather', '0', true)")
    try:
        yield
    finally:
        # Put back for the streams after, unless the transaction cannot run it now (failed: the
        # stream's savepoint rollback undoes the setting; or inside a COPY a consumer left).
        if not conn.closed and conn.info.transaction_status == TransactionStatus.INTRANS:
            conn.execute("SELECT set_config('max_parallel_workers_per_gather', %s, true)", row)
