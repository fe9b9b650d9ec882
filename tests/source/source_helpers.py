"""Helpers for source-postgres tests: run the real console script and parse what it prints."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from connector_output import ConnectorOutput

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "source"


class Run(ConnectorOutput):
    """One finished source-postgres process."""

    @property
    def records(self) -> list[dict[str, Any]]:
        return [m["record"] for m in self.of_type("RECORD")]

    def data(self, stream: str) -> list[dict[str, Any]]:
        return [r["data"] for r in self.records if r["stream"] == stream]

    def statuses(self, stream: str) -> list[str]:
        return [
            m["trace"]["stream_status"]["status"]
            for m in self.of_type("TRACE")
            if m["trace"]["type"] == "STREAM_STATUS"
            and m["trace"]["stream_status"]["stream_descriptor"]["name"] == stream
        ]

    def stream(self, name: str, namespace: str = "public") -> dict[str, Any]:
        (found,) = [
            s
            for s in self.catalog["streams"]
            if s["name"] == name and s.get("namespace") == namespace
        ]
        return found


def run_source(*args: str, timeout: float = 300) -> Run:
    """Run `source-postgres <args>` as a subprocess, as a user would."""
    proc = subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "source-postgres"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def configured_catalog(streams: list[dict[str, Any]], sync_mode: str = "full_refresh") -> dict:
    """A configured catalog for discovered streams."""
    return {
        "streams": [
            {"stream": s, "sync_mode": sync_mode, "destination_sync_mode": "overwrite"}
            for s in streams
        ]
    }
