"""append_dedup: the typed table holds one row per primary key, merged per batch in SQL.

The raw table keeps every record: loader.finish_batch inserts the batch as for append, then
runs merge() as its typed step. The batch's typed rows are built by the same normalize() as
append, into a per-stream typed stage (a temporary table shaped like the normalized one), and
merged with one statement:

1. the winner per key inside the batch: DISTINCT ON (key) ordered by the cursor (NULLs
   oldest), then `_airbyte_emitted_at`, then input order — so on a full tie the last record
   received wins, as in Airbyte;
2. hard deletes (cdc_deletion_mode "Hard delete", the stream has `_ab_cdc_deleted_at`): a
   winner whose `_ab_cdc_deleted_at` is set deletes its key's row, unless that row is newer;
3. the other winners: INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE the new row is at least
   as new as the row present (same order as 1; a later batch wins a full tie).

Both 2 and 3 go through the unique index on the key columns, so a merge costs what the batch
holds, not what the table holds. Keys compare as typed values (1 and 1.0 are one integer key).

A record whose key is NULL — absent, JSON null, or a value its column type cannot take — has
no row to merge into: it stays in the raw table only and is counted in the end-of-write LOG.
A hard delete leaves no tombstone: an older record of a deleted key arriving in a later sync
inserts it again (soft delete keeps the row, so it can compare).

A first load into an empty table (no hard deletes) skips the stage, the sort and ON CONFLICT:
each batch's typed rows go straight into the table with a plain INSERT, and the unique index
still refuses a key seen twice; that batch is then rolled back to its savepoint and merged, and
so is every later one.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from pgbyte_common.errors import ConfigError, TransientError
from psycopg import sql

from destination_postgres import ddl, loader, naming
from destination_postgres.catalog import STAGE_POSITION, StreamTarget
from destination_postgres.rawonly import RowsTooWide
from destination_postgres.typemap import PG_TYPES

CDC_DELETED_AT = "_ab_cdc_deleted_at"
_META = ("_airbyte_ab_id", "_airbyte_emitted_at", "_airbyte_normalized_at")
# The whole batch's typed rows are sorted once per merge (DISTINCT ON): keep it in memory.
_WORK_MEM = "'64MB'"

Log = Callable[[str, str], None]


@dataclass(frozen=True)
class DedupPlan:
    """What the merge of one stream needs, fixed at the start of the write."""

    stage: str  # pg_temp table the batch's typed rows go to
    index: str  # the unique index on the key columns (ours or one found)
    deleted: str | None  # _ab_cdc_deleted_at's column when hard deletes apply
    update: tuple[str, ...]  # every non-key column of the normalized table (row replaced)
    fresh: bool = False  # the table was empty and no key has repeated yet: plain INSERTs


def index_name(target: StreamTarget) -> str:
    """The name of the unique key index pgbyte creates (stable; `_airbyte_pk_<table>`)."""
    return naming.key_index(str(target.norm_table))


def prepare(conn: psycopg.Connection[Any], target: StreamTarget, log: Log) -> None:
    """At the start of write, after ddl.prepare: the key index and the typed stage of an
    append_dedup stream; for an append stream, drop the key index a dedup sync left (append
    keeps duplicates)."""
    if target.overwrite or target.norm_table is None:
        return
    if not target.dedup:
        _drop_own_index(conn, target, log)
        return
    conn.execute(sql.SQL("SET work_mem = {}").format(sql.SQL(_WORK_MEM)))
    _check_cursor_order(target)
    if target.cursor_note:
        log("WARN", f"Stream {target.label}: {target.cursor_note}; the latest record per "
                    "primary key is chosen by _airbyte_emitted_at.")  # fmt: skip
    index = _ensure_index(conn, target, log)
    digest = hashlib.sha256(f"{target.schema}.{target.norm_table}".encode()).hexdigest()[:16]
    stage = f"_pgbyte_dedup_{digest}"
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier("pg_temp", stage)))
    position = tuple(zip(STAGE_POSITION, ("bigint", "tid"), strict=True))
    existing = ddl.existing_columns(conn, target.schema, target.norm_table) or {}
    ddl.create_normalized(conn, "pg_temp", stage, target.columns, target.hashid, extra=position,
                          ab_id_type=ddl.ab_id_type(existing))  # fmt: skip
    deleted = next((c.name for c in target.columns if c.key == CDC_DELETED_AT), None)
    deleted = None if target.soft_delete else deleted
    row = conn.execute(
        sql.SQL("SELECT NOT EXISTS (SELECT FROM {})").format(
            ddl.ident(target.schema, str(target.norm_table))
        )
    ).fetchone()
    target.dedup_plan = DedupPlan(
        stage=stage,
        index=index,
        deleted=deleted,
        update=tuple(n for n in existing if n not in target.key_names),
        fresh=bool(row and row[0]) and deleted is None,
    )


# Kinds whose values PostgreSQL orders as the source does (bigint widened to numeric too).
_ORDERED_KINDS = frozenset({"bigint", "numeric", "boolean", "date", "time", "timetz",
                            "timestamp", "timestamptz"})  # fmt: skip


def _check_cursor_order(target: StreamTarget) -> None:
    """A cursor column that an earlier sync made with another type, retyped to text or jsonb
    to hold both, no longer orders as the source's values do: `'10' < '9'` as text. Then the
    latest record by _airbyte_emitted_at wins (the source sends a stream's records in cursor
    order, and a later sync's after an earlier one's). A type the user gave the column stays
    the user's choice."""
    declared = target.cursor_kind
    if target.cursor_name is None or declared not in _ORDERED_KINDS:
        return
    actual = next((c for c in target.columns if c.name == target.cursor_name), None)
    if actual is None or actual.kind not in ("text", "jsonb"):
        return
    target.cursor_note = (
        f"its cursor column {actual.name} is {actual.kind} in the destination (an earlier "
        f"sync's type), whose values do not order as the source's {PG_TYPES[declared]} values"
    )
    target.cursor_name = None


