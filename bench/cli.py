"""`python -m bench`: set up, measure the baselines and the scenarios, print and save the report.

Exit status: 0 when every step that could run ran and verified (goals missed or programs not
available yet are reported, not errors); 1 when a step failed; 2 on bad arguments or when the
setup itself failed; 130 on Ctrl-C. Servers, children and temp files are cleaned up in every case.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from bench import baselines, incremental, scenarios
from bench.connectors import Commands, builtin_stream, discover_stream, probe
from bench.context import Context, progress
from bench.dataset import INCREMENTAL_TABLE, TABLE, load_firenibble, prepare_copy_table
from bench.process import MASK, kill_all
from bench.report import FAILED, PENDING, Report, Step, render
from bench.servers import Servers, server_version

SCENARIOS = ("source", "destination", "pipe", "sync", "incremental")
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


class SetupError(RuntimeError):
    """The run cannot start as asked; the message says what to change."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark pgbyte's connectors on the firenibble table (DESIGN.md §5).",
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in firenibble")
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios to run (default all: {','.join(SCENARIOS)})",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per timed step (best, median)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to save the report")
    parser.add_argument("--source-dsn", help="existing source database instead of a throwaway one")
    parser.add_argument("--dest-dsn", help="existing destination database instead")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep a firenibble table this benchmark loaded earlier when its row count matches "
        "(useful with --source-dsn)",
    )
    parser.add_argument("--source-cmd", help="source program (default .venv/bin/source-postgres)")
    parser.add_argument(
        "--dest-cmd", help="destination program (default .venv/bin/destination-postgres)"
    )
    parser.add_argument("--pgbyte-cmd", help="orchestrator (default .venv/bin/pgbyte)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per timed run")
    parser.add_argument("--workdir", type=Path, help="parent directory of the run's temp files")
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(SCENARIOS))
    if unknown:
        parser.error(
            f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}"
        )
    if args.rows < 100 or args.repeat < 1:
        parser.error("--rows must be at least 100 and --repeat at least 1")
    args.only = [name for name in SCENARIOS if name in only]
    return args


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    memory_kb = 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def _probe_programs(ctx: Context, needed: set[str]) -> None:
    checks = {
        "source": (ctx.commands.source, ["spec"], b'"SPEC"'),
        "destination": (ctx.commands.destination, ["spec"], b'"SPEC"'),
        "pgbyte": (ctx.commands.pgbyte, ["--help"], b"sync"),
    }
    # Side by side: each answer costs an interpreter start and, for connectors, the CDK import.
    with ThreadPoolExecutor(max_workers=len(needed)) as pool:
        answers = {
            name: pool.submit(probe, *checks[name][:2], ctx.workdir, checks[name][2])
            for name in sorted(needed)
        }
    for name, answer in answers.items():
        reason = answer.result()
        ctx.unavailable[name] = reason
        ctx.report.meta.setdefault("programs", {})[name] = reason or "available"
        progress(f"  {name}: {reason or 'available'}")


def _streams(ctx: Context, with_incremental: bool) -> None:
    """Stream descriptions from the source's discover when it works, else DESIGN.md §4's."""
    names = [TABLE] + ([INCREMENTAL_TABLE] if with_incremental else [])
    found = {}
    if not ctx.unavailable.get("source"):
        for name in names:
            found[name] = discover_stream(
                ctx.commands, ctx.files["source_config"], ctx.workdir, name
            )
    for name in names:
        stream = found.get(name)
        ctx.streams[name] = stream or builtin_stream(
            name, with_updated_at=name == INCREMENTAL_TABLE
        )
    origin = "source-postgres discover" if all(found.get(n) for n in names) else "built in"
    ctx.report.meta["catalog_from"] = origin


