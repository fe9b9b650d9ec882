"""New and retyped columns of an existing typed table, typed again from the rows' raw records.

As Airbyte's soft reset types its final table again after a schema change: a retyped column
otherwise holds its old values converted by the ALTER (a timestamp turned text reads
`2021-06-01 10:00:00+00` where the records say `2021-06-01T10:00:00Z`, and then loses a
cursor comparison; a jsonb key converted from text is the string "1" where the records hold
the number 1), and a property the catalog declares only now would stay NULL in the rows whose
records hold it. Each typed row carries its raw record's `_airbyte_ab_id`; a row whose record
is gone keeps what the ALTER gave it.

One UPDATE of the rows whose records hold one of the keys (for a new property the records
usually lack: a scan of the raw table), with plain casts first; when one fails, the values are
counted as a batch's are (NULL and reported; an integer beyond bigint widens its column) and
the UPDATE runs with guarded casts. It runs in a savepoint: should PostgreSQL refuse it (a key
that would repeat in a dedup table's unique index, a constraint of the user's), the columns
keep their converted values, with a WARN, and the write goes on as before.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from destination_postgres import ddl, loader
from destination_postgres.catalog import StreamTarget
from destination_postgres.typemap import Column

_DATA = sql.SQL("r._airbyte_data")


def refill(conn: psycopg.Connection[Any], target: StreamTarget) -> str | None:
    """Type `target.refill` again from the raw records; returns a WARN's text when it could
    not (the columns then keep what the ALTER gave them)."""
    if not target.refill or not _raw_ids_are_uuids(conn, target):
        return None
    try:
        with conn.transaction():
            try:
                with conn.transaction():
                    _update(conn, target, safe=False)
            except psycopg.DataError:  # a value the plain cast refuses: count, widen, guard
                _count_and_widen(conn, target)
                _update(conn, target, safe=True)
    except psycopg.OperationalError:
        raise  # the connection is gone: the write fails as any other would
    except psycopg.DatabaseError as exc:
        names = ", ".join(c.name for c in target.refill)
        return (
            f"its column(s) {names} could not be typed again from the raw records "
            f"({loader.first_line(exc)}), so they hold their earlier values converted to the "
            "new type (and NULL in the rows of earlier syncs, for a new column)"
        )
    return None


def _joined(target: StreamTarget) -> sql.Composable:
    """The raw records of typed rows `t` that hold one of the keys (a FROM item, then WHERE)."""
    return sql.SQL(
        "{raw} r WHERE r._airbyte_ab_id = t._airbyte_ab_id AND r._airbyte_data ?| {keys}"
    ).format(raw=ddl.ident(*target.load_raw), keys=sql.Literal([c.key for c in target.refill]))


def _update(conn: psycopg.Connection[Any], target: StreamTarget, *, safe: bool) -> None:
    sets = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(
            sql.Identifier(c.name), c.safe_expr(_DATA) if safe else c.fast_expr(_DATA)
        )
        for c in target.refill
    )
    conn.execute(
        sql.SQL("UPDATE {} t SET {} FROM {}").format(
            ddl.ident(*target.load_norm),
            sets,
            _joined(target),  # type: ignore[misc]
        )
    )


def _count_and_widen(conn: psycopg.Connection[Any], target: StreamTarget) -> None:
    """As loader._safe_normalize does for a batch: count the values that do not cast (reported
    with the stream's), and widen an integer column a value beyond bigint needs."""
    typed = [c for c in target.refill if c.kind not in ("text", "jsonb") or c.narrow]
    if not typed:
        return
    rows = sql.SQL("{} t, {}").format(ddl.ident(*target.load_norm), _joined(target))  # type: ignore[misc]
    failed, overflow = loader.cast_problems(conn, typed, _DATA, rows)
    if any(overflow):
        for col, flag in zip(typed, overflow, strict=True):
            if flag:
                _widen(conn, target, col)
        _count_and_widen(conn, target)
        return
    for col, n in zip(typed, failed, strict=True):
        if n:
            target.uncastable[col.name] = target.uncastable.get(col.name, 0) + int(n)


def _widen(conn: psycopg.Connection[Any], target: StreamTarget, col: Column) -> None:
    ddl.widen_to_numeric(conn, target, col)
    wide = Column(key=col.key, name=col.name, kind="numeric", integral=True)
    target.columns[target.columns.index(col)] = wide
    target.refill[target.refill.index(col)] = wide


def _raw_ids_are_uuids(conn: psycopg.Connection[Any], target: StreamTarget) -> bool:
    """Whether the raw table's ids are pgbyte's uuids (an Airbyte-made raw table's are text)."""
    columns = ddl.existing_columns(conn, *target.load_raw)
    return bool(columns) and columns.get("_airbyte_ab_id") == "uuid"  # type: ignore[union-attr]