def merge(
    conn: psycopg.Connection[Any],
    target: StreamTarget,
    source: sql.Composable,
    rows: int | None = None,
    *,
    order: list[int] | None = None,
) -> None:
    """Merge the staged raw-layout rows of `source` into the normalized table (in the batch's
    transaction). `rows`: how many `source` holds, when known. `order`: the input line of each
    staged row in stage order, when that order is not the input order (see stage_order)."""
    plan: DedupPlan = target.dedup_plan
    if plan.fresh and _insert_fresh(conn, target, plan, source, rows):
        return
    stage = sql.Identifier("pg_temp", plan.stage)
    kinds = [c.kind for c in target.columns]
    # normalize() writes into whatever load_norm names: a view of the target on the stage. It
    # shares columns/uncastable, so casts, guards, counts and widening stay append's.
    loader.normalize(conn, replace(target, schema="pg_temp", norm_table=plan.stage,
                                   mode="append"), source, position=True)  # fmt: skip
    for kind, col in zip(kinds, target.columns, strict=True):
        if col.kind != kind:  # widened on the stage: widen the normalized table too
            ddl.widen_to_numeric(conn, target, col)
    keyless, deletes = _count_keyless(conn, target, stage, plan.deleted)
    target.skipped_keys += keyless
    # (hard_deletes: said at the end of the write — a column of that name is a CDC source's,
    # or a table's own, whose rows then vanish from the typed table)
    target.hard_deletes += deletes
    try:
        conn.execute(merge_statement(target, plan, order))
    except psycopg.errors.InvalidColumnReference:
        # "no unique or exclusion constraint matching the ON CONFLICT specification": the key
        # index prepare() found or made is gone since — another sync overwrote the table
        # meanwhile (its new table has no key index), or someone dropped the index.
        raise _index_gone(target) from None
    conn.execute(sql.SQL("TRUNCATE {}").format(stage))


def _index_gone(target: StreamTarget) -> TransientError:
    return TransientError(
        f"Stream {target.label}: the unique index on the primary key of "
        f"{target.schema}.{target.norm_table} is gone since this write began (did another "
        "sync overwrite the table meanwhile?). Run the sync again: it makes the index anew."
    )


def _still_keyed(conn: psycopg.Connection[Any], target: StreamTarget, plan: DedupPlan) -> bool:
    """The key index is still on the table the INSERT just wrote: that table is locked by it
    until the commit, so no swap can put another in its place after this check."""
    row = conn.execute(
        "SELECT EXISTS (SELECT FROM pg_index WHERE indexrelid = to_regclass(%s) "
        "AND indrelid = to_regclass(%s))",
        (ddl.ident(target.schema, plan.index).as_string(conn),
         ddl.ident(target.schema, str(target.norm_table)).as_string(conn)),
    ).fetchone()  # fmt: skip
    return bool(row and row[0])


