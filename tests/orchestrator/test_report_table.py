"""The live progress table on a terminal: what it shows when the streams outnumber its lines."""

from __future__ import annotations

import io
import time
from typing import Any

from pgbyte.report import Reporter


def _row(index: int, status: str) -> dict[str, Any]:
    return {
        "label": f"public.t{index:03} → public.t{index:03}", "status": status,
        "records": index, "bytes": 0, "estimate": None,
        "started_at": time.monotonic(), "ended_at": None,
    }  # fmt: skip


def _render(reporter: Reporter, rows: list[dict[str, Any]]) -> str:
    reporter._rows = lambda: rows
    reporter.console.print(reporter._table())
    return reporter.err.getvalue()


def test_streams_being_read_stay_in_sight_when_the_terminal_is_short() -> None:
    """300 streams on a 20-line terminal: the two being read are shown, the table fits, and
    one line counts the streams left out by status."""
    reporter = Reporter(err=io.StringIO(), tty=True)
    reporter.console.size = (120, 20)
    rows = [_row(i, "COMPLETE" if i < 200 else "PENDING") for i in range(300)]
    rows[250]["status"] = rows[299]["status"] = "RUNNING"
    text = _render(reporter, rows)
    lines = text.splitlines()
    assert len(lines) <= 20, len(lines)
    assert "public.t250" in text and "public.t299" in text
    assert "more streams (" in lines[-1] and "complete" in lines[-1] and "pending" in lines[-1]


def test_every_stream_is_shown_when_they_fit() -> None:
    """A few streams: one line each, no count line."""
    reporter = Reporter(err=io.StringIO(), tty=True)
    reporter.console.size = (120, 20)
    text = _render(reporter, [_row(i, "RUNNING") for i in range(5)])
    assert all(f"public.t{i:03}" in text for i in range(5))
    assert "more streams" not in text
