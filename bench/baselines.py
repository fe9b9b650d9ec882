"""Baselines measured in the same run as the connectors, with psql so no Python is in the way.

- copy_text: `COPY firenibble TO STDOUT` (text) to /dev/null — the source's yardstick (issue 2).
- copy_pipe: binary `COPY TO STDOUT | COPY FROM STDIN` into a plain same-shaped table on the
  destination server — the practical limit of moving the rows (issues 4 and 6's yardstick).
- copy_from: binary `COPY FROM STDIN` of the same rows from a pre-dumped file — the destination's
  yardstick (issue 3).
"""

from __future__ import annotations

from bench.context import Context, timed
from bench.dataset import COPY_TABLE, TABLE, count_rows, truncate_copy_table
from bench.process import run_pipeline
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


def binary_dump(ctx: Context) -> str | None:
    """Untimed: dump firenibble in COPY binary format once; None or why it failed."""
    path = ctx.path("firenibble.bin")
    outcome = run_pipeline(
        [ctx.source.psql(COPY_OUT_BINARY)],
        workdir=ctx.workdir,
        stdout=path,
        env=ctx.source.psql_env(),
        timeout=ctx.timeout,
    )
    if not outcome.ok:
        return outcome.failure(["psql"])
    ctx.files["binary"] = path
    return None


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
