"""DDL for the tutorial layout: schemas, raw and typed tables, new columns, the overwrite swap.

Every identifier goes through psycopg.sql.Identifier; nothing here builds SQL with f-strings.
"""

from __future__ import annotations

from typing import Any

import psycopg
from pgbyte_common.errors import ConfigError, TransientError
from psycopg import errors as pg_errors
from psycopg import sql

from destination_postgres.catalog import MAX_COLUMNS, META_COLUMNS, StreamTarget
from destination_postgres.naming import normalized_table, temporary
from destination_postgres.typemap import (
    PG_TYPES,
    USER_KIND,
    Column,
    common_kind,
    is_our_type,
    kind_of_existing,
    narrow_type,
)

# An overwrite's temporary tables are filled and then renamed in one go. Autovacuum would
# start on them mid-load (many inserted rows), spend CPU scanning them, and hold a lock the
# swap's RENAME must wait for until PostgreSQL cancels it (deadlock_timeout: 1 s measured).
# They are created without it; the swap gives the final tables the default back.
_NO_AUTOVACUUM = sql.SQL(" WITH (autovacuum_enabled = off, toast.autovacuum_enabled = off)")
_AUTOVACUUM_OPTIONS = sql.SQL("(autovacuum_enabled, toast.autovacuum_enabled)")


def ident(schema: str, table: str) -> sql.Composed:
    return sql.Identifier(schema, table)


def schema_exists(conn: psycopg.Connection[Any], schema: str) -> bool:
    row = conn.execute("SELECT FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    return row is not None


def ensure_schema(conn: psycopg.Connection[Any], schema: str) -> None:
    """CREATE SCHEMA only when missing: needing no CREATE-on-database right when it exists."""
    if not schema_exists(conn, schema):
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


def existing_columns(
    conn: psycopg.Connection[Any], schema: str, table: str
) -> dict[str, str] | None:
    """Column name → format_type of an existing table, or None when the table does not exist."""
    rows = conn.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')""",
        (schema, table),
    ).fetchall()
    if not rows:
        return None
    return {name: typ for name, typ in rows if name is not None}


def create_raw(
    conn: psycopg.Connection[Any], schema: str, table: str, *, autovacuum: bool = True
) -> None:
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (_airbyte_ab_id uuid DEFAULT gen_random_uuid(), "
            "_airbyte_data jsonb, _airbyte_emitted_at timestamp with time zone "
            "DEFAULT CURRENT_TIMESTAMP){}"
        ).format(ident(schema, table), _storage(autovacuum))
    )


# Columns of the tables Airbyte's own Postgres destination writes today (Destinations V2).
_AIRBYTE_V2_COLUMNS = {"_airbyte_raw_id", "_airbyte_extracted_at"}


def _refuse_airbyte_v2_layout(
    target: StreamTarget, schema: str, table: str, existing: dict[str, str]
) -> None:
    """An append into a table Airbyte's current destination made: its NOT NULL
    `_airbyte_raw_id`... would refuse our rows after we had added our columns to it. Say so
    before touching it."""
    if not set(existing) >= _AIRBYTE_V2_COLUMNS or "_airbyte_ab_id" in existing:
        return
    raise ConfigError(
        f"Stream {target.label}: {schema}.{table} was written by Airbyte's Destinations V2 "
        "(it has _airbyte_raw_id and _airbyte_extracted_at); pgbyte writes the layout of "
        "Airbyte's tutorial (_airbyte_ab_id, _airbyte_emitted_at, _airbyte_normalized_at, with "
        "_airbyte_raw_<stream> raw tables) and will not mix the two in one table. Sync the "
        "stream into another schema or with a prefix, or rename or drop the table (an overwrite "
        "sync replaces it); nothing was changed."
    )


