"""`check`: connect, make sure the target schema exists, create and drop a probe table."""

from __future__ import annotations

import secrets
from typing import Any

import psycopg
from pgbyte_common.errors import ConfigError, PgbyteError, classify_error
from pgbyte_common.sql_names import quoted
from psycopg import errors as pg_errors
from psycopg import sql

from destination_postgres import ddl
from destination_postgres.config import DestinationConfig


def run_check(config: dict[str, Any]) -> tuple[bool, str | None]:
    """(succeeded, message). The message is written for a person and never holds a secret."""
    try:
        cfg = DestinationConfig.from_dict(config)
        with cfg.settings.connect(autocommit=True) as conn:
            for schema in dict.fromkeys([cfg.schema, cfg.raw_data_schema or cfg.schema]):
                _probe(conn, schema, cfg.settings.username)
    except PgbyteError as exc:
        return False, exc.message
    except Exception as exc:  # check reports, never raises
        return False, classify_error(exc, context="Checking the destination failed").message
    return True, None


def _probe(conn: psycopg.Connection[Any], schema: str, username: str) -> None:
    table = f"_airbyte_connection_test_{secrets.token_hex(6)}"
    try:
        ddl.ensure_schema(conn, schema)
        conn.execute(
            sql.SQL("CREATE TABLE {} (id integer, data jsonb)").format(
                sql.Identifier(schema, table)
            )
        )
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, table)))
    except pg_errors.InsufficientPrivilege:
        if not ddl.schema_exists(conn, schema):  # CREATE SCHEMA refused: a schema GRANT can't help
            database = conn.info.dbname
            raise ConfigError(
                f"User {username!r} may not create schema {schema!r} in database {database!r}: "
                f"create it for the user (CREATE SCHEMA {quoted(schema)} AUTHORIZATION "
                f"{quoted(username)}), or let it create schemas (GRANT CREATE ON DATABASE "
                f"{quoted(database)} TO {quoted(username)}), or choose an existing schema."
            ) from None
        raise ConfigError(
            f"User {username!r} may not create tables in schema {schema!r}: grant it with "
            f"GRANT USAGE, CREATE ON SCHEMA {quoted(schema)} TO {quoted(username)}, or choose "
            "another schema."
        ) from None
    except pg_errors.ReadOnlySqlTransaction:
        conn.rollback()
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        if row and row[0]:
            raise ConfigError(
                "The server is a read-only standby: point the destination at the primary."
            ) from None
        raise ConfigError(
            f"Transactions of user {username!r} are read-only (default_transaction_read_only "
            f"is on for the role, the database or the server): ALTER ROLE {quoted(username)} SET "
            "default_transaction_read_only = off, or use another role."
        ) from None
