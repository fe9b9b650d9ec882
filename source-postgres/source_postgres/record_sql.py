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
from source_postgres.type_mapping import special_flag, value_expr


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
) -> sql.Composed:
    """The COPY statement streaming the stream's RECORD lines."""
    relation = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    exprs = sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(
            value_expr(sql.SQL("r.{}").format(sql.Identifier(c.name)), c.mapping),
            sql.Identifier(c.name),
        )
        for c in columns
    )
    prefix = sql.Literal(record_prefix(stream, namespace, emitted_at))
    special = [c for c in columns if c.mapping.may_be_special]
    if not special:
        return sql.SQL(
            "COPY (SELECT {prefix} || row_to_json(t)::text || '}}}}' "
            "FROM (SELECT {exprs} FROM {relation} AS r) AS t) TO STDOUT"
        ).format(prefix=prefix, exprs=exprs, relation=relation)
    flags = [
        special_flag(sql.SQL("r.{}").format(sql.Identifier(c.name)), c.mapping) for c in special
    ]
    any_flag = sql.SQL(" OR ").join(flags)
    changes = sql.SQL("concat_ws(',', {})").format(
        sql.SQL(", ").join(
            sql.SQL("CASE WHEN {} THEN {} END").format(flag, sql.Literal(_change_json(c.name)))
            for flag, c in zip(flags, special, strict=True)
        )
    )
    suffix = sql.SQL(
        "CASE WHEN {any} THEN ',\"meta\":{{\"changes\":[' || {changes} || ']}}}}}}' ELSE '}}}}' END"
    ).format(any=any_flag, changes=changes)
    # The row `r` stays visible beside `t` so the suffix can test the raw values.
    return sql.SQL(
        "COPY (SELECT {prefix} || row_to_json(t)::text || {suffix} "
        "FROM {relation} AS r CROSS JOIN LATERAL (SELECT {exprs}) AS t) TO STDOUT"
    ).format(prefix=prefix, suffix=suffix, exprs=exprs, relation=relation)


def unescape_copy_text(data: bytes) -> bytes:
    """Undo text-COPY escaping of JSON lines: every backslash arrives doubled.

    Also escapes U+2028, U+2029 and U+0085 (legal raw inside JSON strings, where Postgres leaves
    them) because consumers splitting lines with Python's str.splitlines() would cut records
    there; "\\u2028" is the same JSON string.
    """
    data = data.replace(b"\\\\", b"\\")
    if b"\xe2\x80\xa8" in data or b"\xe2\x80\xa9" in data or b"\xc2\x85" in data:
        data = (
            data.replace(b"\xe2\x80\xa8", b"\\u2028")
            .replace(b"\xe2\x80\xa9", b"\\u2029")
            .replace(b"\xc2\x85", b"\\u0085")
        )
    return data
