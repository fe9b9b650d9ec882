"""Discovery: every table, view, materialized view, partitioned and foreign table the user can
SELECT in the configured schemas, with typed columns and primary keys.

Two catalog queries whatever the number of tables (one for relations and columns, one for
pg_type), so discovering 1,000 tables takes about as long as discovering one. Column privileges
count: a column the user cannot SELECT is left out; a relation with no readable column is too.
A partition is left out when one of its ancestors is listed (its rows are read through it); one
whose ancestors are all outside the configured schemas or unreadable by the user is listed
itself, and a catalog may name any partition (Airbyte's connector lists them all).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from source_postgres.type_mapping import ColumnMapping, PgType, TypeCatalog, column_schema

SYSTEM_SCHEMA_FILTER = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'"
)

PARENT_SCHEMA_FILTER = SYSTEM_SCHEMA_FILTER.replace("n.nspname", "pn.nspname")

# Per relation once (the OFFSET 0 keeps the planner from folding the subquery into the join,
# on every version, as MATERIALIZED would from 12 on), then its columns: computed per column
# row, the column count made discovery quadratic in a table's width (1,600 columns: seconds).
RELATIONS_QUERY = f"""
SELECT r.nspname, r.relname, r.relkind, r.oid,
       a.attname, a.atttypid, a.atttypmod, a.attnotnull,
       r.pk_cols, r.all_columns, r.has_children, r.table_select, a.attndims
