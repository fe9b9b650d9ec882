"""Loading a stream's batches: COPY into the raw table, set-based SQL into the typed table.

RECORD lines are never re-serialized (orjson would turn big integers and long decimals into
doubles). Canonical lines — `{"type":"RECORD","record":{"stream":...,"data":{...},
"emitted_at":N}}`, what the CDK and our source print — arrive here as the bytes of their
`data` object plus a timestamp, and are COPYed straight into the raw table (overwrite: the
temporary one) or a data stage (append). Other lines are COPYed whole into a line stage and
Postgres extracts `record.data` itself. Should the fast COPY refuse a batch (a line that only
looked canonical, invalid UTF-8, ...), the batch is redone line by line on the slow path, which
names the offending input line.

With a second connection, a full batch of canonical rows for append/append_dedup is COPYed
there into a shared stage (stages.py) while the first connection moves the previous batch from
its stage into the stream's tables (finish_batch), so the tables still change only at the first
connection's commits.

Typed rows come from one INSERT ... SELECT with plain casts; a data exception redoes it with
guarded casts (that value → NULL, counted) after widening integer columns that overflow bigint.
Rows PostgreSQL refuses as too big roll back to the same savepoint and keep the stream raw
(rawonly.py).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from itertools import chain
from typing import Any

import psycopg
from psycopg import sql

from destination_postgres import ddl, rawonly
from destination_postgres.catalog import STAGE_POSITION, StreamTarget
from destination_postgres.framing import BINARY_COLUMNS, BINARY_HEADER, BINARY_TRAILER
from destination_postgres.rawonly import RowsTooWide
from destination_postgres.typemap import Column

LINE_STAGE = sql.Identifier("pg_temp", "_pgbyte_lines")
DATA_STAGE = sql.Identifier("pg_temp", "_pgbyte_data")

# Input order in a batch's stages. STAGE_POSITION: a data stage row's place in its batch,
# carried into dedup's typed stage (the full-tie rule needs input order). A COPY into a table
# created or emptied in its own transaction fills it page after page, so its rows' ctid order
# is their input order; any other COPY or INSERT may put a row in an earlier page that still
# has room. So the fast rows are COPYed into a stage emptied (or created) in the batch's
# transaction and keep their ctid; the slow rows, moved from the line stage by an INSERT, carry
# their number among the slow rows in _pgbyte_pos. In input order: the fast rows by ctid, then
# the slow rows by number.

_COPY_LINE = re.compile(r"line (\d+)")
# Input lines up to this size on average (envelope included) hold a jsonb Postgres stores
# inline and uncompressed (under ~2 kB): cheap to look up column by column (_fast_exprs).
SMALL_ROW_BYTES = 1200
_CHUNK = 1 << 22


class BatchError(Exception):
    """A batch row PostgreSQL refused, with the input line number it came from."""

    def __init__(self, lineno: int | None, reason: str) -> None:
        super().__init__(reason)
        self.lineno = lineno
        self.reason = reason


class FastPathRefused(Exception):
    """The fast COPY of a batch failed: the caller re-checks and reloads its lines slowly."""


# What Postgres raises when it refuses a row of a fast COPY (bad JSON, bad bytes, JSON nested
# deeper than its stack takes, a string or array past jsonb's 256 MB).
REFUSED = (
    psycopg.DataError, psycopg.errors.BadCopyFileFormat, psycopg.errors.StatementTooComplex,
    psycopg.errors.ProgramLimitExceeded,
)  # fmt: skip


def setup_session(conn: psycopg.Connection[Any]) -> None:
    """Session settings and the temp objects every batch uses."""
    from destination_postgres.typemap import TRY_FUNCTIONS_SQL

    conn.execute("SET TimeZone = 'UTC'")
    conn.execute("SET DateStyle = 'ISO, YMD'")
    conn.execute("SET client_encoding = 'UTF8'")
    # A write keeps its transaction open between STATEs while it waits for the source: a role's
    # idle_in_transaction_session_timeout would end it (and the sync) whenever a source pauses.
    if conn.info.server_version >= 90600:  # the setting's first version
        conn.execute("SET idle_in_transaction_session_timeout = 0")
    # ... and between transactions: a role's idle_session_timeout (PostgreSQL 14) ended the
    # write's connection whenever a source paused longer ("idle-session timeout").
    if conn.info.server_version >= 140000:
        conn.execute("SET idle_session_timeout = 0")
    # An overwrite's swap DROPs the table an autovacuum may be processing (a table's first
    # autovacuum follows the sync that filled it); PostgreSQL cancels the autovacuum only after
    # the waiter's deadlock_timeout (1 s by default). Only a superuser may shorten it.
    if conn.info.parameter_status("is_superuser") == "on":
        conn.execute("SET deadlock_timeout = '100ms'")
    # copy_slow numbers the line stage's rows in scan order (dedup's full-tie rule): every scan
    # starts at the first block, never where another scan of the same table happens to be.
    conn.execute("SET synchronize_seqscans = off")
    conn.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (msg jsonb)").format(LINE_STAGE))
    # _pgbyte_pos: a slow row's place among the batch's slow rows (see STAGE_POSITION).
    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {} (_airbyte_ab_id uuid DEFAULT gen_random_uuid(), "
            "_airbyte_data jsonb, _airbyte_emitted_at timestamp with time zone, "
            "_pgbyte_pos bigint)"
        ).format(DATA_STAGE)
    )
    conn.execute(TRY_FUNCTIONS_SQL)


def escape(data: bytes) -> bytes:
    """COPY text format. Valid JSON has no raw control characters inside strings, so tab and
    CR can only be whitespace between tokens; only they and backslash need escaping."""
    data = data.replace(b"\\", b"\\\\")
    if b"\t" in data:
        data = data.replace(b"\t", b"\\t")
    if b"\r" in data:
        data = data.replace(b"\r", b"\\r")
    return data


def _copy(conn: psycopg.Connection[Any], statement: sql.Composable, payload: bytes) -> None:
    with conn.cursor().copy(statement) as copy:
        view = memoryview(payload)
        for start in range(0, len(view), _CHUNK):
            copy.write(view[start : start + _CHUNK])


def _data_target(target: StreamTarget) -> sql.Composable:
    """Where a batch's (data, emitted_at) rows go: the temporary raw table or the data stage."""
    return ddl.ident(*target.load_raw) if target.overwrite else DATA_STAGE


