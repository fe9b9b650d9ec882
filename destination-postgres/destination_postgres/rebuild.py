"""A typed table missing beside a raw table with records: its rows rebuilt from them.

An append or append_dedup stream whose typed table was dropped by hand (or whose
disable_type_dedupe was turned off) would otherwise start a new, empty typed table while the
raw table holds every record already loaded. As Airbyte's typing and deduping does for a
missing final table, the write first types them all: append by the same INSERT as a batch,
append_dedup by one merge over all of them.
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
    typed table (as Airbyte's typing and deduping does for a missing final table); returns
    how many records were read. append_dedup merges them as one batch in the raw table's
    order (its best record of input order: rows lie in the order appended, but for rows a
    VACUUM let later ones take the place of). Raises RowsTooWide (nothing typed) when
    PostgreSQL refuses a typed row as too big (rawonly.py)."""
    raw = ddl.ident(*target.load_raw)
    if not target.dedup:
        return loader.normalize(conn, target, raw)
    # A stage in the layout a batch's has (STAGE_POSITION: _pgbyte_pos NULL, ctid its order).
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(REBUILD_STAGE))
    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE {} AS SELECT _airbyte_ab_id, _airbyte_data, _airbyte_emitted_at, "
            "NULL::bigint AS _pgbyte_pos FROM {} ORDER BY ctid"
        ).format(REBUILD_STAGE, raw)
    )
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(REBUILD_STAGE)).fetchone()
    try:
        dedup.merge(conn, target, REBUILD_STAGE, int(row[0]) if row else 0)
    finally:  # a copy of the whole raw table: never kept for the rest of the write
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.INERROR:
            conn.execute(sql.SQL("DROP TABLE {}").format(REBUILD_STAGE))
    return int(row[0]) if row else 0
