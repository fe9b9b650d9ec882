"""Incremental read by a user-chosen cursor column, in chunks with a checkpoint after each.

Each chunk is two statements inside the read's REPEATABLE READ snapshot:

    SELECT s.c::text FROM (SELECT r.c FROM t r WHERE r.c > $last ORDER BY r.c LIMIT n) s
      ORDER BY s.c DESC LIMIT 1                                          -- the chunk's $upper
    COPY (SELECT <record line> FROM t r WHERE r.c > $last AND r.c <= $upper ORDER BY r.c) ...

then a STATE with cursor = $upper. Every row at $upper is in the chunk, so a checkpoint always
falls between two distinct cursor values: resuming with `c > cursor` loses no row and repeats
none, however many rows share a value (a chunk grows past n rows to take all ties). The saved
text is compared as a literal of the column's type (a domain's base type; a reg* type's oid):
numbers, timestamps, dates, text (in the column's collation), uuid, composites... compare as that
type. A type whose comparison operators live in a schema off the search_path (an extension's:
citext, ltree installed in `extensions`) is compared with them by name, OPERATOR(ext.>):
PostgreSQL finds a bare `>` by the search_path, and would compare citext as text. Timestamps and
times are saved as the records render them (`2023-01-01T13:00:00.000000`, `...Z` in UTC for
timestamptz), the form Airbyte's source-postgres saves and parses back: a state moves between the
two sources either way, and Postgres reads that form back to the same microsecond.

cursor_record_count is kept as Airbyte does: when more rows hold the saved cursor value than
the state counted (rows inserted later with an equal cursor, e.g. a coarse timestamp), the next
read starts at `c >= cursor`, re-emitting that value's rows rather than losing the new ones.
Rows whose cursor is NULL can never be ordered after a checkpoint: the first load copies them
(all rows, when none has a value yet: the state then notes no value, and the next sync loads
again); later syncs count them in a LOG WARN and do not sync them.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import time
from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from pgbyte_common.errors import ConfigError
from pgbyte_common.sql_names import qualified, quoted
from psycopg import sql

from source_postgres.catalog import ConfiguredStream
from source_postgres.ctid_load import ctid_load, filenode
from source_postgres.discovery import Column, Table, default_cursor
from source_postgres.record_sql import stream_records
from source_postgres.state import CtidState, CursorState, XminState, cursor_state, describe
from source_postgres.type_mapping import scalar_expr
from source_postgres.xids import XID_SPACE, XMIN_EXPR, Snapshot, read_snapshot, written_between

CHUNK_ROWS_ENV = "PGBYTE_CURSOR_CHUNK_ROWS"
DEFAULT_CHUNK_ROWS = 100_000
# Without PGBYTE_CURSOR_CHUNK_ROWS the chunk size adapts so a STATE comes about every
# CHECKPOINT_SECONDS (an interrupted sync loses at most that much work), within these bounds.
CHECKPOINT_SECONDS = 10.0
MIN_CHUNK_ROWS, MAX_CHUNK_ROWS = 10_000, 2_000_000
MAX_ENV_CHUNK_ROWS = 2**62  # PGBYTE_CURSOR_CHUNK_ROWS above this: this (a bigint LIMIT)

INDEXED_QUERY = """
SELECT EXISTS (
    SELECT 1 FROM pg_catalog.pg_index i
    JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    WHERE i.indrelid = %(oid)s AND a.attname = %(column)s)