def copy_fast_rows(conn: psycopg.Connection[Any], batch: Any, into: sql.Composable) -> None:
    """`batch`: anything with the binary rows in `fast_rows` (the writer's batches)."""
    payload = b"".join(chain((BINARY_HEADER,), batch.fast_rows, (BINARY_TRAILER,)))
    columns = sql.SQL(", ").join(map(sql.Identifier, BINARY_COLUMNS))
    _copy(conn, sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(into, columns), payload)


def copy_fast(conn: psycopg.Connection[Any], target: StreamTarget) -> None:
    """COPY the canonical rows (ab_id, emitted_at, data) in binary format; raises
    FastPathRefused.

    Binary: no escaping, no delimiter scan, and the uuid and timestamp arrive as their bytes
    instead of text to parse; the data is still JSON text (jsonb's binary input is its text
    form after a version byte), so Postgres validates it as usual."""
    if not target.overwrite:  # in input order: see STAGE_POSITION
        conn.execute(sql.SQL("TRUNCATE {}").format(DATA_STAGE))
    conn.execute("SAVEPOINT pgbyte_fast")
    try:
        copy_fast_rows(conn, target, _data_target(target))
    except REFUSED as exc:
        conn.execute("ROLLBACK TO SAVEPOINT pgbyte_fast")
        raise FastPathRefused(str(exc)) from None
    conn.execute("RELEASE SAVEPOINT pgbyte_fast")


