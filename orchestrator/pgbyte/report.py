"""What a person sees: connector logs, live progress, and the end-of-sync summary.

On a terminal (stderr is a TTY) progress is a live rich table, one line per stream; otherwise it
is plain log lines (a stream starting or ending, and every `progress_every` seconds a line per
running stream). Logs and progress go to stderr; the summary goes to stdout (or, with --json,
the summary as one JSON document).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

LEVELS = {"TRACE": 0, "DEBUG": 1, "INFO": 2, "WARN": 3, "WARNING": 3, "ERROR": 4, "FATAL": 5}


def _rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def _eta(done: int, total: int | None, rate: float) -> str:
    if not total or total <= 0:
        return ""
    percent = min(100.0, 100.0 * done / total)
    text = f"{percent:5.1f}%"
    if rate > 0 and done < total:
        text += f" ETA {max(0.0, (total - done) / rate):.0f}s"
    return text


_READING = ("STARTED", "RUNNING")  # the source's stream statuses while it reads a stream


class Reporter:
    """Prints logs and progress to stderr: rich on a terminal, plain lines elsewhere."""

    def __init__(
        self,
        *,
        err: TextIO | None = None,
        tty: bool | None = None,
        progress_every: float = 10.0,
        min_level: str = "INFO",
    ) -> None:
        self.err = err or sys.stderr
        self.tty = self.err.isatty() if tty is None else tty
        self.progress_every = progress_every
        self.min_level = LEVELS.get(min_level.upper(), 2)
        self.console: Any = None
        if self.tty:  # rich costs import time: only on a terminal
            from rich.console import Console

            self.console = Console(file=self.err, force_terminal=True)
        self._live: Any = None
        self._rows: Any = None
        self._started = time.monotonic()
        self._last_plain = 0.0
        self._last_status: dict[int, str] = {}

    def log(self, level: str, text: str) -> None:
        if LEVELS.get(level.upper(), 2) < self.min_level:
            return
        if self.console is not None:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=self.err, flush=True)

    def info(self, text: str) -> None:
        self.log("INFO", f"pgbyte: {text}")

    # -- progress ------------------------------------------------------------------------------
    def start(self, rows: Any) -> None:
        """rows(): a list of dicts (label, status, records, bytes, estimate, started_at)."""
        self._rows = rows
        self._started = time.monotonic()
        self._last_plain = self._started
        if self.console is not None:
            from rich.live import Live

            self._live = Live(self._table(), console=self.console, refresh_per_second=4)
            self._live.start()

    def tick(self) -> None:
        if self._rows is None:
            return
        if self._live is not None:
            self._live.update(self._table())
            return
        now = time.monotonic()
        rows = self._rows()
        for index, row in enumerate(rows):
            if self._last_status.get(index) != row["status"] and row["status"] != "PENDING":
                self._last_status[index] = row["status"]
                # The source's stream status: "read complete" says nothing of the commit.
                self.log("INFO", f"pgbyte: {row['label']}: read {row['status'].lower()}")
        if now - self._last_plain >= self.progress_every:
            self._last_plain = now
            for row in rows:
                if row["records"] and row["status"] not in ("COMPLETE", "INCOMPLETE", "DONE"):
                    self.log("INFO", "pgbyte: " + self._line(row, now))

    def stop(self) -> None:
        if self._live is None and self._rows is not None:
            self.tick()  # plain mode: report the streams' final statuses
        if self._live is not None:
            self._live.update(self._table())
            self._live.stop()
            self._live = None
        self._rows = None

    def _line(self, row: dict[str, Any], now: float) -> str:
        seconds = now - (row["started_at"] or self._started)
        rate = _rate(row["records"], seconds)
        text = (
            f"{row['label']}: {row['records']:,} records, {row['bytes'] / 1e6:.1f} MB, "
            f"{rate:,.0f} records/s"
        )
        eta = _eta(row["records"], row["estimate"], rate)
        return f"{text} {eta}".rstrip()

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        for column in ("stream", "read", "records", "MB", "records/s", "progress"):
            table.add_column(column, justify="left" if column in ("stream", "read") else "right")
        now = time.monotonic()
        rows, rest = self._fit(self._rows())
        for row in rows:
            seconds = (row["ended_at"] or now) - (row["started_at"] or self._started)
            rate = _rate(row["records"], seconds)
            table.add_row(
                row["label"], row["status"].lower(), f"{row['records']:,}",
                f"{row['bytes'] / 1e6:.1f}", f"{rate:,.0f}",
                _eta(row["records"], row["estimate"], rate),
            )  # fmt: skip
        if rest:
            table.add_row(rest, "", "", "", "", "")
        return table

    def _fit(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
        """The rows the terminal has room for — the streams being read first, then the others
        in order — and a line counting the rest by status ("" when all fit). Hundreds of
        streams would otherwise scroll the ones being read out of sight, and redrawing them all
        four times a second costs seconds of CPU."""
        room = max(self.console.size.height - 3, 4) if self.console is not None else len(rows)
        if len(rows) <= room:
            return rows, ""
        reading = [r for r in rows if r["status"] in _READING]
        shown = (reading + [r for r in rows if r["status"] not in _READING])[: room - 1]
        kept = {id(row) for row in shown}
        counts: dict[str, int] = {}
        for row in rows:
            if id(row) not in kept:
                status = row["status"].lower()
                counts[status] = counts.get(status, 0) + 1
        detail = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        return shown, f"… {sum(counts.values())} more streams ({detail})"


def format_summary(summary: dict[str, Any]) -> str:
    """The human summary, like the platform's "3 records emitted"."""
    status = summary["status"]
    head = f"Sync {status}: {summary['connection']} in {summary['duration_seconds']:.1f} s"
    lines = [head]
    for stream in summary["streams"]:
        src = stream["stream"]
        if stream["namespace"]:
            src = f"{stream['namespace']}.{src}"
        dst = stream["destination_stream"]
        if stream["destination_namespace"]:
            dst = f"{stream['destination_namespace']}.{dst}"
        lines.append(
            f"  {src} → {dst} ({stream['sync_mode']} | {stream['destination_sync_mode']}): "
            f"{_records(stream['records_emitted'])} emitted, "
            f"{_records(stream['records_committed'])} committed"
        )
    total = summary["total"]
    lines.append(
        f"  total: {_records(total['records_emitted'])} emitted, "
        f"{_records(total['records_committed'])} committed, {total['bytes'] / 1e6:.1f} MB"
    )
    if summary.get("reason"):
        lines.append(f"Reason: {summary['reason']}")
    return "\n".join(lines)


def _records(count: int) -> str:
    return f"{count:,} record" + ("" if count == 1 else "s")