FROM (
    SELECT n.nspname, c.relname, c.relkind, c.oid,
           (SELECT array_agg(ka.attname ORDER BY k.ord)
            FROM pg_catalog.pg_index i
            CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_catalog.pg_attribute ka ON ka.attrelid = i.indrelid AND ka.attnum = k.attnum
            WHERE i.indrelid = c.oid AND i.indisprimary) AS pk_cols,
           (SELECT count(*) FROM pg_catalog.pg_attribute x
            WHERE x.attrelid = c.oid AND x.attnum > 0 AND NOT x.attisdropped) AS all_columns,
           EXISTS (SELECT 1 FROM pg_catalog.pg_inherits h WHERE h.inhparent = c.oid)
               AS has_children,
           pg_catalog.has_table_privilege(c.oid, 'SELECT') AS table_select
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f')
      AND (NOT c.relispartition OR %(only_schemas)s::text[] IS NOT NULL OR NOT EXISTS (
          SELECT 1 FROM pg_catalog.pg_partition_ancestors(c.oid) AS x(relid)
          JOIN pg_catalog.pg_class pc ON pc.oid = x.relid
          JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
          WHERE pc.oid <> c.oid
            AND (pn.nspname = ANY(%(schemas)s) OR (%(all_schemas)s AND {PARENT_SCHEMA_FILTER}))
            AND pg_catalog.has_schema_privilege(pn.oid, 'USAGE')
            AND pg_catalog.has_any_column_privilege(pc.oid, 'SELECT')))
      AND (n.nspname = ANY(%(schemas)s) OR (%(all_schemas)s AND {SYSTEM_SCHEMA_FILTER}))
      AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')
      AND (%(only_schemas)s::text[] IS NULL OR (n.nspname, c.relname) IN (
          SELECT * FROM unnest(%(only_schemas)s::text[], %(only_names)s::text[])))
    OFFSET 0
) r
JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE pg_catalog.has_column_privilege(r.oid, a.attnum, 'SELECT')
ORDER BY r.nspname, r.relname, a.attnum
"""

TYPES_QUERY = """
SELECT t.oid, t.typname, t.typtype, t.typcategory, t.typelem, t.typbasetype, t.typtypmod
FROM pg_catalog.pg_type t
"""


@dataclass(frozen=True)
class Column:
    name: str
    mapping: ColumnMapping
    nullable: bool
    dims: int = 0  # an array column's declared dimensions (int[][]: 2; 0 when undeclared)


@dataclass(frozen=True)
class Table:
    """One readable relation."""

    schema: str
    name: str
    kind: str  # pg_class.relkind
    oid: int
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    # Whether `columns` is every column of the relation (none hidden by column privileges).
    complete: bool = True
    # Whether other tables INHERIT from it: `FROM parent` then reads their rows too.
    has_children: bool = False
    # SELECT on the whole table, not only on columns: system columns (ctid, xmin) need it.
    table_select: bool = True

    @property
    def ctid_chunkable(self) -> bool:
        """Whether all of its rows live in its own blocks, so block (ctid) ranges can cover them.

        Not a partitioned table, a materialized view or a table with INHERITS children: the
        rows `FROM parent` reads from its children sit at ctids of the children's blocks,
        beyond the parent's own block count. Nor a table the role may read only some columns
        of: ctid is a column it has no privilege on.
        """
        return self.kind == "r" and not self.has_children and self.table_select

    def json_schema(self) -> dict[str, Any]:
        return {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                c.name: column_schema(c.mapping, nullable=c.nullable, dims=c.dims)
                for c in self.columns
            },
        }

    def airbyte_stream(self, replication_method: str = "Standard") -> dict[str, Any]:
        """The AirbyteStream dict discover reports for this relation.

        Standard: incremental by a user-chosen cursor, defaulting to the table's obvious
        updated-at column when it has one (default_cursor). Xmin: as Airbyte, the cursor is
        source-defined (the xmin system column, not a property of the records) for relations
        that have xmin; views and foreign tables have none and are full refresh only.
        """
        xmin = replication_method == "Xmin"
        incremental = not xmin or self.kind in XMIN_KINDS
        default = None if xmin else default_cursor(self)
        return {
            "name": self.name,
            "namespace": self.schema,
            "json_schema": self.json_schema(),
            "supported_sync_modes": ["full_refresh", "incremental"]
            if incremental
            else ["full_refresh"],
            "source_defined_cursor": xmin and incremental,
            "default_cursor_field": [default] if default else [],
            "source_defined_primary_key": [[col] for col in self.primary_key],
            # A full refresh restarts from the first row after a failure: not resumable.
            "is_resumable": False,
        }


# Relation kinds whose rows carry the xmin system column: tables, materialized views and
# partitioned tables (through their partitions). Views and foreign tables do not.
XMIN_KINDS = ("r", "m", "p")
# Names that say "changed at", compared case-insensitively without underscores: a column named
# so with a timestamp, date or integer type is the obvious cursor of a Standard stream.
UPDATED_AT_NAMES = frozenset({
    "updatedat", "updatedon", "updated", "lastupdated", "lastupdatedat", "updatetime",
    "updatedtime", "updatetimestamp", "modifiedat", "modifiedon", "modified", "lastmodified",
    "lastmodifiedat", "datemodified", "modifytime", "modifiedtime", "abupdatedat",
})  # fmt: skip
CURSOR_KINDS = ("timestamp", "timestamptz", "date", "integer")


def default_cursor(table: Table) -> str | None:
    """The table's obvious cursor column, or None when it has none or several.

    Conservative on purpose (a wrong cursor silently misses changes): exactly one column whose
    name says updated/modified-at (updated_at, _updated_at, modified_at, last_modified,
    updatedAt...) and whose type orders by time or by a counter. A created_at column or an
    identity key is no such choice: it does not move when a row changes.
    """
    found = [
        c.name
        for c in table.columns
        if c.name.lower().replace("_", "") in UPDATED_AT_NAMES and c.mapping.kind in CURSOR_KINDS
    ]
    return found[0] if len(found) == 1 else None


def load_type_catalog(conn: psycopg.Connection[Any]) -> TypeCatalog:
    rows = conn.execute(TYPES_QUERY).fetchall()
    return TypeCatalog([PgType(*row) for row in rows])


def discover_tables(
    conn: psycopg.Connection[Any],
    schemas: Sequence[str],
    *,
    only: Iterable[tuple[str, str]] | None = None,
) -> list[Table]:
    """Readable relations of `schemas` (every non-system schema when empty).

    `only` restricts the result to (schema, name) pairs (the read path asks for its streams).
    """
    types = load_type_catalog(conn)
    wanted = set(only) if only is not None else None
    pairs = sorted(wanted) if wanted is not None else None
    rows = conn.execute(
        RELATIONS_QUERY,
        {
            "schemas": list(schemas),
            "all_schemas": not schemas,
            # The read path's streams only: their relations' columns, not the schemas' all.
            "only_schemas": [schema for schema, _ in pairs] if pairs is not None else None,
            "only_names": [name for _, name in pairs] if pairs is not None else None,
        },
    ).fetchall()
    tables: list[Table] = []
    current: list[Any] | None = None
    columns: list[Column] = []

    def flush() -> None:
        if current is None:
            return
        visible = {c.name for c in columns}
        pk = tuple(current[8] or ())
        tables.append(
            Table(
                schema=current[0],
                name=current[1],
                kind=current[2],
                oid=current[3],
                columns=tuple(columns),
                # A primary key the user cannot fully see is no key for them.
                primary_key=pk if all(col in visible for col in pk) else (),
                complete=len(columns) == current[9],
                has_children=bool(current[10]),
                table_select=bool(current[11]),
            )
        )

    for row in rows:
        nspname, relname = row[0], row[1]
        if wanted is not None and (nspname, relname) not in wanted:
            continue
        if current is None or (current[0], current[1]) != (nspname, relname):
            flush()
            current, columns = list(row), []
        # Views report every column as nullable (attnotnull is false), which is honest.
        columns.append(Column(row[4], types.mapping(row[5], row[6]), nullable=not row[7],
                              dims=row[12] or 0))  # fmt: skip
    flush()
    return tables


def catalog_dict(tables: Sequence[Table], replication_method: str = "Standard") -> dict[str, Any]:
    """The AirbyteCatalog dict for discovered tables."""
    return {"streams": [table.airbyte_stream(replication_method) for table in tables]}