# What the refusals of a stream's taken table names advise.
_ELSEWHERE = (
    "Sync this stream with a prefix or into another schema, set raw_data_schema to keep raw "
    "tables apart, or rename the table; nothing was changed."
)
_KINDS = {
    "v": "a view",
    "m": "a materialized view",
    "f": "a foreign table",
    "S": "a sequence",
    "i": "an index",
    "I": "an index",
    "c": "a composite type",
}


def _refuse_crossed_tables(conn: psycopg.Connection[Any], target: StreamTarget) -> None:
    """A stream table's name taken by a relation of another kind (a view), or a stream whose
    raw table is another stream's typed table, or whose typed table is another's raw table: a
    stream named `_airbyte_raw_z` beside z (a source replicating a database Airbyte writes
    to). Written as usual, the overwrite swapped z's raw records away or the append added
    typed columns to them; a catalog naming both streams is refused when read, two
    connections are caught here, before anything is changed."""
    finals = [(target.raw_schema, target.raw_table)]
    if target.norm_table is not None:
        finals.append((target.schema, target.norm_table))
    for schema, name in finals:
        found = relation(conn, schema, name)
        if found is not None and found[0] not in ("r", "p"):
            kind = _KINDS.get(found[0], "not a table")
            raise ConfigError(
                f"Stream {target.label}: {schema}.{name}, a table of this stream, exists and is "
                f"{kind}. Rename or drop it, or sync the stream with a prefix or into another "
                "schema; nothing was changed."
            )
    raw = existing_columns(conn, target.raw_schema, target.raw_table)
    # A typed table has _airbyte_normalized_at, and _airbyte_data too when its stream has a
    # property of that name (a stream copied from Airbyte's own raw table).
    if raw is not None and ("_airbyte_data" not in raw or "_airbyte_normalized_at" in raw):
        why = "it has no _airbyte_data column" if "_airbyte_data" not in raw else (
            "it has _airbyte_normalized_at, a typed table's column")  # fmt: skip
        raise ConfigError(
            f"Stream {target.label}: {target.raw_schema}.{target.raw_table}, where its raw "
            f"records go, exists and is no raw table ({why}: the typed table of a stream "
            f"named {target.raw_table}?). {_ELSEWHERE}"
        )
    if target.norm_table is None:
        return
    typed = existing_columns(conn, target.schema, target.norm_table)
    if typed is not None and "_airbyte_data" in typed and "_airbyte_normalized_at" not in typed:
        change = "replace" if target.overwrite else "add typed columns to"
        raise ConfigError(
            f"Stream {target.label}: its typed table {target.schema}.{target.norm_table} exists "
            "and is a raw table (_airbyte_ab_id, _airbyte_data, _airbyte_emitted_at: another "
            f"stream's raw records?), which this {target.mode} would {change}. {_ELSEWHERE}"
        )


def create_normalized(
    conn: psycopg.Connection[Any],
    schema: str,
    table: str,
    columns: list[Column],
    hashid: str,
    *,
    autovacuum: bool = True,
    extra: tuple[tuple[str, str], ...] = (),
    ab_id_type: str = "uuid",
) -> None:
    """The typed table; `extra`: (name, SQL type) of columns after the meta columns;
    `ab_id_type`: of `_airbyte_ab_id` (ab_id_type() of the table its ids come from)."""
    # A user's narrower type (typemap.Column.narrow, from format_type()) holds on dedup's
    # typed stage too, so that its guarded INSERT NULLs what the table would refuse.
    parts = [
        sql.SQL("{} {}").format(
            sql.Identifier(c.name), sql.SQL(c.narrow) if c.narrow else c.pg_type
        )
        for c in columns
    ]
    parts += [
        sql.SQL("_airbyte_ab_id {}").format(sql.SQL(ab_id_type)),
        sql.SQL("_airbyte_emitted_at timestamp with time zone"),
        sql.SQL("_airbyte_normalized_at timestamp with time zone DEFAULT now()"),
        sql.SQL("{} text").format(sql.Identifier(hashid)),
    ]
    parts += [sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in extra]
    conn.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}){}").format(
            ident(schema, table), sql.SQL(", ").join(parts), _storage(autovacuum)
        )
    )


