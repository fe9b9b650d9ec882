"""`python -m bench.markdown [REPORT.json]`: a saved report as the Markdown table the README shows.

Only what the report measured is printed, so the README's figures can be pasted from a real run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from bench.cli import DEFAULT_JSON
from bench.report import ROLE_TAGS


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _cell(text: object, limit: int = 160) -> str:
    """Text safe inside a Markdown table cell (pipes escaped), shortened to `limit`."""
    text = str(text)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def _cpu(step: dict[str, Any]) -> str:
    """CPU seconds of the programs and of each server in the fastest run."""
    times = step["times_s"]
    if not times:
        return "-"
    # Only steps whose every run succeeded get here, so the per-run lists line up.
    index = times.index(min(times))
    servers = step["server_cpu_s"][index] if index < len(step["server_cpu_s"]) else {}
    parts = [f"{step['cpu_s'][index]:.1f}"]
    parts += [f"{ROLE_TAGS.get(role, role)} {seconds:.1f}" for role, seconds in servers.items()]
    return " / ".join(parts)


def render(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        f"{report['rows']:,} rows ({report['table']['heap_bytes'] / 1e6:.0f} MB heap), "
        f"{report['date']}, {machine['nproc']} CPUs ({machine['cpu']}), "
        f"{machine['memory_gb']} GB RAM, PostgreSQL {report['postgres'].split()[0]}, "
        f"{report['servers']}, best of {report['repeat']} "
        f"(load average at start {report.get('load_average_at_start')}):",
        "",
        "| step | best s | median s | rows/s | CPU s: programs / servers | peak RSS MB |",
        "|---|---:|---:|---:|---|---|",
    ]
    for step in report["steps"].values():
        if step["status"] != "ok":
            reason = _cell(f"{step['status']}: {step['reason']}")
            lines.append(f"| {_cell(step['label'])} | {reason} | | | | |")
            continue
        rss = ", ".join(f"{k} {v:.0f}" for k, v in step["peak_rss_mb"].items())
        best, median = _num(step["best_s"], ".2f"), _num(step["median_s"], ".2f")
        rows_per_s = _num(step["rows_per_s"], ",.0f")
        cpu = _cpu(step)
        lines.append(
            f"| {_cell(step['label'])} | {best} | {median} | {rows_per_s} | {cpu} | {rss} |"
        )
    lines += ["", "| goal | issue | measured | limit | verdict |", "|---|---|---:|---:|---|"]
    for goal in report["goals"]:
        verdict = {True: "met", False: "missed", None: "not measured"}[goal["met"]]
        unit = goal["unit"]
        value = "-" if goal["value"] is None else f"{goal['value']:.2f}{unit}"
        limit = f"≤ {goal['limit']:g}{unit}"
        lines.append(f"| {_cell(goal['name'])} | {goal['issue']} | {value} | {limit} | {verdict} |")
    ratios = {name: value for name, value in report.get("ratios", {}).items() if value is not None}
    if ratios:
        lines += ["", "| ratio of best times | value |", "|---|---:|"]
        lines += [f"| {_cell(name)} | {value:.2f}x |" for name, value in ratios.items()]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else DEFAULT_JSON
    print(render(orjson.loads(path.read_bytes())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
