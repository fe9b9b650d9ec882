"""Issue 6's benchmark: incremental syncs of firenibble_inc (firenibble + an indexed updated_at).

Three timed steps on the same table (run in the order first, update, full), driven by
`pgbyte sync` when it works, else by the two connectors joined by a pipe with the state carried
by the harness (the destination's last echoed STATE per stream becomes the next `--state` file):

- inc_full: a full refresh (overwrite) sync — the yardstick;
- inc_first: the first incremental (append_dedup, cursor updated_at) sync, from no state into an
  empty destination — goal ≤ 1.2x inc_full;
- inc_update: after 1% of the rows changed (untimed UPDATE), the next incremental dedup sync —
  goal ≤ 10% of inc_full. Verified by row counts and by sum(f1) equal on both sides, which only
  holds if every changed row replaced its old version.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from bench.connectors import (
    configured_catalog,
    connection_file,
    last_states,
    password_env,
    write_json,
)
from bench.context import Context, progress, timed
from bench.dataset import INCREMENTAL_TABLE, load_incremental_table, update_one_percent, vacuum
from bench.process import Outcome, run_pipeline
from bench.report import OK, SKIPPED, UNAVAILABLE, Step
from bench.scenarios import dest_argv, source_argv

STREAM = INCREMENTAL_TABLE
CURSOR = "updated_at"


@dataclass(frozen=True)
class Connection:
    """One way of syncing firenibble_inc: a pgbyte connection file or a catalog for the pipe."""

    name: str
    sync_mode: str
    destination_sync_mode: str
    driver: str  # "pgbyte" or "pipe"
    conn_file: Path | None
    catalog: Path
    state: Path

    def reset(self) -> None:
        self.state.unlink(missing_ok=True)


def _connection(ctx: Context, name: str, sync_mode: str, dest_mode: str, driver: str) -> Connection:
    cursor = CURSOR if sync_mode == "incremental" else None
    state = ctx.path(f"state/{name}.json")
    catalog = write_json(
        ctx.path(f"catalog-{name}.json"),
        configured_catalog(
            ctx.streams[STREAM], sync_mode=sync_mode, destination_sync_mode=dest_mode, cursor=cursor
        ),
    )
    conn_file = None
    if driver == "pgbyte":
        conn_file = connection_file(
            ctx.path(f"{name}.yaml"), name=name, commands=ctx.commands, source=ctx.source,
            dest=ctx.dest, stream=STREAM, sync_mode=sync_mode, destination_sync_mode=dest_mode,
            cursor=cursor, state=state,
        )  # fmt: skip
    return Connection(name, sync_mode, dest_mode, driver, conn_file, catalog, state)


def _sync(ctx: Context, conn: Connection) -> Outcome:
    """One timed sync; the pipe driver saves the destination's last echoed states itself."""
    if conn.driver == "pgbyte":
        assert conn.conn_file is not None
        return run_pipeline(
            [[*ctx.commands.pgbyte, "sync", str(conn.conn_file)]],
            workdir=ctx.workdir,
            stdout=ctx.path(f"{conn.name}-out.log"),
            env=password_env(ctx.source, ctx.dest),
            timeout=ctx.timeout,
        )
    dest_out = ctx.path(f"{conn.name}-out.jsonl")
    state = conn.state if conn.state.exists() else None
    outcome = run_pipeline(
        [source_argv(ctx, conn.catalog, state), dest_argv(ctx, conn.catalog)],
        workdir=ctx.workdir,
        stdout=dest_out,
        timeout=ctx.timeout,
    )
    if outcome.ok:
        states = last_states(dest_out)
        if states:
            write_json(conn.state, states)
    return outcome


def _sum_f1(endpoint_conn: psycopg.Connection, table: str) -> int | None:
    query = sql.SQL("SELECT sum(f1)::text FROM {}.{}").format(
        sql.Identifier("public"), sql.Identifier(table)
    )
    try:
        row = endpoint_conn.execute(query).fetchone()
    except psycopg.errors.UndefinedTable:  # missing after a failed sync: reported as None
        return None
    return int(row[0]) if row and row[0] is not None else None


