"""A typed table missing beside a raw table with records, or behind it: rebuilt from them.

An append or append_dedup stream whose typed table was dropped by hand (or whose
disable_type_dedupe was turned off) would otherwise start a new, empty typed table while the
raw table holds every record already loaded. As Airbyte's typing and deduping does for a
missing final table, the write first types them all: append by the same INSERT as a batch,
append_dedup by one merge over all of them. A typed table that lacks records a write kept in
the raw table only (ddl.BEHIND_COMMENT) gets those the same way, merged with the rows it has.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from destination_postgres import ddl, dedup, loader
from destination_postgres.catalog import StreamTarget

REBUILD_STAGE = sql.Identifier("pg_temp", "_pgbyte_rebuild")


def rebuild_typed(conn: psycopg.Connection[Any], target: StreamTarget) -> int:
    """Type every record of an append/append_dedup stream's raw table into its new, empty
    typed table (as Airbyte's typing and deduping does for a missing final table), or, on a
    catch-up (target.catch_up), those its typed table lacks; returns how many records were
    read. append_dedup merges them as one batch in the raw table's order (its best record of
    input order: rows lie in the order appended, but for rows a VACUUM let later ones take the
    place of), against the rows the table has. Raises RowsTooWide (nothing typed) when
    PostgreSQL refuses a typed row as too big (rawonly.py)."""
    raw = ddl.ident(*target.load_raw)
    if not target.dedup and not target.catch_up:
        return loader.normalize(conn, target, raw)
    # A stage in the layout a batch's has (STAGE_POSITION: _pgbyte_pos NULL, ctid its order).
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(REBUILD_STAGE))
    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE {} AS SELECT _airbyte_ab_id, _airbyte_data, _airbyte_emitted_at, "
            "NULL::bigint AS _pgbyte_pos FROM {} r{} ORDER BY ctid"
        ).format(REBUILD_STAGE, raw, _lacking(conn, target) if target.catch_up else sql.SQL(""))
    )
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(REBUILD_STAGE)).fetchone()
    rows = int(row[0]) if row else 0
    try:
        if target.dedup:
            dedup.merge(conn, target, REBUILD_STAGE, rows)
        else:
            loader.normalize(conn, target, REBUILD_STAGE)
    finally:  # a copy of (part of) the raw table: never kept for the rest of the write
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.INERROR:
            conn.execute(sql.SQL("DROP TABLE {}").format(REBUILD_STAGE))
    return rows


def _lacking(conn: psycopg.Connection[Any], target: StreamTarget) -> sql.Composable:
    """WHERE the raw record `r` has no typed row (by _airbyte_ab_id; compared as text where
    the two tables' ids differ in type, a typed table of Airbyte's normalization). Nothing is
    deleted: a typed row whose raw record is gone (a raw table renamed, emptied) stays."""
    assert target.load_norm is not None
    raw_type = ddl.ab_id_type(ddl.existing_columns(conn, *target.load_raw))
    typed_type = ddl.ab_id_type(ddl.existing_columns(conn, *target.load_norm))
    key = "_airbyte_ab_id" if raw_type == typed_type else "_airbyte_ab_id::text"
    return sql.SQL(" WHERE NOT EXISTS (SELECT FROM {} t WHERE t.{k} = r.{k})").format(
        ddl.ident(*target.load_norm), k=sql.SQL(key)
    )
