"""The private directory of one pgbyte command, and the ones killed commands left behind.

Connectors get their config (passwords included), catalog and state as files: they live in a
directory made by mkdtemp (0700), removed when the command ends. A command killed with SIGKILL
(or a crash of the machine's Python) cannot remove it, so its name carries the command's pid,
and the next command that starts connectors (check, discover, sync, a state reset that clears)
removes the directories of pids no longer running. (Two machines, or containers with their own
pid numbering, sharing one temp folder are not told apart.)
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

PREFIX = "pgbyte-"
# pgbyte-<pid>- and mkdtemp's 8 random characters, nothing else: not a user's pgbyte-2024-old.
_NAME = re.compile(rf"^{PREFIX}([0-9]+)-[a-z0-9_]{{8}}$")


def make(parent: Path | None = None) -> Path:
    """A new private directory named after this process (stale ones are removed first)."""
    remove_stale(parent)
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent))


def remove_stale(parent: Path | None = None) -> list[Path]:
    """Remove this user's pgbyte directories whose process is gone; returns them."""
    removed = []
    folder = parent or Path(tempfile.gettempdir())
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _NAME.match(entry.name)
        if match is None or running(int(match.group(1))):
            continue
        try:
            info = entry.lstat()
        except OSError:
            continue
        # Only real directories of ours as mkdtemp makes them (0700): never follow a link,
        # never touch another user's.
        if (
            stat.S_ISDIR(info.st_mode)
            and info.st_uid == os.getuid()
            and stat.S_IMODE(info.st_mode) == 0o700
        ):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def running(pid: int) -> bool:
    """Whether a process of that pid exists (ours, or another user's)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or no such pid format): leave it
    return True