def _verify(ctx: Context, step: Step, raw_expected: int) -> str | None:
    counts = ctx.dest_counts(STREAM)
    with ctx.source.connect() as src:
        source_sum = _sum_f1(src, STREAM)
    with ctx.dest.connect() as dst:
        dest_sum = _sum_f1(dst, STREAM)
    step.verified.update(
        counts,
        expected_rows=ctx.rows,
        expected_raw_rows=raw_expected,
        # Sums of bigints overflow 64 bits (and JSON integers): kept as text.
        source_sum_f1=str(source_sum),
        dest_sum_f1=str(dest_sum),
    )
    if counts["normalized_rows"] != ctx.rows:
        return f"normalized table holds {counts['normalized_rows']} rows, expected {ctx.rows}"
    # A source may re-send the rows at the saved cursor value (at-least-once at the boundary),
    # so the raw table may hold a few more records; fewer means records were lost.
    if (counts["raw_rows"] or 0) < raw_expected:
        return f"raw table holds {counts['raw_rows']} rows, expected at least {raw_expected}"
    if source_sum != dest_sum:
        return "sum(f1) differs between source and destination (changed rows not merged)"
    return None


def incremental(ctx: Context) -> list[Step]:
    labels = {
        "inc_full": "incremental table: full refresh sync",
        "inc_first": "incremental table: first incremental sync",
        "inc_update": "incremental dedup sync after 1% updated",
    }
    steps = [Step(key, label, ("pgbyte",), rows=ctx.rows) for key, label in labels.items()]
    reason = ctx.missing("source", "destination")
    if reason:
        for step in steps:
            ctx.report.add(step).fail(reason, UNAVAILABLE)
        return steps
    driver = "pipe" if ctx.missing("pgbyte") else "pgbyte"
    if driver == "pipe":
        for step in steps:
            step.processes = ("source", "destination")
        ctx.report.notes.append(
            "incremental: driven by `source read | destination write` with the harness carrying "
            "the state, because pgbyte is not available"
        )
    progress("  preparing firenibble_inc (untimed)")
    load_incremental_table(ctx.source, ctx.rows, reuse=ctx.reuse)
    full = _connection(ctx, "bench-inc-full", "full_refresh", "overwrite", driver)
    inc = _connection(ctx, "bench-inc", "incremental", "append_dedup", driver)
    inc_full, inc_first, inc_update = steps
    for step in steps:  # listed in this order, run first → update → full (see below)
        ctx.report.add(step)

    def fresh(_: int) -> None:
        ctx.drop_dest_tables(STREAM)
        inc.reset()

    # The first incremental sync runs first: when the programs cannot sync incrementally yet,
    # the minutes a full sync of the table takes would buy no ratio.
    timed(
        ctx, inc_first, lambda _: _sync(ctx, inc), before=fresh,
        verify=lambda _: _verify(ctx, inc_first, ctx.rows),
    )  # fmt: skip
    if inc_first.status != OK:
        inc_update.fail("not run: the first incremental sync failed", SKIPPED)
        inc_full.fail("not run: the first incremental sync failed (nothing to compare)", SKIPPED)
        return steps

    raw_expected = {"rows": ctx.rows}

    def change(round_: int) -> None:
        changed = update_one_percent(ctx.source, round_)
        raw_expected["rows"] += changed
        inc_update.verified["changed_rows"] = changed
        inc_update.rows = changed  # rows/s of this step: the changed rows it moved

    timed(
        ctx, inc_update, lambda _: _sync(ctx, inc), before=change,
        verify=lambda _: _verify(ctx, inc_update, raw_expected["rows"]),
    )  # fmt: skip

    def full_before(_: int) -> None:
        vacuum(ctx.source, STREAM)  # the updates left dead rows a fresh table would not have
        ctx.drop_dest_tables(STREAM)

    timed(
        ctx, inc_full, lambda _: _sync(ctx, full), before=full_before,
        verify=lambda _: _verify(ctx, inc_full, ctx.rows),
    )  # fmt: skip
    return steps
