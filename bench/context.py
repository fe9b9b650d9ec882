"""State shared by the steps of one run, and the loop that times a step K times."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench.connectors import Commands
from bench.dataset import TableInfo, count_rows
from bench.process import MASK, Outcome
from bench.report import OK, Report, Step
from bench.servers import Endpoint


@dataclass
class Context:
    source: Endpoint
    dest: Endpoint
    commands: Commands
    workdir: Path
    rows: int
    repeat: int
    timeout: float
    report: Report
    table: TableInfo
    reuse: bool = False
    # Why each program is unavailable (None: it answers); keys source, destination, pgbyte.
    unavailable: dict[str, str | None] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    # CPU seconds used so far per throwaway server ({} with given DSNs): read around each run.
    server_cpu: Callable[[], dict[str, float]] = dict  # results steps share (message counts)

    def path(self, name: str) -> Path:
        return self.workdir / name

    def missing(self, *programs: str) -> str | None:
        """Why a step needing `programs` cannot run, or None (the details are in the report)."""
        absent = [p for p in programs if self.unavailable.get(p)]
        return f"needs {' and '.join(absent)}, not available (see programs)" if absent else None

    def drop_dest_tables(self, stream: str) -> None:
        """Untimed: remove a stream's destination tables so a run's counts prove what it loaded."""
        with self.dest.connect() as conn:
            for table in (stream, f"_airbyte_raw_{stream}"):
                conn.execute(
                    sql.SQL("DROP TABLE IF EXISTS {}.{} CASCADE").format(
                        sql.Identifier("public"), sql.Identifier(table)
                    )
                )

    def settle(self, limit: float = 60.0) -> None:
        """Untimed, before each run: wait (at most `limit` s) until no autovacuum worker runs on
        either server, then CHECKPOINT each (where the role may), so that no run pays for the
        tables an earlier one wrote (an ANALYZE of the last step's 1,000,000 rows, the flush of
        its dirty pages)."""
        deadline = time.monotonic() + limit
        for endpoint in (self.source, self.dest):
            with endpoint.connect() as conn:
                while time.monotonic() < deadline:
                    row = conn.execute(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE backend_type = 'autovacuum worker'"
                    ).fetchone()
                    if not row or not row[0]:
                        break
                    time.sleep(0.2)
                with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
                    conn.execute("CHECKPOINT")

    def dest_counts(self, stream: str) -> dict[str, int | None]:
        with self.dest.connect() as conn:
            return {
                "normalized_rows": count_rows(conn, stream),
                "raw_rows": count_rows(conn, f"_airbyte_raw_{stream}"),
            }


def progress(text: str) -> None:
    print(MASK(text), file=sys.stderr, flush=True)


def timed(
    ctx: Context,
    step: Step,
    run: Callable[[int], Outcome],
    *,
    before: Callable[[int], None] | None = None,
    verify: Callable[[int], str | None] | None = None,
) -> Step:
    """Run `run(i)` ctx.repeat times; `before(i)` and `verify(i)` are untimed.

    The step fails at the first run that exits non-zero or does not verify: a benchmark that
    silently loads nothing is worthless, so its time is not reported.
    """
    ctx.report.add(step)
    for index in range(ctx.repeat):
        if before:
            before(index)
        ctx.settle()
        cpu_before = ctx.server_cpu()
        outcome = run(index)
        cpu_after = ctx.server_cpu()
        step.runs.append(outcome)
        step.server_cpu.append(
            {role: cpu_after[role] - cpu_before[role] for role in cpu_after if role in cpu_before}
        )
        if not outcome.ok:
            step.fail(outcome.failure(step.processes))
            progress(f"  {step.label}: FAILED — {step.reason}")
            return step
        problem = verify(index) if verify else None
        if problem:
            step.fail(f"verification: {problem}")
            progress(f"  {step.label}: FAILED — {step.reason}")
            return step
        progress(f"  {step.label} [{index + 1}/{ctx.repeat}]: {outcome.seconds:.2f} s")
    step.status = OK
    return step
