"""The firenibble table (DESIGN.md §5): DDL, a deterministic load in SQL, and its catalogs.

The rows come from generate_series and random() after setseed(), in one serial INSERT … SELECT,
so the same N gives the same rows on every run and every machine with the same PostgreSQL major
version: runs stay comparable. Varchars hold 32 random characters (md5 of a random number),
dates fall in 2000-2021, floats carry full double precision, bigints span the signed range.

A table the harness loaded carries a comment naming the generator version and N; `--reuse` keeps
such a table when N matches, and the harness refuses to drop a `firenibble` it did not create.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from bench.servers import Endpoint

TABLE = "firenibble"
INCREMENTAL_TABLE = "firenibble_inc"
COPY_TABLE = "firenibble_copy"  # the plain same-shaped table the COPY baselines load
SEED = 0.42
GENERATOR = "pgbyte-bench firenibble v1"

DDL = """
CREATE TABLE firenibble (
  f0 BIGINT PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
  f1 BIGINT, f2 BIGINT, f3 INTEGER,
  f4 DOUBLE PRECISION, f5 DOUBLE PRECISION, f6 DOUBLE PRECISION, f7 DOUBLE PRECISION,
  f8 VARCHAR, f9 VARCHAR, f10 DATE, f11 DATE, f12 DATE, f13 VARCHAR, f14 VARCHAR, f15 VARCHAR)
"""

PLAIN_DDL = """
CREATE TABLE firenibble_copy (
  f0 BIGINT, f1 BIGINT, f2 BIGINT, f3 INTEGER,
  f4 DOUBLE PRECISION, f5 DOUBLE PRECISION, f6 DOUBLE PRECISION, f7 DOUBLE PRECISION,
  f8 VARCHAR, f9 VARCHAR, f10 DATE, f11 DATE, f12 DATE, f13 VARCHAR, f14 VARCHAR, f15 VARCHAR)
"""

# 8036 days: 2000-01-01 .. 2021-12-31. Evaluation order of random() in a select list is left to
# right, row by row, so the values depend only on the seed and N.
LOAD = """
INSERT INTO firenibble (f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15)
SELECT
  (random() * 9.2e18 - 4.6e18)::bigint,
  (random() * 1e12)::bigint,
  (random() * 4.2e9 - 2.1e9)::integer,
  random() * 1e6, (random() - 0.5) * 1e12, random(), random() * 1e-3,
  md5(random()::text), md5(random()::text),
  date '2000-01-01' + floor(random() * 8036)::integer,
  date '2000-01-01' + floor(random() * 8036)::integer,
  date '2000-01-01' + floor(random() * 8036)::integer,
  md5(random()::text), md5(random()::text), md5(random()::text)
FROM generate_series(1, %(rows)s)
"""

COLUMN_TYPES = {
    **{f"f{i}": "integer" for i in (0, 1, 2, 3)},
    **{f"f{i}": "number" for i in (4, 5, 6, 7)},
    **{f"f{i}": "string" for i in (8, 9, 13, 14, 15)},
    **{f"f{i}": "date" for i in (10, 11, 12)},
}
COLUMNS = [f"f{i}" for i in range(16)]


@dataclass(frozen=True)
class TableInfo:
    """What the report says about the loaded table."""

    rows: int
    heap_bytes: int
    total_bytes: int
    load_seconds: float
    reused: bool


def _comment(conn: psycopg.Connection, table: str) -> str | None:
    """The table's comment, or None when the table does not exist."""
    row = conn.execute(
        "SELECT c.oid, obj_description(c.oid, 'pg_class') FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relname = %s",
        (table,),
    ).fetchone()
    if row is None:
        return None
    return row[1] or ""


def _marker(table: str, rows: int) -> str:
    return f"{GENERATOR} {table} rows={rows}"


def _drop_ours(conn: psycopg.Connection, table: str) -> None:
    """Drop a table the harness created; refuse to touch one it did not."""
    comment = _comment(conn, table)
    if comment is None:
        return
    if not comment.startswith(GENERATOR):
        raise RuntimeError(
            f"public.{table} exists but was not created by the benchmark (no '{GENERATOR}' "
            "comment): drop it yourself or point --source-dsn at another database"
        )
    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))


