"""Benchmark results: timed steps, ratios, goals met or missed; a readable table and a JSON file.

Ratios and goals use each step's best time (the least disturbed run on a shared machine); the
median is reported beside it so that noise shows.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from bench.process import Outcome

OK, FAILED, UNAVAILABLE, SKIPPED, PENDING = "ok", "failed", "unavailable", "skipped", "pending"
ROLE_TAGS = {"source": "src", "destination": "dst"}


@dataclass
class Step:
    """One timed step (a baseline or a scenario's run), repeated `len(runs)` times."""

    key: str
    label: str
    processes: tuple[str, ...]
    rows: int = 0
    runs: list[Outcome] = field(default_factory=list)
    status: str = PENDING  # until every run of the step ran and verified
    reason: str = ""
    verified: dict[str, Any] = field(default_factory=dict)
    table_bytes: int = 0  # MB/s is table heap bytes per second when set
    output_bytes: int = 0  # bytes of Airbyte messages the step produced or consumed, when known
    server_cpu: list[dict[str, float]] = field(default_factory=list)  # per run, per server role

    @property
    def times(self) -> list[float]:
        return [run.seconds for run in self.runs if run.ok]

    @property
    def best(self) -> float | None:
        return min(self.times) if self.times and self.status == OK else None

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.times and self.status == OK else None

    @property
    def cpu(self) -> float | None:
        """Least CPU time (user + system of the measured processes, not the servers) of a run."""
        return min(run.cpu_seconds for run in self.runs) if self.runs else None

    def best_server_cpu(self) -> dict[str, float]:
        """Server CPU seconds (per role) during the fastest successful run."""
        pairs = [(r.seconds, c) for r, c in zip(self.runs, self.server_cpu, strict=False) if r.ok]
        return min(pairs, key=lambda pair: pair[0])[1] if pairs else {}

    def peak_rss(self) -> dict[str, float]:
        """Peak RSS in MB per process over all runs."""
        peaks: dict[str, float] = {}
        for run in self.runs:
            for name, mb in zip(self.processes, run.peak_rss_mb, strict=False):
                peaks[name] = max(peaks.get(name, 0.0), mb)
        return peaks

    def fail(self, reason: str, status: str = FAILED) -> None:
        self.status, self.reason = status, reason

    def to_json(self) -> dict[str, Any]:
        best = self.best
        data: dict[str, Any] = {
            "label": self.label,
            "status": self.status,
            "reason": self.reason or None,
            "processes": list(self.processes),
            "rows": self.rows,
            "times_s": [round(t, 4) for t in self.times],
            "best_s": round(best, 4) if best else None,
            "median_s": round(self.median, 4) if self.median else None,
            "rows_per_s": round(self.rows / best) if best and self.rows else None,
            "table_mb_per_s": round(self.table_bytes / 1e6 / best, 2)
            if best and self.table_bytes
            else None,
            "messages_mb": round(self.output_bytes / 1e6, 2) if self.output_bytes else None,
            "messages_mb_per_s": round(self.output_bytes / 1e6 / best, 2)
            if best and self.output_bytes
            else None,
            "peak_rss_mb": {k: round(v, 1) for k, v in self.peak_rss().items()},
            "cpu_s": [round(run.cpu_seconds, 3) for run in self.runs],
            "server_cpu_s": [{k: round(v, 2) for k, v in c.items()} for c in self.server_cpu],
            "verified": self.verified,
        }
        return data


@dataclass(frozen=True)
class Goal:
    """An acceptance line: `value` (a ratio or MB) against `limit`; met is None when unmeasured."""

    name: str
    issue: int
    value: float | None
    limit: float
    unit: str

    @property
    def met(self) -> bool | None:
        return None if self.value is None else self.value <= self.limit

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "issue": self.issue,
            "value": round(self.value, 3) if self.value is not None else None,
            "limit": self.limit,
            "unit": self.unit,
            "met": self.met,
        }