def copy_slow(conn: psycopg.Connection[Any], target: StreamTarget) -> None:
    """COPY whole message lines; Postgres extracts record.data and emitted_at."""
    lines, linenos = target.slow_lines, target.slow_linenos
    conn.execute(sql.SQL("TRUNCATE {}").format(LINE_STAGE))  # in input order: STAGE_POSITION
    try:
        _copy(
            conn,
            sql.SQL("COPY {} (msg) FROM STDIN").format(LINE_STAGE),
            escape(b"\n".join(lines)) + b"\n",
        )
    except (psycopg.DataError, psycopg.errors.StatementTooComplex,
            psycopg.errors.ProgramLimitExceeded) as exc:  # fmt: skip
        raise BatchError(_lineno(exc, linenos), first_line(exc)) from None
    # The line stage's scan order is its input order; the INSERT may not keep it (a row can
    # land in any page with room), so a data stage row carries its place (overwrite: no need).
    pos_column, pos_value = (sql.SQL(""), sql.SQL("")) if target.overwrite else (
        sql.SQL(", _pgbyte_pos"), sql.SQL(", row_number() OVER ()"))  # fmt: skip
    # emitted_at as the fast path takes it (framing.timestamp_usec): below 10^11 seconds, else
    # milliseconds; not a number, or outside years 1-9999, the current time. (to_timestamp of
    # 1.7e15 seconds, nanoseconds taken for milliseconds, failed the whole write.)
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (_airbyte_data, _airbyte_emitted_at{}) "
            "SELECT msg -> 'record' -> 'data', "
            "CASE WHEN s >= -62135596800 AND s < 253402300800 THEN to_timestamp(s::float8) "
            "ELSE now() END{} FROM {}, "
            # OFFSET 0: each computed once a row (pulled up, the planner repeated the jsonb
            # lookups in every use of n and s)
            "LATERAL (SELECT CASE WHEN jsonb_typeof(msg -> 'record' -> 'emitted_at') = 'number' "
            "THEN (msg -> 'record' -> 'emitted_at')::numeric END AS n OFFSET 0) em, "
            "LATERAL (SELECT n / CASE WHEN n BETWEEN 1 AND 99999999999 THEN 1 ELSE 1000 END "
            "AS s OFFSET 0) sec"
        ).format(_data_target(target), pos_column, pos_value, LINE_STAGE)
    )


# (conn, target, stage, the stage's row count): append_dedup's merge
TypedStep = Callable[[psycopg.Connection[Any], StreamTarget, sql.Composable, int], None]


def finish_batch(
    conn: psycopg.Connection[Any],
    target: StreamTarget,
    typed: TypedStep | None = None,
    stage: sql.Composable = DATA_STAGE,
) -> None:
    """append/append_dedup: move the staged rows into the raw table, then run the typed step
    over them (same transaction): `normalize` by default, dedup.merge for append_dedup. The
    temporary stage is emptied after; a shared one (stages.py) is dropped after the commit.
    Typed rows refused as too big were rolled back by the step: the raw rows stay, and the
    stream is raw only from here (rawonly.py)."""
    if target.overwrite:
        return
    moved = conn.execute(
        sql.SQL(
            "INSERT INTO {} (_airbyte_ab_id, _airbyte_data, _airbyte_emitted_at) "
            "SELECT _airbyte_ab_id, _airbyte_data, _airbyte_emitted_at FROM {}"
        ).format(ddl.ident(*target.load_raw), stage)
    ).rowcount
    try:
        if typed is None:
            normalize(conn, target, stage)
        else:
            typed(conn, target, stage, moved)
    except RowsTooWide as exc:
        rawonly.keep_raw_only(conn, target, exc.reason)
    if stage is DATA_STAGE:
        conn.execute(sql.SQL("TRUNCATE {}").format(stage))


def normalize(
    conn: psycopg.Connection[Any],
    target: StreamTarget,
    source: sql.Composable,
    *,
    required: tuple[str, ...] = (),
    position: bool = False,
) -> int:
    """INSERT the typed rows of every row of `source` (a raw-layout table); returns how many.
    `required`: columns whose typed value must not be NULL (rows without one are left out).
    `position`: also fill STAGE_POSITION (the target is dedup's typed stage). Raises
    RowsTooWide, with nothing inserted, when PostgreSQL refuses a typed row as too big."""
    if target.load_norm is None:
        return 0
    conn.execute("SAVEPOINT pgbyte_norm")
    counted: dict[str, int] | None = None
    try:
        try:
            inserted = conn.execute(
                _norm_statement(target, source, safe=False, required=required, position=position)
            ).rowcount
        except psycopg.DataError:  # a value that does not cast: redo with guards
            conn.execute("ROLLBACK TO SAVEPOINT pgbyte_norm")
            counted = dict(target.uncastable)
            inserted = _safe_normalize(conn, target, source, required, position)
    except psycopg.errors.ProgramLimitExceeded as exc:
        refused = rawonly.too_wide(exc)
        if refused is None:
            raise
        conn.execute("ROLLBACK TO SAVEPOINT pgbyte_norm")
        conn.execute("RELEASE SAVEPOINT pgbyte_norm")
        if counted is not None:  # the guarded attempt counted values no row keeps
            target.uncastable.clear()  # in place: dedup's stage view shares the dict
            target.uncastable.update(counted)
        raise refused from None
    conn.execute("RELEASE SAVEPOINT pgbyte_norm")
    return inserted