def table_sizes(conn: psycopg.Connection, table: str) -> tuple[int, int]:
    row = conn.execute(
        "SELECT pg_relation_size(%s::regclass), pg_total_relation_size(%s::regclass)",
        (table, table),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def count_rows(conn: psycopg.Connection, table: str, schema: str = "public") -> int | None:
    """count(*) of schema.table, or None when the table does not exist."""
    exists = conn.execute("SELECT to_regclass(%s)", (f'"{schema}"."{table}"',)).fetchone()
    if not exists or exists[0] is None:
        return None
    query = sql.SQL("SELECT count(*) FROM {}.{}").format(
        sql.Identifier(schema), sql.Identifier(table)
    )
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else None


def load_firenibble(source: Endpoint, rows: int, *, reuse: bool) -> TableInfo:
    """Create and fill firenibble with `rows` deterministic rows (or keep a matching one)."""
    with source.connect() as conn:
        if reuse and _comment(conn, TABLE) == _marker(TABLE, rows):
            heap, total = table_sizes(conn, TABLE)
            return TableInfo(rows, heap, total, 0.0, reused=True)
        start = time.perf_counter()
        _drop_ours(conn, INCREMENTAL_TABLE)  # derived from the old rows: stale now
        _drop_ours(conn, TABLE)
        with conn.transaction():
            conn.execute(DDL)
            # A serial plan keeps random() in one deterministic sequence.
            conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            conn.execute("SELECT setseed(%s)", (SEED,))
            conn.execute(LOAD, {"rows": rows})
            conn.execute(
                sql.SQL("COMMENT ON TABLE {} IS {}").format(
                    sql.Identifier(TABLE), sql.Literal(_marker(TABLE, rows))
                )
            )
        # Freeze and analyze now so no timed read pays for hint bits or stale statistics.
        conn.execute(sql.SQL("VACUUM (FREEZE, ANALYZE) {}").format(sql.Identifier(TABLE)))
        seconds = time.perf_counter() - start
        heap, total = table_sizes(conn, TABLE)
    return TableInfo(rows, heap, total, seconds, reused=False)


def load_incremental_table(source: Endpoint, rows: int, *, reuse: bool) -> bool:
    """firenibble_inc: firenibble plus an indexed `updated_at` cursor (issue 6's benchmark).

    Each row gets a distinct updated_at (2021-01-01 plus f0 milliseconds) so the cursor orders
    the whole table; the default now() makes later inserts land after it. Returns True if reused.
    """
    with source.connect() as conn:
        if reuse and _comment(conn, INCREMENTAL_TABLE) == _marker(INCREMENTAL_TABLE, rows):
            return True
        _drop_ours(conn, INCREMENTAL_TABLE)
        with conn.transaction():
            conn.execute(
                "CREATE TABLE firenibble_inc AS SELECT *, "
                "timestamptz '2021-01-01 00:00:00+00' + f0 * interval '1 millisecond' "
                "AS updated_at FROM firenibble ORDER BY f0"
            )
            conn.execute("ALTER TABLE firenibble_inc ADD PRIMARY KEY (f0)")
            conn.execute("ALTER TABLE firenibble_inc ALTER updated_at SET DEFAULT now()")
            conn.execute("ALTER TABLE firenibble_inc ALTER updated_at SET NOT NULL")
            conn.execute("CREATE INDEX firenibble_inc_updated_at ON firenibble_inc (updated_at)")
            conn.execute(
                sql.SQL("COMMENT ON TABLE {} IS {}").format(
                    sql.Identifier(INCREMENTAL_TABLE),
                    sql.Literal(_marker(INCREMENTAL_TABLE, rows)),
                )
            )
        conn.execute("VACUUM (FREEZE, ANALYZE) firenibble_inc")
    return False


def update_one_percent(source: Endpoint, round_: int) -> int:
    """Change 1% of firenibble_inc's rows (a different 1% each round); return how many."""
    with source.connect() as conn:
        cur = conn.execute(
            "UPDATE firenibble_inc SET f1 = f1 + 1, f8 = md5(f8), updated_at = clock_timestamp() "
            "WHERE f0 %% 100 = %s",
            (round_ % 100,),
        )
        changed = cur.rowcount
        conn.execute("ANALYZE firenibble_inc")
    return changed


def vacuum(endpoint: Endpoint, table: str) -> None:
    with endpoint.connect() as conn:
        conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))


def prepare_copy_table(dest: Endpoint) -> None:
    """The plain table (same columns; no key, no identity) the COPY baselines load into."""
    with dest.connect() as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(COPY_TABLE)))
        conn.execute(PLAIN_DDL)


def truncate_copy_table(dest: Endpoint) -> None:
    with dest.connect() as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(COPY_TABLE)))


def json_schema(*, with_updated_at: bool = False) -> dict[str, Any]:
    """The stream schema following DESIGN.md §4 (used when `discover` is not available)."""
    props: dict[str, Any] = {}
    for column in COLUMNS:
        kind = COLUMN_TYPES[column]
        props[column] = (
            {"type": ["null", "string"], "format": "date"}
            if kind == "date"
            else {"type": ["null", kind]}
        )
    if with_updated_at:
        props["updated_at"] = {
            "type": ["null", "string"],
            "format": "date-time",
            "airbyte_type": "timestamp_with_timezone",
        }
    return {"type": "object", "properties": props}