"""


def chunk_rows() -> tuple[int, bool]:
    """Rows per checkpoint (ties at a chunk's last value all join it), and whether it adapts."""
    raw = os.environ.get(CHUNK_ROWS_ENV, "").strip()
    if raw.isascii() and raw.isdigit():  # within bigint, as the chunk queries' LIMIT takes it
        return min(max(int(raw[:20]), 1), MAX_ENV_CHUNK_ROWS), False
    return DEFAULT_CHUNK_ROWS, True


def next_chunk_rows(rows: int, elapsed: float) -> int:
    """The next chunk size, aiming at one checkpoint every CHECKPOINT_SECONDS.

    Grows at most 4x per chunk (one fast chunk of a skewed table says little) and is clamped to
    [MIN_CHUNK_ROWS, MAX_CHUNK_ROWS]: fewer, larger chunks cost fewer queries.
    """
    if elapsed <= 0:
        return min(rows * 4, MAX_CHUNK_ROWS)
    wanted = int(rows * min(CHECKPOINT_SECONDS / elapsed, 4.0))
    return max(MIN_CHUNK_ROWS, min(wanted, MAX_CHUNK_ROWS))


# The cursor column's type for its literals: a domain's base type, without modifiers (a saved
# value is never cut to fit: `bit` and `character` alone would mean bit(1) and char(1), so they
# read as bit varying and bpchar, which have no length); a reg* type as oid (its names need not
# cast back: `public.f1` of two overloads, a dropped table); the schema of its default btree
# comparison operators when the search_path does not show it; and the schemas of the type and
# the operators the user lacks USAGE on.
CURSOR_TYPE_QUERY = """
WITH RECURSIVE b(oid, depth) AS (
    SELECT a.atttypid, 0 FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = %(oid)s AND a.attname = %(column)s
    UNION ALL
    SELECT t.typbasetype, b.depth + 1 FROM b JOIN pg_catalog.pg_type t ON t.oid = b.oid
    WHERE t.typtype = 'd'
), base AS (
    SELECT b.oid, t.typname, t.typnamespace FROM b JOIN pg_catalog.pg_type t ON t.oid = b.oid
    ORDER BY b.depth DESC LIMIT 1
), ops AS (
    SELECT o.oprnamespace FROM base
    JOIN pg_catalog.pg_opclass oc ON oc.opcintype = base.oid AND oc.opcdefault
    JOIN pg_catalog.pg_am am ON am.oid = oc.opcmethod AND am.amname = 'btree'
    JOIN pg_catalog.pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amopstrategy = 1
         AND ao.amoplefttype = oc.opcintype AND ao.amoprighttype = oc.opcintype
    JOIN pg_catalog.pg_operator o ON o.oid = ao.amopopr
    LIMIT 1
)
SELECT CASE WHEN base.typnamespace = 'pg_catalog'::pg_catalog.regnamespace
                 AND base.typname ~ '^reg' THEN 'oid'
            WHEN base.oid = 'pg_catalog.bit'::pg_catalog.regtype THEN 'bit varying'
            WHEN base.oid = 'pg_catalog._bit'::pg_catalog.regtype THEN 'bit varying[]'
            WHEN base.oid = 'pg_catalog.bpchar'::pg_catalog.regtype THEN 'bpchar'
            WHEN base.oid = 'pg_catalog._bpchar'::pg_catalog.regtype THEN 'bpchar[]'
            ELSE pg_catalog.format_type(base.oid, NULL) END,
       (SELECT n.nspname FROM ops JOIN pg_catalog.pg_namespace n ON n.oid = ops.oprnamespace
         WHERE n.nspname <> ALL (pg_catalog.current_schemas(true))),
       ARRAY(SELECT DISTINCT n.nspname FROM pg_catalog.pg_namespace n
              WHERE n.oid IN (base.typnamespace, (SELECT oprnamespace FROM ops))
                AND NOT pg_catalog.has_schema_privilege(n.oid, 'USAGE') ORDER BY 1)
FROM base
"""


@dataclass(frozen=True)
class CursorSQL:
    """The cursor column in the read's SQL: `ref` over the alias `r`, saved values as literals
    of its type, and its comparison operators — qualified with their schema when the
    search_path does not show it (citext installed in `extensions`: the plain `>` would compare
    as text). An untyped literal would take whatever type PostgreSQL's operator resolution
    prefers: a regclass cursor compares as oid, so `'t'` failed as an oid."""

    ref: sql.Composable
    type_name: str  # as format_type spells it, quoted and qualified as needed
    operators: str | None = None  # the schema of the comparison operators, when not visible

    def literal(self, value: str) -> sql.Composable:
        return sql.SQL("{}::{}").format(sql.Literal(value), sql.SQL(self.type_name))

    def op(self, symbol: str) -> sql.Composable:
        """`symbol` (<, <=, =, >=, >) as an operator of the cursor's type."""
        if self.operators is None:
            return sql.SQL(symbol)
        return sql.SQL("OPERATOR({}.{})").format(sql.Identifier(self.operators), sql.SQL(symbol))

    def compare(self, symbol: str, value: str) -> sql.Composable:
        """`ref <symbol> value`, the value a saved cursor text."""
        return sql.SQL("{} {} {}").format(self.ref, self.op(symbol), self.literal(value))

    def text(self, ref: sql.Composable, column: Column) -> sql.Composable:
        """SQL giving the text a state saves for cursor value `ref` (see saved_text)."""
        if self.type_name == "oid":  # a reg* type: its oid (its name may not cast back)
            return sql.SQL("{}::oid::text").format(ref)
        return saved_text(ref, column)


def cursor_sql(
    conn: psycopg.Connection[Any], table: Table, column: Column, label: str
) -> CursorSQL:
    """The cursor's CursorSQL, or a ConfigError when the user may not use the schema of its
    type or of its comparison operators (an extension's schema without USAGE)."""
    row = conn.execute(CURSOR_TYPE_QUERY, {"oid": table.oid, "column": column.name}).fetchone()
    ref = sql.SQL("r.{}").format(sql.Identifier(column.name))
    if row is None:  # the column is gone since discovery: the read's own query says so
        return CursorSQL(ref, "text")
    type_name, operators, unusable = row
    if unusable:
        user = conn.info.user
        raise ConfigError(
            f"Stream {label}: cursor column {column.name!r} is of type {type_name}, whose "
            f"comparisons need schema(s) {', '.join(map(quoted, unusable))}, which user "
            f"{user!r} may not use: GRANT USAGE ON SCHEMA {', '.join(map(quoted, unusable))} "
            f"TO {quoted(user)}; or choose another cursor_field."
        )
    return CursorSQL(ref, type_name, operators)


def cursor_column(stream: ConfiguredStream, table: Table, label: str) -> Column:
    """The configured cursor column of an incremental stream (or the table's obvious one when
    the catalog names none, see discovery.default_cursor), or a ConfigError saying why not."""
    cursor_field = stream.cursor_field
    if not cursor_field:
        default = default_cursor(table)
        if default is None:
            raise ConfigError(
                f"Stream {label}: sync_mode incremental needs a cursor_field (a column whose "
                "value grows when a row is inserted or changed, e.g. updated_at or id); the "
                "table has no single obvious one (one timestamp, date or integer column named "
                "like updated_at)."
            )
        cursor_field = (default,)
    if len(cursor_field) > 1:
        raise ConfigError(
            f"Stream {label}: cursor_field {list(cursor_field)} is a nested path; "
            "the cursor must be one top-level column."
        )
    by_name = {c.name: c for c in table.columns}
    column = by_name.get(cursor_field[0])
    if column is None:
        raise ConfigError(
            f"Stream {label}: cursor column {cursor_field[0]!r} does not exist or is not "
            "readable. Choose another cursor_field (and reset the stream's state)."
        )
    return column


def read_by_cursor(
    conn: psycopg.Connection[Any],
    copy_out: Any,
    *,
    stream: ConfiguredStream,
    table: Table,
    columns: tuple[Column, ...],
    saved: CursorState | CtidState | None,
    lines: Any,
    label: str,
    emitted_at: int,
) -> Generator[bytes, None, int]:
    """Yield the RECORD and STATE lines of one incremental stream; return the record count."""
    out = lines.writer
    column = cursor_column(stream, table, label)
    field = (column.name,)
    if not stream.cursor_field:
        out.log(
            "INFO",
            f"Stream {label}: the catalog names no cursor_field; using the table's "
            f"updated-at column {column.name!r} (discover's default_cursor_field).",
        )
    relation = sql.SQL("{}.{}").format(sql.Identifier(table.schema), sql.Identifier(table.name))
    cursor = cursor_sql(conn, table, column, label)
    c = cursor.ref

    if saved is not None and isinstance(
        saved.incremental if isinstance(saved, CtidState) else saved, XminState
    ):
        # Switching from Xmin to Standard: an xid says nothing about cursor values. Reading
        # everything again is safe (at-least-once; dedup destinations keep one row per key).
        out.log(
            "WARN",
            f"Stream {label}: the saved state is {describe(saved)} but the source is configured "
            "for Standard (cursor) replication; re-reading the whole stream.",
        )
        saved = None
    resume_ctid: CtidState | None = None
    if isinstance(saved, CtidState):
        resume_ctid, saved = saved, saved.incremental
        assert isinstance(saved, CursorState)
        if not table.ctid_chunkable:
            out.log(
                "WARN",
                f"Stream {label}: the saved first-load state holds row positions (ctid) but "
                "the relation is no longer a plain table without INHERITS children, or the "
                "user lost table-level SELECT on it; restarting the first load.",
            )
            saved = resume_ctid = None
    if saved is not None and saved.cursor_field != field:
        # A full re-read is safe (at-least-once; a dedup destination keeps one row per key),
        # whereas comparing the new column with the old column's value would skip rows.
        out.log(
            "WARN",
            f"Stream {label}: the saved state's cursor field {list(saved.cursor_field)}"
            f" differs from the configured {list(field)}; re-reading the whole stream.",
        )
        saved = resume_ctid = None
    if saved is not None and saved.airbyte_v3 and column.mapping.kind == "bytea":
        # Airbyte's 4.x source saves a bytea value as base64; as a literal it reads as hex.
        try:
            as_hex = "\\x" + base64.b64decode(saved.cursor or "", validate=True).hex()
        except binascii.Error:
            out.log("WARN", f"Stream {label}: the saved bytea cursor value {saved.cursor!r} is "
                            "not base64; re-reading the whole stream.")  # fmt: skip
            saved = resume_ctid = None
        else:
            saved = replace(saved, cursor=as_hex)
            if resume_ctid is not None:
                resume_ctid = replace(resume_ctid, incremental=saved)
    if resume_ctid is not None and filenode(conn, table) != resume_ctid.filenode:
        out.log(
            "WARN",
            f"Stream {label}: the table was rewritten since the interrupted first load "
            "(its filenode changed, so saved row positions mean nothing); restarting it.",
        )
        saved = resume_ctid = None
    if saved is not None and _retyped(conn, saved.cursor_type, cursor.type_name):
        out.log(
            "WARN",
            f"Stream {label}: the saved cursor value {saved.cursor!r} was compared as "
            f"{saved.cursor_type}, and column {column.name!r} is {cursor.type_name} now (its type "
            "was changed); re-reading the whole stream.",
        )
        saved = resume_ctid = None
    stale = saved is not None and saved.cursor is not None
    if stale and not _fits(conn, cursor, saved.cursor):  # type: ignore[union-attr]
        out.log(
            "WARN",
            f"Stream {label}: the saved cursor value {saved.cursor!r} is not a valid value of "
            f"column {column.name!r} any more (its type changed?); re-reading the whole stream.",
        )
        saved = resume_ctid = None
    if saved is not None and _zone_form_changed(column.mapping.kind, saved.cursor):
        # timestamp ↔ timestamptz (time ↔ timetz): the saved text still casts, but the ALTER
        # converted the values in the server's time zone and the read compares in UTC, so
        # rows newer than the saved cursor could compare older and be skipped.
        now, was = ("with", "without") if column.mapping.kind in _ZONED else ("without", "with")
        out.log(
            "WARN",
            f"Stream {label}: the saved cursor value {saved.cursor!r} was written for a column "
            f"{was} a time zone, and {column.name!r} is now {now} one; re-reading the whole "
            "stream.",
        )
        saved = resume_ctid = None
    if (saved is not None and saved.cursor is not None and table.kind not in ("v", "f")
            and saved.relation not in (None, table.oid)):  # fmt: skip
        # Not a view or a foreign table: a tool rebuilding one (IMPORT FOREIGN SCHEMA again)
        # gives it a new oid, and its rows live elsewhere anyway.
        out.log(
            "WARN",
            f"Stream {label}: the table is not the one the saved state was read from (dropped "
            "and created again under its name, or restored from a dump, since the last sync): "
            f"its rows with {column.name!r} at or below the saved {saved.cursor!r} are not read. "
            "If it holds rows no sync read, reset this stream's state (pgbyte state reset CONN "
            "--stream S) to read it whole.",
        )
    last = saved.cursor if saved is not None else None
    # A first load an earlier sync began, resumed at its saved block (the cursor maximum it
    # noted may be none: no row had a value when it began).
    resumed_load = resume_ctid is not None
    inclusive = False
    if saved is not None and not resumed_load:
        inclusive = _boundary_again(conn, out, label, relation, cursor, saved)
    fresh = last is None and not resumed_load  # no position at all: a first load begins
    if fresh and table.ctid_chunkable:
        # First load: ctid chunks up to the cursor's maximum as of now, indexed or not (as
        # Airbyte's source does). A sequential read of block ranges; reading the whole table
        # in index order would visit a random heap page per row, and an unindexed cursor
        # would sort the rest of the table for every chunk.
        top = conn.execute(
            sql.SQL(
                # s.top, qualified: the table's own columns (one may be named `top`) are in
                # scope inside the count's subquery.
                "SELECT {top}, (SELECT count(*) FROM {rel} r WHERE {c} {eq} s.top) FROM "
                "(SELECT {c} AS top FROM {rel} r WHERE {c} IS NOT NULL ORDER BY 1 DESC LIMIT 1) s"
            ).format(
                top=cursor.text(sql.SQL("s.top"), column), rel=relation, c=c, eq=cursor.op("=")
            )
        ).fetchone()
        # No cursor value at all (an updated_at column just added): the load copies the rows
        # all the same, and notes no maximum, so the next sync loads them again until one has.
        noted = CursorState(field, *top) if top is not None else CursorState(field, None, 0)
        resume_ctid = CtidState(0, filenode(conn, table), noted)
    elif (
        fresh
        and table.kind in ("r", "m", "p")
        and not _scalar(conn, INDEXED_QUERY, {"oid": table.oid, "column": column.name})
    ):
        out.log(
            "WARN",
            f"Stream {label}: no index starts with cursor column "
            f"{column.name!r}; every chunk sorts the remaining table. "
            f"CREATE INDEX ON {qualified(table.schema, table.name)} ({quoted(column.name)}) "
            "makes incremental reads fast.",
        )
    nulls = _scalar(conn, sql.SQL("SELECT count(*) FROM {} r WHERE {} IS NULL").format(relation, c))
    if nulls:
        first = last is None or resumed_load
        valued = sql.SQL("SELECT EXISTS (SELECT FROM {} r WHERE {} IS NOT NULL)")
        # (a resumed load that noted a maximum ends its state there, whatever the rows hold now)
        if last is None and not _scalar(conn, valued.format(relation, c)):
            says = ("; no row has a cursor value yet, so every sync copies them all again until "
                    "one has.")  # fmt: skip
        elif first and table.ctid_chunkable:
            says = ("; the first load copies them (a resumed one, those in the blocks it has "
                    "left), but later syncs cannot see their changes.")  # fmt: skip
        elif first:
            says = "; the first load copies them, but later syncs cannot see their changes."
        else:
            says = " and are not synced incrementally."
        out.log("WARN", f"Stream {label}: {nulls} row(s) have a NULL cursor ({column.name}){says}")
    yield lines.take()
    if last is None and resume_ctid is None and nulls:
        # A first load by cursor (a view, a partitioned or inherited table, a user with
        # column-level SELECT): the rows no cursor chunk can reach are copied once, up front,
        # as a first load of a plain table copies them.
        carried = yield from stream_records(
            conn, copy_out, table=table, columns=columns, stream=stream, emitted_at=emitted_at,
            where=sql.SQL("{} IS NULL").format(c),
        )  # fmt: skip
    else:
        carried = 0

    def position(value: str | None, count: int) -> dict[str, Any]:
        """The stream's cursor state at `value` (`count` rows read there)."""
        return cursor_state(
            stream.name, stream.namespace, field, value, count, cursor.type_name, table.oid
        )

    limit, adaptive = chunk_rows()
    total = carried
    emitted_state = False
    if resume_ctid is not None:
        noted = resume_ctid.incremental
        assert isinstance(noted, CursorState)  # xmin positions were set aside above
        inner = position(noted.cursor, noted.cursor_record_count)
        # Every row the first load finds, NULL cursors too (as Airbyte's ctid load): later
        # syncs read by cursor only, so a row left out now would never arrive.
        bound = sql.SQL("{} IS NULL").format(c)
        if noted.cursor is not None:
            bound = sql.SQL("({} OR {})").format(cursor.compare("<=", noted.cursor), bound)
        snapshot = read_snapshot(conn)
        caught_up = resumed_load and resume_ctid.block > 0 and resume_ctid.load_xmin is not None
        if caught_up:
            total = yield from _catch_up(conn, copy_out, stream=stream, table=table,
                                         columns=columns, resumed=resume_ctid, bound=bound,
                                         snapshot=snapshot, emitted_at=emitted_at)  # fmt: skip
        total += yield from ctid_load(
            conn, copy_out, stream=stream, table=table, columns=columns,
            start_block=resume_ctid.block, bound=bound, inner=inner, rows_per_chunk=limit,
            lines=lines, emitted_at=emitted_at, resize=next_chunk_rows if adaptive else None,
            load_xmin=snapshot.xmin, carried=total,
        )  # fmt: skip
        saved, last = noted, noted.cursor
        # Rows given the noted maximum after an interrupted load began, in blocks it had
        # passed, are only found by reading that value again — unless the catch-up found them.
        inclusive = (
            resumed_load and not caught_up
            and _boundary_again(conn, out, label, relation, cursor, noted)
        )  # fmt: skip
        emitted_state = True
    count_at_upper = saved.cursor_record_count if saved is not None else 0
    while True:
        started = time.monotonic()
        if last is None:
            lower = sql.SQL("{} IS NOT NULL").format(c)
        else:
            lower = cursor.compare(">=" if inclusive else ">", last)
        upper = _scalar(
            conn,
            sql.SQL(
                "SELECT {} FROM (SELECT {} AS c FROM {} r WHERE {} ORDER BY 1 LIMIT {}) s "
                "ORDER BY s.c DESC LIMIT 1"
            ).format(cursor.text(sql.SQL("s.c"), column), c, relation, lower, sql.Literal(limit)),
        )
        if upper is None:
            break
        count = yield from stream_records(
            conn, copy_out, table=table, columns=columns, stream=stream, emitted_at=emitted_at,
            where=sql.SQL("{} AND {}").format(lower, cursor.compare("<=", upper)), order_by=c,
        )  # fmt: skip
        count_at_upper = _rows_at(conn, relation, cursor, upper)
        total += count
        count, carried = count + carried, 0  # this STATE's sourceStats.recordCount: NULLs too
        if adaptive:
            limit = next_chunk_rows(limit, time.monotonic() - started)
        last, inclusive = upper, False
        out.stream_state(
            stream.name,
            stream.namespace,
            position(last, count_at_upper),
            record_count=count,
        )
        emitted_state = True
        yield lines.take()
    if last in _UNSURPASSABLE:
        out.log(
            "WARN",
            f"Stream {label}: the cursor reached {last!r} ({column.name}), which no value "
            "exceeds: later syncs will read nothing new from this stream until that row's "
            "cursor changes or the stream's state is reset.",
        )
    if not emitted_state:
        # Nothing new: the state is re-emitted so the platform sees the stream was synced.
        out.stream_state(
            stream.name,
            stream.namespace,
            position(last, count_at_upper),
            record_count=carried,
        )
        yield lines.take()
    return total


def _catch_up(
    conn: psycopg.Connection[Any],
    copy_out: Any,
    *,
    stream: ConfiguredStream,
    table: Table,
    columns: tuple[Column, ...],
    resumed: CtidState,
    bound: sql.Composable,
    snapshot: Snapshot,
    emitted_at: int,
) -> Generator[bytes, None, int]:
    """The rows a resumed first load would otherwise miss: written since the interrupted load
    began (its noted snapshot xmin) into the blocks it had read — an UPDATE that left the cursor
    as it was but moved the row there from a block not yet read, or a backdated INSERT — at or
    below its noted maximum (the cursor phase reads the rows above). Across a whole xid
    wraparound since (a 32-bit xmin cannot tell), every row of those blocks is read again. At
    least once: a row already read may come twice. (A state without a noted xmin — Airbyte's,
    an older pgbyte's — resumes without this, as Airbyte's source does.)"""
    where = sql.SQL("r.ctid < {}::tid AND ({})").format(sql.Literal(f"({resumed.block},0)"), bound)
    since = resumed.load_xmin
    assert since is not None
    if 0 <= snapshot.xmax - since < XID_SPACE:
        where = sql.SQL("{} AND {}").format(where, written_between(XMIN_EXPR, since, snapshot.xmax))
    count = yield from stream_records(
        conn, copy_out, table=table, columns=columns, stream=stream, emitted_at=emitted_at,
        where=where,
    )  # fmt: skip
    return count


def saved_text(ref: sql.Composable, column: Column) -> sql.Composable:
    """SQL giving the text a state saves for cursor value `ref` (see the module docstring):
    the records' rendering for timestamps and times, Postgres's own output for the rest."""
    if column.mapping.kind in _ZONED + _UNZONED:
        return scalar_expr(ref, column.mapping.kind)
    return sql.SQL("{}::text").format(ref)


# Cursor texts nothing sorts above (PostgreSQL orders NaN above every number): dates and
# timestamps print `infinity`, real/double precision `Infinity`, numeric both ways.
_UNSURPASSABLE = frozenset({"infinity", "Infinity", "NaN"})


_ZONED = ("timestamptz", "timetz")
_UNZONED = ("timestamp", "time")
# How a zoned value's text ends: a time, then an offset — `+00` as the read renders it
# (TimeZone UTC), `+05:30`, or `Z` (UTC) as Airbyte's source-postgres saves timestamptz and
# timetz cursors (`2026-11-26T21:26:11.078541Z`), which Postgres reads back as UTC. BC dates
# end in " BC" after it. The time keeps a date's `-05` (its day) from passing for an offset.
_ZONE_SUFFIX = re.compile(r"\d\d:\d\d(:\d\d(\.\d+)?)?([+-]\d\d(:\d\d){0,2}|[Zz])( BC)?$")


def _zone_form_changed(kind: str, cursor: str | None) -> bool:
    """Whether a saved timestamp/time cursor was rendered for the column's zoned or unzoned
    twin (its type changed by ALTER TABLE); infinities say nothing."""
    if cursor is None or kind not in _ZONED + _UNZONED:
        return False
    if cursor.strip().lstrip("+-").lower() == "infinity":
        return False
    zoned = _ZONE_SUFFIX.search(cursor.strip()) is not None
    return zoned != (kind in _ZONED)


def _boundary_again(
    conn: psycopg.Connection[Any],
    out: Any,
    label: str,
    relation: sql.Composable,
    cursor: CursorSQL,
    saved: CursorState,
) -> bool:
    """Whether the next chunk starts at the saved value itself (>=, at least once): when more
    rows hold it than the state counted (rows inserted later with an equal cursor, e.g. a
    coarse timestamp), or the state did not count them."""
    if saved.cursor is None:
        return False
    if saved.cursor_record_count <= 0:
        out.log(
            "INFO",
            f"Stream {label}: the saved state does not say how many rows hold its cursor "
            f"value {saved.cursor!r}; re-reading that value's rows.",
        )
        return True
    at_last = _rows_at(conn, relation, cursor, saved.cursor)
    if at_last <= saved.cursor_record_count:
        return False
    out.log(
        "INFO",
        f"Stream {label}: {at_last - saved.cursor_record_count} row(s) joined the saved cursor "
        f"value {saved.cursor!r}; re-reading that value's rows.",
    )
    return True


# Two types whose values order alike: both numeric, both dates/times (a time zone gained or lost
# is _zone_form_changed's), or both of text, varchar and char (a varchar ALTERed to text).
_SAME_ORDER = """
SELECT a.oid = b.oid
    OR (a.typcategory = b.typcategory AND a.typcategory IN ('N', 'D'))
    OR (a.oid = ANY (t.family) AND b.oid = ANY (t.family))
FROM pg_catalog.pg_type a, pg_catalog.pg_type b,
     (SELECT ARRAY['pg_catalog.text'::pg_catalog.regtype, 'pg_catalog.varchar'::pg_catalog.regtype,
                   'pg_catalog.bpchar'::pg_catalog.regtype]::oid[] AS family) t
WHERE a.oid = pg_catalog.to_regtype(%s) AND b.oid = pg_catalog.to_regtype(%s)
"""


def _retyped(conn: psycopg.Connection[Any], saved: str | None, now: str) -> bool:
    """Whether a cursor saved as type `saved` may order otherwise as type `now` (_SAME_ORDER;
    one type under two spellings is one: `s2.mood` and `mood` once s2 is on the search_path).
    A type gone counts."""
    if saved is None or saved == now:
        return False
    row = _probe(conn, _SAME_ORDER, (saved, now))  # a hand-edited type name may not parse
    return not (row and row[0])


def _rows_at(
    conn: psycopg.Connection[Any], relation: sql.Composable, cursor: CursorSQL, value: str
) -> int:
    """How many rows hold cursor `value` (a checkpoint's cursor_record_count)."""
    return int(
        _scalar(
            conn,
            sql.SQL("SELECT count(*) FROM {} r WHERE {}").format(
                relation, cursor.compare("=", value)
            ),
        )
    )


# What a saved cursor text that no longer casts to the column's type raises: a bad value, or a
# type's own syntax error (ltree's input says 42601).
_NO_LONGER_CASTS = (psycopg.errors.DataError, psycopg.errors.SyntaxError)


def _fits(conn: psycopg.Connection[Any], cursor: CursorSQL, value: str) -> bool:
    """Whether a saved cursor text still casts to the cursor column's type (the cast's value
    is not fetched: `infinity` casts, and no Python datetime holds it)."""
    query = sql.SQL("SELECT {} IS NULL").format(cursor.literal(value))
    return _probe(conn, query) is not None


def _probe(conn: psycopg.Connection[Any], query: Any, params: Any = None) -> tuple[Any, ...] | None:
    """The first row of a query that may refuse a saved text (_NO_LONGER_CASTS: None then),
    under a savepoint, so a refusal leaves the read's snapshot usable."""
    conn.execute("SAVEPOINT pgbyte_cursor_probe")
    try:
        row = conn.execute(query, params).fetchone()
    except _NO_LONGER_CASTS:
        conn.execute("ROLLBACK TO SAVEPOINT pgbyte_cursor_probe")
        return None
    conn.execute("RELEASE SAVEPOINT pgbyte_cursor_probe")
    return row


def _scalar(conn: psycopg.Connection[Any], query: Any, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None
