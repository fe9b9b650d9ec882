"""Baselines measured in the same run as the connectors, with psql so no Python is in the way.

- copy_text: `COPY firenibble TO STDOUT` (text) to /dev/null — the source's yardstick (issue 2).
- copy_pipe: binary `COPY TO STDOUT | COPY FROM STDIN` into a plain same-shaped table on the
  destination server — the practical limit of moving the rows (issues 4 and 6's yardstick).
- copy_from: binary `COPY FROM STDIN` of the same rows from a pre-dumped file — the destination's
  yardstick (issue 3).
- layout_floor: not a goal's yardstick but the least any destination with this table layout
  (DESIGN.md §3) pays here: two psql sessions side by side, each loading half the rows as our
  destination sends them (binary COPY of uuid, jsonb data, timestamptz) into a raw table, then
  typing them into one normalized table with one INSERT … SELECT (the casts, emitted metadata
  and hashid our destination computes). No Python, no input parsing, no batching, no swap:
  what a destination adds to it is its own overhead; what it costs beyond a yardstick is the
  layout's.
"""

from __future__ import annotations

from psycopg import sql

from bench.context import Context, timed
from bench.dataset import COLUMN_TYPES, COLUMNS, COPY_TABLE, TABLE, count_rows, truncate_copy_table
from bench.process import run_parallel, run_pipeline
from bench.report import FAILED, Step

COPY_OUT_TEXT = f"COPY {TABLE} TO STDOUT"
COPY_OUT_BINARY = f"COPY {TABLE} TO STDOUT (FORMAT binary)"
COPY_IN_BINARY = f"COPY {COPY_TABLE} FROM STDIN (FORMAT binary)"


def _verify_copy_table(ctx: Context) -> str | None:
    with ctx.dest.connect() as conn:
        loaded = count_rows(conn, COPY_TABLE)
    return None if loaded == ctx.rows else f"{COPY_TABLE} holds {loaded} rows, not {ctx.rows}"


def copy_text(ctx: Context) -> Step:
    step = Step("copy_text", "COPY TO STDOUT (text) → /dev/null", ("psql",), rows=ctx.rows)
    step.table_bytes = ctx.table.heap_bytes
    command = [ctx.source.psql(COPY_OUT_TEXT)]
    env = ctx.source.psql_env()
    return timed(
        ctx,
        step,
        lambda _: run_pipeline(command, workdir=ctx.workdir, env=env, timeout=ctx.timeout),
    )


def copy_pipe(ctx: Context) -> Step:
    step = Step(
        "copy_pipe",
        "COPY|COPY binary (source → destination)",
        ("psql-out", "psql-in"),
        rows=ctx.rows,
    )
    step.table_bytes = ctx.table.heap_bytes
    commands = [ctx.source.psql(COPY_OUT_BINARY), ctx.dest.psql(COPY_IN_BINARY)]
    envs = [ctx.source.psql_env(), ctx.dest.psql_env()]
    return timed(
        ctx,
        step,
        lambda _: run_pipeline(commands, workdir=ctx.workdir, env=envs, timeout=ctx.timeout),
        before=lambda _: truncate_copy_table(ctx.dest),
        verify=lambda _: _verify_copy_table(ctx),
    )


def _dump(ctx: Context, query: str, name: str) -> str | None:
    """Untimed: the source's `query` (a COPY TO STDOUT) into the file ctx.files[name]; None or
    why it failed."""
    path = ctx.path(f"{name}.bin")
    outcome = run_pipeline(
        [ctx.source.psql(query)],
        workdir=ctx.workdir,
        stdout=path,
        env=ctx.source.psql_env(),
        timeout=ctx.timeout,
    )
    if not outcome.ok:
        return outcome.failure(["psql"])
    ctx.files[name] = path
    return None


def binary_dump(ctx: Context) -> str | None:
    """Untimed: dump firenibble in COPY binary format once; None or why it failed."""
    return _dump(ctx, COPY_OUT_BINARY, "binary")


def copy_from(ctx: Context) -> Step:
    step = Step("copy_from", "COPY FROM STDIN binary (from a file)", ("psql",), rows=ctx.rows)
    step.table_bytes = ctx.table.heap_bytes
    problem = binary_dump(ctx)
    if problem:
        ctx.report.add(step).fail(f"binary dump: {problem}", FAILED)
        return step
    command = [ctx.dest.psql(COPY_IN_BINARY)]
    env = ctx.dest.psql_env()
    return timed(
        ctx,
        step,
        lambda _: run_pipeline(
            command, workdir=ctx.workdir, stdin=ctx.files["binary"], env=env, timeout=ctx.timeout
        ),
        before=lambda _: truncate_copy_table(ctx.dest),
        verify=lambda _: _verify_copy_table(ctx),
    )


