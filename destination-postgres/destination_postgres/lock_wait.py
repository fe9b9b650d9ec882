"""Waiting for the locks of the overwrite swap without blocking everyone else.

The swap drops the final tables, which takes an ACCESS EXCLUSIVE lock: a reader with a long
transaction open on a table (a BI tool, a psql session left `idle in transaction`) holds it off.
Waiting on the lock queue for it would also queue every later reader of that table behind the
swap, for as long as that transaction lasts. So each attempt waits ATTEMPT_WAIT at most (in a
savepoint, so that the work before it in the transaction stays), then steps aside for PAUSE
seconds while the queued readers go on, and tries again; a WARN names the sessions in the way.
After PGBYTE_SWAP_TIMEOUT seconds (default 900) of trying, the write fails with a
transient_error and the previous tables stay as they were. It stops trying at once when the
reader of its output is gone (the orchestrator was killed): nobody would get its STATEs, and a
swap long after the sync ended could put older rows over a newer sync's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from pgbyte_common.errors import TransientError
from psycopg import errors as pg_errors

T = TypeVar("T")

TIMEOUT_ENV = "PGBYTE_SWAP_TIMEOUT"
DEFAULT_TIMEOUT = 900.0
ATTEMPT_WAIT = "2s"
PAUSE = 3.0
WARN_EVERY = 60.0

# Each session holding a lock on one of the tables, with the ones it locks.
_HOLDERS = """
SELECT l.pid, coalesce(min(a.state), '?'),
       coalesce(to_char(min(a.xact_start) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'),
                '?'),
       string_agg(DISTINCT t.name, ', ')
  FROM pg_catalog.pg_locks l
  JOIN (SELECT c.oid, n.nspname || '.' || c.relname AS name FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
       ) t ON t.oid = l.relation
  LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
 WHERE l.granted AND l.pid <> pg_backend_pid() AND l.locktype = 'relation'
 GROUP BY l.pid
 ORDER BY 1
"""


def timeout_seconds() -> float:
    """PGBYTE_SWAP_TIMEOUT: seconds, 0 or more (`inf`: no end); else the default."""
    try:
        value = float(os.environ.get(TIMEOUT_ENV, "").strip() or DEFAULT_TIMEOUT)
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if value >= 0 else DEFAULT_TIMEOUT  # (NaN is not >= 0 either)


def retrying(
    conn: psycopg.Connection[Any],
    attempt: Callable[[], T],
    tables: Sequence[tuple[str, str]],
    log: Callable[[str, str], None],
    label: str,
    reader_left: Callable[[], bool] = lambda: False,
) -> T:
    """Run `attempt` (inside the open transaction) until it gets its locks; see the module.
    BrokenPipeError when `reader_left()` says the output's reader is gone."""
    give_up = time.monotonic() + timeout_seconds()
    warned: float | None = None
    while True:
        conn.execute("SAVEPOINT pgbyte_lock_wait")
        previous = conn.execute("SELECT current_setting('lock_timeout')").fetchone()
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (ATTEMPT_WAIT,))
        try:
            result = attempt()
        except pg_errors.LockNotAvailable:
            conn.execute("ROLLBACK TO SAVEPOINT pgbyte_lock_wait")
            conn.execute("RELEASE SAVEPOINT pgbyte_lock_wait")
            now = time.monotonic()
            names = ", ".join(f"{s}.{t}" for s, t in tables)
            holders = _holders(conn, tables) or f"another session holds a lock on {names}"
            if now >= give_up:
                raise TransientError(
                    f"Stream {label}: could not swap in its new tables ({names}) for "
                    f"{timeout_seconds():.0f} s ({TIMEOUT_ENV}): {holders}. The previous "
                    "tables are unchanged; end those transactions (pg_terminate_backend) and "
                    "run the sync again."
                ) from None
            if warned is None or now - warned >= WARN_EVERY:
                warned = now
                log("WARN", f"Stream {label}: waiting to swap in its new tables ({names}): "
                            f"{holders}; retrying every {PAUSE:.0f} s for up to "
                            f"{timeout_seconds():.0f} s ({TIMEOUT_ENV}).")  # fmt: skip
            if reader_left():
                raise BrokenPipeError(f"the reader of the output left while stream {label} "
                                      "waited to swap in its tables") from None  # fmt: skip
            time.sleep(PAUSE)
            continue
        # The caller's transaction goes on with its own lock_timeout.
        conn.execute("SELECT set_config('lock_timeout', %s, true)", previous)
        conn.execute("RELEASE SAVEPOINT pgbyte_lock_wait")
        return result


def _holders(conn: psycopg.Connection[Any], tables: Sequence[tuple[str, str]]) -> str:
    """The sessions holding a lock on `tables` now, each with the tables it locks: `session 123
    (idle in transaction since 2026-…) holds a lock on public.users`; …; empty when they are
    gone (pg_stat_activity shows a role without pg_read_all_stats no state of other roles'
    sessions: `?`)."""
    schemas, names = [s for s, _ in tables], [t for _, t in tables]
    rows = conn.execute(_HOLDERS, (schemas, names)).fetchall()
    return "; ".join(f"session {pid} ({state} since {since}) holds a lock on {locked}"
                     for pid, state, since, locked in rows)  # fmt: skip