def normalize_split(
    conn: psycopg.Connection[Any], conn2: psycopg.Connection[Any], target: StreamTarget
) -> None:
    """overwrite with a second connection: the plain-cast INSERT over the two halves of the
    temporary raw table's blocks at once (conn2 commits its half: it only fills a temporary
    nobody sees before the swap). Should either half meet a value that does not cast, both
    are rolled back and the whole table takes the one-connection way (guards, widening);
    should either have a row refused as too big, both are rolled back and RowsTooWide raised."""
    if target.load_norm is None:
        return
    source = ddl.ident(*target.load_raw)
    row = conn.execute(
        "SELECT pg_relation_size(c.oid) / current_setting('block_size')::int FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        target.load_raw,
    ).fetchone()
    pages = int(row[0]) if row and row[0] is not None else 0
    if pages < 2:
        return normalize(conn, target, source)
    mid = sql.Literal(f"({pages // 2},0)")
    low = _norm_statement(target, source, safe=False, where=sql.SQL("s.ctid < {}::tid").format(mid))
    high = _norm_statement(
        target, source, safe=False, where=sql.SQL("s.ctid >= {}::tid").format(mid)
    )
    errors: list[BaseException] = []

    def run_low() -> None:
        try:
            conn2.execute(low)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run_low, daemon=True)
    thread.start()
    conn.execute("SAVEPOINT pgbyte_norm")
    try:
        conn.execute(high)
    except (psycopg.DataError, psycopg.errors.ProgramLimitExceeded) as exc:
        errors.append(exc)
    finally:
        thread.join()
    if not errors:
        conn2.commit()
        conn.execute("RELEASE SAVEPOINT pgbyte_norm")
        return None
    conn2.rollback()
    conn.execute("ROLLBACK TO SAVEPOINT pgbyte_norm")
    conn.execute("RELEASE SAVEPOINT pgbyte_norm")
    for exc in errors:
        if not isinstance(exc, psycopg.DataError) and rawonly.too_wide(exc) is None:
            raise exc
    for exc in errors:
        refused = rawonly.too_wide(exc)
        if refused is not None:  # the guarded way would be refused too
            raise refused from None
    return normalize(conn, target, source)


_DATA = sql.SQL("s._airbyte_data")
# The hashid: a 64-bit hash of the record's data, computed on the binary jsonb (md5 of its text
# form costs a jsonb→text conversion per row, a large share of the whole load).
HASHID_COLUMN = "_pgbyte_hashid"


def hashid_expr(data: sql.Composable) -> sql.Composable:
    """The hashid of the record whose data is `data` (16 hex digits)."""
    return sql.SQL("lpad(to_hex(jsonb_hash_extended({}, 0)), 16, '0')").format(data)


class Prehashed(sql.Composed):
    """A table of raw-layout rows whose HASHID_COLUMN already holds each row's hashid (a shared
    stage computes it as the second connection COPYs the batch: stages.fill), so the INSERT of
    the typed rows, on the first connection, reads it instead of hashing every row again."""


def _norm_statement(
    target: StreamTarget,
    source: sql.Composable,
    *,
    safe: bool,
    where: sql.Composable | None = None,
    required: tuple[str, ...] = (),
    position: bool = False,
) -> sql.Composed:
    names = [sql.Identifier(c.name) for c in target.columns]
    names += [sql.Identifier(n) for n in ("_airbyte_ab_id", "_airbyte_emitted_at",
                                          "_airbyte_normalized_at", target.hashid)]  # fmt: skip
    if position:
        names += [sql.Identifier(n) for n in STAGE_POSITION]
    source_sql: sql.Composable = sql.SQL("{} s").format(source)
    if safe:
        exprs = [c.safe_expr(_DATA) for c in target.columns]
    else:
        exprs, source_sql = _fast_exprs(target, source)
    conditions = [where] if where is not None else []
    conditions += [
        sql.SQL("({}) IS NOT NULL").format(expr)
        for c, expr in zip(target.columns, exprs, strict=True)
        if c.name in required
    ]
    hashid = (
        sql.Identifier("s", HASHID_COLUMN) if isinstance(source, Prehashed) else hashid_expr(_DATA)
    )
    exprs.append(sql.SQL("s._airbyte_ab_id, s._airbyte_emitted_at, now(), {}").format(hashid))
    if position:
        exprs.append(sql.SQL("s._pgbyte_pos, s.ctid"))
    return sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}{}").format(
        ddl.ident(*target.load_norm),  # type: ignore[misc]
        sql.SQL(", ").join(names),
        sql.SQL(", ").join(exprs),
        source_sql,
        sql.SQL(" WHERE {}").format(sql.SQL(" AND ").join(conditions))
        if conditions
        else sql.SQL(""),
    )