def ab_id_type(columns: dict[str, str] | None) -> str:
    """The type of a table's `_airbyte_ab_id` (existing_columns), for a typed table or stage
    filled from it: uuid (ours), or the character type of a table Airbyte's normalization
    made (its ids are text: PostgreSQL casts a uuid to text on INSERT, never text to uuid)."""
    typ = (columns or {}).get("_airbyte_ab_id", "uuid")
    return typ if typ == "text" or typ.startswith("character varying") else "uuid"


def _storage(autovacuum: bool) -> sql.Composable:
    return sql.SQL("") if autovacuum else _NO_AUTOVACUUM


def drop(conn: psycopg.Connection[Any], schema: str, table: str, *, cascade: bool) -> None:
    conn.execute(
        sql.SQL("DROP TABLE IF EXISTS {}{}").format(
            ident(schema, table), sql.SQL(" CASCADE" if cascade else "")
        )
    )


# The advisory-lock key space of table preparation ("pgbp"); a key per schema and per table.
_PREPARE_LOCK = 0x70676270


def lock_for_prepare(conn: psycopg.Connection[Any], target: StreamTarget) -> None:
    """Wait for any other write preparing the same tables, until this transaction ends. Two
    first writes of one stream ran CREATE ... IF NOT EXISTS at once, which PostgreSQL does not
    make safe: one failed on pg_type's unique index (so could a new column both add, or a key
    index both build). A missing schema is made first, in a transaction of its own under a
    lock of the schema's: held that briefly, a slow preparation (a column retyped, a refill,
    a table lock a reader holds) delays only writes of the same tables. Keys in sorted order:
    no two writes wait on each other."""
    missing = [s for s in sorted({target.raw_schema, target.schema}) if not schema_exists(conn, s)]
    if missing:
        _advisory_xact_locks(conn, [sql.Identifier(name) for name in missing])
        for name in missing:
            ensure_schema(conn, name)
        conn.commit()
    pairs = [pair for pair in (target.load_raw, target.load_norm) if pair is not None]
    _advisory_xact_locks(conn, [ident(*pair) for pair in pairs])


def _advisory_xact_locks(conn: psycopg.Connection[Any], keys: list[sql.Composable]) -> None:
    names = sorted({k.as_string(conn) for k in keys})  # unnest keeps this order: one round trip
    conn.execute(
        "SELECT count(pg_advisory_xact_lock(%s, hashtext(k))) FROM unnest(%s::text[]) k",
        (_PREPARE_LOCK, names),
    )