FLOOR_SESSIONS = 2
FLOOR_TYPED = "pgbyte_floor_typed"
_FLOOR_TYPES = {"integer": "bigint", "number": "numeric", "string": "text", "date": "date"}


def _floor_raw(index: int) -> str:
    return f"pgbyte_floor_raw_{index}"


def _floor_tables(ctx: Context, *, create: bool) -> None:
    """Drop the floor's tables and, with `create`, make them again (empty)."""
    raws = [sql.Identifier(_floor_raw(i)) for i in range(FLOOR_SESSIONS)]
    typed = sql.Identifier(FLOOR_TYPED)
    with ctx.dest.connect() as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.SQL(", ").join([*raws, typed])))
        if not create:
            return
        for raw in raws:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (_airbyte_ab_id uuid, _airbyte_data jsonb, "
                    "_airbyte_emitted_at timestamptz)"
                ).format(raw)
            )
        columns = [
            sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(_FLOOR_TYPES[COLUMN_TYPES[c]]))
            for c in COLUMNS
        ]
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} ({}, _airbyte_ab_id uuid, _airbyte_emitted_at timestamptz, "
                "_airbyte_normalized_at timestamptz, _airbyte_hashid text)"
            ).format(typed, sql.SQL(", ").join(columns))
        )


def _floor_typing(index: int) -> str:
    """The INSERT … SELECT typing one session's raw rows, as our destination's plain casts do."""
    exprs = []
    for column in COLUMNS:
        value = f"(s._airbyte_data ->> '{column}')"
        kind = _FLOOR_TYPES[COLUMN_TYPES[column]]
        exprs.append(value if kind == "text" else f"{value}::{kind}")
    exprs.append(
        "s._airbyte_ab_id, s._airbyte_emitted_at, now(), "
        "lpad(to_hex(jsonb_hash_extended(s._airbyte_data, 0)), 16, '0')"
    )
    return f"INSERT INTO {FLOOR_TYPED} SELECT {', '.join(exprs)} FROM {_floor_raw(index)} s"


def _floor_dump(ctx: Context) -> str | None:
    """Untimed: each session's half of the rows as the destination sends them (binary COPY of
    uuid, row_to_json's data as jsonb, timestamptz); None or why it failed."""
    for index in range(FLOOR_SESSIONS):
        query = (
            f"COPY (SELECT gen_random_uuid(), row_to_json(t)::jsonb, now() FROM {TABLE} t "
            f"WHERE f0 % {FLOOR_SESSIONS} = {index}) TO STDOUT (FORMAT binary)"
        )
        problem = _dump(ctx, query, f"floor-{index}")
        if problem:
            return problem
    return None


def _verify_floor(ctx: Context, step: Step) -> str | None:
    with ctx.dest.connect() as conn:
        typed = count_rows(conn, FLOOR_TYPED)
        raw = sum(count_rows(conn, _floor_raw(i)) or 0 for i in range(FLOOR_SESSIONS))
    step.verified = {"raw_rows": raw, "normalized_rows": typed}
    if typed == raw == ctx.rows:
        return None
    return f"the floor's tables hold {raw} raw and {typed} typed rows, not {ctx.rows}"


def layout_floor(ctx: Context) -> Step:
    names = tuple(f"psql-{i}" for i in range(FLOOR_SESSIONS))
    label = "raw + typed tables by psql, 2 sessions (floor)"
    step = Step("layout_floor", label, names, rows=ctx.rows)
    step.table_bytes = ctx.table.heap_bytes
    problem = _floor_dump(ctx)
    if problem:
        ctx.report.add(step).fail(f"dump: {problem}", FAILED)
        return step
    commands = []
    for index in range(FLOOR_SESSIONS):
        psql = ctx.dest.psql(f"COPY {_floor_raw(index)} FROM STDIN (FORMAT binary)")
        commands.append([*psql, "-c", _floor_typing(index)])
    stdins = [ctx.files[f"floor-{i}"] for i in range(FLOOR_SESSIONS)]
    env = ctx.dest.psql_env()
    try:
        return timed(
            ctx,
            step,
            lambda _: run_parallel(
                commands, workdir=ctx.workdir, stdins=stdins, env=env, timeout=ctx.timeout
            ),
            before=lambda _: _floor_tables(ctx, create=True),
            verify=lambda _: _verify_floor(ctx, step),
        )
    finally:
        _floor_tables(ctx, create=False)
        for index in range(FLOOR_SESSIONS):
            path = ctx.files.pop(f"floor-{index}", None)
            if path is not None:
                path.unlink(missing_ok=True)