@dataclass
class Report:
    meta: dict[str, Any]
    steps: dict[str, Step] = field(default_factory=dict)
    ratios: dict[str, float | None] = field(default_factory=dict)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    scenarios: dict[str, dict[str, str]] = field(default_factory=dict)

    def add(self, step: Step) -> Step:
        self.steps[step.key] = step
        return step

    def ratio(self, name: str, numerator: str, denominator: str) -> float | None:
        """best(numerator) / best(denominator), recorded as `name`; None if either is missing."""
        top = self.steps.get(numerator)
        bottom = self.steps.get(denominator)
        value = None
        if top and bottom and top.best and bottom.best:
            value = top.best / bottom.best
        self.ratios[name] = value
        return value

    def goal(self, name: str, issue: int, value: float | None, limit: float, unit: str) -> None:
        self.goals.append(Goal(name, issue, value, limit, unit))

    def to_json(self) -> dict[str, Any]:
        return {
            **self.meta,
            "scenarios": self.scenarios,
            "steps": {key: step.to_json() for key, step in self.steps.items()},
            "ratios": {k: round(v, 3) if v is not None else None for k, v in self.ratios.items()},
            "goals": [goal.to_json() for goal in self.goals],
            "notes": self.notes,
        }


def _fmt(value: float | None, spec: str) -> str:
    """format(value, spec), or a dash as wide as the spec asks."""
    width = int("".join(ch for ch in spec.split(".")[0].split(",")[0] if ch.isdigit()) or 0)
    return f"{'-':>{width}}" if value is None else format(value, spec)


def render(report: Report) -> str:
    """The table printed at the end of a run."""
    meta = report.meta
    machine = meta["machine"]
    lines = [
        f"pgbyte benchmark · {meta['rows']:,} rows of firenibble "
        f"({meta['table']['heap_bytes'] / 1e6:.1f} MB heap) · {meta['date']}",
        f"machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['memory_gb']} GB RAM · "
        f"PostgreSQL {meta['postgres']} · repeat {meta['repeat']} (best / median)",
        f"load average (1/5/15 min) at start {meta.get('load_average_at_start')}, "
        f"at end {meta.get('load_average_at_end')}",
    ]
    lines += [f"{name}: {status}" for name, status in meta.get("programs", {}).items()]
    lines.append("")
    header = (
        f"{'step':<44} {'best s':>8} {'median s':>9} {'rows/s':>10} {'MB/s':>7} {'CPU s':>7} "
        f"{'server CPU s':>13}  peak RSS MB"
    )
    lines += [header, "-" * len(header)]
    for step in report.steps.values():
        if step.status != OK:
            lines.append(f"{step.label:<44} {step.status.upper()}: {step.reason}")
            continue
        best = step.best
        rps = step.rows / best if best and step.rows else None
        mbps = step.table_bytes / 1e6 / best if best and step.table_bytes else None
        rss = step.peak_rss()
        rss_text = " ".join(f"{k} {v:.0f}" for k, v in rss.items()) if rss else "-"
        cpu = step.best_server_cpu()
        server_cpu = " ".join(f"{ROLE_TAGS[k]} {v:.1f}" for k, v in cpu.items()) or "-"
        lines.append(
            f"{step.label:<44} {_fmt(best, '8.2f')} {_fmt(step.median, '9.2f')} "
            f"{_fmt(rps, '10,.0f')} {_fmt(mbps, '7.1f')} {_fmt(step.cpu, '7.2f')} "
            f"{server_cpu:>13}  {rss_text}"
        )
    if report.ratios:
        lines += ["", "ratios (best times):"]
        lines += [
            f"  {name:<50} {_fmt(v, '.2f') + ('x' if v is not None else '')}"
            for name, v in report.ratios.items()
        ]
    if report.goals:
        lines += ["", "goals:"]
        for goal in report.goals:
            verdict = {True: "MET", False: "MISSED", None: "NOT MEASURED"}[goal.met]
            value = _fmt(goal.value, ".2f") + (goal.unit if goal.value is not None else "")
            lines.append(
                f"  [{verdict:^12}] issue {goal.issue}: {goal.name:<44} {value:>10} "
                f"(goal ≤ {goal.limit:g}{goal.unit})"
            )
    if report.notes:
        lines += ["", "notes:"] + [f"  - {note}" for note in report.notes]
    return "\n".join(lines)
