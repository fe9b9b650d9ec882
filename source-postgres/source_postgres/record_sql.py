"""The SQL that makes Postgres build each whole RECORD line (DESIGN.md §5).

    COPY (SELECT <prefix> || row_to_json(t)::text || <suffix>
          FROM (SELECT <value exprs> FROM <table>) t) TO STDOUT

Postgres renders every value (type_mapping) and serializes the JSON on its own core while
Python only moves bytes. In text COPY output the only escape JSON text can carry is a doubled
backslash (JSON has no raw control characters and no tabs outside strings, where they are
escaped), so `unescape_copy_text` restores the exact line with one bytes.replace.

Columns that may hold NaN/±Infinity are nulled inside `t`, and the suffix adds the record's
`meta.changes` only on rows where that happened.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from psycopg import sql

from source_postgres.discovery import Column
from source_postgres.type_mapping import (
    fast_value_expr,
    finite_condition,
    is_passthrough,
    special_flag,
    value_expr,
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
    whole_row: bool = False,
) -> sql.Composed:
    """The COPY statement streaming the stream's RECORD lines.

    `whole_row`: `columns` are all the relation's columns, in order, all readable, so when
    every value renders as is, row_to_json can take the table row itself (the cheapest form).
    """
    relation = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    prefix = sql.Literal(record_prefix(stream, namespace, emitted_at))

    def ref(c: Column) -> sql.Composable:
        return sql.SQL("r.{}").format(sql.Identifier(c.name))

    def projection(render) -> sql.Composable:
        return sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(render(ref(c), c.mapping), sql.Identifier(c.name))
            for c in columns
        )

    if whole_row and all(is_passthrough(c.mapping) for c in columns):
        row, source = sql.SQL("r"), sql.SQL("{} AS r").format(relation)
    else:
        row = sql.SQL("t")
        source = sql.SQL("{} AS r CROSS JOIN LATERAL (SELECT {}) AS t").format(
            relation, projection(fast_value_expr)
        )
    fast = sql.SQL("{} || row_to_json({})::text || '}}}}'").format(prefix, row)
    special = [c for c in columns if c.mapping.may_be_special]
    if not special:
        return sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT").format(fast, source)

    # Rows holding NaN/±Infinity (rare) take the slow path: those values nulled, and the
    # record's meta.changes listing them.
    flags = [special_flag(ref(c), c.mapping) for c in special]
    changes = sql.SQL("concat_ws(',', {})").format(
        sql.SQL(", ").join(
            sql.SQL("CASE WHEN {} THEN {} END").format(flag, sql.Literal(_change_json(c.name)))
            for flag, c in zip(flags, special, strict=True)
        )
    )
    slow = sql.SQL(
        "{prefix} || {data} || ',\"meta\":{{\"changes\":[' || {changes} || ']}}}}}}'"
    ).format(prefix=prefix, data=_build_object(columns, ref), changes=changes)
    finite = finite_condition([(ref(c), c.mapping) for c in special])
    return sql.SQL("COPY (SELECT CASE WHEN {} THEN {} ELSE {} END FROM {}) TO STDOUT").format(
        finite, fast, slow, source
    )


# json_build_object takes at most 100 arguments (50 key/value pairs).
_MAX_PAIRS = 50


def _build_object(columns: Sequence[Column], ref) -> sql.Composable:
    """The data object of the slow path, as text.

    json_build_object rather than a row_to_json subquery: a correlated subquery anywhere in the
    statement (even in a branch never taken) triples Postgres's CPU per row.
    """

    def pairs(chunk: Sequence[Column]) -> sql.Composable:
        return sql.SQL(", ").join(
            sql.SQL("{}, {}").format(sql.Literal(c.name), value_expr(ref(c), c.mapping))
            for c in chunk
        )

    if len(columns) <= _MAX_PAIRS:
        return sql.SQL("json_build_object({})::text").format(pairs(columns))
    chunks = [columns[i : i + _MAX_PAIRS] for i in range(0, len(columns), _MAX_PAIRS)]
    return sql.SQL("({})::text").format(
        sql.SQL(" || ").join(
            sql.SQL("jsonb_build_object({})").format(pairs(chunk)) for chunk in chunks
        )
    )


def unescape_copy_text(data: bytes) -> bytes:
    """Undo text-COPY escaping of JSON lines: every backslash arrives doubled.

    Also escapes U+2028, U+2029 and U+0085 (legal raw inside JSON strings, where Postgres leaves
    them) because consumers splitting lines with Python's str.splitlines() would cut records
    there; "\\u2028" is the same JSON string.
    """
    # Single-byte membership tests are memchr-fast; the multi-byte searches and the replace
    # are not, so they run only on chunks that can need them.
    if b"\\" in data:
        data = data.replace(b"\\\\", b"\\")
    if b"\xe2" in data:
        data = data.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
    if b"\xc2" in data:
        data = data.replace(b"\xc2\x85", b"\\u0085")
    return data
