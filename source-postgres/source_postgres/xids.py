"""64-bit transaction ids and the 32-bit xmin of row versions: the read's snapshot, and the
predicate "written by a transaction in [since, until)" that Xmin replication reads changes by
(xmin_read.py) and a resumed first load catches up with (incremental.py). xmin_read.py's
docstring explains the arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from source_postgres.state import XID_MASK

XID_SPACE = 1 << 32
# txid_* (not pg_current_snapshot, PG 13+) so that every supported server answers. Inside the
# read's REPEATABLE READ transaction this is the snapshot every stream is read with.
SNAPSHOT_QUERY = (
    "SELECT txid_snapshot_xmin(s), txid_snapshot_xmax(s) FROM txid_current_snapshot() AS s"
)
# The row version's 32-bit xid as a number (xid has no ordering operators).
XMIN_EXPR = sql.SQL("r.xmin::text::int8")


@dataclass(frozen=True)
class Snapshot:
    """The read's snapshot in 64-bit xids."""

    xmin: int  # every xid below had finished when the snapshot was taken
    xmax: int  # the first xid not yet assigned then


def read_snapshot(conn: psycopg.Connection[Any]) -> Snapshot:
    row = conn.execute(SNAPSHOT_QUERY).fetchone()
    assert row is not None
    return Snapshot(xmin=int(row[0]), xmax=int(row[1]))


def written_between(expr: sql.Composable, since: int, until: int) -> sql.Composable:
    """SQL predicate: the 32-bit xid `expr` is one of the 64-bit xids [since, until).

    Exact for every row version not frozen more than 2^32 xids ago (such an old row may match:
    it is read again, never missed). Requires 0 <= until - since < 2^32.
    """
    if not 0 <= until - since < XID_SPACE:
        raise ValueError(f"xid range [{since}, {until}) is not within one 32-bit span")
    # x in the circular interval [since mod 2^32, until mod 2^32) — `x >= s AND x < n`, or
    # `x >= s OR x < n` when the counter wrapped between the two (Airbyte's predicate) — as
    # one comparison: (x - s) mod 2^32 < until - since. `expr` is evaluated once per row.
    return sql.SQL("((({x}) - {low}) & {mask}) < {span}").format(
        x=expr,
        low=sql.Literal(since & XID_MASK),
        mask=sql.Literal(XID_MASK),
        span=sql.Literal(until - since),
    )