def prepare(conn: psycopg.Connection[Any], target: StreamTarget) -> list[str]:
    """Create what the stream loads into; returns the names of columns added to an old table.

    overwrite: fresh temporary tables (leftovers of a killed run are dropped first).
    append/append_dedup: the final tables, created when missing; properties new in this
    sync become new columns. A column whose declared type changed is retyped to one that holds
    both (typemap.common_kind); a column once widened to numeric stays numeric, and columns of
    types pgbyte does not create are left as the user made them. New and retyped columns are
    then typed again from the rows' raw records (target.refill: refill.py).
    """
    _refuse_crossed_tables(conn, target)
    ensure_schema(conn, target.raw_schema)
    raw_schema, raw_table = target.load_raw
    if target.overwrite:
        _drop_own_temporary(conn, raw_schema, raw_table, target)
    create_raw(conn, raw_schema, raw_table, autovacuum=not target.overwrite)
    if target.overwrite:
        _mark_temporary(conn, raw_schema, raw_table)
    norm = target.load_norm
    if norm is None:
        typed = target.schema, normalized_table(target.name)
        if not target.overwrite and existing_columns(conn, *typed) is not None:
            target.behind_warn = _behind(*typed)
        return []
    schema, table = norm
    ensure_schema(conn, schema)
    if target.overwrite:
        _drop_own_temporary(conn, schema, table, target)
    existing = existing_columns(conn, schema, table)
    if existing is not None:
        _refuse_airbyte_v2_layout(target, schema, table, existing)
    if existing is None:
        # A raw table Airbyte's normalization made keeps text ids: its typed rows, rebuilt
        # from it below, take them as they are.
        ids = "uuid" if target.overwrite else ab_id_type(existing_columns(conn, *target.load_raw))
        create_normalized(conn, schema, table, target.columns, target.hashid,
                          autovacuum=not target.overwrite, ab_id_type=ids)  # fmt: skip
        if target.overwrite:
            _mark_temporary(conn, schema, table)
        else:
            target.typed_created = True  # rawonly.py drops it again if its rows prove too big
            # append/append_dedup: a raw table with records and no typed one (dropped by
            # hand, or disable_type_dedupe turned off) gets its typed rows rebuilt from them
            found = conn.execute(
                sql.SQL("SELECT EXISTS (SELECT FROM {})").format(ident(raw_schema, raw_table))
            ).fetchone()
            target.rebuild_typed = bool(found and found[0])
        return []
    if _too_many_columns(conn, target, schema, table, existing):
        return []
    added: list[str] = []
    refill: set[str] = set()  # the columns added or retyped
    for i, col in enumerate(target.columns):
        if col.name in existing:
            old = kind_of_existing(existing[col.name])
            kind = common_kind(old, col.kind) if is_our_type(existing[col.name]) else old
            if kind != old:
                # The stream's type changed since the table was made: retype the column to
                # one that keeps the old rows' values and takes the new ones (a table rewrite,
                # once per change — what Airbyte's soft reset achieves).
                _retype(conn, schema, table, col.name, kind)
                added.append(f"{col.name} (now {PG_TYPES[kind]})")
                refill.add(col.name)
            # The user's narrower type, as long as the column keeps it (not retyped just now).
            kept = kind == old and kind in ("bigint", "text")
            narrow = narrow_type(existing[col.name]) if kept else None
            if kind != col.kind or narrow:
                user_type = existing[col.name] if kind == USER_KIND else None
                integral = col.kind == "bigint" and kind == "numeric"  # declared integer
                target.columns[i] = Column(key=col.key, name=col.name, kind=kind,
                                           user_type=user_type, narrow=narrow,
                                           integral=integral)  # fmt: skip
            continue
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                ident(schema, table), sql.Identifier(col.name), col.pg_type
            )
        )
        added.append(col.name)
        refill.add(col.name)
    for meta, typ in (
        ("_airbyte_ab_id", "uuid"),
        ("_airbyte_emitted_at", "timestamp with time zone"),
        ("_airbyte_normalized_at", "timestamp with time zone"),
        (target.hashid, "text"),
    ):
        if meta not in existing:
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                    ident(schema, table), sql.Identifier(meta), sql.SQL(typ)
                )
            )
    if existing.get("_airbyte_ab_id") == "uuid":  # ours: a raw record per row (refill.py)
        target.refill = [c for c in target.columns if c.name in refill]
    return added


def _too_many_columns(
    conn: psycopg.Connection[Any],
    target: StreamTarget,
    schema: str,
    table: str,
    existing: dict[str, str],
) -> bool:
    """True, with the stream made raw only for this write, when the columns this sync adds
    would take its typed table past PostgreSQL's 1,600 (catalog.py checks a new table's; here
    an old table's, whose dropped columns PostgreSQL still counts). Every later sync failed on
    the ALTER TABLE ("tables can have at most 1600 columns"), naming no table."""
    new = [c.name for c in target.columns if c.name not in existing]
    new += [m for m in (*META_COLUMNS, target.hashid) if m not in existing]
    if not new:
        return False
    row = conn.execute(
        "SELECT count(*) FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0",
        (ident(schema, table).as_string(conn),),
    ).fetchone()
    used = int(row[0]) if row else 0
    if used + len(new) <= MAX_COLUMNS:
        return False
    target.typed_note = target.refused_warn = (
        f"its typed table {schema}.{table} has {used} columns (PostgreSQL counts dropped ones "
        f"too) and this sync's schema adds {len(new)}, past PostgreSQL's limit of "
        f"{MAX_COLUMNS} columns per table, so its records are kept in the raw table only; "
        f"drop {schema}.{table} to have the next sync rebuild it from the raw table with the "
        "stream's current columns"
    )
    target.norm_table = None
    target.rebuild_typed = False
    return True