def _record_key(key: str) -> bool:
    """Whether jsonb_to_record can find `key`: a column-definition name matches its JSON key
    exactly only when it is a non-empty identifier that PostgreSQL does not truncate."""
    return 0 < len(key.encode()) < 64


def _fast_exprs(
    target: StreamTarget, source: sql.Composable
) -> tuple[list[sql.Composable], sql.Composable]:
    """Plain-cast expressions: `(data ->> key)::type` per column for small rows, else one
    jsonb_to_record pass over each row's data. A `->>` lookup is a binary search in the row's
    jsonb and costs a quarter less than jsonb_to_record's record building (measured on the
    benchmark's 16 columns); but a jsonb over ~2 kB is stored compressed or out of line, and
    every lookup decompresses it again, where jsonb_to_record does it once. Both convert with
    the same input functions, and JSON null is SQL NULL for every type, jsonb included. Keys
    jsonb_to_record cannot name keep their `->>` expression. One difference, accepted: with
    `required` (dedup's first load), `->>` casts only the rows that pass the filter, while
    jsonb_to_record casts every row first, so a keyless row's bad value sends a wide batch to
    the guarded INSERT (which counts, and widens for, every row of the batch)."""
    if target.row_bytes <= SMALL_ROW_BYTES:
        return [c.fast_expr(_DATA) for c in target.columns], sql.SQL("{} s").format(source)
    defs: list[sql.Composable] = []
    exprs: list[sql.Composable] = []
    for c in target.columns:
        if _record_key(c.key) and not c.integral:
            defs.append(sql.SQL("{} {}").format(sql.Identifier(c.key), c.pg_type))
            exprs.append(sql.Identifier("x", c.key))
        else:
            exprs.append(c.fast_expr(_DATA))
    if not defs:
        return exprs, sql.SQL("{} s").format(source)
    return exprs, sql.SQL("{} s, jsonb_to_record(s._airbyte_data) AS x({})").format(
        source, sql.SQL(", ").join(defs)
    )


def _safe_normalize(
    conn: psycopg.Connection[Any],
    target: StreamTarget,
    source: sql.Composable,
    required: tuple[str, ...] = (),
    position: bool = False,
) -> int:
    """Count the values that do not cast, widen overflowing integer columns, load with guards;
    returns the rows inserted."""
    typed = [c for c in target.columns if c.kind not in ("text", "jsonb") or c.narrow]
    if typed:
        failed, overflow = cast_problems(conn, typed, _DATA, sql.SQL("{} s").format(source))
        if any(overflow):
            for col, flag in zip(typed, overflow, strict=True):
                if flag:
                    ddl.widen_to_numeric(conn, target, col)
                    index = target.columns.index(col)
                    target.columns[index] = type(col)(
                        key=col.key, name=col.name, kind="numeric", integral=True
                    )
            return _safe_normalize(conn, target, source, required, position)
        for col, n in zip(typed, failed, strict=True):
            if n:
                target.uncastable[col.name] = target.uncastable.get(col.name, 0) + int(n)
    statement = _norm_statement(target, source, safe=True, required=required, position=position)
    return conn.execute(statement).rowcount


def cast_problems(
    conn: psycopg.Connection[Any], typed: list[Column], data: sql.Composable, rows: sql.Composable
) -> tuple[list[int], list[bool]]:
    """Per column of `typed`, over the records `data` of `rows` (a FROM list and any WHERE):
    how many values do not cast (they will be NULL), and whether an integer is beyond bigint
    (its column must widen)."""
    checks = [sql.SQL("count(*) FILTER (WHERE {})").format(c.failed_expr(data)) for c in typed]
    checks += [
        sql.SQL("coalesce(bool_or({}), false)").format(c.overflow_expr(data))
        if c.kind == "bigint" else sql.SQL("false")
        for c in typed
    ]  # fmt: skip
    row = conn.execute(sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(checks), rows))
    values = row.fetchone()
    assert values is not None
    return [int(n) for n in values[: len(typed)]], [bool(b) for b in values[len(typed) :]]


def _lineno(exc: psycopg.Error, linenos: list[int]) -> int | None:
    context = getattr(exc.diag, "context", None) or ""
    match = _COPY_LINE.search(context)
    if match and 0 < int(match.group(1)) <= len(linenos):
        return linenos[int(match.group(1)) - 1]
    return None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
