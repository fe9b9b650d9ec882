"""The read's table locks, taken as pg_dump takes them: ACCESS SHARE on every relation to read,
before the read's snapshot starts, held to its end.

TRUNCATE and table-rewriting ALTER TABLEs are not MVCC-safe: a snapshot older than them sees the
table empty. Locked before the snapshot, a later stream's table cannot be emptied or rewritten
from the read's view while earlier streams are read: such a command waits for the read to end.
The cost, as with pg_dump: that command waits, and queries queued behind it wait too.

What is locked ahead is looked up first, in autocommit (a query inside the read's transaction
would start its snapshot): plain and partitioned tables and views the user may SELECT.
Materialized views and foreign tables cannot be locked (LOCK refuses them); they are locked when
their stream is read, as every relation was before. NOWAIT: a relation someone holds a
conflicting lock on now (a long ALTER, a maintenance LOCK) is not waited for here, where the
read would hang before its first stream; it too is locked when its stream is read.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from source_postgres.catalog import ConfiguredStream

LOCKABLE_QUERY = """
SELECT n.nspname, c.relname
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v')
  AND pg_catalog.has_table_privilege(c.oid, 'SELECT')
  AND ((n.nspname, c.relname) IN (SELECT * FROM unnest(%(schemas)s::text[], %(names)s::text[]))
       OR (c.relname = ANY(%(bare)s::text[])
           AND (cardinality(%(configured)s::text[]) = 0 OR n.nspname = ANY(%(configured)s))))
ORDER BY 1, 2
"""


def lockable_relations(
    conn: psycopg.Connection[Any], streams: list[ConfiguredStream], configured: tuple[str, ...]
) -> list[tuple[str, str]]:
    """(schema, name) of the streams' relations LOCK takes, in autocommit (no snapshot yet). A
    stream without namespace may be any configured schema's relation of its name: each is."""
    named = [(s.namespace, s.name) for s in streams if s.namespace is not None]
    params = {
        "schemas": [n for n, _ in named],
        "names": [t for _, t in named],
        "bare": sorted({s.name for s in streams if s.namespace is None}),
        "configured": list(configured),
    }
    return [(str(n), str(t)) for n, t in conn.execute(LOCKABLE_QUERY, params).fetchall()]


def lock_tables(conn: psycopg.Connection[Any], names: list[tuple[str, str]]) -> None:
    """LOCK them all at once; if refused (a relation gone or locked by someone meanwhile), one
    by one, skipping those refused. Out of lock space (max_locks_per_transaction), none: the
    read then takes its locks as it goes, as it did before."""
    targets = [sql.Identifier(n, t) for n, t in names]
    if not targets or _lock(conn, targets) is not False or len(targets) == 1:
        return  # all locked, or the lock table is full, or the one relation was refused
    for target in targets:
        if _lock(conn, [target]) is None:  # the lock table is full: no more ahead
            return


def _lock(conn: psycopg.Connection[Any], targets: list[sql.Composable]) -> bool | None:
    """LOCK TABLE `targets` under a savepoint: True, or False when refused (nothing locked),
    or None when the server's lock table is full (give up locking ahead)."""
    conn.execute("SAVEPOINT pgbyte_lock")
    try:
        conn.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE NOWAIT").format(sql.SQL(", ").join(targets))
        )
    except psycopg.DatabaseError as exc:
        if conn.broken:
            raise
        conn.execute("ROLLBACK TO SAVEPOINT pgbyte_lock")
        return None if isinstance(exc, pg_errors.OutOfMemory) else False
    conn.execute("RELEASE SAVEPOINT pgbyte_lock")
    return True