# An overwrite's temporaries carry this comment: a relation of that name without it is not
# pgbyte's (a user's table, say), and is never dropped to make room.
TEMPORARY_COMMENT = "pgbyte: an overwrite sync's table, swapped in when the stream completes"


def _mark_temporary(conn: psycopg.Connection[Any], schema: str, table: str) -> None:
    conn.execute(
        sql.SQL("COMMENT ON TABLE {} IS {}").format(
            ident(schema, table), sql.Literal(TEMPORARY_COMMENT)
        )
    )


def _behind(schema: str, table: str) -> str:
    """The WARN of an append/append_dedup write that leaves an existing typed table out
    (disable_type_dedupe, a catalog too wide to type): it will lack these records, and no later
    write types them (a catch-up by _airbyte_ab_id was tried and dropped: it put older records
    of a key back where merges had tied, and raced concurrent writes); a missing typed table is
    rebuilt from every raw record."""
    return (
        f"its typed table {schema}.{table} gets none of this write's records (written to the "
        f"raw table only); once typing is back on, drop {schema}.{table} to have the next "
        "sync rebuild it from the raw table"
    )


def relation(
    conn: psycopg.Connection[Any], schema: str, name: str
) -> tuple[str, str | None, list[str]] | None:
    """(relkind, comment, reloptions) of the relation of that name, None when there is none."""
    row = conn.execute(
        "SELECT c.relkind, obj_description(c.oid, 'pg_class'), coalesce(c.reloptions, '{}') "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        (schema, name),
    ).fetchone()
    return (row[0], row[1], list(row[2])) if row else None


def _is_own_temporary(found: tuple[str, str | None, list[str]] | None) -> bool:
    """Marked by TEMPORARY_COMMENT; or unmarked with autovacuum off, as an overwrite of a
    version before the mark left it when killed."""
    if found is None or found[0] != "r":
        return False
    _, comment, options = found
    return comment == TEMPORARY_COMMENT or (comment is None and "autovacuum_enabled=off" in options)


def _drop_own_temporary(
    conn: psycopg.Connection[Any], schema: str, table: str, target: StreamTarget
) -> None:
    """Drop the temporary a killed write left; refuse when the name holds anything else."""
    found = relation(conn, schema, table)
    if found is None:
        return
    if not _is_own_temporary(found):
        raise ConfigError(
            f"Stream {target.label}: an overwrite sync loads into {schema}.{table} before "
            f"swapping it in, and a relation of that name exists that pgbyte did not make. "
            "Rename or drop it (or give the stream a prefix); nothing was written."
        )
    drop(conn, schema, table, cascade=True)


_CASCADES = "drop cascades to "


def final_tables(target: StreamTarget) -> list[tuple[str, str]]:
    """(schema, table) of the tables an overwrite swap replaces: the raw one, the typed one."""
    pairs = [(target.raw_schema, target.raw_table)]
    if target.norm_table is not None:
        pairs.append((target.schema, target.norm_table))
    return pairs