def _insert_fresh(
    conn: psycopg.Connection[Any],
    target: StreamTarget,
    plan: DedupPlan,
    source: sql.Composable,
    rows: int | None,
) -> bool:
    """First load into an empty table: the batch's typed rows with a key, INSERTed as append
    would. False (nothing changed, plan.fresh off) when a key repeats or a constraint refuses a
    row: the caller merges."""
    columns, uncastable = list(target.columns), dict(target.uncastable)
    conn.execute("SAVEPOINT pgbyte_fresh")
    try:
        inserted = loader.normalize(conn, target, source, required=tuple(target.key_names))
    except RowsTooWide:  # normalize rolled its rows back; the caller keeps the stream raw
        conn.execute("RELEASE SAVEPOINT pgbyte_fresh")
        raise
    except psycopg.IntegrityError:
        # A repeated key, or a constraint of the user's refusing a row that a later record of
        # its key would have replaced: merging decides.
        conn.execute("ROLLBACK TO SAVEPOINT pgbyte_fresh")
        conn.execute("RELEASE SAVEPOINT pgbyte_fresh")
        # The rollback undid any widening and counting of this attempt: so does the plan.
        target.columns[:] = columns
        target.uncastable.clear()
        target.uncastable.update(uncastable)
        target.dedup_plan = replace(plan, fresh=False)
        return False
    conn.execute("RELEASE SAVEPOINT pgbyte_fresh")
    if not _still_keyed(conn, target, plan):
        # An overwrite swapped in a table without the index meanwhile: the INSERTs, which
        # count on it to refuse a repeated key, left duplicate keys there unnoticed.
        raise _index_gone(target)
    stage_view = replace(target, schema="pg_temp", norm_table=plan.stage, mode="append")
    for before, col in zip(columns, target.columns, strict=True):
        if col.kind != before.kind:  # widened on the table: the stage follows, for later merges
            ddl.widen_to_numeric(conn, stage_view, col)
    if rows is None:  # (a batch's is known: its raw rows were just moved; a rebuild's not)
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(source)).fetchone()
        rows = int(row[0]) if row else 0
    target.skipped_keys += rows - inserted
    return True


def stage_order(fast_linenos: list[int], slow_linenos: list[int]) -> list[int] | None:
    """The input line of each row in the stage when the stage is not in input order, else None.

    A batch stages its canonical (fast) lines first, then the others (or, when the fast COPY
    was refused, all of them slowly in that same order): only a batch where a slow line comes
    before a fast one is out of order."""
    if fast_linenos and slow_linenos and slow_linenos[0] < fast_linenos[-1]:
        return fast_linenos + slow_linenos
    return None


def _newer(new: str, old: str, cursor: str | None) -> sql.Composable:
    """`new` row is at least as new as `old`: cursor (NULL oldest), then emitted_at."""
    em = sql.Identifier("_airbyte_emitted_at")
    n, o = sql.Identifier(new), sql.Identifier(old)
    by_time = sql.SQL("({o}.{em} IS NULL OR {n}.{em} >= {o}.{em})").format(n=n, o=o, em=em)
    if cursor is None:
        return by_time
    c = sql.Identifier(cursor)
    return sql.SQL(
        "(({o}.{c} IS NULL AND {n}.{c} IS NOT NULL) OR {n}.{c} > {o}.{c} "
        "OR ({n}.{c} IS NOT DISTINCT FROM {o}.{c} AND {t}))"
    ).format(n=n, o=o, c=c, t=by_time)


