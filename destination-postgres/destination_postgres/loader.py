"""Loading one batch of a stream: COPY the message lines, then set-based SQL into both tables.

The RECORD lines go to Postgres as they arrived (never re-serialized: orjson would turn big
integers and long decimals into doubles) through COPY into a session-temporary stage; one
statement then inserts the raw rows and, from what it inserted, the typed rows. When a value
cannot be cast the statement fails as a whole, so the batch is redone with guarded casts (that
value → NULL, counted), and integers too big for bigint widen their column to numeric first.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import sql

from destination_postgres import ddl
from destination_postgres.catalog import StreamTarget

STAGE = sql.Identifier("pg_temp", "_pgbyte_stage")
_DATA = sql.SQL("r._airbyte_data")
_COPY_LINE = re.compile(r"line (\d+)")


class BatchError(Exception):
    """A batch row PostgreSQL refused, with the input line number it came from."""

    def __init__(self, lineno: int | None, reason: str) -> None:
        super().__init__(reason)
        self.lineno = lineno
        self.reason = reason


def setup_session(conn: psycopg.Connection[Any]) -> None:
    """Session settings and the temp objects every batch uses."""
    from destination_postgres.typemap import TRY_FUNCTIONS_SQL

    conn.execute("SET TimeZone = 'UTC'")
    conn.execute("SET DateStyle = 'ISO, YMD'")
    conn.execute("SET client_encoding = 'UTF8'")
    conn.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (msg jsonb)").format(STAGE))
    conn.execute(TRY_FUNCTIONS_SQL)


def _payload(lines: list[bytes]) -> bytes:
    """COPY text format: one column, so only backslash, tab and CR need escaping (valid JSON has
    no raw control characters inside strings; tab/CR can only be whitespace between tokens)."""
    data = b"\n".join(lines)
    data = data.replace(b"\\", b"\\\\")
    if b"\t" in data:
        data = data.replace(b"\t", b"\\t")
    if b"\r" in data:
        data = data.replace(b"\r", b"\\r")
    return data + b"\n"


def _raw_insert(target: StreamTarget) -> sql.Composed:
    return sql.SQL(
        "INSERT INTO {} (_airbyte_ab_id, _airbyte_data, _airbyte_emitted_at) "
        "SELECT gen_random_uuid(), msg -> 'record' -> 'data', "
        "CASE WHEN jsonb_typeof(msg -> 'record' -> 'emitted_at') = 'number' "
        "THEN to_timestamp((msg -> 'record' ->> 'emitted_at')::float8 / 1000) "
        "ELSE now() END FROM {}"
    ).format(ddl.ident(*target.load_raw), STAGE)


def _statement(target: StreamTarget, *, safe: bool) -> sql.Composed:
    raw = _raw_insert(target)
    norm = target.load_norm
    if norm is None:
        return raw
    names = [sql.Identifier(c.name) for c in target.columns]
    names += [sql.Identifier(n) for n in ("_airbyte_ab_id", "_airbyte_emitted_at",
                                          "_airbyte_normalized_at", target.hashid)]  # fmt: skip
    exprs = [(c.safe_expr(_DATA) if safe else c.fast_expr(_DATA)) for c in target.columns]
    exprs += [sql.SQL("r._airbyte_ab_id, r._airbyte_emitted_at, now(), md5(r._airbyte_data::text)")]
    return sql.SQL(
        "WITH r AS ({raw} RETURNING _airbyte_ab_id, _airbyte_data, _airbyte_emitted_at) "
        "INSERT INTO {norm} ({names}) SELECT {exprs} FROM r"
    ).format(
        raw=raw,
        norm=ddl.ident(*norm),
        names=sql.SQL(", ").join(names),
        exprs=sql.SQL(", ").join(exprs),
    )


def flush(conn: psycopg.Connection[Any], target: StreamTarget) -> int:
    """Load the stream's buffered lines (inside the caller's transaction); returns the count."""
    lines, linenos = target.lines, target.linenos
    if not lines:
        return 0
    count = len(lines)
    payload = _payload(lines)
    target.lines, target.linenos, target.nbytes = [], [], 0
    try:
        with conn.cursor().copy(sql.SQL("COPY {} (msg) FROM STDIN").format(STAGE)) as copy:
            view = memoryview(payload)
            for start in range(0, len(view), 1 << 22):
                copy.write(view[start : start + (1 << 22)])
    except psycopg.errors.DataError as exc:
        raise BatchError(_lineno(exc, linenos), _first_line(exc)) from None
    del payload
    conn.execute("SAVEPOINT pgbyte_batch")
    try:
        conn.execute(_statement(target, safe=False))
    except psycopg.DataError:
        conn.execute("ROLLBACK TO SAVEPOINT pgbyte_batch")
        _safe_load(conn, target)
    conn.execute("RELEASE SAVEPOINT pgbyte_batch")
    conn.execute(sql.SQL("TRUNCATE {}").format(STAGE))
    target.received += count
    return count


def _safe_load(conn: psycopg.Connection[Any], target: StreamTarget) -> None:
    """The slow path for a batch holding values that do not cast: count, widen, NULL them."""
    typed = [c for c in target.columns if c.kind not in ("text", "jsonb")]
    data = sql.SQL("msg -> 'record' -> 'data'")
    if typed:
        checks = [sql.SQL("count(*) FILTER (WHERE {})").format(c.failed_expr(data)) for c in typed]
        checks += [
            sql.SQL("bool_or({})").format(c.overflow_expr(data)) if c.kind == "bigint"
            else sql.SQL("false")
            for c in typed
        ]  # fmt: skip
        row = conn.execute(
            sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(checks), STAGE)
        ).fetchone()
        assert row is not None
        failed, overflow = row[: len(typed)], row[len(typed) :]
        for col, flag in zip(typed, overflow, strict=True):
            if flag:
                ddl.widen_to_numeric(conn, target, col)
                index = target.columns.index(col)
                target.columns[index] = type(col)(key=col.key, name=col.name, kind="numeric")
        if any(overflow):
            return _safe_load(conn, target)
        for col, n in zip(typed, failed, strict=True):
            if n:
                target.uncastable[col.name] = target.uncastable.get(col.name, 0) + int(n)
    conn.execute(_statement(target, safe=True))


def _lineno(exc: psycopg.Error, linenos: list[int]) -> int | None:
    context = getattr(exc.diag, "context", None) or ""
    match = _COPY_LINE.search(context)
    if match and 0 < int(match.group(1)) <= len(linenos):
        return linenos[int(match.group(1)) - 1]
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