def run(args: argparse.Namespace, workdir: Path, servers: Servers) -> Report:
    only = set(args.only)
    progress(f"setting up: {args.rows:,} rows, scenarios {', '.join(args.only)}")
    source, dest = servers.endpoints()
    if (source.host, source.port, source.dbname) == (dest.host, dest.port, dest.dbname):
        # The destination writes public.firenibble: in the source database it would replace
        # the very table it reads.
        raise SetupError("--source-dsn and --dest-dsn name the same database; use two databases")
    table = load_firenibble(source, args.rows, reuse=args.reuse)
    progress(
        f"  firenibble: {table.rows:,} rows, {table.heap_bytes / 1e6:.1f} MB heap"
        + (" (reused)" if table.reused else f", loaded in {table.load_seconds:.1f} s")
    )
    prepare_copy_table(dest)
    report = Report(
        meta={
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "rows": args.rows,
            "repeat": args.repeat,
            "scenarios_requested": args.only,
            "machine": machine(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "postgres": server_version(source),
            "servers": "given DSNs"
            if args.source_dsn or args.dest_dsn
            else "throwaway (fsync off)",
            "table": {
                "name": TABLE,
                "heap_bytes": table.heap_bytes,
                "total_bytes": table.total_bytes,
                "load_seconds": round(table.load_seconds, 2),
                "reused": table.reused,
            },
        }
    )
    ctx = Context(
        source=source, dest=dest, workdir=workdir, rows=args.rows, repeat=args.repeat,
        timeout=args.timeout, report=report, table=table, reuse=args.reuse,
        commands=Commands.from_args(args.source_cmd, args.dest_cmd, args.pgbyte_cmd),
        server_cpu=servers.cpu_seconds,
    )  # fmt: skip
    (workdir / "state").mkdir()
    needed = {"source", "destination"} | ({"pgbyte"} if only & {"sync", "incremental"} else set())
    _probe_programs(ctx, needed)
    scenarios.write_configs(ctx)
    _streams(ctx, "incremental" in only)
    scenarios.write_catalog(ctx)
    report.meta["commands"] = {
        "source": list(ctx.commands.source),
        "destination": list(ctx.commands.destination),
        "pgbyte": list(ctx.commands.pgbyte),
    }

    progress("baselines")
    if "source" in only:
        _guard(ctx, baselines.copy_text, "copy_text")
    if "destination" in only:
        _guard(ctx, baselines.copy_from, "copy_from")
        _guard(ctx, baselines.layout_floor, "layout_floor")
    if only & {"pipe", "sync"}:
        _guard(ctx, baselines.copy_pipe, "copy_pipe")
    for name in ("source", "destination", "pipe", "sync"):
        if name in only:
            progress(name)
            _guard(ctx, getattr(scenarios, name), name)
        if name == "destination" and name in only:
            _guard(ctx, scenarios.destination_states, "dest_states")
    if "incremental" in only:
        progress("incremental")
        _guard(ctx, incremental.incremental, "inc_full", "inc_first", "inc_update")
    _goals(ctx, only)
    report.meta["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report.scenarios = {
        key: {"status": step.status, "reason": step.reason} for key, step in report.steps.items()
    }
    return report


def _guard(ctx: Context, scenario: Callable[[Context], object], *keys: str) -> None:
    """Run one scenario; a harness error fails its unfinished steps and the run goes on."""
    try:
        scenario(ctx)
    except Exception as exc:
        print(MASK(traceback.format_exc()), file=sys.stderr)
        reason = MASK(f"harness error: {type(exc).__name__}: {exc}")
        for key in keys:
            step = ctx.report.steps.get(key) or ctx.report.add(Step(key, key, ()))
            if step.status == PENDING:
                step.fail(reason)
    for key in keys:  # a step left pending was never reached: say so rather than show nothing
        step = ctx.report.steps.get(key)
        if step is not None and step.status == PENDING:
            step.fail("did not complete")


def _goals(ctx: Context, only: set[str]) -> None:
    report = ctx.report
    if "source" in only:
        value = report.ratio("source / COPY TO STDOUT text", "source", "copy_text")
        report.goal("source read vs COPY TO STDOUT text", 2, value, 3.0, "x")
    if "destination" in only:
        value = report.ratio("destination / COPY FROM binary", "destination", "copy_from")
        report.goal("destination write vs COPY FROM binary", 3, value, 3.0, "x")
        # Not goals: how far the layout's own floor sits above the yardstick, and how far the
        # destination sits above that floor.
        report.ratio("layout floor / COPY FROM binary", "layout_floor", "copy_from")
        report.ratio("destination / layout floor", "destination", "layout_floor")
        report.ratio("destination, a STATE every 100 / destination", "dest_states", "destination")
        step = report.steps["destination"]
        rss = step.peak_rss().get("destination") if step.best else None
        report.goal("destination peak RSS", 3, rss, 200.0, " MB")
    if "pipe" in only:
        report.ratio("pipe / COPY|COPY", "pipe", "copy_pipe")
    if "sync" in only:
        value = report.ratio("pgbyte sync / pipe", "sync", "pipe")
        report.goal("pgbyte sync vs shell pipe", 4, value, 1.10, "x")
        value = report.ratio("pgbyte sync / COPY|COPY", "sync", "copy_pipe")
        report.goal("pgbyte sync vs COPY|COPY", 4, value, 3.0, "x")
        if "layout_floor" in report.steps:
            report.ratio("layout floor / COPY|COPY", "layout_floor", "copy_pipe")
    if "incremental" in only:
        value = report.ratio("first incremental / full refresh sync", "inc_first", "inc_full")
        report.goal("first incremental sync vs full refresh", 6, value, 1.2, "x")
        value = report.ratio("dedup sync after 1% / full refresh sync", "inc_update", "inc_full")
        report.goal("incremental after 1% changed vs full", 6, value, 0.10, "x")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    parent = str(args.workdir) if args.workdir else None
    if parent:  # made when missing: mkdtemp needs its parent
        Path(parent).mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="pgbyte-bench-", dir=parent))
    servers = Servers(source_dsn=args.source_dsn, dest_dsn=args.dest_dsn)
    try:
        report = run(args, workdir, servers)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping children and servers, removing temp files", file=sys.stderr)
        return 130
    except SetupError as exc:
        print(f"benchmark not started: {MASK(str(exc))}", file=sys.stderr)
        return 2
    except Exception as exc:  # say what broke, never a secret
        print(MASK(traceback.format_exc()), file=sys.stderr)
        print(f"benchmark failed: {MASK(f'{type(exc).__name__}: {exc}')}", file=sys.stderr)
        return 2
    finally:
        kill_all(reap=True)
        servers.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2) + b"\n")
    print(render(report))
    print(f"\nsaved {args.json}")
    failed = [step.key for step in report.steps.values() if step.status == FAILED]
    return 1 if failed else 0