def merge_statement(
    target: StreamTarget, plan: DedupPlan, order: list[int] | None = None
) -> sql.Composed:
    """One statement: in-batch winners per key, hard deletes, upsert of the rest."""
    stage = sql.Identifier("pg_temp", plan.stage)
    final = ddl.ident(target.schema, str(target.norm_table))
    cols = [sql.Identifier(c.name) for c in target.columns]
    cols += [sql.Identifier(n) for n in (*_META, target.hashid)]
    keys = [sql.Identifier(k) for k in target.key_names]
    pos, tid = map(sql.Identifier, STAGE_POSITION)
    if order is None:
        # Stage order is input order: each typed row carries its data stage row's place
        # (STAGE_POSITION, loader.py): the fast rows by ctid, then the slow ones by number.
        source: sql.Composable = sql.SQL("{} t").format(stage)
        position: sql.Composable = sql.SQL("t.{} DESC NULLS LAST, t.{}").format(pos, tid)
    else:  # stage rows numbered in stage order, paired with their input line
        # The stage row's number, under a name none of the stage's columns has (a property may
        # be called anything, _pgbyte_rn included).
        names = {c.name for c in target.columns} | set(STAGE_POSITION)
        rn = sql.Identifier(next(n for n in _numbered("_pgbyte_rn") if n not in names))
        source = sql.SQL(
            "(SELECT s.*, row_number() OVER (ORDER BY s.{} NULLS FIRST, s.{}) AS {rn} "
            "FROM {} s) t "
            "JOIN unnest({}::bigint[]) WITH ORDINALITY AS o(_pgbyte_line, {rn}) "
            "USING ({rn})"
        ).format(pos, tid, stage, sql.Literal(order), rn=rn)
        position = sql.SQL("o._pgbyte_line")
    ranking = [sql.SQL("t.{}").format(k) for k in keys]
    if target.cursor_name is not None:
        ranking.append(sql.SQL("t.{} DESC NULLS LAST").format(sql.Identifier(target.cursor_name)))
    ranking += [
        sql.SQL("t._airbyte_emitted_at DESC NULLS LAST"),
        sql.SQL("{} DESC").format(position),
    ]
    winners = sql.SQL(
        "WITH w AS (SELECT DISTINCT ON ({keys}) {cols} FROM {source} "
        "WHERE {present} ORDER BY {ranking})"
    ).format(
        keys=sql.SQL(", ").join(sql.SQL("t.{}").format(k) for k in keys),
        cols=sql.SQL(", ").join(sql.SQL("t.{}").format(c) for c in cols),
        source=source,
        present=sql.SQL(" AND ").join(sql.SQL("t.{} IS NOT NULL").format(k) for k in keys),
        ranking=sql.SQL(", ").join(ranking),
    )
    live = sql.SQL("")
    if plan.deleted is not None:
        deleted = sql.Identifier(plan.deleted)
        # One index probe per deleted key: the LATERAL ... LIMIT 1 cannot be flattened into a
        # join the planner might run as a hash join over the whole table; the rows found are
        # then deleted by ctid (a TID scan).
        winners += sql.SQL(
            ", gone AS (DELETE FROM {final} r WHERE r.ctid = ANY (ARRAY("
            "SELECT x.ctid FROM w CROSS JOIN LATERAL (SELECT p.ctid FROM {final} p "
            "WHERE {match} AND {newer} LIMIT 1) x WHERE w.{d} IS NOT NULL)))"
        ).format(
            final=final,
            match=sql.SQL(" AND ").join(sql.SQL("p.{k} = w.{k}").format(k=k) for k in keys),
            d=deleted,
            newer=_newer("w", "p", target.cursor_name),
        )
        live = sql.SQL(" WHERE w.{} IS NULL").format(deleted)
    update = [sql.Identifier(n) for n in plan.update]
    upsert = sql.SQL(
        " INSERT INTO {final} AS r ({cols}) SELECT {cols} FROM w{live} "
        "ON CONFLICT ({keys}) DO UPDATE SET {sets} WHERE {newer}"
    ).format(
        final=final,
        cols=sql.SQL(", ").join(cols),
        live=live,
        keys=sql.SQL(", ").join(keys),
        sets=sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=c) for c in update),
        newer=_newer("excluded", "r", target.cursor_name),
    )
    return winners + upsert


def _indexes(conn: psycopg.Connection[Any], target: StreamTarget) -> list[tuple[str, set[str]]]:
    """(name, column names) of the valid plain unique indexes of the normalized table."""
    rows = conn.execute(
        """SELECT i.relname, array(SELECT a.attname FROM unnest(x.indkey::int2[]) k
                                    JOIN pg_attribute a ON a.attrelid = x.indrelid
                                     AND a.attnum = k)
             FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
             JOIN pg_class c ON c.oid = x.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relname = %s AND x.indisunique AND x.indisvalid
              AND x.indpred IS NULL AND x.indexprs IS NULL AND x.indimmediate""",
        (target.schema, target.norm_table),
    ).fetchall()
    return [(name, set(columns)) for name, columns in rows]


