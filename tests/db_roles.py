"""Throwaway database roles for tests that connect as a user with fewer rights.

Roles belong to the whole server, not to a test's database, so each test drops its role
(with what the role owns or was granted in that database) when it ends, and drops a role
of the same name a killed earlier run left behind before creating its own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql


@contextmanager
def throwaway_role(
    conn: psycopg.Connection, role: str, password: str, options: str = "LOGIN"
) -> Iterator[str]:
    """CREATE ROLE `role` with `password` and `options` (SQL, e.g. "LOGIN CONNECTION LIMIT
    1"); yield its name; drop it at the end, even when the test fails."""
    drop_role(conn, role)
    conn.execute(
        sql.SQL("CREATE ROLE {} {} PASSWORD {}").format(
            sql.Identifier(role), sql.SQL(options), sql.Literal(password)
        )
    )
    try:
        yield role
    finally:
        drop_role(conn, role)


def drop_role(conn: psycopg.Connection, role: str) -> None:
    """Drop `role`, if it exists, with everything it owns in `conn`'s database (a schema, the
    functions its sessions made) and the privileges it was granted there."""
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
        conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
