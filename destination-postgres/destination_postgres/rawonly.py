"""Streams whose typed rows PostgreSQL refuses as too big: kept in their raw table only.

catalog.py refuses a typed table up front when its columns cannot fit: over 1,600, or
fixed-width values (bigint, timestamps...) that alone could overflow the 8,160 bytes of a row.
It counts each varlena value (text, numeric, jsonb) at a byte, since TOAST shrinks a long one to
an 18-byte pointer and a table of mostly short or NULL values would otherwise be refused for
nothing. But TOAST leaves values under ~24 bytes in the row: 800 integers beside 200 20-character
strings, or 900 numerics like 12345.678901, make rows of ~10.7 kB that pass the check, and
PostgreSQL refuses them ("row is too big", SQLSTATE 54000). Only the data tells, so the typed
INSERT is the test: it already runs under a savepoint (loader.normalize, normalize_split;
dedup's first-load INSERT and merge stage go through normalize), whose rollback undoes the
batch's typed rows and nothing else. (dedup's upsert then writes the stage's rows less its two
position columns, so a row the stage took fits the table.) The stream is then raw only for the
rest of the write, as if catalog.py had decided so: no typed table is made, one WARN says why.

A typed table that an earlier sync made is left as it was (an overwrite does not replace it,
append does not fill it): its rows are typed copies of records the raw table keeps, so nothing
in it is wrong, only missing, which the WARN says; dropping it would take the user's views,
grants and indexes along, or fail the write over a dependent view. A typed table this write
made (a new stream's, the rebuild of one missing beside its raw table, overwrite's temporary)
holds nothing the raw table lacks and is dropped in the same transaction. The decision is not
stored: a later write tries again, and its first refused batch decides the same — or, with no
typed table beside a raw one with records, its rebuild does (refused at the first row too big,
after append_dedup's rebuild has copied the raw table, as every rebuild does).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from destination_postgres import ddl
from destination_postgres.catalog import StreamTarget
from destination_postgres.typemap import MAX_TUPLE_BYTES

# Where PostgreSQL refuses a heap row over MaxHeapTupleSize (hio.c; heap_insert and heap_update
# alike, temporary tables too). Matched rather than the message, which lc_messages may
# translate; other 54000 errors (an index row over its limit, an array too large) are not
# about the row's width and still fail the write.
_ROW_TOO_BIG_FUNCTION = "RelationGetBufferForTuple"


class RowsTooWide(Exception):
    """PostgreSQL refused a typed row as too big; the typed INSERT was rolled back."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def too_wide(exc: BaseException) -> RowsTooWide | None:
    """A RowsTooWide when `exc` is PostgreSQL's "row is too big", else None."""
    if not isinstance(exc, psycopg.errors.ProgramLimitExceeded):
        return None
    diag = exc.diag
    primary = diag.message_primary or ""
    if diag.source_function != _ROW_TOO_BIG_FUNCTION and not primary.startswith("row is too big"):
        return None
    return RowsTooWide(primary or (str(exc).strip().splitlines() or ["row is too big"])[0])


def keep_raw_only(conn: psycopg.Connection[Any], target: StreamTarget, reason: str) -> None:
    """After the refused typed INSERT was rolled back (in the batch's or swap's transaction):
    drop the typed table this write made, stop typing the stream, and leave the WARN for the
    main thread (target.refused_warn)."""
    assert target.norm_table is not None and target.load_norm is not None
    schema, final = target.schema, target.norm_table
    why = (
        f'PostgreSQL refused its typed rows ("{reason}": values that TOAST cannot shrink, '
        f"such as numbers and short strings, fill more than the {MAX_TUPLE_BYTES} bytes a row "
        "may hold), so its records are kept in the raw table only"
    )
    if target.overwrite or target.typed_created:
        # Ours, and it holds no row the raw table lacks. Its key index, if any, goes with it.
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ddl.ident(*target.load_norm)))
        target.uncastable.clear()  # counted for rows no typed table keeps
        target.skipped_keys = 0
    if target.overwrite and ddl.existing_columns(conn, schema, final) is not None:
        outcome = (f": {schema}.{final}, the typed table of an earlier sync, is left as it was "
                   "(not replaced)")  # fmt: skip
    elif target.overwrite or target.typed_created:
        outcome = " (no typed table)"
    else:
        outcome = (f" from here on: {schema}.{final}, the typed table an earlier sync made, "
                   "keeps its rows and gets no new ones")  # fmt: skip
    target.typed_note = why + outcome
    target.refused_warn = target.typed_note
    target.refused_table = final
    target.norm_table = None  # load_norm, dedup, swap: as for a stream catalog.py keeps raw
    target.dedup_plan = None
    target.rebuild_typed = False