def _ensure_index(conn: psycopg.Connection[Any], target: StreamTarget, log: Log) -> str:
    """The unique index ON CONFLICT needs: found, or created (after removing the duplicates
    an earlier append sync may have left: the latest row per key stays)."""
    keys = set(target.key_names)
    own = index_name(target)
    found = _indexes(conn, target)
    for name, columns in found:
        if columns == keys:
            return name
    final = ddl.ident(target.schema, str(target.norm_table))
    if any(name == own for name, _ in found):  # ours, on another key: the key changed
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(target.schema, own)))
        changed = f"the primary key changed to ({', '.join(target.key_names)})"
        _warn_keyless_rows(conn, target, final, log, changed)
    else:
        if ddl.relation(conn, target.schema, own) is not None:
            raise ConfigError(
                f"Stream {target.label}: append_dedup keeps its primary key in a unique index "
                f"named {target.schema}.{own}, and a relation of that name exists that is not "
                "that index. Rename or drop it (or give the stream a prefix); nothing was written."
            )
        if not target.typed_created:  # rows of earlier append syncs
            _warn_keyless_rows(conn, target, final, log, "its typed table gets its key now")
    removed = _remove_duplicates(conn, target)
    if removed:
        log(
            "INFO",
            f"Stream {target.label}: {removed} older duplicate row(s) removed from "
            f"{target.norm_table} (it is deduplicated by primary key from now on).",
        )
    conn.execute(
        sql.SQL("CREATE UNIQUE INDEX {} ON {} ({})").format(
            sql.Identifier(own),
            final,
            sql.SQL(", ").join(sql.Identifier(k) for k in target.key_names),
        )
    )
    return own


def _warn_keyless_rows(
    conn: psycopg.Connection[Any],
    target: StreamTarget,
    final: sql.Composable,
    log: Log,
    why: str,
) -> None:
    """Rows typed before that hold no value in a key column (the key changed: a key column
    renamed or replaced at the source; or an append sync kept records with a NULL key, which
    append_dedup keeps in the raw table only): no record ever replaces them. Say so."""
    stale, _ = _count_keyless(conn, target, final)
    if stale:
        log("WARN", f"Stream {target.label}: {why}; {stale} row(s) of "
                    f"{target.schema}.{target.norm_table} typed before have no value for its "
                    "primary key, so no record replaces them: they stay beside the current rows. "
                    "Delete them (rows where a key column is NULL), or sync once with overwrite "
                    "to rebuild the table.")  # fmt: skip


def _count_keyless(
    conn: psycopg.Connection[Any],
    target: StreamTarget,
    table: sql.Composable,
    deleted: str | None = None,
) -> tuple[int, int]:
    """Rows of `table` with no value in some primary-key column (no record can replace them),
    and, in the same scan, rows whose `deleted` column is set (0 without one)."""
    null_key = sql.SQL(" OR ").join(
        sql.SQL("{} IS NULL").format(sql.Identifier(k)) for k in target.key_names
    )
    marked = sql.SQL("false") if deleted is None else sql.SQL("{} IS NOT NULL").format(
        sql.Identifier(deleted))  # fmt: skip
    row = conn.execute(
        sql.SQL("SELECT count(*) FILTER (WHERE {}), count(*) FILTER (WHERE {}) FROM {}").format(
            null_key, marked, table
        )
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def _remove_duplicates(conn: psycopg.Connection[Any], target: StreamTarget) -> int:
    """One pass over an existing table (once, when its key index is created). The last
    tie-break, ctid, is arbitrary: an append table records no input order (README)."""
    keys = [sql.Identifier(k) for k in target.key_names]
    ranking: list[sql.Composable] = []
    if target.cursor_name is not None:
        ranking.append(sql.SQL("{} DESC NULLS LAST").format(sql.Identifier(target.cursor_name)))
    ranking += [sql.SQL("_airbyte_emitted_at DESC NULLS LAST"), sql.SQL("ctid DESC")]
    cur = conn.execute(
        sql.SQL(
            "DELETE FROM {final} r USING (SELECT ctid AS c, row_number() OVER (PARTITION BY "
            "{keys} ORDER BY {ranking}) AS n FROM {final} WHERE {present}) d "
            "WHERE d.n > 1 AND r.ctid = d.c"
        ).format(
            final=ddl.ident(target.schema, str(target.norm_table)),
            keys=sql.SQL(", ").join(keys),
            ranking=sql.SQL(", ").join(ranking),
            present=sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(k) for k in keys),
        )
    )
    return cur.rowcount


def _drop_own_index(conn: psycopg.Connection[Any], target: StreamTarget, log: Log) -> None:
    own = index_name(target)
    if any(name == own for name, _ in _indexes(conn, target)):
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(target.schema, own)))
        log("INFO", f"Stream {target.label}: the primary key index {own} of an earlier "
                    "append_dedup sync was dropped (append keeps every record).")  # fmt: skip


def _numbered(base: str) -> Iterator[str]:
    """base, base_1, base_2, …"""
    yield base
    yield from (f"{base}_{n}" for n in itertools.count(1))
