"""Shared stages: a batch parsed on the second connection, waiting for the first to load it.

An append/append_dedup batch is COPYed on the second connection into a new unlogged table
`_pgbyte_stage_<token>_<n>` in the stream's raw schema, committed at once (it holds no user
data: the records reach the stream's tables only when the first connection moves them and
commits). The first connection moves it in the open transaction a STATE commits; the stage is
dropped after that commit, in a short transaction of its own that waits only briefly for
another session's lock (a pg_dump, a VACUUM, a curious SELECT) and otherwise leaves it for the
next commit, so no lock of the write's transaction blocks anyone.

A write claims its random token with a session advisory lock for as long as it runs. A stage
whose token nobody holds was left by a write that is gone (killed, or its server connection
lost): the next write drops it. Liveness by advisory lock, not by backend pid, holds behind
connection poolers too (their pids are not the server's).
"""

from __future__ import annotations

import secrets
from typing import Any

import psycopg
from psycopg import sql

from destination_postgres import ddl
from destination_postgres.loader import (
    DATA_STAGE,
    HASHID_COLUMN,
    REFUSED,
    FastPathRefused,
    Prehashed,
    copy_fast_rows,
    hashid_expr,
)

PREFIX = "_pgbyte_stage_"
COMMENT = "pgbyte: one batch of a running write (dropped once loaded)"
LOCK_CLASS = 0x70676279  # the advisory-lock key space of pgbyte stages ("pgby")
LOCK_WAIT = "200ms"  # how long a DROP waits for another session's lock before leaving it

Stage = tuple[str, str]  # (schema, table)


def new_token() -> int:
    """A write's token: a positive int4, as the two-key advisory lock functions take."""
    return secrets.randbelow(2**31 - 2) + 1


def claim(conn: psycopg.Connection[Any], token: int) -> None:
    """Hold the token's session advisory lock (until the connection closes)."""
    conn.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_CLASS, token))


def name(token: int, seq: int) -> str:
    return f"{PREFIX}{token}_{seq}"


def fill(conn: psycopg.Connection[Any], batch: Any, stage: Stage) -> sql.Composable:
    """On the second connection: a new unlogged stage holding the batch's canonical rows,
    committed. Raises FastPathRefused (nothing left behind) when Postgres refuses a row."""
    table: sql.Composable = ddl.ident(*stage)
    # The columns of the session's data stage (loader.setup_session), and from PostgreSQL 12
    # on (generated columns) each row's hashid, computed here: the first connection, which
    # moves the batch into the tables, is the write's bottleneck; this one waits for it.
    hashid = sql.SQL("")
    if conn.info.server_version >= 120000:
        table = Prehashed([table])
        hashid = sql.SQL(", {} text GENERATED ALWAYS AS ({}) STORED").format(
            sql.Identifier(HASHID_COLUMN), hashid_expr(sql.Identifier("_airbyte_data"))
        )
    try:
        conn.execute(
            sql.SQL("CREATE UNLOGGED TABLE {} (LIKE {}{}) WITH (autovacuum_enabled = off)").format(
                table, DATA_STAGE, hashid
            )
        )
        conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(table, sql.Literal(COMMENT)))
        copy_fast_rows(conn, batch, table)
    except REFUSED as exc:
        conn.rollback()
        raise FastPathRefused(str(exc)) from None
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    return table


def drop(conn: psycopg.Connection[Any], stages: list[Stage]) -> list[Stage]:
    """DROP these stages (those that exist) on an idle connection, in short transactions that
    wait at most LOCK_WAIT for another session's lock; returns the stages left for later."""
    if not stages:
        return []
    try:
        _drop_now(conn, stages)
        return []
    except psycopg.errors.LockNotAvailable:
        conn.rollback()
    left = []
    for stage in stages:  # one at a time: drop all but the locked ones
        try:
            _drop_now(conn, [stage])
        except psycopg.errors.LockNotAvailable:
            conn.rollback()
            left.append(stage)
    return left


def _drop_now(conn: psycopg.Connection[Any], stages: list[Stage]) -> None:
    conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_WAIT)))
    for stage in stages:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ddl.ident(*stage)))
    conn.commit()


def drop_orphans(conn: psycopg.Connection[Any], schemas: set[str], own: int | None) -> list[str]:
    """DROP the stages in these schemas whose write is gone (nobody holds their token); returns
    their names. Stages of live writes, and of this one (`own`), are kept."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname, substring(c.relname FROM %s)::int8 FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = ANY(%s) AND c.relkind = 'r' AND c.relpersistence = 'u' "
        "AND c.relname ~ %s AND obj_description(c.oid, 'pg_class') = %s ORDER BY 1, 2",
        (f"^{PREFIX}([0-9]+)_", sorted(schemas), f"^{PREFIX}[0-9]{{1,10}}_[0-9]+$", COMMENT),
    ).fetchall()  # fmt: skip
    orphans: list[Stage] = []
    for schema, table, token in rows:
        if token == own or not 0 < token < 2**31:
            continue
        free = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, token)).fetchone()
        if free and free[0]:
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_CLASS, token))
            orphans.append((schema, table))
    conn.commit()
    left = drop(conn, orphans)
    return [table for schema, table in orphans if (schema, table) not in left]