def swap(conn: psycopg.Connection[Any], target: StreamTarget, *, cascade: bool) -> list[str]:
    """Replace the final tables by the loaded temporaries (call inside one transaction);
    returns what drop_cascade dropped with them (PostgreSQL's notices: "drop cascades to view
    v"), for the log. A lock another session holds on them: LockNotAvailable (lock_wait)."""
    pairs = final_tables(target)
    cascaded: list[str] = []

    def notice(diag: psycopg.errors.Diagnostic) -> None:
        # One object: the message names it; several: "… to N other objects", the detail lines.
        lines = (diag.message_detail or diag.message_primary or "").splitlines()
        cascaded.extend(x.removeprefix(_CASCADES).strip() for x in lines if x.startswith(_CASCADES))

    if cascade:  # the notices name what goes (a role may have raised client_min_messages)
        conn.execute("SET LOCAL client_min_messages = notice")
        conn.add_notice_handler(notice)
    try:
        for schema, final in pairs:
            _replace(conn, schema, final, cascade=cascade)
    finally:
        if cascade:
            conn.remove_notice_handler(notice)
    return cascaded


def _replace(conn: psycopg.Connection[Any], schema: str, final: str, *, cascade: bool) -> None:
    """Drop the final table and rename its loaded temporary into place."""
    try:
        drop(conn, schema, final, cascade=cascade)
    except pg_errors.DependentObjectsStillExist as exc:
        # The DETAIL names them ("view v depends on table t", one line each); the error's
        # last line is only PostgreSQL's HINT to use CASCADE.
        detail = "; ".join((exc.diag.message_detail or "").split("\n")).strip()
        raise ConfigError(
            f"Cannot replace {schema}.{final}: other objects depend on it"
            f"{f' ({detail})' if detail else ''}. Drop them, or set drop_cascade: true "
            "to have overwrite syncs drop them too. The previous tables are unchanged."
        ) from None
    conn.execute(
        sql.SQL("ALTER TABLE {} RENAME TO {}").format(
            ident(schema, temporary(final)), sql.Identifier(final)
        )
    )
    conn.execute(
        sql.SQL("ALTER TABLE {} RESET {}").format(ident(schema, final), _AUTOVACUUM_OPTIONS)
    )
    conn.execute(sql.SQL("COMMENT ON TABLE {} IS NULL").format(ident(schema, final)))


# The advisory-lock key space of overwrite temporaries ("pgbo"); a key per temporary table,
# the hash of its qualified name (parameters: _TEMPORARIES_LOCK, schema, table).
_TEMPORARIES_LOCK = 0x7067626F
_TEMPORARY_KEY = "%s, hashtext(format('%%I.%%I', %s::text, %s::text))"


def claim_temporaries(conn: psycopg.Connection[Any], target: StreamTarget) -> None:
    """Hold, for the whole write (session locks), the right to an overwrite stream's temporary
    tables: their names are fixed per target, so a second write into the same tables would
    drop the first's live temporaries as a killed run's leftovers, failing both."""
    for pair in (target.load_raw, target.load_norm):
        if pair is None:
            continue
        row = conn.execute(
            f"SELECT pg_try_advisory_lock({_TEMPORARY_KEY})",
            (_TEMPORARIES_LOCK, *pair),
        ).fetchone()
        if not (row and row[0]):
            raise TransientError(
                f"Stream {target.label}: another write is loading {pair[0]}.{pair[1]} "
                "(overwrite) right now — or a killed one's session still holds it: see "
                "pg_locks (locktype advisory) and pg_terminate_backend. Run this sync again "
                "once it has ended. Nothing was written."
            )


_ORPHAN_TEMPORARIES = """
SELECT n.nspname, c.relname FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY(%s) AND c.relkind = 'r' AND obj_description(c.oid, 'pg_class') = %s
ORDER BY 1, 2
"""


