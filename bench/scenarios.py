"""The full-refresh scenarios: source read, destination write, the shell-style pipe, pgbyte sync.

Every scenario verifies what it produced — the records the source emitted, the rows the
destination's raw and normalized tables hold after each timed run (the tables are dropped,
untimed, before each run, so the counts prove that run loaded them), the STATE echoed back.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.connectors import (
    configured_catalog,
    connection_file,
    password_env,
    write_json,
)
from bench.context import Context, progress, timed
from bench.dataset import COLUMNS, TABLE
from bench.messages import MessageCount, count_messages, generate_in_sql, with_states
from bench.process import run_pipeline
from bench.report import UNAVAILABLE, Step


def write_configs(ctx: Context) -> None:
    """The two connector configs every scenario shares."""
    ctx.files["source_config"] = write_json(
        ctx.path("source-config.json"), ctx.source.connector_config(schemas=["public"])
    )
    ctx.files["dest_config"] = write_json(
        ctx.path("dest-config.json"), ctx.dest.connector_config(schema="public")
    )


def write_catalog(ctx: Context) -> None:
    """The full-refresh overwrite catalog of firenibble (needs ctx.streams)."""
    ctx.files["catalog_full"] = write_json(
        ctx.path("catalog-full.json"),
        configured_catalog(
            ctx.streams[TABLE], sync_mode="full_refresh", destination_sync_mode="overwrite"
        ),
    )


def source_argv(ctx: Context, catalog: Path, state: Path | None = None) -> list[str]:
    argv = [*ctx.commands.source, "read", "--config", str(ctx.files["source_config"])]
    argv += ["--catalog", str(catalog)]
    return argv + (["--state", str(state)] if state else [])


def dest_argv(ctx: Context, catalog: Path) -> list[str]:
    return [
        *ctx.commands.destination, "write", "--config", str(ctx.files["dest_config"]),
        "--catalog", str(catalog),
    ]  # fmt: skip


def verify_dest(ctx: Context, step: Step, stream: str, dest_out: Path, expected: int) -> str | None:
    """Both destination tables hold `expected` rows and at least one STATE came back."""
    counts = ctx.dest_counts(stream)
    echoed = count_messages(dest_out).states
    step.verified = {**counts, "expected_rows": expected, "states_echoed": echoed}
    if counts["normalized_rows"] != expected or counts["raw_rows"] != expected:
        return (
            f"destination holds {counts['normalized_rows']} normalized / {counts['raw_rows']} raw "
            f"rows of {stream}, expected {expected}"
        )
    if echoed == 0:
        return "the destination echoed no STATE"
    return None


def dump_source(ctx: Context) -> tuple[MessageCount | None, str | None]:
    """Untimed: one `source-postgres read` into a file, checked; (counts, None) or (_, why not).

    It proves the source's output (N RECORDs with every column) and becomes the destination
    benchmark's input.
    """
    if "source_dump" in ctx.extra:  # done once per run, whichever scenario asks first
        return ctx.extra["source_dump"]
    ctx.extra["source_dump"] = _dump_source(ctx)
    return ctx.extra["source_dump"]


def _dump_source(ctx: Context) -> tuple[MessageCount | None, str | None]:
    messages = ctx.path("messages.jsonl")
    progress("  source read → messages file (untimed, verifies the records)")
    argv = source_argv(ctx, ctx.files["catalog_full"])
    outcome = run_pipeline([argv], workdir=ctx.workdir, stdout=messages, timeout=ctx.timeout)
    if not outcome.ok:
        messages.unlink(missing_ok=True)
        return None, outcome.failure(["source-postgres"])
    counted = count_messages(messages)
    problem = None
    if counted.records != ctx.rows:
        problem = f"verification: {counted.records} RECORDs, expected {ctx.rows}"
    elif missing := sorted(set(COLUMNS) - set(counted.first_data or {})):
        problem = f"verification: the first RECORD lacks {', '.join(missing)}"
    if problem:
        messages.unlink(missing_ok=True)
        return counted, problem
    ctx.files["messages"] = messages
    ctx.report.notes.append(
        f"source output: {counted.bytes / 1e6:.1f} MB of Airbyte messages for "
        f"{counted.records:,} records; destination input: this output of `source-postgres read`"
    )
    return counted, None


def source(ctx: Context) -> Step:
    step = Step("source", "source-postgres read → /dev/null", ("source",), rows=ctx.rows)
    step.table_bytes = ctx.table.heap_bytes
    ctx.report.add(step)
    reason = ctx.missing("source")
    if reason:
        step.fail(reason, UNAVAILABLE)
        return step
    counted, problem = dump_source(ctx)
    if counted is not None:
        step.output_bytes = counted.bytes
        step.verified = {
            "records": counted.records,
            "expected_rows": ctx.rows,
            "states": counted.states,
            "source_stats_record_count": counted.source_record_count,
        }
    if problem:
        step.fail(problem)
        return step
    argv = source_argv(ctx, ctx.files["catalog_full"])
    return timed(
        ctx,
        step,
        lambda _: run_pipeline([argv], workdir=ctx.workdir, timeout=ctx.timeout),
    )


def messages_file(ctx: Context) -> Path:
    """The destination's input: the source's output when it works, else generated in SQL."""
    if "messages" in ctx.files:
        return ctx.files["messages"]
    why = ctx.missing("source")
    if not why:
        _, why = dump_source(ctx)
        if not why:
            return ctx.files["messages"]
    path = ctx.path("messages-sql.jsonl")
    progress("  generating the messages file in SQL (no usable source output)")
    generate_in_sql(ctx.source, TABLE, path)
    ctx.files["messages"] = path
    ctx.report.notes.append(
        "destination input: the same records as messages generated in SQL (row_to_json of "
        f"firenibble), because the source gave no usable output ({why})"
    )
    return path


def _table_step(
    ctx: Context, key: str, label: str, processes: tuple[str, ...], *programs: str
) -> tuple[Step, bool]:
    """A step over all of firenibble; False (the step reported unavailable) when one of
    `programs` is missing."""
    step = Step(key, label, processes)
    step.rows, step.table_bytes = ctx.rows, ctx.table.heap_bytes
    reason = ctx.missing(*programs)
    if reason:
        ctx.report.add(step).fail(reason, UNAVAILABLE)
    return step, not reason


def destination(ctx: Context) -> Step:
    step, available = _table_step(ctx, "destination", "destination-postgres write (overwrite)",
                                  ("destination",), "destination")  # fmt: skip
    if not available:
        return step
    dest_out = ctx.path("dest-out.jsonl")
    return _timed_write(ctx, step, messages_file(ctx), dest_out,
                        lambda _: verify_dest(ctx, step, TABLE, dest_out, ctx.rows))  # fmt: skip


def _timed_write(
    ctx: Context,
    step: Step,
    messages: Path,
    dest_out: Path,
    verify: Callable[[int], str | None],
) -> Step:
    """Time `destination-postgres write` (overwrite) of a messages file into firenibble."""
    step.output_bytes = messages.stat().st_size
    argv = dest_argv(ctx, ctx.files["catalog_full"])
    return timed(
        ctx,
        step,
        lambda _: run_pipeline(
            [argv], workdir=ctx.workdir, stdin=messages, stdout=dest_out, timeout=ctx.timeout
        ),
        before=lambda _: ctx.drop_dest_tables(TABLE),
        verify=verify,
    )


STATE_EVERY = 100


def destination_states(ctx: Context) -> Step:
    """The destination step's input with a STATE every STATE_EVERY records: what a source that
    checkpoints per page sends (the writer commits such STATEs together, COMMIT_SECONDS)."""
    label = f"destination-postgres write (overwrite, a STATE every {STATE_EVERY} records)"
    step, available = _table_step(ctx, "dest_states", label, ("destination",), "destination")
    if not available:
        return step
    messages = ctx.path("messages-states.jsonl")
    progress(f"  adding a STATE every {STATE_EVERY} records to the messages file (untimed)")
    added = with_states(messages_file(ctx), messages, STATE_EVERY, TABLE)
    dest_out = ctx.path("dest-states-out.jsonl")

    def verify(index: int) -> str | None:
        problem = verify_dest(ctx, step, TABLE, dest_out, ctx.rows)
        echoed = step.verified.get("states_echoed", 0)
        if problem is None and echoed < added:
            problem = f"the destination echoed {echoed} STATEs of the {added} added"
        return problem

    return _timed_write(ctx, step, messages, dest_out, verify)


def pipe(ctx: Context) -> Step:
    step, available = _table_step(ctx, "pipe", "source read | destination write",
                                  ("source", "destination"), "source", "destination")  # fmt: skip
    if not available:
        return step
    dest_out = ctx.path("pipe-out.jsonl")
    argvs = [source_argv(ctx, ctx.files["catalog_full"]), dest_argv(ctx, ctx.files["catalog_full"])]
    return timed(
        ctx,
        step,
        lambda _: run_pipeline(argvs, workdir=ctx.workdir, stdout=dest_out, timeout=ctx.timeout),
        before=lambda _: ctx.drop_dest_tables(TABLE),
        verify=lambda _: verify_dest(ctx, step, TABLE, dest_out, ctx.rows),
    )


def sync(ctx: Context) -> Step:
    step, available = _table_step(ctx, "sync", "pgbyte sync (full refresh, overwrite)",
                                  ("pgbyte",), "pgbyte", "source", "destination")  # fmt: skip
    if not available:
        return step
    conn = connection_file(
        ctx.path("bench-full.yaml"), name="bench-full", commands=ctx.commands,
        source=ctx.source, dest=ctx.dest, stream=TABLE, sync_mode="full_refresh",
        destination_sync_mode="overwrite", state=ctx.path("state/bench-full.json"),
    )  # fmt: skip
    out = ctx.path("sync-out.log")
    env = password_env(ctx.source, ctx.dest)
    argv = [*ctx.commands.pgbyte, "sync", str(conn)]

    def verify(_: int) -> str | None:
        counts = ctx.dest_counts(TABLE)
        step.verified = {**counts, "expected_rows": ctx.rows}
        if counts["normalized_rows"] != ctx.rows or counts["raw_rows"] != ctx.rows:
            return (
                f"destination holds {counts['normalized_rows']} normalized / "
                f"{counts['raw_rows']} raw rows, expected {ctx.rows}"
            )
        return None

    return timed(
        ctx,
        step,
        lambda _: run_pipeline([argv], workdir=ctx.workdir, stdout=out, env=env,
                               timeout=ctx.timeout),
        before=lambda _: ctx.drop_dest_tables(TABLE),
        verify=verify,
    )  # fmt: skip
