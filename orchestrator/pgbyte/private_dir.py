"""The private directory of one pgbyte command (`pgbyte-<pid>-…`): connectors get their config
(passwords included), catalog and state as files there. Removed when the command ends; one a
command killed with SIGKILL left is removed by the next command that starts connectors (check,
discover, sync, a state reset that clears): pgbyte_common.private_dirs.
"""

from __future__ import annotations

from pathlib import Path

from pgbyte_common import private_dirs
from pgbyte_common.private_dirs import running

PREFIX = "pgbyte-"

__all__ = ["PREFIX", "make", "remove_stale", "running"]


def make(parent: Path | None = None) -> Path:
    """A new private directory named after this process (stale ones are removed first)."""
    return private_dirs.make(PREFIX, parent)


def remove_stale(parent: Path | None = None) -> list[Path]:
    """Remove this user's pgbyte directories whose process is gone; returns them."""
    return private_dirs.remove_stale(PREFIX, parent)
