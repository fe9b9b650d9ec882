"""Paths shared by the benchmark harness's tests."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FAKES = Path(__file__).resolve().parent / "fakes"
PYTHON = str(REPO_ROOT / ".venv" / "bin" / "python")


def fake(name: str) -> str:
    """A --*-cmd value running one of the fake programs with the venv's Python."""
    return f"{PYTHON} {FAKES / name}"