def drop_orphan_temporaries(conn: psycopg.Connection[Any], schemas: set[str]) -> list[str]:
    """DROP the overwrite temporaries in these schemas whose write is gone (nobody holds their
    claim_temporaries lock: a killed write's, of a stream perhaps no longer synced, which its
    own next write would have dropped); returns their names. Live writes' are kept, and so are
    one another session is reading and another role's (left for a later write), each dropped
    in a short transaction."""
    rows = conn.execute(_ORPHAN_TEMPORARIES, (sorted(schemas), TEMPORARY_COMMENT)).fetchall()
    conn.commit()
    dropped = []
    for schema, table in rows:
        params = (_TEMPORARIES_LOCK, schema, table)
        free = conn.execute(f"SELECT pg_try_advisory_lock({_TEMPORARY_KEY})", params).fetchone()
        if not (free and free[0]):
            continue
        try:
            conn.execute("SET LOCAL lock_timeout = '200ms'")
            drop(conn, schema, table, cascade=True)
            conn.commit()
            dropped.append(f"{schema}.{table}")
        except (psycopg.errors.LockNotAvailable, psycopg.errors.InsufficientPrivilege):
            conn.rollback()  # read by someone now, or another role's: left for later
        finally:
            conn.execute(f"SELECT pg_advisory_unlock({_TEMPORARY_KEY})", params)
            conn.commit()
    return dropped


def drop_temporaries(conn: psycopg.Connection[Any], target: StreamTarget) -> None:
    """An overwrite's temporaries, after a failure: only relations pgbyte made (marked)."""
    if not target.overwrite:
        return
    pairs = [target.load_raw, target.load_norm]
    if target.refused_table is not None:  # given up (rawonly.py): the rollback brought it back
        pairs.append((target.schema, temporary(target.refused_table)))
    for pair in pairs:
        if pair is not None and _is_own_temporary(relation(conn, *pair)):
            drop(conn, *pair, cascade=True)


def _retype(conn: psycopg.Connection[Any], schema: str, table: str, name: str, kind: str) -> None:
    column = sql.Identifier(name)
    using = {"jsonb": sql.SQL("to_jsonb({})"), "text": sql.SQL("{}::text")}.get(kind)
    _alter_type(conn, schema, table, name, kind,
                (using or sql.SQL("{}::" + PG_TYPES[kind])).format(column))  # fmt: skip


def _alter_type(
    conn: psycopg.Connection[Any], schema: str, table: str, name: str, kind: str,
    using: sql.Composable | None = None,
) -> None:  # fmt: skip
    """ALTER a column's type; a view or rule on it (PostgreSQL then refuses) is a clear error."""
    statement = sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {}").format(
        ident(schema, table), sql.Identifier(name), sql.SQL(PG_TYPES[kind])
    )
    if using is not None:
        statement += sql.SQL(" USING {}").format(using)
    try:
        conn.execute(statement)
    except pg_errors.FeatureNotSupported as exc:
        first = str(exc).strip().splitlines()[0]
        detail = (exc.diag.message_detail or first).rstrip(".")
        if "view or rule" in str(exc):
            why = (f" while a view or rule uses it ({detail}). Drop the view, sync, then "
                   "create it again.")  # fmt: skip
        else:  # a policy, a generated column, …
            why = f": {first} ({detail})."
        raise ConfigError(
            f"Column {name} of {schema}.{table} must become {PG_TYPES[kind]} (the stream's "
            f"values changed type) and PostgreSQL refuses{why} Nothing after the last echoed "
            "STATE was committed."
        ) from None
    except _USES_OF_THE_OLD_TYPE as exc:
        # An expression index, a CHECK or a default of the user's on the column, written for
        # its old type (abs(v), v > 0; an operator not found is UndefinedFunction too): a
        # system_error naming no column or table before.
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(
            f"Column {name} of {schema}.{table} must become {PG_TYPES[kind]} (the stream's "
            f"values changed type) and PostgreSQL refuses: {first}. An index, CHECK "
            "constraint or default on the table uses the column as its old type: drop or "
            "change it, then sync again. Nothing after the last echoed STATE was committed."
        ) from None


_USES_OF_THE_OLD_TYPE = (
    pg_errors.UndefinedFunction,
    pg_errors.DatatypeMismatch,
    pg_errors.CheckViolation,
)


def widen_to_numeric(conn: psycopg.Connection[Any], target: StreamTarget, col: Column) -> None:
    schema, table = target.load_norm  # type: ignore[misc]
    _alter_type(conn, schema, table, col.name, "numeric")
