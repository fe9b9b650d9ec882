"""The SQL that makes Postgres build each whole RECORD line (DESIGN.md §5).

    COPY (SELECT '{"type":"RECORD","record":{...,"data":{"a":' || <json of r.a> || ',"b":'
                 || <json of r.b> || '}}}' FROM <table> AS r) TO STDOUT

Postgres renders every value as JSON text (type_mapping) on its own core while Python only
moves bytes. In text COPY output the only escape JSON text can carry is a doubled backslash
(JSON has no raw control characters, and no tabs outside strings, where they are escaped), so
`unescape_copy_text` restores the exact line with one bytes.replace.

Rows where a column holds NaN/±Infinity take a second branch of the same CASE: those values are
nulled and the record gets `meta.changes` naming them.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

import orjson
from pgbyte_common.lines import escape_line_separators
from psycopg import sql

from source_postgres.catalog import ConfiguredStream
from source_postgres.discovery import Column, Table
from source_postgres.type_mapping import (
    fast_json_expr,
    finite_condition,
    json_expr,
    special_flag,
)


def record_prefix(stream: str, namespace: str | None, emitted_at: int) -> str:
    """The JSON text of a RECORD up to its data object."""
    head: dict[str, object] = {"stream": stream}
    if namespace is not None:
        head["namespace"] = namespace
    head["emitted_at"] = emitted_at
    # '{"type":"RECORD","record":{"stream":..,"namespace":..,"emitted_at":..,"data":'
    return '{"type":"RECORD","record":' + orjson.dumps(head).decode()[:-1] + ',"data":'


def _change_json(column: str) -> str:
    return orjson.dumps(
        {"field": column, "change": "NULLED", "reason": "SOURCE_SERIALIZATION_ERROR"}
    ).decode()


def record_query(
    *,
    schema: str,
    table: str,
    columns: Sequence[Column],
    stream: str,
    namespace: str | None,
    emitted_at: int,
    where: sql.Composable | None = None,
    order_by: sql.Composable | None = None,
) -> sql.Composed:
    """The COPY statement streaming the stream's RECORD lines.

    Each line is one concatenation: '<prefix>{"col":' || <json of value> || ',"col2":' ... ||
    '}}}'. Measured on firenibble this costs Postgres about half the CPU of row_to_json, which
    looks up each column's type and output function again for every row.

    `where` and `order_by` (expressions over the alias `r`) select and order the rows of one
    incremental chunk.
    """
    clauses = sql.SQL("")
    if where is not None:
        clauses = sql.SQL("{} WHERE {}").format(clauses, where)
    if order_by is not None:
        clauses = sql.SQL("{} ORDER BY {}").format(clauses, order_by)
    relation = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    head = record_prefix(stream, namespace, emitted_at)

    def ref(c: Column) -> sql.Composable:
        return sql.SQL("r.{}").format(sql.Identifier(c.name))

    def line(render, lead: list[sql.Composable], data_prefix: str) -> sql.Composable:
        """`lead` (computed parts), then `data_prefix`, the data object and the closing }}."""
        parts: list[sql.Composable] = list(lead)
        opener = data_prefix + "{"
        for c in columns:
            parts.append(sql.Literal(opener + orjson.dumps(c.name).decode() + ":"))
            parts.append(render(ref(c), c.mapping))
            opener = ","
        parts.append(sql.Literal(("" if columns else data_prefix + "{") + "}}}"))
        return concat(parts)

    fast = line(fast_json_expr, [], head)
    special = [c for c in columns if c.mapping.may_be_special]
    if not special:
        return sql.SQL("COPY (SELECT {} FROM {} AS r{}) TO STDOUT").format(fast, relation, clauses)

    # Rows holding NaN/±Infinity (rare) take the slow path: those values nulled, and the
    # record's meta.changes listing them — placed before the data, so that a destination that
    # cuts canonical lines to their data (ours) takes such a line aside whole instead of
    # seeing `{data},"meta":{…}` as its data.
    flags = [special_flag(ref(c), c.mapping) for c in special]
    # An ARRAY[...] constructor, not concat_ws(',', ...): a function takes at most 100
    # arguments (FUNC_MAX_ARGS), an array constructor any number; array_to_string skips the
    # NULLs of the columns that are finite, as concat_ws did.
    changes = sql.SQL("array_to_string(ARRAY[{}]::text[], ',')").format(
        sql.SQL(", ").join(
            sql.SQL("CASE WHEN {} THEN {} END").format(flag, sql.Literal(_change_json(c.name)))
            for flag, c in zip(flags, special, strict=True)
        )
    )
    meta_head = head.removesuffix('"data":') + '"meta":{"changes":['
    slow = line(json_expr, [sql.Literal(meta_head), changes], ']},"data":')
    finite = finite_condition([(ref(c), c.mapping) for c in special])
    return sql.SQL(
        "COPY (SELECT CASE WHEN {} THEN {} ELSE {} END FROM {} AS r{}) TO STDOUT"
    ).format(finite, fast, slow, relation, clauses)


def concat(parts: Sequence[sql.Composable]) -> sql.Composable:
    """a || b || c ... as a balanced tree: each || copies its operands, so a left-deep chain
    would copy the growing line once per column (quadratic on wide tables)."""
    if len(parts) == 1:
        return parts[0]
    middle = len(parts) // 2
    return sql.SQL("({} || {})").format(concat(parts[:middle]), concat(parts[middle:]))


def unescape_copy_text(data: bytes) -> bytes:
    """Undo text-COPY escaping of JSON lines: every backslash arrives doubled.

    Also escapes U+2028, U+2029 and U+0085 (legal raw inside JSON strings, where Postgres leaves
    them) because consumers splitting lines with Python's str.splitlines() would cut records
    there; "\\u2028" is the same JSON string.
    """
    # A single-byte membership test is memchr-fast; the replace is not, so it runs only on
    # chunks that need it.
    if b"\\" in data:
        data = data.replace(b"\\\\", b"\\")
    return escape_line_separators(data)


CopyOut = Callable[[Any, sql.Composable], Generator[bytes, None, int]]


def stream_records(
    conn: Any,
    copy_out: CopyOut,
    *,
    table: Table,
    columns: Sequence[Column],
    stream: ConfiguredStream,
    emitted_at: int,
    where: sql.Composable | None = None,
    order_by: sql.Composable | None = None,
) -> Generator[bytes, None, int]:
    """Yield the RECORD lines of one query over the stream's table, as COPY hands them over
    (`copy_out`: reader.copy_out); returns how many records they held."""
    query = record_query(
        schema=table.schema, table=table.name, columns=columns, stream=stream.name,
        namespace=stream.namespace, emitted_at=emitted_at, where=where, order_by=order_by,
    )  # fmt: skip
    return (yield from copy_out(conn, query))
