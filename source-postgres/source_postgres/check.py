"""`check`: can this config connect, see the configured schemas and read at least one table?

Returns a verdict instead of raising, so both envelopes report CONNECTION_STATUS FAILED with a
message a person can act on. Messages name hosts, users and schemas, never a secret.
"""

from __future__ import annotations

from typing import Any

import psycopg
from pgbyte_common.errors import PgbyteError, classify_error
from pgbyte_common.sql_names import quoted
from psycopg import sql

from source_postgres.config import SourceConfig, require_supported_method
from source_postgres.discovery import SYSTEM_SCHEMA_FILTER, discover_tables

SCHEMAS_QUERY = """
SELECT s.name, n.oid IS NOT NULL AS present,
       n.oid IS NOT NULL AND pg_catalog.has_schema_privilege(n.oid, 'USAGE') AS usable
FROM unnest(%(schemas)s::text[]) AS s(name)
LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = s.name
"""

# Tables and views in scope, readable or not (discover lists only the readable ones).
RELATIONS_COUNT = f"""
SELECT count(*) FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f') AND NOT c.relispartition
  AND (n.nspname = ANY(%(schemas)s) OR (%(all_schemas)s AND {SYSTEM_SCHEMA_FILTER}))
"""


def check(raw_config: Any) -> tuple[bool, str]:
    """(succeeded, message) for a raw config dict."""
    try:
        config = SourceConfig.from_config(raw_config)
        require_supported_method(config)
        with config.connection.connect(autocommit=True) as conn:
            return _check_connected(conn, config)
    except PgbyteError as exc:
        return False, exc.message
    except psycopg.Error as exc:
        return False, classify_error(exc, context="Checking the connection").message


def schemas_problem(conn: psycopg.Connection[Any], config: SourceConfig) -> str | None:
    """What is wrong with the configured `schemas`: some do not exist, or the user lacks USAGE
    on some; None when nothing is (or no schema is configured: every schema is read)."""
    if not config.schemas:
        return None
    user = config.connection.username
    where = f"{config.connection.host}:{config.connection.port}/{config.connection.database}"
    rows = conn.execute(SCHEMAS_QUERY, {"schemas": list(config.schemas)}).fetchall()
    missing = [name for name, present, _ in rows if not present]
    unusable = [name for name, present, usable in rows if present and not usable]
    problems = []
    if missing:
        problems.append(
            f"Schema(s) {', '.join(map(repr, missing))} do not exist in database "
            f"{config.connection.database!r}: check `schemas` in the config "
            "(names are case sensitive)."
        )
    if unusable:
        problems.append(
            f"User {user!r} lacks USAGE on schema(s) {', '.join(map(repr, unusable))} at "
            f"{where}: run GRANT USAGE ON SCHEMA {', '.join(map(quoted, unusable))} TO "
            f"{quoted(user)}; or remove them from `schemas`."
        )
    return " ".join(problems) or None


def _check_connected(conn: psycopg.Connection[Any], config: SourceConfig) -> tuple[bool, str]:
    user = config.connection.username
    where = f"{config.connection.host}:{config.connection.port}/{config.connection.database}"
    problem = schemas_problem(conn, config)
    if problem is not None:
        return False, problem
    tables = discover_tables(conn, config.schemas)
    scope = ", ".join(config.schemas) if config.schemas else "any schema"
    if not tables:
        params = {"schemas": list(config.schemas), "all_schemas": not config.schemas}
        row = conn.execute(RELATIONS_COUNT, params).fetchone()
        if not row or not row[0]:
            # As Airbyte's check: a source may be set up before its tables exist.
            return True, f"Connected to {where}; no table or view in {scope} yet."
        named = ", ".join(map(quoted, config.schemas)) if config.schemas else "<schema>"
        return False, (
            f"User {user!r} can SELECT none of the {row[0]} table(s) and view(s) in {scope} at "
            f"{where}: grant it, e.g. GRANT SELECT ON ALL TABLES IN SCHEMA {named} TO "
            f"{quoted(user)};"
        )
    first = tables[0]
    conn.execute(
        sql.SQL("SELECT FROM {}.{} LIMIT 0").format(
            sql.Identifier(first.schema), sql.Identifier(first.name)
        )
    )
    return True, f"Connected to {where}; {len(tables)} readable table(s) and view(s) in {scope}."
